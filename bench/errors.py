"""User-facing errors: the CLI prints the message as one line and exits with code 2."""

import difflib
import errno

# OSErrors that mean "this folder cannot take files now" (read-only, no permission, disk full, quota)
UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


class BenchError(Exception):
    """Bad input or an unusable environment. The message says what is wrong and how to fix it."""


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean X?)' suffix for the closest choice, or a list of the valid ones."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(choices)})" if choices else ""


def unknown(kind: str, name: str, choices) -> BenchError:
    return BenchError(f"unknown {kind} '{name}'{did_you_mean(name, choices)}")

"""$BENCH_PLUGINS: extra modules that define methods, named by the user (comma-separated), e.g.
BENCH_PLUGINS=my_lab.methods,tests.scheduler.plugin_method. Unlike entry points this needs no
installed package, and because it is an environment variable every worker subprocess, SLURM task
and Ray task (the Ray executor forwards it) sees the same methods as the driver. The registry calls
plugin_modules() during discovery and registers the Method subclasses each module defines."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from bench.errors import BenchError

ENV = "BENCH_PLUGINS"


def plugin_names(value: str | None = None) -> list[str]:
    value = os.environ.get(ENV, "") if value is None else value
    return [name.strip() for name in value.split(",") if name.strip()]


def plugin_modules(value: str | None = None) -> list[ModuleType]:
    """Import every module named in $BENCH_PLUGINS; one that fails is a user error, not a warning:
    a benchmark silently missing a method the user asked for is worse than stopping."""
    modules = []
    for name in plugin_names(value):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise BenchError(f"${ENV} names '{name}', which does not import ({exc}); fix the name or "
                             f"PYTHONPATH") from None
        except Exception as exc:  # the module's own code raised: its file and line, not a traceback
            raise BenchError(f"${ENV} module '{name}' raised {type(exc).__name__} while importing{_at(exc)}: "
                             f"{exc}; fix that module or drop it from ${ENV}") from None
    return modules


def _at(exc: BaseException) -> str:
    """ ' at FILE:LINE' of the innermost frame of the exception's traceback."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""

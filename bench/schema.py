"""The one validator for everything bench reads from a file or the command line: tasks.toml tables,
dataset cards and method parameters (`[methods.X]`, `[[methods.X.when]]`, `bench run --set`).

A spec maps every allowed key to a Key (type, required, range, choices). `check` returns the table
with values coerced (an int is a fine float; a list becomes a tuple where a tuple is declared) or
raises BenchError with ONE line: the place, what is wrong, and the closest valid name. Method
parameters declare their range/choices once, in the dataclass field's metadata (see params_spec),
so a bad value stops at load time instead of inside fit().
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass

from bench.errors import BenchError, did_you_mean

MAX_COUNT = 2**31 - 1  # the largest shot count or seed: numpy and torch seed from it; more is a typo
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
          tuple: "a list", dict: "a table"}
_PLURAL = {str: "strings", int: "integers", float: "numbers", bool: "booleans", dict: "tables"}


@dataclass(frozen=True)
class Key:
    type: type | None  # str int float bool list tuple dict; None = anything
    required: bool = False
    items: type | None = None  # element type of a list/tuple (None: any)
    range: tuple | None = None  # (low, high), None = unbounded; on a list: every element
    open: bool = False  # range bounds excluded
    choices: tuple | None = None  # allowed values (on a list: every element); None = no check
    kind: str = ""  # names the choices: "unknown dataset 'x' (did you mean 'y'?)"
    nonempty: bool = False
    unique: bool = False
    help: str = ""
    default: typing.Any = None  # shown by `bench list params`


def type_name(value) -> str:
    """How a value reads in an error: "an integer 3", "a string 'x'"."""
    kind = next((name for t, name in _NAMES.items() if type(value) is t), type(value).__name__)
    return f"{kind} {value!r}"


def range_text(key: Key) -> str:
    low, high = key.range
    if low is not None and high is not None:
        return f"({low}, {high})" if key.open else f"[{low}, {high}]"
    return f"{'>' if key.open else '≥'} {low}" if low is not None else f"{'<' if key.open else '≤'} {high}"


def describe(key: Key) -> str:
    """What a value of this key must be, e.g. "a list of positive integers"."""
    if key.type in (list, tuple):
        return "a list" if key.items is None else f"a list of {_element(key, plural=True)}"
    return _element(key, plural=False)


def _element(key: Key, plural: bool) -> str:
    base = key.items if key.type in (list, tuple) else key.type
    if base is int and key.range in ((1, None), (1, MAX_COUNT)) and not key.open:
        bound = "" if key.range[1] is None else f" up to {MAX_COUNT}"
        return f"positive integers{bound}" if plural else f"a positive integer{bound}"
    text = (_PLURAL if plural else _NAMES).get(base, getattr(base, "__name__", "values"))
    return f"{text} {_in_range(key)}" if key.range is not None else text


def _in_range(key: Key) -> str:
    text = range_text(key)
    return f"in {text}" if text[0] in "[(" else text


def check(table, spec: dict[str, Key], where: str, *, noun: str = "key", prefix: str = "") -> dict:
    """`table` validated against `spec`; unknown keys, wrong types, values out of range or not among
    the choices, and missing required keys are one-line BenchErrors that start with `where`."""
    if not isinstance(table, dict):
        raise BenchError(f"{where}: must be a table, got {type_name(table)}")
    out = {}
    for name, value in table.items():
        if name not in spec:
            raise BenchError(f"{where}: unknown {noun} '{prefix}{name}'{did_you_mean(name, spec)}")
        out[name] = check_value(f"{prefix}{name}", value, spec[name], where, noun)
    for name, key in spec.items():
        if key.required and name not in table:
            raise BenchError(f"{where}: missing required {noun} '{prefix}{name}'")
    return out


def check_value(name: str, value, key: Key, where: str, noun: str = "key"):
    """One value checked (and coerced) against its Key; see `check`."""
    sequence = key.type in (list, tuple)
    coerced = _coerce(value, key.type)
    if coerced is _BAD or (sequence and any(_coerce(v, key.items) is _BAD for v in coerced)):
        raise BenchError(f"{where}: {noun} '{name}' must be {describe(key)}, got {type_name(value)}")
    if sequence:
        coerced = [_coerce(v, key.items) for v in coerced]
    for element in coerced if sequence else (coerced,):
        if key.range is not None and not _within(element, key):
            if sequence:
                raise BenchError(f"{where}: {noun} '{name}' must be {describe(key)}, got {value!r}")
            raise BenchError(f"{where}: {name} = {value!r} is out of range {range_text(key)}"
                             if key.range[0] is not None and key.range[1] is not None
                             else f"{where}: {name} = {value!r} must be {range_text(key)}")
        if key.choices is not None and element not in key.choices:
            close = did_you_mean(str(element), [str(c) for c in key.choices])
            raise BenchError(f"{where}: unknown {key.kind} {element!r}{close}" if key.kind
                             else f"{where}: {name} = {element!r} is not allowed{close}")
    if sequence:
        if key.nonempty and not coerced:
            raise BenchError(f"{where}: {noun} '{name}' must not be empty")
        twice = sorted({str(v) for v in coerced if coerced.count(v) > 1})
        if key.unique and twice:
            raise BenchError(f"{where}: {noun} '{name}' lists {', '.join(twice)} more than once")
        return tuple(coerced) if key.type is tuple else coerced
    return coerced


_BAD = object()


def _coerce(value, want):
    """value as type `want`, or _BAD. Types are exact (true is not an integer); an int is a float."""
    if want is None or type(value) is want:
        return value
    if want is float and type(value) is int:
        return float(value)
    if want is tuple and type(value) is list:
        return tuple(value)
    return _BAD


def _within(value, key: Key) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    low, high = key.range
    if key.open:
        return (low is None or value > low) and (high is None or value < high)
    return (low is None or value >= low) and (high is None or value <= high)


IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def check_identifier(kind: str, name: str, where: str) -> None:
    """Method, variant, suite, backbone and dataset names become folder and file names (records/,
    results/<suite>, caches): a '/', '..' or space in one would write outside its folder."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise BenchError(f"{where}: {kind} name {name!r} must start with a letter and hold only letters, "
                         "digits, '_' and '-' (it becomes a folder name); rename it")


@functools.lru_cache(maxsize=None)
def params_spec(params_cls: type) -> dict[str, Key]:
    """A Params dataclass as a spec. The type comes from the annotation (a bare `tuple` takes its
    element type from the default); range, open, choices and help from the field's metadata."""
    hints = typing.get_type_hints(params_cls)
    spec = {}
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        hint = hints.get(f.name)
        origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
        if origin not in _NAMES:
            origin = type(default) if default is not None else None
        items = None
        if origin in (list, tuple):
            items = args[0] if args and args[0] is not Ellipsis else (type(default[0]) if default else None)
        meta = f.metadata
        spec[f.name] = Key(origin, items=items, range=meta.get("range"),
                           open=meta.get("open", False),
                           choices=tuple(meta["choices"]) if "choices" in meta else None,
                           help=meta.get("help", ""), default=default)
    return spec

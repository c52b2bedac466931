"""Dataset cards: one TOML file per dataset under `datasets/` (data, not Python).

A card says where a dataset lives under the data root, which reader understands its split source,
what a complete copy looks like (counts, split-file hash) and how to get it. Parsing is strict:
an unknown key or a wrong type is an error naming the file and the key, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, did_you_mean, unknown

SPLIT_SOURCES = ("coop_json", "imagenet_folders", "fgvc_txt", "hf")


@dataclass(frozen=True)
class Counts:
    classes: int
    train: int
    val: int
    test: int


@dataclass(frozen=True)
class Source:
    """One thing to download: what it is, from where, and where it goes under the data root."""

    what: str
    url: str
    place: str = ""
    note: str = ""
    mirrors: tuple[str, ...] = ()
    dead: bool = False


@dataclass(frozen=True)
class DatasetCard:
    name: str
    dir: str
    image_root: str
    split_source: str
    split_file: str
    templates: tuple[str, ...]
    expected: Counts | None = None
    split_sha256: str | None = None
    sources: tuple[Source, ...] = ()
    notes: str = ""
    synthetic: str | None = None
    # Free-form settings for the synthetic generator; a dict, so kept out of the hash.
    generator: dict = field(default_factory=dict, hash=False)
    card_path: str = field(default="", compare=False)


# key -> (python type, required). Types are checked exactly (bool is not an int here).
_TOP: dict[str, tuple[type, bool]] = {
    "name": (str, True), "dir": (str, True), "image_root": (str, True),
    "split_source": (str, True), "split_file": (str, True), "templates": (list, True),
    "expected": (dict, False), "split_sha256": (str, False), "sources": (list, False),
    "notes": (str, False), "synthetic": (str, False), "generator": (dict, False),
}
_COUNTS = {k: (int, True) for k in ("classes", "train", "val", "test")}
_SOURCE = {
    "what": (str, True), "url": (str, True), "place": (str, False), "note": (str, False),
    "mirrors": (list, False), "dead": (bool, False),
}


def repo_root() -> Path:
    import bench

    return Path(bench.__file__).resolve().parent.parent


def cards_dir() -> Path:
    """`<repo>/datasets`, or $BENCH_DATASETS_DIR (lets a user keep private cards elsewhere)."""
    env = os.environ.get("BENCH_DATASETS_DIR")
    return Path(env) if env else repo_root() / "datasets"


def card_names() -> list[str]:
    d = cards_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_card(name: str) -> DatasetCard:
    names = card_names()
    if name not in names:
        raise unknown("dataset", name, names)
    return parse_card(cards_dir() / f"{name}.toml")


def prompt_classname(name: str) -> str:
    """Class names keep '_' as on disk; prompts use spaces (CoOp does the same)."""
    return name.replace("_", " ")


def default_data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA") or "data")


def dataset_dir(card: DatasetCard, root: Path | str) -> Path:
    return Path(root) / card.dir


def image_dir(card: DatasetCard, root: Path | str) -> Path:
    """Directory the split file's relative paths start from ('' = the dataset dir itself)."""
    d = dataset_dir(card, root)
    return d / card.image_root if card.image_root else d


def parse_card(path: Path) -> DatasetCard:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"dataset card {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"dataset card {path} is not valid TOML: {e}") from None
    where = str(path)
    _check_table(raw, _TOP, where, "")
    if raw["name"] != path.stem:
        raise BenchError(f"{where}: name '{raw['name']}' must equal the file name '{path.stem}'")
    if raw["split_source"] not in SPLIT_SOURCES:
        raise BenchError(f"{where}: key 'split_source': " + str(
            unknown("split source", raw["split_source"], SPLIT_SOURCES)))
    return DatasetCard(
        name=raw["name"], dir=raw["dir"], image_root=raw["image_root"],
        split_source=raw["split_source"], split_file=raw["split_file"],
        templates=_templates(raw["templates"], where),
        expected=_counts(raw.get("expected"), where),
        split_sha256=_sha(raw.get("split_sha256"), where),
        sources=tuple(_source(s, i, where) for i, s in enumerate(raw.get("sources", []))),
        notes=raw.get("notes", ""), synthetic=raw.get("synthetic") or None,
        generator=dict(raw.get("generator", {})), card_path=where,
    )


def _check_table(table: dict, spec: dict[str, tuple[type, bool]], where: str, prefix: str) -> None:
    for key, value in table.items():
        if key not in spec:
            raise BenchError(f"{where}: unknown key '{prefix}{key}'{did_you_mean(key, spec)}")
        want = spec[key][0]
        if type(value) is not want:
            raise BenchError(f"{where}: key '{prefix}{key}' must be {_tname(want)}, "
                             f"got {_tname(type(value))} {value!r}")
    for key, (_, required) in spec.items():
        if required and key not in table:
            raise BenchError(f"{where}: missing required key '{prefix}{key}'")


def _tname(t: type) -> str:
    return {str: "a string", int: "an integer", bool: "a boolean", list: "a list",
            dict: "a table", float: "a float", type(None): "nothing"}.get(t, t.__name__)


def _templates(value: list, where: str) -> tuple[str, ...]:
    if not value:
        raise BenchError(f"{where}: key 'templates' must list at least one prompt template")
    for t in value:
        if type(t) is not str or t.count("{}") != 1:
            raise BenchError(f"{where}: key 'templates': {t!r} must be a string with exactly one '{{}}'")
    return tuple(value)


def _counts(value: dict | None, where: str) -> Counts | None:
    if value is None:
        return None
    _check_table(value, _COUNTS, where, "expected.")
    if any(v < 0 for v in value.values()):
        raise BenchError(f"{where}: key 'expected' counts must be >= 0")
    return Counts(**value)


def _sha(value: str | None, where: str) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise BenchError(f"{where}: key 'split_sha256' must be 64 lowercase hex digits")
    return value


def _source(value: Any, i: int, where: str) -> Source:
    prefix = f"sources[{i}]."
    if type(value) is not dict:
        raise BenchError(f"{where}: key 'sources[{i}]' must be a table ([[sources]])")
    _check_table(value, _SOURCE, where, prefix)
    mirrors = value.get("mirrors", [])
    if any(type(m) is not str for m in mirrors):
        raise BenchError(f"{where}: key '{prefix}mirrors' must be a list of strings")
    return Source(**{**value, "mirrors": tuple(mirrors)})

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
from importlib.resources import files
from pathlib import Path
from typing import Any

from bench.errors import BenchError, unknown
from bench.schema import Key, check

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


# Types are exact (true is not an integer); checked by bench.schema like tasks.toml.
_TOP = {
    "name": Key(str, required=True), "dir": Key(str, required=True), "image_root": Key(str, required=True),
    "split_source": Key(str, required=True, choices=SPLIT_SOURCES, kind="split source"),
    "split_file": Key(str, required=True), "templates": Key(list, required=True, items=str, nonempty=True),
    "expected": Key(dict), "split_sha256": Key(str), "sources": Key(list, items=dict),
    "notes": Key(str), "synthetic": Key(str), "generator": Key(dict),
}
_COUNTS = {k: Key(int, required=True, range=(0, None)) for k in ("classes", "train", "val", "test")}
_SOURCE = {
    "what": Key(str, required=True), "url": Key(str, required=True), "place": Key(str), "note": Key(str),
    "mirrors": Key(list, items=str), "dead": Key(bool),
}


def cards_dir() -> Path:
    """The cards installed with bench (`bench/cards`, a link to the source tree's `datasets/`), or
    $BENCH_DATASETS_DIR (lets a user keep private cards elsewhere)."""
    env = os.environ.get("BENCH_DATASETS_DIR")
    return Path(env) if env else Path(str(files("bench") / "cards"))


def card_names() -> list[str]:
    d = cards_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_card(name: str) -> DatasetCard:
    names = card_names()
    if name not in names:
        raise unknown("dataset", name, names)
    from bench.schema import check_identifier

    check_identifier("dataset", name, str(cards_dir() / f"{name}.toml"))  # it names cache and record folders
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
    raw = check(raw, _TOP, where)
    if raw["name"] != path.stem:
        raise BenchError(f"{where}: name '{raw['name']}' must equal the file name '{path.stem}'")
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


def _templates(value: list, where: str) -> tuple[str, ...]:
    for t in value:  # a non-empty list of strings (checked by _TOP): each needs its class-name slot
        if t.count("{}") != 1:
            raise BenchError(f"{where}: key 'templates': {t!r} must be a string with exactly one '{{}}'")
    return tuple(value)


def _counts(value: dict | None, where: str) -> Counts | None:
    if value is None:
        return None
    return Counts(**check(value, _COUNTS, where, prefix="expected."))


def _sha(value: str | None, where: str) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
        raise BenchError(f"{where}: key 'split_sha256' must be 64 lowercase hex digits")
    return value


def _source(value: Any, i: int, where: str) -> Source:
    value = check(value, _SOURCE, where, prefix=f"sources[{i}].")
    return Source(**{**value, "mirrors": tuple(value.get("mirrors", ()))})

"""Miniature dataset trees in each card's exact on-disk layout, with real (tiny) JPEGs.

Helpers are handed out as fixtures (not imported from this module): `conftest` is not a unique
module name once several test folders have one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from bench.data.cards import Counts, DatasetCard, dataset_dir, image_dir

PER_CLASS = {"train": 4, "val": 2, "test": 3}


@dataclass
class Mini:
    card: DatasetCard  # the real card with expected counts / hash of this miniature
    classnames: list[str]
    counts: Counts
    entries: dict  # split -> [[relpath, label, classname]] (for split-file based layouts)


def write_jpeg(path: Path, color: tuple[int, int, int], size=(16, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def _color(label: int, k: int) -> tuple[int, int, int]:
    return (40 * label % 256, 17 * k % 256, 200 - 30 * label % 200)


def _relpath(name: str, folder: str, split: str, k: int) -> str:
    """File naming in the style of each dataset's split file."""
    if name == "stanford_cars":
        return f"{'cars_test' if split == 'test' else 'cars_train'}/{k:05d}.jpg"
    if name in ("oxford_pets", "oxford_flowers"):
        return f"{folder}_{k:03d}.jpg"
    if name == "sun397":
        return f"{folder[0]}/{folder}/sun_{k:04d}.jpg"
    return f"{folder}/{folder}_{k:04d}.jpg"


def _coop_tree(card: DatasetCard, root: Path, classnames: list[str], per_class: dict) -> dict:
    rng, k = random.Random(0), 0
    entries = {}
    for split, n in per_class.items():
        rows = []
        for label, cname in enumerate(classnames):
            for _ in range(n):
                k += 1
                rel = _relpath(card.name, f"Folder{label}", split, k)
                write_jpeg(image_dir(card, root) / rel, _color(label, k))
                rows.append([rel, label, cname])
        rng.shuffle(rows)  # interleaved labels exercise the sampler's first-appearance order
        entries[split] = rows
    path = dataset_dir(card, root) / card.split_file
    path.write_text(json.dumps(entries, indent=1))
    return entries


def _imagenet_tree(card: DatasetCard, root: Path, classnames: list[str], per_class: dict) -> dict:
    wnids = [f"n{label:08d}" for label in range(len(classnames))]
    lines = [f"{w} {c}" for w, c in zip(wnids, classnames)]
    (dataset_dir(card, root) / card.split_file).parent.mkdir(parents=True, exist_ok=True)
    (dataset_dir(card, root) / card.split_file).write_text("\n".join(reversed(lines)) + "\n")
    for split, folder in (("train", "train"), ("test", "val")):
        for label, w in enumerate(wnids):
            for k in range(per_class[split]):
                write_jpeg(image_dir(card, root) / folder / w / f"{w}_{k}.JPEG", _color(label, k))
    return {}


def _fgvc_tree(card: DatasetCard, root: Path, classnames: list[str], per_class: dict) -> dict:
    ddir, k = dataset_dir(card, root), 1000000
    ddir.mkdir(parents=True, exist_ok=True)
    (ddir / card.split_file).write_text("\n".join(classnames) + "\n")
    for split, n in per_class.items():
        lines = []
        for label, cname in enumerate(classnames):
            for _ in range(n):
                k += 1
                write_jpeg(image_dir(card, root) / f"{k}.jpg", _color(label, k))
                lines.append(f"{k} {cname}")
        (ddir / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return {}


_BUILDERS = {"coop_json": _coop_tree, "hf": _coop_tree, "imagenet_folders": _imagenet_tree,
             "fgvc_txt": _fgvc_tree}
_NAMES = {"imagenet_folders": ["tench", "great white shark", "goldfish"],
          "fgvc_txt": ["707-320", "A300B4", "F/A-18"]}


def build_tree(card: DatasetCard, root: Path, n_classes: int = 3, per_class=None) -> Mini:
    per_class = dict(per_class or PER_CLASS)
    if card.split_source == "imagenet_folders":
        per_class["val"] = 0  # ImageNet has no val split
    classnames = _NAMES.get(card.split_source, [f"class_{chr(97 + i)}" for i in range(n_classes)])
    classnames = classnames[:n_classes]
    entries = _BUILDERS[card.split_source](card, root, classnames, per_class)
    split_path = dataset_dir(card, root) / card.split_file
    sha = hashlib.sha256(split_path.read_bytes()).hexdigest() if card.split_sha256 else None
    counts = Counts(len(classnames), *(per_class[s] * len(classnames) for s in ("train", "val", "test")))
    mini = dataclasses.replace(card, expected=counts, split_sha256=sha)
    return Mini(mini, classnames, counts, entries)


@pytest.fixture
def make_tree(tmp_path):
    """make_tree(card, root=None, n_classes=3, per_class=None) -> Mini (root: tmp_path/'data')."""
    def make(card: DatasetCard, root: Path | None = None, **kw) -> Mini:
        return build_tree(card, root or tmp_path / "data", **kw)
    return make


@pytest.fixture
def jpeg():
    """jpeg(path, color, size=(16, 12)): write a tiny real JPEG."""
    return write_jpeg


@pytest.fixture
def data_root(tmp_path) -> Path:
    return tmp_path / "data"

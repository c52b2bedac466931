"""Readers for the split sources named by a card's `split_source`.

Each reader turns files on disk into a DatasetSplits with absolute item paths, in the order the
source lists them (the few-shot sampler depends on that order). Bad input is a BenchError that
names the file and says how to fix it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

from bench.data.cards import DatasetCard, dataset_dir, image_dir
from bench.data.items import DatasetSplits, Item
from bench.errors import BenchError

SPLITS = ("train", "val", "test")
Entry = tuple[str, int, str]  # (path relative to the image root, label, classname)


def load_splits(card: DatasetCard, root: Path | str, check_files: bool = True) -> DatasetSplits:
    """Read a dataset's train/val/test lists. `check_files` verifies every listed image exists."""
    root = Path(root)
    if card.synthetic:
        # Imported lazily: the generator module is optional and owned by the smoke-data code.
        importlib.import_module("bench.data.synthetic").ensure_generated(card, root)
    if card.split_source == "hf":
        from bench.data.hf_reader import read_hf

        splits = read_hf(card, root)
    else:
        splits = _READERS[card.split_source](card, root)
    if check_files:
        missing = missing_files(splits.train + splits.val + splits.test)
        if missing:
            raise BenchError(
                f"dataset '{card.name}': {len(missing)} listed images are missing under "
                f"{image_dir(card, root)} (first: {missing[0]}); run `bench data check` for advice")
    return splits


def split_source_files(card: DatasetCard) -> list[str]:
    """The files (relative to the dataset dir) that define the split; the doctor checks them."""
    if card.split_source == "fgvc_txt":
        return [card.split_file] + [f"images_variant_{s}.txt" for s in SPLITS]
    return [card.split_file]


def missing_files(items: list[Item]) -> list[str]:
    """Paths that do not exist. One listdir per directory instead of one stat per image."""
    listing: dict[str, set[str] | None] = {}
    missing = []
    for it in items:
        parent, name = os.path.split(it.path)
        if parent not in listing:
            try:
                listing[parent] = set(os.listdir(parent))
            except OSError:
                listing[parent] = None
        names = listing[parent]
        if names is None or name not in names:
            missing.append(it.path)
    return missing


def read_bytes(path: Path, card: DatasetCard) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BenchError(f"dataset '{card.name}': split file {path} not found; "
                         f"run `bench data check --datasets {card.name}` to see where to get it") from None
    except OSError as e:
        raise BenchError(f"dataset '{card.name}': cannot read {path}: {e.strerror}") from None


def parse_coop_split(raw: bytes, where: str) -> dict[str, list[Entry]]:
    """CoOp's split JSON: {"train"|"val"|"test": [[relpath, label, classname], ...]}."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"split file {where} is not valid JSON ({e}); it is truncated or "
                         "corrupt: download it again") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(s), list) for s in SPLITS):
        raise BenchError(f"split file {where} must be an object with lists 'train', 'val', 'test'")
    out = {}
    for split in SPLITS:
        entries = []
        for i, e in enumerate(data[split]):
            if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
                    and type(e[1]) is int and isinstance(e[2], str)):
                raise BenchError(f"split file {where}: {split}[{i}] = {e!r} is not "
                                 "[relative_path, integer label, classname]")
            entries.append((e[0], e[1], e[2]))
        out[split] = entries
    return out


def check_inside(entries: dict[str, list[Entry]], image_root: Path, where: str) -> None:
    """Split files hold paths relative to the image folder: an absolute entry, or one whose '..' climbs
    out of it, would read (or, for Hugging Face copies, write) files elsewhere. Checked lexically
    (normpath, no stat), once, where the entries are read."""
    for split, listed in entries.items():
        for i, (rel, _, _) in enumerate(listed):
            norm = os.path.normpath(rel)
            if os.path.isabs(rel) or norm == os.pardir or norm.startswith(os.pardir + os.sep):
                raise BenchError(f"{where}: {split} entry {i} {rel!r} is outside the image folder {image_root}; "
                                 "split files hold paths relative to it")


def classnames_from(entries: dict[str, list[Entry]], where: str) -> list[str]:
    """Class list = the train labels, sorted, each mapped to its name (CoOp's rule).

    Labels must be 0..n-1 so they can index a classifier; val/test may only use train labels.
    """
    names: dict[int, str] = {}
    for _, label, cname in entries["train"]:
        if names.setdefault(label, cname) != cname:
            raise BenchError(f"split file {where}: label {label} has two class names "
                             f"'{names[label]}' and '{cname}'")
    n = len(names)
    if sorted(names) != list(range(n)):
        gap = min(set(range(n)) - set(names), default=max(names, default=0))
        raise BenchError(f"split file {where}: train labels must be 0..{n - 1}, but label {gap} "
                         "is missing or out of range")
    for split in SPLITS[1:]:
        for i, (_, label, _) in enumerate(entries[split]):
            if label not in names:
                raise BenchError(f"split file {where}: {split}[{i}] has label {label}, out of "
                                 f"range 0..{n - 1} (labels come from the train list)")
    return [names[i] for i in range(n)]


def splits_from_entries(card: DatasetCard, entries: dict[str, list[Entry]], base: Path,
                        classnames: list[str], digest: str) -> DatasetSplits:
    base_s = os.path.abspath(base)
    lists = {s: [Item(os.path.join(base_s, rel), label, classnames[label])
                 for rel, label, _ in entries[s]] for s in SPLITS}
    return DatasetSplits(card.name, classnames, lists["train"], lists["val"], lists["test"],
                         digest, image_root=base_s)


def read_coop_json(card: DatasetCard, root: Path) -> DatasetSplits:
    path = dataset_dir(card, root) / card.split_file
    raw = read_bytes(path, card)
    entries = parse_coop_split(raw, str(path))
    check_inside(entries, image_dir(card, root), str(path))
    classnames = classnames_from(entries, str(path))
    return splits_from_entries(card, entries, image_dir(card, root), classnames,
                               hashlib.sha256(raw).hexdigest())


def _visible(d: Path, dirs: bool) -> list[str]:
    """Sorted non-hidden entries. CoOp lists ImageNet folders unsorted (os.listdir order, which
    depends on the filesystem); we sort so the train list and hence few-shot draws are the same
    on every machine. This is a documented deviation from CoOp."""
    try:
        with os.scandir(d) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir() == dirs)
    except FileNotFoundError:
        raise BenchError(f"directory {d} not found; run `bench data check` for the expected layout") from None


def read_imagenet(card: DatasetCard, root: Path) -> DatasetSplits:
    """`images/train/<wnid>/*` is train, `images/val/<wnid>/*` is test, no val split.
    Label = index of the wnid in the sorted train folder list; names from classnames.txt."""
    path = dataset_dir(card, root) / card.split_file
    raw = read_bytes(path, card)
    wnid_name = {}
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.strip().split(" ", 1)
        if parts[0]:
            if len(parts) < 2 or not parts[1].strip():
                raise BenchError(f"{path}:{n}: expected '<wnid> <class name>', got {line!r}")
            wnid_name[parts[0]] = parts[1].strip()
    base = image_dir(card, root)
    wnids = _visible(base / "train", dirs=True)
    if _visible(base / "val", dirs=True) != wnids:
        raise BenchError(f"{base / 'val'} must hold the same class folders as {base / 'train'} "
                         "(reorganise the ImageNet val images into <wnid>/ folders)")
    unnamed = [w for w in wnids if w not in wnid_name]
    if unnamed:
        raise BenchError(f"{path} has no name for class folder '{unnamed[0]}' "
                         f"({len(unnamed)} folders unnamed); download CoOp's classnames.txt")
    h = hashlib.sha256(raw)
    entries: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
    for split, folder in (("train", "train"), ("test", "val")):
        for label, wnid in enumerate(wnids):
            for f in _visible(base / folder / wnid, dirs=False):
                entries[split].append((f"{folder}/{wnid}/{f}", label, wnid_name[wnid]))
        h.update(("\0" + split + "\0" + "\n".join(e[0] for e in entries[split])).encode())
    return splits_from_entries(card, entries, base, [wnid_name[w] for w in wnids], h.hexdigest())


def read_fgvc(card: DatasetCard, root: Path) -> DatasetSplits:
    """FGVC-Aircraft: `variants.txt` orders the classes; `images_variant_<split>.txt` lines are
    `<image_id> <variant with spaces>`; the image is `images/<image_id>.jpg`."""
    ddir = dataset_dir(card, root)
    vpath = ddir / card.split_file
    vraw = read_bytes(vpath, card)
    variants = [v.strip() for v in vraw.decode("utf-8").splitlines() if v.strip()]
    label_of = {v: i for i, v in enumerate(variants)}
    h = hashlib.sha256(vraw)
    entries: dict[str, list[Entry]] = {}
    for split in SPLITS:
        path = ddir / f"images_variant_{split}.txt"
        raw = read_bytes(path, card)
        h.update(b"\0" + split.encode() + b"\0" + raw)
        entries[split] = []
        for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            image_id, _, variant = line.strip().partition(" ")
            if variant not in label_of:
                raise BenchError(f"{path}:{n}: variant '{variant}' is not listed in {vpath}")
            entries[split].append((f"{image_id}.jpg", label_of[variant], variant))
        check_inside({split: entries[split]}, image_dir(card, root), str(path))
    classnames = classnames_from(entries, str(ddir / "images_variant_train.txt"))
    return splits_from_entries(card, entries, image_dir(card, root), classnames, h.hexdigest())


_READERS = {"coop_json": read_coop_json, "imagenet_folders": read_imagenet, "fgvc_txt": read_fgvc}

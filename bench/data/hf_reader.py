"""Hugging Face copies of a dataset, read through CoOp's split JSON (`split_source = "hf"`).

The card's `image_root` names either
- an imagefolder directory (plain image files in any nesting, as `load_dataset("imagefolder")`
  reads them): we walk it ourselves, which avoids building an Arrow cache of files already on disk;
- a `save_to_disk` directory (has `state.json` or `dataset_dict.json`): loaded with
  `datasets.load_from_disk`; every split is searched, since CoOp's split decides train/val/test.

Rows are matched to split entries by relative path (the stored path must end with it), or, for
bare file names, by (file name, class folder) using the dataset's ClassLabel column. The split JSON decides
the lists and their order, so split digest and few-shot draws (positions) equal those of the plain
on-disk copy; the few-shot digest also matches when the copy keeps CoOp's folder layout. Arrow-embedded images are written once to `<dir>/.hf_images/`
under their split-file path, so every Item is a real file like with the other readers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from bench.data.cards import DatasetCard, dataset_dir, image_dir
from bench.data.items import DatasetSplits
from bench.data.readers import (SPLITS, check_inside, classnames_from, parse_coop_split, read_bytes,
                                splits_from_entries)
from bench.errors import BenchError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
EXTRACT_DIR = ".hf_images"


def read_hf(card: DatasetCard, root: Path) -> DatasetSplits:
    split_path = dataset_dir(card, root) / card.split_file
    raw = read_bytes(split_path, card)
    entries = parse_coop_split(raw, str(split_path))
    hf_dir = image_dir(card, root)
    check_inside(entries, hf_dir, str(split_path))  # before any image is extracted to base/<entry>
    classnames = classnames_from(entries, str(split_path))
    if not hf_dir.is_dir():
        raise BenchError(f"dataset '{card.name}': Hugging Face directory {hf_dir} not found")
    wanted = sorted({rel for s in SPLITS for rel, _, _ in entries[s]})
    if (hf_dir / "state.json").exists() or (hf_dir / "dataset_dict.json").exists():
        base = dataset_dir(card, root) / EXTRACT_DIR
        _extract_arrow(hf_dir, wanted, base)
    else:
        base = hf_dir
        rows = [(p, None) for p in _walk_images(hf_dir)]
        found = _match(wanted, rows, hf_dir)
        entries = {s: [(rows[found[rel]][0], y, c) for rel, y, c in entries[s]] for s in SPLITS}
    return splits_from_entries(card, entries, base, classnames, hashlib.sha256(raw).hexdigest())


def _walk_images(d: Path) -> list[str]:
    out = []
    for dirpath, dirnames, files in os.walk(d):
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        rel = os.path.relpath(dirpath, d)
        for f in sorted(files):
            if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                out.append(f if rel == "." else PurePosixPath(*Path(rel).parts, f).as_posix())
    return out


def _match(wanted: list[str], rows: list[tuple[str, str | None]], where: Path) -> dict[str, int]:
    """Map each split-file path to a row index. rows = (path as the HF copy stores it, class name).

    A row whose stored path has folders must end with the split path. A bare file name (what
    Arrow-embedded images keep) matches by name; when the copy has a ClassLabel column whose names
    include the split path's first folder, the class must agree too (file names repeat across
    classes, e.g. Caltech101's image_0001.jpg).
    """
    by_suffix: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for i, (p, _) in enumerate(rows):
        parts = PurePosixPath(p.replace("\\", "/")).parts
        if len(parts) == 1:
            by_name.setdefault(parts[0], []).append(i)
        for k in range(len(parts)):
            by_suffix.setdefault("/".join(parts[k:]), []).append(i)
    labels = {c for _, c in rows if c is not None}
    found, missing = {}, []
    for rel in wanted:
        hits = by_suffix.get(rel, [])
        if not hits and len(PurePosixPath(rel).parts) > 1:
            hits = by_name.get(PurePosixPath(rel).name, [])
            folder = PurePosixPath(rel).parts[0]
            if folder in labels:
                hits = [i for i in hits if rows[i][1] == folder]
        if len(hits) > 1:
            raise BenchError(f"{where}: '{rel}' matches {len(hits)} images (e.g. {rows[hits[0]][0]}); "
                             "keep the original folder structure so paths are unique")
        if hits:
            found[rel] = hits[0]
        else:
            missing.append(rel)
    if missing:
        raise BenchError(f"{where}: {len(missing)} images of the split file are not in the Hugging "
                         f"Face copy (first: {missing[0]}); it must keep the original file names")
    return found


def _extract_arrow(hf_dir: Path, wanted: list[str], base: Path) -> None:
    """Write the Arrow-embedded images the split needs to `base/<relpath>` (once)."""
    if all((base / rel).is_file() for rel in wanted):
        return
    import datasets  # heavy import, only needed for save_to_disk copies

    loaded = datasets.load_from_disk(str(hf_dir))
    parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    rows, sources = [], []
    for ds in parts:
        img_col = next((k for k, f in ds.features.items() if isinstance(f, datasets.Image)), None)
        if img_col is None:
            raise BenchError(f"{hf_dir}: the dataset has no Image column")
        lab_col = next((k for k, f in ds.features.items() if isinstance(f, datasets.ClassLabel)), None)
        ds = ds.cast_column(img_col, datasets.Image(decode=False))
        names = ds.features[lab_col].names if lab_col else None
        for i, rec in enumerate(ds.select_columns([img_col] + ([lab_col] if lab_col else []))):
            img = rec[img_col]
            path = img.get("path") or f"{len(rows)}"
            rows.append((path, names[rec[lab_col]] if names else None))
            sources.append((ds, img_col, i))
    found = _match(wanted, rows, hf_dir)
    for rel in wanted:
        target = base / rel
        if target.is_file():
            continue
        ds, col, i = sources[found[rel]]
        img = ds[i][col]
        data = img.get("bytes") or Path(img["path"]).read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written image behind

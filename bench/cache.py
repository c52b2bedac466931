"""Where the frozen-feature cache lives and what it holds, without torch: `bench cache info|clear`
and the method files (a record's item digest) use these; bench.features builds the tensors.

Layout: $BENCH_CACHE/features/<backbone digest[:16]>/<dataset>/<split>-<tag>-<key hash>.safetensors,
plus backbone.json (what the digest is) per backbone folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path, PurePath


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE") or "~/.cache/bench").expanduser()


def features_root() -> Path:
    return cache_root() / "features"


def items_digest(items, image_root: str = "") -> str:
    """Order matters (a view's randomness uses the item's position), so the list is hashed in order.
    Paths are taken relative to the image root so the digest is the same on every machine."""
    digest = hashlib.sha256()
    for item in items:
        path = os.path.relpath(item.path, image_root) if image_root else item.path
        digest.update(f"{PurePath(path).as_posix()}\t{item.label}\n".encode())
    return digest.hexdigest()


def cache_summary(root: Path | None = None) -> list[dict]:
    """One row per (backbone, dataset) folder: files and bytes. Backbone names come from backbone.json."""
    root = Path(root) if root else features_root()
    rows = []
    for bdir in sorted(p for p in root.glob("*") if p.is_dir()):
        try:
            info = json.loads((bdir / "backbone.json").read_text())
        except (OSError, ValueError):
            info = {}
        name = info.get("name") or info.get("model") or "?"
        for ddir in sorted(p for p in bdir.iterdir() if p.is_dir()):
            files = [f for f in ddir.iterdir() if f.is_file()]
            rows.append({"backbone": name, "digest": bdir.name, "dataset": ddir.name, "files": len(files),
                         "bytes": sum(f.stat().st_size for f in files)})
    return rows


def clear_cache(root: Path | None = None, dataset: str | None = None) -> tuple[int, int]:
    """Delete cached features (of one dataset, or all). Returns (files, bytes) removed."""
    root = Path(root) if root else features_root()
    files = bytes_ = 0
    for bdir in (p for p in root.glob("*") if p.is_dir()):
        for ddir in (p for p in bdir.iterdir() if p.is_dir() and dataset in (None, p.name)):
            for f in ddir.iterdir():
                if f.is_file():
                    bytes_ += f.stat().st_size
                    f.unlink()
                    files += 1
            with contextlib.suppress(OSError):
                ddir.rmdir()
    return files, bytes_

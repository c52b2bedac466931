"""Dataset doctor: is a dataset on disk complete and intact, and if not, what to do about it.

Checks, cheapest first: the dataset directory, the split-source files and image directory, the
split file's sha256 against the card, that the split parses, that every listed image exists, the
counts against the card, and that a sample of images decodes (every image with full=True).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.cards import DatasetCard, dataset_dir, image_dir
from bench.data.readers import load_splits, missing_files, split_source_files
from bench.data.images import load_image
from bench.errors import BenchError

SEVERITY = {"ok": 0, "incomplete": 1, "corrupt": 2, "missing": 3}
SAMPLE_IMAGES = 24


@dataclass
class DatasetHealth:
    name: str
    status: str  # "ok" | "missing" | "incomplete" | "corrupt"
    problems: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def flag(self, status: str, problem: str) -> None:
        self.problems.append(problem)
        if SEVERITY[status] > SEVERITY[self.status]:
            self.status = status


def download_advice(card: DatasetCard, root: Path | str) -> list[str]:
    """What to download and where to put it, from the card's sources."""
    lines = []
    for s in card.sources:
        where = f" → put it at {Path(root) / s.place}" if s.place else ""
        dead = " (official link is dead; use a mirror)" if s.dead else ""
        line = f"{card.name}: download {s.what} from {s.url}{dead}{where}"
        if s.mirrors:
            line += f"; mirrors: {', '.join(s.mirrors)}"
        if s.note:
            line += f" ({s.note})"
        lines.append(line)
    if card.notes:
        lines.append(f"{card.name}: note: {card.notes}")
    if not lines:
        lines.append(f"{card.name}: no download sources in {card.card_path or 'its card'}")
    return lines


def check_dataset(card: DatasetCard, root: Path | str, full: bool = False) -> DatasetHealth:
    root = Path(root)
    health = DatasetHealth(card.name, "ok")
    if not card.synthetic and not _layout_ok(card, root, health):
        health.advice = download_advice(card, root)
        return health
    try:
        splits = load_splits(card, root, check_files=False)
    except BenchError as e:
        health.flag("corrupt", str(e))
        health.advice = download_advice(card, root)
        return health
    items = splits.train + splits.val + splits.test
    health.counts = {"classes": splits.num_classes, "train": len(splits.train),
                     "val": len(splits.val), "test": len(splits.test)}
    missing = missing_files(items)
    if missing:
        health.flag("incomplete", f"{len(missing)} of {len(items)} listed images are missing "
                                  f"(first: {missing[0]})")
    exp = card.expected
    if exp is not None:
        for key, want in vars(exp).items():
            if health.counts[key] != want:
                health.flag("incomplete", f"{key}: found {health.counts[key]:,}, card expects {want:,}")
    absent = set(missing)
    present = [it for it in items if it.path not in absent]
    step = 1 if full else max(1, len(present) // SAMPLE_IMAGES)
    checked = present[::step]
    bad = [e for e in map(_decode_error, checked) if e]
    if bad:
        more = f" ({len(bad)} of {len(checked)} checked images fail)" if len(bad) > 1 else ""
        health.flag("corrupt", bad[0] + more)
    if not health.ok:
        health.advice = download_advice(card, root)
    return health


def _decode_error(item) -> str | None:
    try:
        load_image(item.path)
    except BenchError as e:
        return str(e)
    return None


def _layout_ok(card: DatasetCard, root: Path, health: DatasetHealth) -> bool:
    """Directory, split files, image dir and split hash. False stops the check early."""
    ddir = dataset_dir(card, root)
    if not ddir.is_dir():
        health.flag("missing", f"{ddir} does not exist")
        return False
    for rel in split_source_files(card):
        if not (ddir / rel).is_file():
            health.flag("incomplete", f"split file {ddir / rel} is missing")
    if not image_dir(card, root).is_dir():
        health.flag("incomplete", f"image directory {image_dir(card, root)} is missing")
    if not health.ok:
        return False
    if card.split_sha256:
        path = ddir / card.split_file
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != card.split_sha256:
            health.flag("corrupt", f"{path} has sha256 {got[:12]}…, card expects "
                                   f"{card.split_sha256[:12]}… (wrong or modified split file)")
            return False
    return True


def ensure_usable(card: DatasetCard, root: Path | str) -> None:
    """Raise a one-line BenchError unless the dataset is usable; the runner calls this first."""
    h = check_dataset(card, root)
    if not h.ok:
        problems = "; ".join(h.problems[:2]) + (f" (+{len(h.problems) - 2} more)" if len(h.problems) > 2 else "")
        raise BenchError(f"dataset '{card.name}' is {h.status} under {root}: {problems}. "
                         f"Run `bench data check --datasets {card.name}` for download instructions")

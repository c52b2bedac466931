"""Base-to-new generalisation (CoCoOp): train on the first half of the classes, test on the rest.

base = the first ceil(n/2) sorted labels, new = the remaining ones, relabelled from 0. The few-shot
draw is made over ALL classes first and only then restricted, exactly as CoCoOp does, so the base
images of a draw are the same ones the all-class draw with that seed picks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

from bench.data.fewshot import FewShot, sample_fewshot
from bench.data.items import DatasetSplits, Item
from bench.errors import BenchError

SUBSETS = ("all", "base", "new")


def class_subset(num_classes: int, subset: str) -> list[int]:
    """Original labels of a subset, in new-label order."""
    if subset not in SUBSETS:
        raise BenchError(f"unknown class subset '{subset}' (choose from: {', '.join(SUBSETS)})")
    m = math.ceil(num_classes / 2)
    return {"all": list(range(num_classes)), "base": list(range(m)),
            "new": list(range(m, num_classes))}[subset]


def _restrict(items: list[Item], relabel: dict[int, int]) -> list[Item]:
    return [replace(it, label=relabel[it.label]) for it in items if it.label in relabel]


def subsample_splits(splits: DatasetSplits, subset: str) -> DatasetSplits:
    """Keep only the subset's classes in train/val/test, relabelled 0..m-1."""
    keep = class_subset(splits.num_classes, subset)
    relabel = {old: new for new, old in enumerate(keep)}
    digest = splits.split_digest if subset == "all" else \
        hashlib.sha256(f"{splits.split_digest}:{subset}".encode()).hexdigest()
    ids = tuple(splits.class_ids[i] for i in keep) if splits.class_ids else ()
    return replace(splits, classnames=[splits.classnames[i] for i in keep], class_ids=ids,
                   train=_restrict(splits.train, relabel), val=_restrict(splits.val, relabel),
                   test=_restrict(splits.test, relabel), split_digest=digest)


def subsample_fewshot(fewshot: FewShot, num_classes: int, subset: str) -> FewShot:
    """Restrict an all-class draw to a subset. The digest derives from the all-class one."""
    keep = class_subset(num_classes, subset)
    relabel = {old: new for new, old in enumerate(keep)}
    digest = fewshot.digest if subset == "all" else \
        hashlib.sha256(f"{fewshot.digest}:{subset}".encode()).hexdigest()
    return FewShot(_restrict(fewshot.train, relabel), _restrict(fewshot.val, relabel), digest)


def base_to_new(splits: DatasetSplits, shots: int, seed: int, subset: str,
                draw_val: bool = True) -> tuple[DatasetSplits, FewShot]:
    """The splits and the few-shot draw of one subset (draw over all classes, then restrict)."""
    draw = sample_fewshot(splits, shots, seed, draw_val=draw_val)
    return subsample_splits(splits, subset), subsample_fewshot(draw, splits.num_classes, subset)

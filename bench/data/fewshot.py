"""The few-shot sampler (docs/protocol.md §2), bit-identical to CoOp/Dassl's, and CoOp's cached draws.

CoOp seeds the global `random` module and calls `random.sample` per class; we use an explicit
`random.Random(seed)` instead: the same Mersenne Twister stream, without depending on (or
disturbing) anyone else's use of the global RNG.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import logging
import os
import pickle
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from bench.data.items import DatasetSplits, Item
from bench.errors import BenchError

log = logging.getLogger(__name__)
VAL_SHOTS_MAX = 4  # CoOp draws min(K, 4) validation images per class


@dataclass(frozen=True)
class FewShot:
    """A K-shot draw. `digest` = sha256 of the drawn (path relative to image root, label) lists."""

    train: list[Item]
    val: list[Item]
    digest: str


def draw_indices(labels: Sequence[int], shots: int, rng: random.Random) -> list[int]:
    """Positions drawn from a list with these labels, CoOp's way.

    Classes are visited in order of first appearance (Dassl groups with a dict, which keeps
    insertion order); each contributes `rng.sample(its positions, shots)`, or all of them when it
    has fewer. Sampling positions instead of items consumes the RNG identically.
    """
    groups: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        groups.setdefault(y, []).append(i)
    out: list[int] = []
    for positions in groups.values():
        out.extend(rng.sample(positions, shots) if len(positions) >= shots else positions)
    return out


def _check_draw_args(shots, seed) -> None:
    if type(shots) is not int or shots < 1:
        raise BenchError(f"shots must be a positive integer, got {shots!r}")
    if type(seed) is not int:
        raise BenchError(f"seed must be an integer, got {seed!r}")


def sample_fewshot(splits: DatasetSplits, shots: int, seed: int, draw_val: bool = True) -> FewShot:
    """Draw K train images per class, then (same RNG) min(K, 4) val images per class.

    ImageNet has no val split, so its val draw is empty (and consumes no randomness); pass
    draw_val=False to skip it explicitly. A class smaller than K contributes all its images, as in
    CoOp (logged, not an error).
    """
    _check_draw_args(shots, seed)
    rng = random.Random(seed)
    tr = draw_indices([it.label for it in splits.train], shots, rng)
    va = draw_indices([it.label for it in splits.val], min(shots, VAL_SHOTS_MAX), rng) if draw_val else []
    train = [splits.train[i] for i in tr]
    val = [splits.val[i] for i in va]
    if len(train) < shots * splits.num_classes:
        log.info("%s: %d-shot draw has %d train images: some of the %d classes have fewer than %d",
                 splits.name, shots, len(train), splits.num_classes, shots)
    paths = [it.path for it in splits.train + splits.val]
    root = splits.image_root or (os.path.commonpath(paths) if paths else os.sep)
    return FewShot(train, val, fewshot_digest(train, val, root))


def holdout_val(splits: DatasetSplits, fewshot: FewShot, shots: int, seed: int) -> list[Item]:
    """A validation draw for datasets without a val split (ImageNet): min(K, 4) per class from the
    train images that are NOT in the K-shot draw, so C can be chosen without looking at test.

    Not part of CoOp's protocol (CoOp has no such draw), so it uses its own RNG, seeded from
    (seed, shots) with hashlib: never Python's salted hash(), and never the sampler's stream, which
    must stay bit-identical to CoOp's. Classes are visited in the order of first appearance in the
    full train list, as the CoOp sampler does; a class with fewer left contributes what it has.
    Disjointness is by path, so it holds for a draw loaded from CoOp's pickles too.
    """
    _check_draw_args(shots, seed)
    taken = {it.path for it in fewshot.train}
    rank: dict[int, int] = {}
    for it in splits.train:
        rank.setdefault(it.label, len(rank))
    # A stable sort by class rank keeps each class's list order and makes draw_indices visit the
    # classes in the full list's order even when a class's first image is in the K-shot draw.
    rest = sorted((it for it in splits.train if it.path not in taken), key=lambda it: rank[it.label])
    rng = random.Random(_holdout_seed(shots, seed))
    return [rest[i] for i in draw_indices([it.label for it in rest], min(shots, VAL_SHOTS_MAX), rng)]


def _holdout_seed(shots: int, seed: int) -> int:
    """63 bits of sha256: the same in every process (bench.task.derived_seed's recipe; importing it
    here would make the data layer import the engine)."""
    text = f"holdout_val/{seed}/{shots}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def fewshot_digest(train: list[Item], val: list[Item], image_root: str | Path) -> str:
    """Hash paths relative to the image root so the digest is the same on every machine."""
    def rel(items: list[Item]) -> list:
        return [[PurePosixPath(*Path(os.path.relpath(it.path, image_root)).parts).as_posix(), it.label]
                for it in items]
    blob = json.dumps({"train": rel(train), "val": rel(val)}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# --- CoOp's cached draws: split_fewshot/shot_K-seed_S.pkl --------------------------------------

_DATUM = ("dassl.data.datasets.base_dataset", "Datum")


class _Datum:
    """Stand-in for Dassl's Datum: unpickling just fills __dict__ (_impath, _label, _classname)."""


class _DatumOnly(pickle.Unpickler):
    """Refuses every global except Datum: a pickle can otherwise run arbitrary code."""

    def find_class(self, module: str, name: str):
        if (module, name) == _DATUM:
            return _Datum
        # Protocols 0/1 encode an object as copyreg._reconstructor(cls, object, None); older
        # pickles spell the modules the Python 2 way (copy_reg, __builtin__).
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return copyreg._reconstructor
        if module in ("builtins", "__builtin__") and name == "object":
            return object
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_coop_fewshot_pickle(pkl_path: Path | str, root: Path | str) -> FewShot:
    """Read CoOp's cached draw. `root` is this machine's image root of the dataset
    (e.g. `<data>/dtd/images`); stored absolute paths are re-based under it by finding its
    directory name in them."""
    pkl_path, root = Path(pkl_path), Path(root)
    try:
        data = _DatumOnly(io.BytesIO(pkl_path.read_bytes())).load()
    except FileNotFoundError:
        raise BenchError(f"few-shot pickle {pkl_path} not found") from None
    except Exception as e:  # any unpickling failure means the file is not a CoOp draw
        raise BenchError(f"{pkl_path} is not a CoOp few-shot pickle ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) \
            or not isinstance(data.get("val", []), list):
        raise BenchError(f"{pkl_path}: expected a dict with lists 'train' and 'val'")
    train = [_item(d, root, pkl_path) for d in data["train"]]
    val = [_item(d, root, pkl_path) for d in data.get("val", [])]
    return FewShot(train, val, fewshot_digest(train, val, root))


def _item(d, root: Path, where: Path) -> Item:
    fields = getattr(d, "__dict__", {})
    if not isinstance(d, _Datum) or not {"_impath", "_label", "_classname"} <= fields.keys():
        raise BenchError(f"{where}: entries must be Dassl Datum objects, got {type(d).__name__}")
    return Item(str(rebase(str(d._impath), root)), int(d._label), str(d._classname))


def rebase(stored: str, root: Path) -> Path:
    """Map a path recorded on another machine under `root`, cutting it after root's dir name.
    The last occurrence wins unless only an earlier one names an existing file (a class folder
    could share the image root's name)."""
    parts = PurePosixPath(stored.replace("\\", "/")).parts
    hits = [i for i, p in enumerate(parts) if p == root.name]
    if not hits:
        raise BenchError(f"cannot place '{stored}' under {root}: no '{root.name}' directory in it")
    candidates = [root.joinpath(*parts[i + 1:]) for i in reversed(hits)]
    placed = Path(os.path.abspath(next((c for c in candidates if c.exists()), candidates[0])))
    if Path(os.path.abspath(root)) not in placed.parents:  # a '..' after the root's name climbs out
        raise BenchError(f"cannot place '{stored}' under {root}: it climbs out of that folder")
    return placed

"""Few-shot sampler: docs/protocol.md §2 properties, known draws, and CoOp's own draws (BENCH_CONFORMANCE)."""

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.data import DatasetSplits, Item, holdout_val, load_card, load_splits, sample_fewshot
from bench.data.readers import classnames_from, parse_coop_split, splits_from_entries
from bench.errors import BenchError
from tests.conftest import CONFORMANCE  # $BENCH_CONFORMANCE: CoOp's published draws

REPO = Path(__file__).resolve().parents[2]

COOP = {"dtd": "DescribableTextures", "eurosat": "EuroSAT", "oxford_pets": "OxfordPets",
        "caltech101": "Caltech101"}


@pytest.fixture
def splits(make_tree, data_root):
    mini = make_tree(load_card("dtd"), n_classes=3, per_class={"train": 7, "val": 5, "test": 2})
    return load_splits(mini.card, data_root)


def reference_draw(items, k, seed_or_rng):
    """Straightforward re-derivation: classes by first appearance, sample k each, else all."""
    rng = seed_or_rng if isinstance(seed_or_rng, random.Random) else random.Random(seed_or_rng)
    order = []
    for it in items:
        if it.label not in order:
            order.append(it.label)
    out = []
    for label in order:
        members = [it for it in items if it.label == label]
        out += rng.sample(members, k) if len(members) >= k else members
    return out, rng


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_known_draws(splits, shots, seed):
    train, rng = reference_draw(splits.train, shots, seed)
    val, _ = reference_draw(splits.val, min(shots, 4), rng)
    fs = sample_fewshot(splits, shots, seed)
    assert fs.train == train and fs.val == val


def test_counts_per_class(splits):
    fs = sample_fewshot(splits, 4, 1)
    assert Counter(it.label for it in fs.train) == {0: 4, 1: 4, 2: 4}
    assert Counter(it.label for it in fs.val) == {0: 4, 1: 4, 2: 4}
    fs = sample_fewshot(splits, 16, 1)  # larger than every class: take all (CoOp)
    assert Counter(it.label for it in fs.train) == {0: 7, 1: 7, 2: 7}
    assert Counter(it.label for it in fs.val) == {0: 4, 1: 4, 2: 4}
    assert set(fs.train) <= set(splits.train) and set(fs.val) <= set(splits.val)


def test_repeatable_and_independent_of_global_random(splits):
    random.seed(123)
    a = sample_fewshot(splits, 2, 1)
    state = random.getstate()
    random.seed(999)
    b = sample_fewshot(splits, 2, 1)
    random.seed(123)
    sample_fewshot(splits, 2, 1)
    assert random.getstate() == state  # the global RNG is never consumed
    assert a == b and a.digest == b.digest
    c = sample_fewshot(splits, 2, 2)
    assert c.train != a.train and c.digest != a.digest


def test_digest_stable_across_roots(tmp_path, make_tree):
    card = load_card("dtd")
    digests = []
    for where in ("one", "two/deeper"):
        mini = make_tree(card, tmp_path / where)
        digests.append(sample_fewshot(load_splits(mini.card, tmp_path / where), 2, 1).digest)
    assert digests[0] == digests[1]


def test_imagenet_has_no_val_draw(make_tree, data_root, splits):
    mini = make_tree(load_card("imagenet"))
    fs = sample_fewshot(load_splits(mini.card, data_root), 2, 1)
    assert fs.val == [] and len(fs.train) == 6
    assert sample_fewshot(splits, 2, 1, draw_val=False).val == []


@pytest.mark.parametrize("shots", [0, -1, 1.5, True])
def test_bad_shots(splits, shots):
    with pytest.raises(BenchError, match="shots must be a positive integer"):
        sample_fewshot(splits, shots, 1)


def _coop_splits(name):
    path = CONFORMANCE / "splits" / f"split_zhou_{COOP[name]}.json"
    entries = parse_coop_split(path.read_bytes(), str(path))
    card = load_card(name)
    return splits_from_entries(card, entries, Path("/nonexistent") / card.dir / card.image_root,
                               classnames_from(entries, str(path)), "x")


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="no conformance folder: set BENCH_CONFORMANCE to a folder of CoOp's published draws")
@pytest.mark.parametrize("name", sorted(COOP))
def test_conformance_with_coop_draws(name):
    s = _coop_splits(name)
    pos = {id(it): i for i, it in enumerate(s.train)}
    vpos = {id(it): i for i, it in enumerate(s.val)}
    checked = 0
    for shots in (1, 2, 4, 8, 16):
        for seed in (1, 2, 3):
            ref = json.loads((CONFORMANCE / "indices" / name / f"shot_{shots}-seed_{seed}.json").read_text())
            fs = sample_fewshot(s, shots, seed)
            assert [pos[id(it)] for it in fs.train] == ref["train"]["indices"], (shots, seed)
            assert [vpos[id(it)] for it in fs.val] == ref["val"]["indices"], (shots, seed)
            checked += 1
    assert checked == 15


# --- holdout_val: C-selection images for datasets without a val split ---------------------------

def uneven_splits(sizes=(20, 9, 5, 2, 1, 6)):
    """Train-only splits with classes of these sizes, labels interleaved round-robin (so a class's
    first image is often in the K-shot draw). Fake paths: the draw never opens a file."""
    train = [Item(f"/img/c{label}/{r}.jpg", label, f"c{label}")
             for r in range(max(sizes)) for label, n in enumerate(sizes) if r < n]
    return DatasetSplits("uneven", [f"c{i}" for i in range(len(sizes))], train, [], [], "x", "/img")


def reference_holdout(splits, fewshot, shots, seed):
    """Written out independently: classes in order of first appearance in the FULL train list,
    each samples min(K, 4) of its images outside the K-shot draw (all when fewer are left)."""
    from bench.task import derived_seed

    rng = random.Random(derived_seed("holdout_val", seed, shots))
    taken = {it.path for it in fewshot.train}
    order = list(dict.fromkeys(it.label for it in splits.train))
    out = []
    for label in order:
        left = [it for it in splits.train if it.label == label and it.path not in taken]
        out += rng.sample(left, min(shots, 4)) if len(left) >= min(shots, 4) else left
    return out


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_holdout_disjoint_counts_and_order(shots, seed):
    s = uneven_splits()
    fs = sample_fewshot(s, shots, seed)
    held = holdout_val(s, fs, shots, seed)
    assert not {it.path for it in held} & {it.path for it in fs.train}
    assert len(set(held)) == len(held) and set(held) <= set(s.train)
    sizes = Counter(it.label for it in s.train)
    want = {y: min(shots, 4, n - min(n, shots)) for y, n in sizes.items()}
    assert Counter(it.label for it in held) == {y: n for y, n in want.items() if n}
    assert held == reference_holdout(s, fs, shots, seed)


def test_holdout_repeatable_seeded_and_leaves_global_random_alone():
    s = uneven_splits((20, 20, 20))
    random.seed(5)
    state = random.getstate()
    draws = {seed: holdout_val(s, sample_fewshot(s, 4, seed), 4, seed) for seed in (1, 2, 3)}
    assert random.getstate() == state
    assert all(holdout_val(s, sample_fewshot(s, 4, seed), 4, seed) == d for seed, d in draws.items())
    assert len({tuple(d) for d in draws.values()}) == 3  # each seed its own draw
    # the same K-shot draw with another seed still gets another holdout (its RNG is seeded by seed)
    assert holdout_val(s, sample_fewshot(s, 4, 1), 4, 2) != draws[1]


_HOLDOUT_SCRIPT = """
import json, sys
from bench.data import DatasetSplits, Item, holdout_val, sample_fewshot
data = json.load(open(sys.argv[1]))
s = DatasetSplits("x", data["classnames"], [Item(*r) for r in data["train"]], [], [], "x", "/img")
print(json.dumps([it.path for it in holdout_val(s, sample_fewshot(s, 2, 3), 2, 3)]))
"""


def test_holdout_identical_across_processes(tmp_path):
    s = uneven_splits((12, 7, 3, 10))
    data = tmp_path / "splits.json"
    data.write_text(json.dumps({"classnames": s.classnames,
                                "train": [[it.path, it.label, it.classname] for it in s.train]}))
    here = [it.path for it in holdout_val(s, sample_fewshot(s, 2, 3), 2, 3)]
    runs = []
    for hash_seed in ("1", "2"):  # different salts: a draw that used hash() would differ
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _HOLDOUT_SCRIPT, str(data)], cwd=REPO, env=env,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1] == here


def test_holdout_on_an_imagenet_tree(make_tree, data_root):
    splits = load_splits(make_tree(load_card("imagenet"), per_class={"train": 5, "test": 2}).card, data_root)
    fs = sample_fewshot(splits, 2, 1)
    held = holdout_val(splits, fs, 2, 1)
    assert fs.val == [] and Counter(it.label for it in held) == {0: 2, 1: 2, 2: 2}
    assert not set(held) & set(fs.train)
    fs4 = sample_fewshot(splits, 4, 1)  # one image per class left: the holdout is exactly those
    assert holdout_val(splits, fs4, 4, 1) == [it for it in splits.train if it not in fs4.train]


@pytest.mark.parametrize("shots", [0, 1.5, True])
def test_holdout_bad_shots(shots):
    s = uneven_splits()
    with pytest.raises(BenchError, match="shots must be a positive integer"):
        holdout_val(s, sample_fewshot(s, 1, 1), shots, 1)

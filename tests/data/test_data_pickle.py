"""CoOp's cached few-shot pickles: read safely, re-based under this machine's image root."""

import os
import pickle
import sys
import types

import pytest

from bench.data import load_card, load_coop_fewshot_pickle, load_splits, sample_fewshot
from bench.data.cards import image_dir
from bench.errors import BenchError

MODULE = "dassl.data.datasets.base_dataset"


class Datum:
    def __init__(self, impath, label, classname):
        self._impath, self._label, self._domain, self._classname = impath, label, 0, classname


@pytest.fixture
def fake_dassl(monkeypatch):
    """Register Datum under Dassl's module path so pickle records that global name."""
    Datum.__module__ = MODULE
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, MODULE, types.SimpleNamespace(Datum=Datum, __name__=MODULE))
    yield Datum
    Datum.__module__ = __name__


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_reads_coop_pickle_and_matches_sampler(make_tree, data_root, tmp_path, fake_dassl, protocol):
    mini = make_tree(load_card("dtd"))
    s = load_splits(mini.card, data_root)
    fs = sample_fewshot(s, 2, 1)
    pkl = tmp_path / "shot_2-seed_1.pkl"
    datums = lambda items: [Datum("./data/dtd/images/" + os.path.relpath(it.path, s.image_root),
                                  it.label, it.classname) for it in items]
    pkl.write_bytes(pickle.dumps({"train": datums(fs.train), "val": datums(fs.val)}, protocol=protocol))
    got = load_coop_fewshot_pickle(pkl, image_dir(mini.card, data_root))
    assert got.train == fs.train and got.val == fs.val and got.digest == fs.digest


def test_rebases_foreign_absolute_paths(make_tree, data_root, tmp_path, fake_dassl):
    mini = make_tree(load_card("stanford_cars"))  # image root is the dataset dir itself
    s = load_splits(mini.card, data_root)
    it = s.train[0]
    rel = os.path.relpath(it.path, s.image_root)
    pkl = tmp_path / "p.pkl"
    pkl.write_bytes(pickle.dumps({"train": [Datum("/old/box/stanford_cars/" + rel, it.label, it.classname)],
                                  "val": []}))
    got = load_coop_fewshot_pickle(pkl, image_dir(mini.card, data_root))
    assert got.train == [it]


def test_refuses_other_globals(tmp_path):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps({"train": [os.getcwd], "val": []}))
    with pytest.raises(BenchError, match="refusing to load global"):
        load_coop_fewshot_pickle(pkl, tmp_path)


def test_bad_pickles(tmp_path):
    pkl = tmp_path / "p.pkl"
    pkl.write_bytes(pickle.dumps(["not", "a", "dict"]))
    with pytest.raises(BenchError, match="expected a dict"):
        load_coop_fewshot_pickle(pkl, tmp_path)
    pkl.write_bytes(pickle.dumps({"train": [1], "val": []}))
    with pytest.raises(BenchError, match="Datum objects"):
        load_coop_fewshot_pickle(pkl, tmp_path)
    pkl.write_bytes(b"\x80\x05garbage")
    with pytest.raises(BenchError, match="not a CoOp few-shot pickle"):
        load_coop_fewshot_pickle(pkl, tmp_path)
    with pytest.raises(BenchError, match="not found"):
        load_coop_fewshot_pickle(tmp_path / "nope.pkl", tmp_path)

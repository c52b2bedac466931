"""Readers: every real card's miniature tree loads with the right classes and counts; bad input fails clearly."""

import dataclasses
import hashlib
import json
import os
import sys
import types

import pytest

from bench.data import DatasetSplits, card_names, load_card, load_splits
from bench.data.cards import dataset_dir, image_dir
from bench.errors import BenchError

REAL = [n for n in card_names() if not load_card(n).synthetic]


@pytest.mark.parametrize("name", REAL)
def test_miniature_tree_loads(name, make_tree, data_root):
    mini = make_tree(load_card(name))
    s = load_splits(mini.card, data_root)
    assert isinstance(s, DatasetSplits) and s.name == name
    assert s.classnames == mini.classnames
    assert (len(s.classnames), len(s.train), len(s.val), len(s.test)) == tuple(vars(mini.counts).values())
    for it in s.train + s.val + s.test:
        assert os.path.isabs(it.path) and os.path.isfile(it.path)
        assert it.classname == s.classnames[it.label]
        assert it.path.startswith(s.image_root)
    assert len(s.split_digest) == 64


def test_coop_json_keeps_file_order_and_hashes_split_file(make_tree, data_root):
    mini = make_tree(load_card("dtd"))
    s = load_splits(mini.card, data_root)
    assert [it.path[len(s.image_root) + 1:] for it in s.train] == [e[0] for e in mini.entries["train"]]
    raw = (dataset_dir(mini.card, data_root) / mini.card.split_file).read_bytes()
    assert s.split_digest == hashlib.sha256(raw).hexdigest()
    assert "class_a" in s.classnames  # '_' kept as on disk


def test_imagenet_sorted_listing_and_named_classes(make_tree, data_root):
    mini = make_tree(load_card("imagenet"))
    s = load_splits(mini.card, data_root)
    assert s.val == [] and s.classnames == ["tench", "great white shark", "goldfish"]
    assert [it.path for it in s.train] == sorted(it.path for it in s.train)
    assert all("/images/val/" in it.path for it in s.test)


def test_fgvc_label_is_variant_line(make_tree, data_root):
    mini = make_tree(load_card("fgvc_aircraft"))
    s = load_splits(mini.card, data_root)
    assert s.classnames == ["707-320", "A300B4", "F/A-18"]
    assert {it.classname for it in s.test if it.label == 2} == {"F/A-18"}


def _rewrite_split(mini, data_root, mutate):
    path = dataset_dir(mini.card, data_root) / mini.card.split_file
    data = json.loads(path.read_text())
    out = mutate(data)
    path.write_text(out if isinstance(out, str) else json.dumps(data))


@pytest.mark.parametrize("mutate, match", [
    (lambda d: json.dumps(d)[:50], "not valid JSON"),
    (lambda d: d.pop("val"), "lists 'train', 'val', 'test'"),
    (lambda d: d["test"][0].__setitem__(1, 7), r"test\[0\] has label 7, out of range 0..2"),
    (lambda d: d["train"][0].__setitem__(1, "0"), "integer label"),
    (lambda d: [e.__setitem__(1, 5) for e in d["train"] if e[1] == 1], "train labels must be 0..2"),
    (lambda d: d["train"][0].__setitem__(2, "zzz"), "two class names"),
])
def test_bad_split_file(make_tree, data_root, mutate, match):
    mini = make_tree(load_card("eurosat"))
    _rewrite_split(mini, data_root, mutate)
    with pytest.raises(BenchError, match=match):
        load_splits(mini.card, data_root)


def test_missing_split_file_and_images(make_tree, data_root):
    mini = make_tree(load_card("oxford_pets"))
    victim = image_dir(mini.card, data_root) / mini.entries["test"][0][0]
    victim.unlink()
    with pytest.raises(BenchError, match="1 listed images are missing") as e:
        load_splits(mini.card, data_root)
    assert str(victim) in str(e.value)
    assert len(load_splits(mini.card, data_root, check_files=False).test) == mini.counts.test
    (dataset_dir(mini.card, data_root) / mini.card.split_file).unlink()
    with pytest.raises(BenchError, match="split file .* not found"):
        load_splits(mini.card, data_root)


def test_imagenet_bad_layouts(make_tree, data_root):
    mini = make_tree(load_card("imagenet"))
    cn = dataset_dir(mini.card, data_root) / "classnames.txt"
    cn.write_text("n00000000 tench\n")
    with pytest.raises(BenchError, match="no name for class folder 'n00000001'"):
        load_splits(mini.card, data_root)
    os.rename(image_dir(mini.card, data_root) / "val" / "n00000002", image_dir(mini.card, data_root) / "n2")
    with pytest.raises(BenchError, match="same class folders"):
        load_splits(mini.card, data_root)


def test_fgvc_unknown_variant(make_tree, data_root):
    mini = make_tree(load_card("fgvc_aircraft"))
    p = dataset_dir(mini.card, data_root) / "images_variant_val.txt"
    p.write_text(p.read_text() + "1 Spitfire\n")
    with pytest.raises(BenchError, match="variant 'Spitfire' is not listed"):
        load_splits(mini.card, data_root)


def test_synthetic_card_generates_first(make_tree, data_root, monkeypatch):
    card = dataclasses.replace(load_card("dtd"), synthetic="toy", split_sha256=None)
    calls = []

    def ensure_generated(c, root):
        calls.append((c.name, root))
        make_tree(c)  # the generator writes a tree in the card's layout

    monkeypatch.setitem(sys.modules, "bench.data.synthetic", types.SimpleNamespace(ensure_generated=ensure_generated))
    s = load_splits(card, data_root)
    assert calls == [("dtd", data_root)] and len(s.train) == 12

"""Base-to-new: first ceil(n/2) classes are base, the rest new (relabelled); draw first, restrict after."""

from bench.data import load_card, load_splits, sample_fewshot
from bench.data.base_to_new import base_to_new, class_subset, subsample_splits


def test_class_subset():
    assert class_subset(3, "base") == [0, 1] and class_subset(3, "new") == [2]
    assert len(class_subset(47, "base")) == 24 and class_subset(47, "new")[0] == 24
    assert class_subset(4, "all") == [0, 1, 2, 3]


def test_splits_and_draw_restricted(make_tree, data_root):
    mini = make_tree(load_card("dtd"))
    s = load_splits(mini.card, data_root)
    new = subsample_splits(s, "new")
    assert new.classnames == [s.classnames[2]] and {it.label for it in new.test} == {0}
    assert [it.path for it in new.test] == [it.path for it in s.test if it.label == 2]
    assert new.split_digest != s.split_digest
    full = sample_fewshot(s, 2, 3)
    splits_b, fs_b = base_to_new(s, 2, 3, "base")
    assert [it.path for it in fs_b.train] == [it.path for it in full.train if it.label < 2]
    assert splits_b.classnames == s.classnames[:2]
    _, fs_n = base_to_new(s, 2, 3, "new")
    assert [(it.path, it.label) for it in fs_n.val] == [(it.path, 0) for it in full.val if it.label == 2]
    assert len({full.digest, fs_b.digest, fs_n.digest}) == 3

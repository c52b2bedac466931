"""Hugging Face copies (imagefolder dir, save_to_disk dir) read through CoOp's split JSON."""

import json
import os
import shutil

import pytest

from bench.data import DatasetCard, load_splits, sample_fewshot
from bench.errors import BenchError

SPLIT = {  # same file name in both classes: matching must use the class folder
    "train": [["A/1.jpg", 0, "a"], ["B/1.jpg", 1, "b"], ["A/2.jpg", 0, "a"], ["B/2.jpg", 1, "b"]],
    "val": [["A/3.jpg", 0, "a"]],
    "test": [["B/3.jpg", 1, "b"]],
}
FILES = sorted({e[0] for rows in SPLIT.values() for e in rows})


def card(image_root: str, source: str = "hf") -> DatasetCard:
    return DatasetCard(name="toy", dir="toy", image_root=image_root, split_source=source,
                       split_file="split.json", templates=("{}",))


@pytest.fixture
def plain(data_root, jpeg):
    """The ordinary CoOp copy: images/<rel> + split.json."""
    for k, rel in enumerate(FILES):
        jpeg(data_root / "toy" / "images" / rel, (30 * k, 0, 0))
    (data_root / "toy" / "split.json").write_text(json.dumps(SPLIT))
    return load_splits(card("images", "coop_json"), data_root)


def _same_dataset(a, b):
    assert a.classnames == b.classnames and a.split_digest == b.split_digest
    for s in ("train", "val", "test"):
        la, lb = getattr(a, s), getattr(b, s)
        assert [(os.path.relpath(x.path, a.image_root), x.label) for x in la] == \
            [(os.path.relpath(x.path, b.image_root), x.label) for x in lb]


def test_imagefolder_copy(plain, data_root):
    for rel in FILES:  # an imagefolder export with an extra split level
        dst = data_root / "toy" / "hf" / "train" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_root / "toy" / "images" / rel, dst)
    s = load_splits(card("hf"), data_root)
    assert [os.path.relpath(x.path, s.image_root) for x in s.train][0] == "train/A/1.jpg"
    assert s.classnames == ["a", "b"] and len(s.train) == 4
    pos = lambda sp, fs: [sp.train.index(x) for x in fs.train]
    assert pos(s, sample_fewshot(s, 1, 2)) == pos(plain, sample_fewshot(plain, 1, 2))
    os.remove(data_root / "toy" / "hf" / "train" / "B" / "3.jpg")
    with pytest.raises(BenchError, match="1 images of the split file are not in the Hugging Face copy"):
        load_splits(card("hf"), data_root)


def test_save_to_disk_copy(plain, data_root, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["A", "B"])})
    paths = [str(data_root / "toy" / "images" / rel) for rel in FILES]
    ds = datasets.Dataset.from_dict({"image": paths, "label": [r[0] == "B" for r in FILES]}, features=feats)
    datasets.DatasetDict({"train": ds.select(range(4)), "test": ds.select(range(4, 6))}) \
        .save_to_disk(str(data_root / "toy" / "arrow"))
    s = load_splits(card("arrow"), data_root)
    _same_dataset(s, plain)
    assert sample_fewshot(s, 2, 1).digest == sample_fewshot(plain, 2, 1).digest
    for a, b in zip(s.train, plain.train):  # extracted bytes are the original files
        assert open(a.path, "rb").read() == open(b.path, "rb").read()
    assert load_splits(card("arrow"), data_root) == s  # second call reuses the extracted files

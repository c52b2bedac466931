"""The frozen-feature cache: keys, views equal to on-the-fly encoding, corruption handling, `bench cache`."""

import json
import logging
import os

import open_clip
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save
from typer.testing import CliRunner

import bench.features as features
from bench.backbone import Backbone, weights_digest
from bench.config import BackboneSpec
from bench.data import DatasetSplits, FewShot, Item
from bench.data.transforms import test_transform, train_transform
from bench.features import FeatureStore

TINY = {"embed_dim": 16, "quick_gelu": True,
        "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that crawl on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY).eval().requires_grad_(False)
    return Backbone(spec=BackboneSpec("tiny", builtin="test"), model=model, tokenizer=None, image_size=16,
                    mean=MEAN, std=STD, quick_gelu=True, digest=weights_digest(model))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    parts = {}
    for part, n in (("train", 6), ("val", 2), ("test", 5)):
        items = []
        for k in range(n):
            path = root / f"c{k % 2}" / f"{part}_{k}.jpg"
            path.parent.mkdir(exist_ok=True)
            g = torch.Generator().manual_seed(100 * len(part) + k)
            pixels = (torch.rand(20 + k, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(path, "JPEG")
            items.append(Item(str(path), k % 2, f"class{k % 2}"))
        parts[part] = items
    return DatasetSplits("tinyset", ["class0", "class1"], parts["train"], parts["val"], parts["test"],
                         split_digest="abc", image_root=str(root))


@pytest.fixture
def fewshot(splits):
    return FewShot(splits.train[:4], splits.val, "fs-digest")


def store(backbone, splits, root, enabled=True):
    return FeatureStore(backbone, splits, "cpu", "fp32", root=root, enabled=enabled)


def only_file(root):
    files = [p for p in root.rglob("*.safetensors")]
    assert len(files) == 1
    return files[0]


def test_second_store_reads_disk_bit_identical(backbone, splits, tmp_path):
    first = store(backbone, splits, tmp_path).test()
    again = store(backbone, splits, tmp_path)
    second = again.test()
    assert again.stats["computed"] == 0 and again.stats["disk_hits"] == 1
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].dtype == torch.float32 and first[0].shape == (5, 16)
    assert json.loads((only_file(tmp_path).parents[1] / "backbone.json").read_text())["digest"] == backbone.digest


def test_plain_features_equal_direct_encoding(backbone, splits, tmp_path):
    feats, labels = store(backbone, splits, tmp_path).test()
    tf = test_transform(16, MEAN, STD)
    from bench.data.images import load_image

    direct = backbone.model.encode_image(torch.stack([tf(load_image(it.path)) for it in splits.test]))
    torch.testing.assert_close(feats, direct, atol=1e-5, rtol=1e-5)
    assert labels.tolist() == [it.label for it in splits.test]


def test_views_equal_on_the_fly_augmentation(backbone, splits, fewshot, tmp_path):
    views = store(backbone, splits, tmp_path).train_views(fewshot, seed=3, epochs=[0, 2])
    tf = train_transform(16, (0.08, 1.0), MEAN, STD)
    from bench.data.images import load_image

    for (feats, _), epoch in zip(views, (0, 2)):
        images = torch.stack([tf(load_image(it.path), 3, epoch, i) for i, it in enumerate(fewshot.train)])
        torch.testing.assert_close(feats, backbone.model.encode_image(images), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(views[0][0], views[1][0])  # different epochs, different views


def test_epochs_batched_together_equal_epochs_one_by_one(backbone, splits, fewshot, tmp_path):
    together = store(backbone, splits, tmp_path / "a").train_views(fewshot, 1, 3)
    alone = store(backbone, splits, tmp_path / "b", enabled=False)
    for epoch in range(3):
        torch.testing.assert_close(together[epoch][0], alone.fewshot_train(fewshot, 1, epoch)[0],
                                   atol=1e-6, rtol=1e-6)


def test_each_image_is_decoded_once_for_all_epochs(backbone, splits, fewshot, tmp_path, monkeypatch):
    calls = []
    real = features.load_image
    monkeypatch.setattr(features, "load_image", lambda p: calls.append(p) or real(p))
    s = store(backbone, splits, tmp_path)
    s.train_views(fewshot, 1, 6)
    assert len(calls) == len(fewshot.train) and s.stats["images_encoded"] == 6 * len(fewshot.train)
    calls.clear()
    s.train_views(fewshot, 1, 6)  # all six views now come from disk
    assert calls == [] and s.stats["disk_hits"] == 6


def test_key_covers_every_input(backbone, splits, fewshot, tmp_path):
    s = store(backbone, splits, tmp_path)
    def path(split="fewshot_train", items=None, view=(1, 0), scale=(0.08, 1.0)):
        return s._path(s._key(split, items or fewshot.train, view, scale))

    base = path()
    assert base == path()  # deterministic
    others = [path(view=(2, 0)), path(view=(1, 1)), path(scale=(0.5, 1.0)), path(view=None),
              path(items=list(reversed(fewshot.train))), path(split="fewshot_val")]
    assert len({base, *others}) == 1 + len(others)
    other_backbone = FeatureStore(type(backbone)(**{**backbone.__dict__, "digest": "f" * 64}), splits, "cpu",
                                  "fp32", root=tmp_path)
    assert other_backbone._path(other_backbone._key("fewshot_train", fewshot.train, (1, 0), (0.08, 1.0))) != base


def test_truncated_file_is_detected_and_rebuilt(backbone, splits, tmp_path, caplog):
    good = store(backbone, splits, tmp_path).test()
    path = only_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    again = store(backbone, splits, tmp_path)
    with caplog.at_level(logging.WARNING):
        result = again.test()
    assert again.stats["computed"] == 1 and "corrupt" in caplog.text
    assert torch.equal(result[0], good[0])
    assert torch.equal(load_file(str(path))["features"], good[0])  # rewritten whole


def _rewrite(path, edit_key=None, edit_tensor=None):
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as handle:
        meta = dict(handle.metadata())
    if edit_key:
        key = json.loads(meta["key"])
        edit_key(key)
        meta["key"] = json.dumps(key, sort_keys=True)
    if edit_tensor:
        edit_tensor(tensors)
    path.write_bytes(save(tensors, metadata=meta))


@pytest.mark.parametrize("damage", [
    {"edit_key": lambda k: k.update(split_digest="other")},  # written for another split file
    {"edit_key": lambda k: k.update(transform="old")},  # an older transform version
    {"edit_tensor": lambda t: t["features"].mul_(1.001)},  # payload changed, key intact
])
def test_stale_or_altered_entry_is_rebuilt(backbone, splits, tmp_path, caplog, damage):
    good = store(backbone, splits, tmp_path).test()
    path = only_file(tmp_path)
    _rewrite(path, **damage)
    again = store(backbone, splits, tmp_path)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(again.test()[0], good[0])
    assert again.stats["computed"] == 1 and "stale" in caplog.text
    assert store(backbone, splits, tmp_path).test() is not None and only_file(tmp_path) == path


def test_disabled_cache_writes_nothing_and_recomputes(backbone, splits, fewshot, tmp_path):
    s = store(backbone, splits, tmp_path, enabled=False)
    s.test(), s.test(), s.train_views(fewshot, 1, 2)
    assert s.stats["computed"] == 4 and not list(tmp_path.rglob("*.safetensors"))


def test_returned_tensors_are_copies(backbone, splits, tmp_path):
    s = store(backbone, splits, tmp_path)
    first = s.test()[0]
    first.zero_()  # a method that normalises in place must not poison the cache
    assert s.test()[0].abs().sum() > 0 and s.stats["memory_hits"] == 1


def test_cache_dir_comes_from_bench_cache(monkeypatch, tmp_path, backbone, splits):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "elsewhere"))
    assert FeatureStore(backbone, splits, "cpu").root == tmp_path / "elsewhere" / "features"


def test_cli_info_and_clear(backbone, splits, fewshot, tmp_path, monkeypatch):
    from bench.cli_cache import cache_app

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    s = FeatureStore(backbone, splits, "cpu", "fp32")
    s.test(), s.train_views(fewshot, 1, 2)
    runner = CliRunner()
    info = runner.invoke(cache_app, ["info"])
    assert info.exit_code == 0 and "tinyset" in info.output and "3" in info.output
    refused = runner.invoke(cache_app, ["clear"])
    assert refused.exit_code == 2 and "--yes" in refused.output and len(list(tmp_path.rglob("*.safetensors"))) == 3
    wrong = runner.invoke(cache_app, ["clear", "--yes", "--dataset", "nope"])
    assert wrong.exit_code == 2 and "nope" in wrong.output
    done = runner.invoke(cache_app, ["clear", "--yes"])
    assert done.exit_code == 0 and "deleted 3 files" in done.output
    assert not list(tmp_path.rglob("*.safetensors"))
    assert "empty" in runner.invoke(cache_app, ["info"]).output


@pytest.mark.parametrize("how, reason", [("read_only", None), ("disk_full", "No space left on device")])
def test_an_unwritable_cache_warns_once_and_goes_on_uncached(backbone, splits, fewshot, tmp_path, monkeypatch,
                                                            caplog, how, reason):
    import errno

    monkeypatch.setattr(features, "_warned_roots", set())
    root = tmp_path / "cache"
    root.mkdir()
    if how == "read_only":
        root.chmod(0o555)
        try:  # root ignores the mode bits: then fail the write as a read-only mount would
            (root / "probe").touch()
        except PermissionError:
            reason = "Permission denied"
        else:
            (root / "probe").unlink()
            how, reason = "disk_full", "Read-only file system"
    if how == "disk_full":
        code = errno.EROFS if reason == "Read-only file system" else errno.ENOSPC

        def failing_write(path, data):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(features, "atomic_write_bytes", failing_write)
    expected = store(backbone, splits, tmp_path / "unused", enabled=False).test()
    with caplog.at_level(logging.WARNING):
        s = store(backbone, splits, root)
        got = s.test()
        s.test(), s.train_views(fewshot, 1, 2), store(backbone, splits, root).test()  # more writes, a new store
    root.chmod(0o755)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert s.stats["memory_hits"] == 1 and not list(root.rglob("*.safetensors"))
    assert caplog.messages == [f"feature cache {root} is not writable ({reason}); going on without caching features"]


def test_other_write_errors_are_not_hidden(backbone, splits, tmp_path, monkeypatch):
    import errno

    def broken_disk(path, data):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(features, "atomic_write_bytes", broken_disk)
    with pytest.raises(OSError, match="Input/output error"):
        store(backbone, splits, tmp_path).test()

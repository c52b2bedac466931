"""The smoke assets: synthetic datasets on disk and the tiny pre-trained CLIP shipped in bench/assets/.

The shipped backbone is used as it is (it is never trained by a test or a job); the build script's
determinism is checked on a build of a few steps.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from bench import smoke_backbone as sb
from bench.data.cards import dataset_dir, image_dir, load_card
from bench.data.synthetic import MARKER, class_names, ensure_generated, is_complete
from bench.errors import BenchError

REPO = Path(__file__).resolve().parent.parent
SMOKE = ["smoke_shapes", "smoke_textures"]


def _split(card, root) -> dict:
    return json.loads((dataset_dir(card, root) / card.split_file).read_bytes())


def _classes(card) -> tuple:
    return class_names(dict(card.generator))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke_data")
    for name in SMOKE:
        ensure_generated(load_card(name), root)
    return root


@pytest.mark.parametrize("name", SMOKE)
def test_split_layout(generated, name):
    card = load_card(name)
    split = _split(card, generated)
    assert set(split) == {"train", "val", "test", "generated_by"}
    classes = _classes(card)
    assert len(classes) >= 30  # as many classes as a small real dataset (DTD 47, Pets 37, EuroSAT 10)
    for part in ("train", "val", "test"):
        labels = [label for _, label, _ in split[part]]
        assert sorted(set(labels)) == list(range(len(classes)))
        assert all(labels.count(c) == card.generator[part] for c in range(len(classes)))
        for rel, label, classname in split[part]:
            assert isinstance(rel, str) and type(label) is int and classname == classes[label]
            assert rel.startswith(f"{classname}/") and (image_dir(card, generated) / rel).is_file()
    assert card.generator["train"] >= 16 and card.generator["val"] >= 4  # 16 shots + CoOp's val draw
    assert len(split["test"]) <= 400  # keeps a smoke run fast
    assert len({e[0] for p in split.values() for e in p}) == sum(len(p) for p in split.values())


def test_class_lists():
    assert class_names({"colours": ["red", "blue"], "shapes": ["ring", "star"]}) == \
        ("red_ring", "red_star", "blue_ring", "blue_star")
    assert class_names({"classes": ["red", "star"]}) == ("red", "star")
    with pytest.raises(BenchError, match="not both"):
        class_names({"classes": ["red"], "colours": ["red"], "shapes": ["ring"]})


@pytest.mark.parametrize("name", SMOKE)
def test_files_are_real_jpegs(generated, name):
    card = load_card(name)
    for rel, _, _ in _split(card, generated)["test"][::17]:
        path = image_dir(card, generated) / rel
        assert path.read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (48, 48)


def test_generation_is_deterministic(generated, tmp_path):
    card = load_card("smoke_textures")
    small = dataclasses.replace(card, generator={**card.generator, "train": 2, "val": 1, "test": 1})
    ensure_generated(small, tmp_path)
    for rel, _, _ in _split(small, tmp_path)["train"]:  # the same files as in the full-size copy
        a = np.asarray(Image.open(image_dir(card, tmp_path) / rel))
        b = np.asarray(Image.open(image_dir(card, generated) / rel))
        assert np.array_equal(a, b), rel


def test_another_seed_gives_other_images(generated, tmp_path):
    card = load_card("smoke_shapes")
    other = dataclasses.replace(card, generator={**card.generator, "seed": 99, "train": 1, "val": 1, "test": 1})
    ensure_generated(other, tmp_path)
    a = np.asarray(Image.open(image_dir(card, tmp_path) / "red_circle/train_0000.jpg"))
    b = np.asarray(Image.open(image_dir(card, generated) / "red_circle/train_0000.jpg"))
    assert not np.array_equal(a, b)


def test_partial_dataset_is_regenerated(tmp_path):
    card = load_card("smoke_shapes")
    card = dataclasses.replace(card, generator={**card.generator, "train": 2, "val": 1, "test": 2})
    ensure_generated(card, tmp_path)
    first = _split(card, tmp_path)["test"][0][0]
    (image_dir(card, tmp_path) / first).unlink()  # a half-copied dataset
    assert not is_complete(card, tmp_path)
    ensure_generated(card, tmp_path)
    assert is_complete(card, tmp_path) and (image_dir(card, tmp_path) / first).is_file()
    (dataset_dir(card, tmp_path) / MARKER).unlink()  # split file present, but never marked complete
    assert not is_complete(card, tmp_path)
    changed = dataclasses.replace(card, generator={**card.generator, "test": 3})  # card edited
    ensure_generated(card, tmp_path)
    assert not is_complete(changed, tmp_path)
    ensure_generated(changed, tmp_path)
    assert len(_split(changed, tmp_path)["test"]) == 3 * len(_classes(card))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smoke_shapes.")] == [".smoke_shapes.lock"]


def test_other_pixels_give_another_split_digest(tmp_path):
    """Same file names, other settings: the split file's bytes (the split digest in every feature-cache
    key and record) must differ, or features cached for the old images would be reused."""
    card = load_card("smoke_shapes")
    card = dataclasses.replace(card, generator={**card.generator, "train": 1, "val": 1, "test": 1})
    ensure_generated(card, tmp_path / "a")
    other = dataclasses.replace(card, generator={**card.generator, "hue_shift": 0.0})
    ensure_generated(other, tmp_path / "b")
    a, b = _split(card, tmp_path / "a"), _split(other, tmp_path / "b")
    assert [a[p] for p in ("train", "val", "test")] == [b[p] for p in ("train", "val", "test")]
    assert (dataset_dir(card, tmp_path / "a") / card.split_file).read_bytes() != \
        (dataset_dir(other, tmp_path / "b") / card.split_file).read_bytes()


def test_concurrent_callers(tmp_path):
    card = load_card("smoke_shapes")
    card = dataclasses.replace(card, generator={**card.generator, "train": 1, "val": 1, "test": 1})
    errors = []

    def call():
        try:
            ensure_generated(card, tmp_path)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and is_complete(card, tmp_path)


def test_bad_generator_settings(tmp_path):
    card = load_card("smoke_shapes")
    with pytest.raises(BenchError, match="neither a colour"):
        ensure_generated(dataclasses.replace(card, generator={**card.generator, "colours": ["red", "blob"]}),
                         tmp_path)
    with pytest.raises(BenchError, match="unknown style"):
        ensure_generated(dataclasses.replace(card, generator={**card.generator, "nosie": 3}), tmp_path)
    with pytest.raises(BenchError, match="unknown synthetic generator"):
        ensure_generated(dataclasses.replace(card, synthetic="blobs"), tmp_path)
    assert not (tmp_path / card.dir).exists()


# ---------------------------------------------------------------- the shipped backbone
@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return sb.ensure_smoke_backbone(tmp_path_factory.mktemp("cache") / "tiny-clip")


def test_shipped_asset_is_small_and_verified():
    manifest = sb.read_asset()
    weights = sb.ASSET_DIR / sb.ASSET_WEIGHTS
    assert manifest["weights_sha256"] == sb.sha256_file(weights)
    assert weights.stat().st_size <= 2_000_000  # package data, not a download
    assert manifest["model_cfg"] == sb.MODEL_CFG and manifest["preprocess_cfg"] == sb.PREPROCESS_CFG
    build = manifest["build"]
    assert build["version"] == sb.BUILD_VERSION and build["recipe"] == sb.recipe_fingerprint(), \
        "the recipe in bench/smoke_backbone.py changed: rebuild with scripts/build_smoke_backbone.py"
    assert build["steps"] == sb.DEFAULT_STEPS and build["loss_last"] < build["loss_first"]


def test_corrupted_weights_are_refused(tmp_path):
    copy = tmp_path / "asset"
    shutil.copytree(sb.ASSET_DIR, copy)
    data = bytearray((copy / sb.ASSET_WEIGHTS).read_bytes())
    data[-100] ^= 0x01  # one flipped bit in a weight
    (copy / sb.ASSET_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(BenchError) as err:
        sb.ensure_smoke_backbone(tmp_path / "tiny-clip", asset_dir=copy)
    message = str(err.value)
    assert str(copy / sb.ASSET_WEIGHTS) in message and "sha256" in message
    assert "scripts/build_smoke_backbone.py" in message
    assert not (tmp_path / "tiny-clip").exists()  # nothing was expanded from the bad file
    (copy / sb.ASSET_WEIGHTS).unlink()
    with pytest.raises(BenchError, match="is missing.*build_smoke_backbone"):
        sb.ensure_smoke_backbone(tmp_path / "tiny-clip", asset_dir=copy)


def test_loading_never_trains(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the smoke backbone must never be trained on load")

    monkeypatch.setattr(sb, "pretrain", boom)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    path = sb.ensure_smoke_backbone()
    assert path == tmp_path / "smoke" / "tiny-clip" and (path / sb.WEIGHTS_FILE).is_file()


def test_backbone_loads_through_open_clip(backbone_dir):
    assert sorted(p.name for p in backbone_dir.iterdir()) == [sb.CONFIG_FILE, sb.WEIGHTS_FILE]
    model = open_clip.create_model(f"local-dir:{backbone_dir}")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 on disk, fp32 in memory
    acts = [type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")]
    assert acts and set(acts) == {"QuickGELU"}  # OpenAI-style activation, as the config says
    assert tuple(model.visual.image_mean) == sb.MEAN and tuple(model.visual.image_std) == sb.STD
    assert model.visual.image_size == (32, 32)
    assert open_clip.get_tokenizer(f"local-dir:{backbone_dir}").context_length == 32
    from safetensors.torch import load_file

    shipped = load_file(str(sb.ASSET_DIR / sb.ASSET_WEIGHTS))
    rows = model.token_embedding.weight[shipped["token_embedding.ids"].long()]
    assert torch.equal(rows, shipped["token_embedding.rows"].float())
    assert torch.equal(model.visual.conv1.weight, shipped["visual.conv1.weight"].float())


def test_expanded_copy_is_reused_and_repaired(backbone_dir):
    weights = backbone_dir / sb.WEIGHTS_FILE
    mtime = weights.stat().st_mtime_ns
    assert sb.ensure_smoke_backbone(backbone_dir) == backbone_dir  # cached: nothing rewritten
    assert weights.stat().st_mtime_ns == mtime
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))  # a damaged cache copy is expanded again from the shipped file
    sb.ensure_smoke_backbone(backbone_dir)
    assert sb._is_expanded(backbone_dir, sb.read_asset()["weights_sha256"])


def test_build_is_deterministic(tmp_path):
    """Two builds of a few steps, through the script, in fresh processes: the same bytes."""
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_smoke_backbone.py"), "--out", str(out),
                        "--steps", "3", "--pool", "64"], check=True, capture_output=True, cwd=tmp_path)
        manifest = sb.read_asset(out)
        assert manifest["build"]["steps"] == 3
        digests.append(manifest["weights_sha256"])
    assert digests[0] == digests[1]
    assert digests[0] != sb.read_asset()["weights_sha256"]


@pytest.mark.parametrize("name", SMOKE)
def test_zero_shot_leaves_headroom(backbone_dir, generated, name):
    """Zero-shot well above chance, and a 16-shot probe on frozen features clearly better."""
    model = open_clip.create_model(f"local-dir:{backbone_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{backbone_dir}")
    acc = sb.smoke_accuracy(model, tokenizer, load_card(name), generated, shots=16)
    assert acc["classes"] >= 30
    assert acc["zero_shot"] > 2 * acc["chance"], acc
    assert acc["logreg_16shot"] >= acc["zero_shot"] + 10, acc


def test_prompts_fit_the_context():
    """CoOp puts 16 context tokens before the class name: every smoke prompt must still fit."""
    sb.register_smoke_config()
    tokenizer = open_clip.get_tokenizer(sb.SMOKE_MODEL_NAME)
    assert int((tokenizer([sb.NOISE_TOKEN])[0] > 0).sum()) == 3  # SOT, one token, EOT
    for name in SMOKE:
        card = load_card(name)
        for cls in _classes(card):
            tokens = tokenizer([card.templates[0].format(cls.replace("_", " "))])[0]
            assert int((tokens > 0).sum()) + 16 <= sb.MODEL_CFG["text_cfg"]["context_length"]

"""The smoke assets: synthetic datasets on disk and the tiny pre-trained CLIP.

The backbone is pre-trained once per session with a short schedule (the full build takes minutes);
properties that need the full schedule are measured by scripts/make_smoke_backbone.py --eval.
"""

from __future__ import annotations

import dataclasses
import json
import threading

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from bench import smoke_backbone as sb
from bench.data.cards import dataset_dir, image_dir, load_card
from bench.data.synthetic import MARKER, ensure_generated, is_complete
from bench.errors import BenchError

SMOKE = ["smoke_shapes", "smoke_textures"]
TEST_STEPS = 120  # ~15 s; zero-shot on smoke_shapes ~25% (chance 10%); the full build reaches ~52%


def _split(card, root) -> dict:
    return json.loads((dataset_dir(card, root) / card.split_file).read_bytes())


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
    assert set(split) == {"train", "val", "test"}
    classes = card.generator["classes"]
    for part in ("train", "val", "test"):
        labels = [label for _, label, _ in split[part]]
        assert sorted(set(labels)) == list(range(len(classes)))
        assert all(labels.count(c) == card.generator[part] for c in range(len(classes)))
        for rel, label, classname in split[part]:
            assert isinstance(rel, str) and type(label) is int and classname == classes[label]
            assert rel.startswith(f"{classname}/") and (image_dir(card, generated) / rel).is_file()
    assert len(split["test"]) <= 300  # keeps a smoke run fast
    assert len({e[0] for p in split.values() for e in p}) == sum(len(p) for p in split.values())


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
    ensure_generated(card, tmp_path)
    assert (dataset_dir(card, tmp_path) / card.split_file).read_bytes() == \
        (dataset_dir(card, generated) / card.split_file).read_bytes()
    for rel, _, _ in _split(card, tmp_path)["train"]:
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
    assert len(_split(changed, tmp_path)["test"]) == 30
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smoke_shapes.")] == [".smoke_shapes.lock"]


def test_concurrent_callers(tmp_path):
    card = load_card("smoke_shapes")
    card = dataclasses.replace(card, generator={**card.generator, "train": 2, "val": 1, "test": 2})
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
        ensure_generated(dataclasses.replace(card, generator={**card.generator, "classes": ["red_blob", "x"]}),
                         tmp_path)
    with pytest.raises(BenchError, match="unknown style"):
        ensure_generated(dataclasses.replace(card, generator={**card.generator, "nosie": 3}), tmp_path)
    with pytest.raises(BenchError, match="unknown synthetic generator"):
        ensure_generated(dataclasses.replace(card, synthetic="blobs"), tmp_path)
    assert not (tmp_path / card.dir).exists()


# ---------------------------------------------------------------- backbone
@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory):
    return sb.ensure_smoke_backbone(tmp_path_factory.mktemp("cache") / "tiny-clip", steps=TEST_STEPS)


def test_backbone_loads_through_open_clip(backbone_dir):
    assert sorted(p.name for p in backbone_dir.iterdir()) == [sb.CONFIG_FILE, sb.WEIGHTS_FILE]
    model = open_clip.create_model(f"local-dir:{backbone_dir}")
    acts = [type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")]
    assert acts and set(acts) == {"QuickGELU"}  # OpenAI-style activation, as the config says
    assert tuple(model.visual.image_mean) == sb.MEAN and tuple(model.visual.image_std) == sb.STD
    assert model.visual.image_size == (32, 32)
    assert open_clip.get_tokenizer(f"local-dir:{backbone_dir}").context_length == 32
    info = json.loads((backbone_dir / sb.CONFIG_FILE).read_text())["bench_smoke"]
    assert info["loss_last"] < info["loss_first"]  # it learned something
    mtime = (backbone_dir / sb.WEIGHTS_FILE).stat().st_mtime_ns
    assert sb.ensure_smoke_backbone(backbone_dir, steps=TEST_STEPS) == backbone_dir  # cached: no rebuild
    assert (backbone_dir / sb.WEIGHTS_FILE).stat().st_mtime_ns == mtime


def test_backbone_weights_only_count_when_complete(backbone_dir, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    (half / sb.CONFIG_FILE).write_bytes((backbone_dir / sb.CONFIG_FILE).read_bytes())
    assert not sb._is_built(half, TEST_STEPS, 0)  # config without weights
    assert sb._is_built(backbone_dir, TEST_STEPS, 0) and not sb._is_built(backbone_dir, sb.DEFAULT_STEPS, 0)


def test_pretraining_is_deterministic():
    a, _ = sb.pretrain(steps=2, batch=16)
    b, _ = sb.pretrain(steps=2, batch=16)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_zero_shot_beats_chance(backbone_dir, generated):
    model = open_clip.create_model(f"local-dir:{backbone_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{backbone_dir}")
    acc = sb.smoke_accuracy(model, tokenizer, load_card("smoke_shapes"), generated, shots=4)
    assert acc["zero_shot"] >= 1.5 * acc["chance"], acc


def test_full_recipe_fits_the_protocol():
    """Quick checks of what the full build will be, without building it."""
    assert sb.MODEL_CFG["quick_gelu"] is True and sb.MODEL_CFG["vision_cfg"]["image_size"] == sb.IMAGE_SIZE
    assert 500 <= sb.DEFAULT_STEPS <= 2000  # about 1.5 minutes on one CPU thread
    sb.register_smoke_config()
    tokenizer = open_clip.get_tokenizer(sb.SMOKE_MODEL_NAME)
    for name in SMOKE:  # CoOp puts 16 context tokens before the class name: it must still fit
        card = load_card(name)
        for cls in card.generator["classes"]:
            tokens = tokenizer([card.templates[0].format(cls.replace("_", " "))])[0]
            assert int((tokens > 0).sum()) + 16 <= sb.MODEL_CFG["text_cfg"]["context_length"]

import json

import open_clip
import pytest
import torch

from bench.backbone import _resolve, load_backbone, uses_quick_gelu
from bench.config import BackboneSpec
from bench.errors import BenchError

TINY = {"embed_dim": 16, "quick_gelu": True,
        "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def test_openai_weights_always_get_quick_gelu():
    # the plain name would build nn.GELU; the pretrained tag alone decides
    assert _resolve(BackboneSpec("b", model="ViT-B-16", pretrained="openai"))[2] is True
    assert _resolve(BackboneSpec("b", model="ViT-B-16", pretrained="laion2b_s34b_b88k"))[2] is False


def test_activation_type_is_checked_on_the_modules():
    assert uses_quick_gelu(open_clip.create_model("ViT-B-16-quickgelu"))
    assert not uses_quick_gelu(open_clip.create_model("ViT-B-16"))


def test_missing_weights_offline_is_one_line_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BenchError) as info:
        load_backbone(BackboneSpec("b", model="ViT-B-16-quickgelu", pretrained="openai"))
    message = str(info.value)
    assert "HF_HUB_CACHE" in message and "pretrained = " in message and "\n" not in message


def test_unknown_model_suggests_the_closest():
    with pytest.raises(BenchError, match="did you mean 'ViT-B-16-quickgelu'"):
        load_backbone(BackboneSpec("b", model="ViT-B-16-quickgelue"))


def test_local_checkpoint_file_loads_those_weights(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "bench-test-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(tmp_path / "cfg")
    torch.manual_seed(0)
    source = open_clip.create_model("bench-test-tiny")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = load_backbone(BackboneSpec("b", model="bench-test-tiny", pretrained=str(tmp_path / "w.pt")))
    for (name, a), (_, b) in zip(sorted(source.state_dict().items()), sorted(loaded.model.state_dict().items())):
        assert torch.equal(a, b), name
    assert loaded.quick_gelu and loaded.image_size == 16
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert load_backbone(BackboneSpec("b", model="bench-test-tiny", pretrained=str(tmp_path / "w.pt"))).digest == loaded.digest
    with pytest.raises(BenchError, match="local_dir .* is not a folder"):
        load_backbone(BackboneSpec("b", local_dir=str(tmp_path / "missing")))


def test_huggingface_datasets_is_not_shadowed():
    import datasets

    assert hasattr(datasets, "load_dataset"), datasets.__file__

"""CLIP-Adapter: ratio 0 is zero-shot CLIP, the adapter has the paper's shape, cached views change nothing."""

import pytest
import torch
from safetensors.torch import load

from bench.errors import BenchError
from bench.method import build_params
from bench.runner import evaluate
from methods.clip_adapter import ClipAdapter, ClipAdapterParams
from tests.methods.conftest import LEARN_DATASET, zero_shot_top1


def test_ratio_zero_is_exactly_zero_shot_after_training(make_task):
    task = make_task(2)
    fitted = ClipAdapter().fit(task, ClipAdapterParams(ratio=0.0, epochs=2))
    feats, _ = task.features.test()
    assert torch.equal(fitted.predict(feats), task.zero_shot_logits(feats))


def test_adapter_shape_follows_width_and_reduction(make_task):
    task = make_task(1)
    dim = task.text_features().shape[1]
    fitted = ClipAdapter().fit(task, ClipAdapterParams(reduction=2, epochs=1))
    weights = load(fitted.artifacts["adapter.safetensors"])
    assert weights["down.weight"].shape == (dim // 2, dim) and weights["up.weight"].shape == (dim, dim // 2)
    assert fitted.trainable_params == 2 * dim * (dim // 2) and set(weights) == {"down.weight", "up.weight"}


def test_default_epochs_follow_the_documented_rule(make_task):
    assert ClipAdapter().fit(make_task(1), ClipAdapterParams(lr=0.0)).config["epochs"] == 50


def test_nonzero_ratio_changes_the_prediction(make_task):
    task = make_task(2)
    feats, _ = task.features.test()
    fitted = ClipAdapter().fit(task, ClipAdapterParams(epochs=2))
    assert not torch.allclose(fitted.predict(feats), task.zero_shot_logits(feats))


def test_bad_ratio_and_reduction_are_user_errors_before_fit():
    with pytest.raises(BenchError, match=r"ratio = 1.5 is out of range \[0.0, 1.0\]"):
        build_params(ClipAdapter, {"ratio": 1.5})
    with pytest.raises(BenchError, match="reduction = 0 must be ≥ 1"):
        build_params(ClipAdapter, {"reduction": 0})


def test_cached_views_give_the_same_model_as_recomputed_ones(make_task, tmp_path):
    params = ClipAdapterParams(epochs=4)
    a = ClipAdapter().fit(make_task(4, features=(tmp_path, True)), params)
    b = ClipAdapter().fit(make_task(4, features=(tmp_path / "off", False)), params)
    feats, _ = make_task(4).features.test()
    assert torch.equal(a.predict(feats), b.predict(feats))


def test_learns_beyond_zero_shot_with_the_protocol_defaults(make_task):
    one, many = make_task(1, dataset=LEARN_DATASET), make_task(16, dataset=LEARN_DATASET)
    acc1 = evaluate(ClipAdapter().fit(one, ClipAdapterParams()), "features", one)  # 50 epochs
    acc16 = evaluate(ClipAdapter().fit(many, ClipAdapterParams()), "features", many)  # 200 epochs
    assert acc16 > zero_shot_top1(many) + 10
    assert acc16 >= acc1 + 10

"""Tip-Adapter / Tip-Adapter-F: the cache model by hand, α = 0 is zero-shot CLIP, the official search grid
and tie rule, the keys' normalisation order, learning with trained keys, and where α, β are searched
(never on test unless asked)."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from bench.jobs import expand, resolve_params
from bench.method import job_precision, run_precision
from bench.runner import evaluate
from methods.tip_adapter import TipAdapter, TipAdapterParams, grid, search_alpha_beta, tip_logits, train_cache_keys
from tests.methods.conftest import LEARN_DATASET, zero_shot_top1
from tests.methods.test_method_contract import fit_and_predict, frozen_state

CHEAP_F = TipAdapterParams(train_keys=True, epochs=2, beta_steps=20, alpha_steps=5)


def cache(task, views=10, scale=(0.5, 1.0)):
    """Keys as the official build_cache_model makes them: mean of the raw views, then normalised."""
    got = task.features.train_views(task.fewshot, task.seed, views, scale)
    keys = F.normalize(torch.stack([v for v, _ in got]).mean(0), dim=-1)
    return keys, F.one_hot(got[0][1], task.num_classes).float()


def test_cache_model_matches_a_hand_computation():
    keys = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.6, 0.8, 0]])
    values = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    text = torch.eye(3)
    f = torch.tensor([[3.0, 4.0, 0.0]])  # normalised inside: (0.6, 0.8, 0); f·Kᵀ = (0.6, 0.8, 0, 1)
    alpha, beta, s = 2.0, 3.0, 100.0
    # A = exp(−β(1 − f·Kᵀ)); A·V sums it per class: class 0 ← keys 0 and 3, class 1 ← key 1, class 2 ← key 2
    av = [math.exp(-beta * 0.4) + 1.0, math.exp(-beta * 0.2), math.exp(-beta * 1.0)]
    want = torch.tensor([[s * 0.6 + alpha * av[0], s * 0.8 + alpha * av[1], 0.0 + alpha * av[2]]])
    got = tip_logits(f, keys, values, text, s, alpha, beta)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-4)


def test_alpha_zero_is_exactly_zero_shot(make_task):
    task = make_task(4)
    fitted = TipAdapter().fit(task, TipAdapterParams(search=False, init_alpha=0.0))
    feats, _ = task.features.test()
    assert fitted.validation == "none" and fitted.config["alpha"] == 0.0
    assert torch.equal(fitted.predict(feats), task.zero_shot_logits(feats))


def test_keys_are_the_normalised_mean_of_raw_views(make_task):
    # The official order: average the unnormalised embeddings of the views, normalise once.
    task = make_task(4)
    fitted = TipAdapter().fit(task, TipAdapterParams(search=False, init_alpha=2.0, init_beta=5.0))
    keys, values = cache(task)
    feats, _ = task.features.test()
    want = tip_logits(feats, keys, values, task.text_features(), task.logit_scale, 2.0, 5.0)
    assert torch.equal(fitted.predict(feats), want)
    per_view = F.normalize(torch.stack([F.normalize(v, dim=-1) for v, _ in
                                        task.features.train_views(task.fewshot, task.seed, 10, (0.5, 1.0))]).mean(0),
                           dim=-1)
    assert not torch.allclose(per_view, keys)  # the other order gives other keys: the test can tell
    assert fitted.trainable_params == 0 and fitted.artifacts == {}
    assert fitted.state_bytes == keys.numel() * 4 + len(values) * 8  # fp32 keys on a CPU + int64 labels


def test_grid_is_the_official_one():
    assert grid(0.5, 4) == [i * 0.4 / 4 + 0.1 for i in range(4)]  # 0.1, 0.2, 0.3, 0.4: the end left out
    betas = grid(7.0, 200)
    assert len(betas) == 200 and betas[0] == 0.1 and betas[-1] < 7.0
    assert math.isclose(betas[-1], 0.1 + 199 * 6.9 / 200)


def official_search(feats, labels, keys, values, text, scale, betas, alphas):
    """The official search_hp loop written out: β outer, α inner, a strict '>' from accuracy 0."""
    f = F.normalize(feats, dim=-1)
    best, best_beta, best_alpha = 0.0, 0.0, 0.0
    for beta in betas:
        for alpha in alphas:
            logits = scale * f @ text.t() + ((-1) * (beta - beta * (f @ keys.t()))).exp() @ values * alpha
            acc = 100.0 * float((logits.argmax(-1) == labels).float().mean())
            if acc > best:
                best, best_beta, best_alpha = acc, beta, alpha
    return best_beta, best_alpha, best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_search_follows_the_official_loop_and_tie_rule(seed):
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    keys = F.normalize(torch.randn(12, 8, generator=g), dim=-1)
    values = F.one_hot(torch.arange(12) % 4, 4).float()
    labels = torch.randint(0, 4, (10,), generator=g)  # val images near a key of their class
    val = keys[labels + 4 * torch.randint(0, 3, (10,), generator=g)] + 0.8 * torch.randn(10, 8, generator=g)
    betas, alphas = grid(7.0, 30), grid(3.0, 8)  # 10 val images: many ties, the rule decides
    got = search_alpha_beta(val, labels, keys, values, text, 2.0, betas, alphas)
    want = official_search(val, labels, keys, values, text, 2.0, betas, alphas)
    assert got[:2] == want[:2] and math.isclose(got[2], want[2], abs_tol=1e-4)


def spy_features(task, monkeypatch) -> list:
    """Record every plain-feature request; reading the test split raises."""
    seen, encode = [], task.features.encode

    def spy(split, items, *args, **kwargs):
        seen.append((split, list(items)))
        if split == "test":
            raise AssertionError("the α/β search read the test split")
        return encode(split, items, *args, **kwargs)

    monkeypatch.setattr(task.features, "encode", spy)
    return seen


def without_val(task):
    """The task as on ImageNet: no val split, hence no few-shot val draw."""
    return dataclasses.replace(task, fewshot=dataclasses.replace(task.fewshot, val=[]))


@pytest.mark.parametrize("params", [TipAdapterParams(), CHEAP_F], ids=["tip_adapter", "tip_adapter_f"])
def test_search_uses_the_fewshot_val_split_never_test(make_task, tmp_path, monkeypatch, params):
    task = make_task(4, features=(tmp_path, True))
    seen = spy_features(task, monkeypatch)
    fitted = TipAdapter().fit(task, params)
    assert [split for split, _ in seen] == ["fewshot_val"] and seen[0][1] == task.fewshot.val
    assert fitted.validation == "fewshot_val" and fitted.config["val_source"] == "fewshot_val"
    assert fitted.config["val_items"] == len(task.fewshot.val) == 4 * task.num_classes
    assert fitted.config["beta"] in grid(params.beta_max, params.beta_steps)


def test_no_val_split_searches_on_the_train_holdout_never_test(make_task, tmp_path, monkeypatch):
    from bench.data import holdout_val

    task = without_val(make_task(2, seed=2, features=(tmp_path, True)))
    seen = spy_features(task, monkeypatch)
    fitted = TipAdapter().fit(task, TipAdapterParams())
    held = holdout_val(task.splits, task.fewshot, task.shots, task.seed)  # the linear probe's draw
    assert [split for split, _ in seen] == ["holdout_val"] and seen[0][1] == held
    assert fitted.validation == "fewshot_val" and fitted.config["val_source"] == "train_holdout"
    assert fitted.config["val_items"] == len(held) and not set(held) & set(task.fewshot.train)


def test_test_split_search_only_when_asked_and_recorded_as_oracle(make_task, tmp_path, monkeypatch):
    task = without_val(make_task(2, features=(tmp_path, True)))
    fixed = TipAdapter().fit(task, TipAdapterParams(when_no_val="fixed"))
    assert fixed.validation == "none" and (fixed.config["alpha"], fixed.config["beta"]) == (1.17, 1.0)
    seen, encode = [], task.features.encode
    monkeypatch.setattr(task.features, "encode", lambda split, items, *a, **k: seen.append(split) or
                        encode(split, items, *a, **k))
    oracle = TipAdapter().fit(task, TipAdapterParams(when_no_val="test"))
    assert seen == ["test"] and oracle.validation == "oracle_test"
    assert oracle.config["val_source"] == "test" and oracle.config["val_items"] == len(task.splits.test)


def test_trained_keys_learn_on_an_easy_task(make_task):
    task = make_task(16, dataset=LEARN_DATASET)
    # α, β fixed (no search) so the only change is the training; α 3 lets the cache matter on smoke_mini
    before = evaluate(TipAdapter().fit(task, TipAdapterParams(search=False, init_alpha=3.0)), "features", task)
    params = TipAdapterParams(search=False, init_alpha=3.0, train_keys=True)
    after = evaluate(TipAdapter().fit(task, params), "features", task)
    assert after > before + 5
    keys, values = cache(task)
    _, losses = train_cache_keys(task, params, keys, values, task.text_features(), task.logit_scale)
    assert len(losses) == params.epochs and losses[-1] < 0.8 * losses[0]


def test_tip_adapter_beats_zero_shot_at_16_shots(make_task):
    task = make_task(16, dataset=LEARN_DATASET)
    assert evaluate(TipAdapter().fit(task, TipAdapterParams()), "features", task) > zero_shot_top1(task) + 10


def test_tip_adapter_f_keeps_the_method_contract(make_task):
    """test_method_contract runs tip_adapter's defaults (training-free); the same checks with trained keys."""
    task = make_task(16)
    model = task.backbone.model
    before = frozen_state(model)
    fitted, logits = fit_and_predict(TipAdapter, task, CHEAP_F)
    _, again = fit_and_predict(TipAdapter, task, CHEAP_F)
    assert torch.equal(logits, again) and torch.isfinite(logits).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    keys = len(task.fewshot.train)
    dim = task.text_features().shape[1]
    assert fitted.trainable_params == keys * dim and fitted.state_bytes == keys * dim * 4 + keys * 8
    assert set(fitted.artifacts) == {"cache.safetensors"}
    assert fitted.config["train_views"] == [10, 11] and "train_loss_last_epoch" in fitted.metrics


def test_official_precision_and_tasks_file_overrides(smoke_config):
    assert TipAdapter.precision == "fp16" == job_precision(TipAdapter, "official")
    assert run_precision("fp16", torch.device("cuda")) == "fp16" and run_precision("fp16", "cpu") == "fp32"
    suite = smoke_config.suite("coop11")
    base, f = resolve_params(suite, "tip_adapter_f", "eurosat", 16)
    assert base == "tip_adapter" and f["train_keys"] and f["epochs"] == 100
    assert (f["beta_max"], f["alpha_max"], f["init_alpha"]) == (12.0, 10.0, 2.0)  # inherited from tip_adapter
    _, plain = resolve_params(suite, "tip_adapter", "imagenet", 16)
    assert not plain["train_keys"] and (plain["beta_max"], plain["alpha_max"], plain["init_alpha"]) == (7.0, 3.0, 1.17)
    _, flowers = resolve_params(suite, "tip_adapter_f", "oxford_flowers", 1)
    assert flowers["epochs"] == 20 and (flowers["beta_max"], flowers["alpha_max"]) == (50.0, 50.0)
    job = expand(suite, ["tip_adapter_f"], datasets=["eurosat"], shots=[16], seeds=[1])[0]
    assert job.key["precision"] == "fp16"

"""RMT: the gradient dropout rule on hand-made gradients, one forward per step, the teacher, and learning."""

from pathlib import Path

import pytest
import torch

from bench.backbone import weights_digest
from bench.jobs import resolve_params
from bench.masking import load_masks, mask_metrics
from methods.rmt import RMT, RMTParams, gradient_dropout
from tests.masks.conftest import make_job


def draws(g_ce, g_kl, lam, n=20000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a, b = g_ce.repeat(n, 1), g_kl.repeat(n, 1)  # n independent draws of U per element
    return gradient_dropout(a, b, lam, gen)


def test_agreeing_signs_always_keep_the_ce_gradient():
    g_ce = torch.tensor([0.3, -2.0, 1e-6, -5e-4])
    g_kl = torch.tensor([0.1, -0.5, 3.0, -1e-4])
    applied, keep = draws(g_ce, g_kl, lam=1.0)
    assert keep.all()
    assert torch.equal(applied, g_ce.repeat(len(applied), 1))


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_opposite_signs_keep_with_probability_ce_share_else_scale_by_one_minus_lambda(lam):
    g_ce = torch.tensor([0.3, -2.0, 1.0, 0.2])
    g_kl = torch.tensor([-0.1, 2.0, -3.0, -0.8])
    applied, keep = draws(g_ce, g_kl, lam)
    expected = g_ce.abs() / (g_ce.abs() + g_kl.abs())  # 0.75, 0.5, 0.25, 0.2
    rate = keep.float().mean(0)
    assert torch.allclose(rate, expected, atol=0.015), (rate, expected)
    whole = g_ce.repeat(len(applied), 1)
    assert torch.equal(applied[keep], whole[keep])
    torch.testing.assert_close(applied[~keep], (1 - lam) * whole[~keep])


def test_lambda_zero_is_plain_mask_tuning_and_kl_gradient_is_never_applied():
    g_ce = torch.tensor([0.3, -2.0, 0.0])
    g_kl = torch.tensor([-5.0, 7.0, 9.0])
    applied, _ = draws(g_ce, g_kl, lam=0.0, n=100)
    assert torch.equal(applied, g_ce.repeat(100, 1))
    applied, _ = draws(g_ce, g_kl, lam=1.0, n=100)
    assert (applied[:, 2] == 0).all()  # no CE gradient: nothing is applied, whatever the KL says
    assert set(applied[:, 0].tolist()) <= {0.0, g_ce[0].item()}


def test_the_draw_comes_from_the_given_generator():
    g_ce, g_kl = torch.full((1000,), 1.0), torch.full((1000,), -1.0)
    first, _ = gradient_dropout(g_ce, g_kl, 1.0, torch.Generator().manual_seed(5))
    again, _ = gradient_dropout(g_ce, g_kl, 1.0, torch.Generator().manual_seed(5))
    other, _ = gradient_dropout(g_ce, g_kl, 1.0, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_lambda_per_dataset_and_shots_from_tasks_toml(smoke_config):
    coop = smoke_config.suite("coop11")
    lam = {(d, k): resolve_params(coop, "rmt", d, k)[1]["lam"]
           for d in ("dtd", "eurosat", "imagenet", "sun397", "food101") for k in (1, 16)}
    assert lam == {("dtd", 1): 1.0, ("dtd", 16): 0.3, ("eurosat", 1): 1.0, ("eurosat", 16): 0.3,
                   ("imagenet", 1): 1.0, ("imagenet", 16): 1.0, ("sun397", 1): 1.0, ("sun397", 16): 1.0,
                   ("food101", 1): 1.0, ("food101", 16): 1.0}
    assert resolve_params(coop, "rmt", "imagenet", 4)[1]["lr"] == 3e-5


def test_one_masked_forward_per_step_and_a_gradient_free_teacher(mask_ws, mask_suite):
    task = mask_ws.task(make_job(mask_suite, "rmt", 1))
    visual = task.backbone.model.visual
    forwards = []
    hook = visual.register_forward_hook(lambda m, a, out: forwards.append(torch.is_grad_enabled()))
    try:
        fitted = RMT().fit(task, RMTParams(epochs=3, min_travel=0.0))
    finally:
        hook.remove()
    steps = fitted.config["steps"]
    assert steps == 3 and forwards.count(True) == steps and forwards.count(False) == steps
    assert fitted.config["lambda"] == 1.0 and fitted.config["kl_temperature"] == 1.0


def test_store_teacher_equals_batch_teacher(mask_ws, mask_suite):
    task = mask_ws.task(make_job(mask_suite, "rmt", 4))
    method, params = RMT(), RMTParams()
    context = method.begin(task, params, {})
    for epoch, images, labels, indices in task.train_epochs(1, 32, params.scale):
        by_batch = method.teacher_logits(task, params, context, images, indices, epoch)
        by_store = method.teacher_logits(task, RMTParams(teacher="store"), context, images, indices, epoch)
        torch.testing.assert_close(by_store, by_batch, rtol=1e-4, atol=1e-4)
        assert not by_batch.requires_grad


def test_rmt_learns_and_records_lambda_and_masks(run, mask_ws, mask_suite):
    digest = weights_digest(mask_ws.backbone.model)
    zero = run("zeroshot", 16)["metrics"]["top1"]
    record = run("rmt", 16)
    assert weights_digest(mask_ws.backbone.model) == digest
    metrics = record["metrics"]
    assert metrics["top1"] > zero + 5.0, (metrics["top1"], zero)
    assert record["config"]["method"]["lambda"] == record["params"]["lam"] == 1.0
    assert metrics["gdr_dropped_pct"] > 0  # the dropout really acted on some elements
    path = Path(mask_suite.results_dir) / next(a for a in record["artifacts"] if a.endswith("masks.npz"))
    saved = mask_metrics(load_masks(path), mask_ws.backbone.model)
    assert saved["masked_count"] == metrics["masked_count"] > 0
    assert saved["masked_pct_of_masked_tensors"] == pytest.approx(metrics["masked_pct_of_masked_tensors"])

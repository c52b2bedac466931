"""Full fine-tuning: mask tuning's budget, it learns, only a private copy of the image encoder changes,
its cost is the whole encoder, BatchNorm statistics stay frozen on a ResNet, and the report shows it."""

import copy
import dataclasses

import pytest
import torch

from bench.backbone import weights_digest
from bench.jobs import expand
from bench.report import build
from bench.runner import run_job
from methods.finetune import Finetune, FinetuneParams, budget
from methods.mask_tuning import MaskTuningParams, schedule
from tests.masks.test_masking import tiny_resnet
from tests.methods.conftest import LEARN_DATASET


def test_declarations():
    assert (Finetune.name, Finetune.version, Finetune.inputs, Finetune.precision) == ("finetune", 1, "images", "fp32")
    p = FinetuneParams()
    assert (p.lr, p.weight_decay, p.batch_size, p.epochs, p.scale) == (1e-5, 0.01, 32, 30, (0.5, 1.0))


@pytest.mark.parametrize("steps_per_epoch,shots", [(1, 1), (5, 4), (5, 16), (50, 2)])
def test_budget_is_mask_tunings(steps_per_epoch, shots):
    mine, masks = budget(FinetuneParams(), steps_per_epoch, shots), schedule(MaskTuningParams(), steps_per_epoch, shots)
    assert (mine["epochs"], mine["steps"], mine["schedule"]) == (masks["epochs"], masks["steps"], masks["schedule"])
    assert mine["budget_travel"] == masks["travel"]


def test_imagenet_budget_follows_mask_tunings_imagenet_entry(smoke_config):
    from bench.jobs import resolve_params

    coop = smoke_config.suite("coop11")
    _, mask = resolve_params(coop, "mask_tuning", "imagenet", 1)
    _, mine = resolve_params(coop, "finetune", "imagenet", 1)
    assert (mine["epochs"], mine["budget_lr"]) == (mask["epochs"], mask["lr"]) == (10, 3e-5)
    assert mine["lr"] == 1e-5  # finetune's own lr is not mask tuning's


@pytest.fixture(scope="module")
def record(smoke_ws):
    """One 4-shot run through the engine with the defaults: 40 images, one step an epoch, mask tuning's
    low-shot rule gives 499 epochs. (At 16 shots smoke_mini gets 150 steps: too few at lr 1e-5 for the
    tiny backbone to move, measured 31% vs zero-shot 32%.)"""
    model = smoke_ws.backbone.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {n: p for n, p in model.named_parameters()}
    job = expand(smoke_ws.suite, ["finetune"], datasets=[LEARN_DATASET], shots=[4], seeds=[1])[0]
    threads = torch.get_num_threads()  # a module fixture runs before the per-test one_thread fixture
    torch.set_num_threads(1)
    try:
        out = run_job(job, smoke_ws)
    finally:
        torch.set_num_threads(threads)
    assert out["status"] == "ok", out.get("traceback")
    return out, before, params


def test_learns_beyond_zero_shot(record, smoke_ws):
    zero = expand(smoke_ws.suite, ["zeroshot"], datasets=[LEARN_DATASET])[0]
    zero_top1 = run_job(zero, smoke_ws)["metrics"]["top1"]
    out, _, _ = record
    assert out["metrics"]["top1"] > zero_top1 + 5, (out["metrics"]["top1"], zero_top1)
    config = out["config"]["method"]
    assert config["steps"] == 499 and config["schedule"] == "min_travel" and config["relative_weight_change"] > 0


def test_only_a_copy_of_the_image_encoder_changes(record, smoke_ws):
    _, before, params = record
    model = smoke_ws.backbone.model
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # text tower, logit scale and visual alike
    assert all(p is params[n] and not p.requires_grad and p.grad is None for n, p in model.named_parameters())
    assert not model.training


def test_cost_is_the_whole_image_encoder_and_the_report_shows_it(record, smoke_ws):
    out, _, _ = record
    visual = list(smoke_ws.backbone.model.visual.parameters())
    assert out["trainable_params"] == sum(p.numel() for p in visual)
    assert out["state_bytes"] == sum(p.numel() * p.element_size() for p in visual) == 4 * out["trainable_params"]
    cost = build(smoke_ws.suite).sections[0].cost
    row = cost[(cost["Method"] == "finetune") & (cost["Shots"] == "4")]
    assert len(row) == 1 and row["Task state"].iloc[0] == f"{out['state_bytes'] / 1000:.1f} kB"


def test_resnet_batchnorm_statistics_stay_frozen_while_its_weights_train(make_task):
    task = make_task(16, dataset=LEARN_DATASET)
    model = copy.deepcopy(task.backbone.model)  # the workspace's model stays untouched
    model.visual = tiny_resnet(task.backbone.image_size, task.text_features().shape[1])
    task = dataclasses.replace(task, backbone=dataclasses.replace(task.backbone, model=model), _text_cache={})
    shared = {k: v.clone() for k, v in model.visual.state_dict().items()}
    tuned, _ = Finetune().train_encoder(task, FinetuneParams(epochs=1, lr=1e-3))
    assert weights_digest(model.visual) == weights_digest(tiny_resnet(task.backbone.image_size,
                                                                      task.text_features().shape[1]))
    assert all(torch.equal(v, model.visual.state_dict()[k]) for k, v in shared.items())
    state = tuned.state_dict()
    stats = [k for k in shared if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(state[k], shared[k]) for k in stats)  # eval mode: statistics frozen
    bn_weights = [k for k in shared if ".bn" in k and k.endswith(".weight")]
    assert any(not torch.equal(state[k], shared[k]) for k in bn_weights)  # the affine part trains
    assert not tuned.training and not any(p.requires_grad for p in tuned.parameters())

"""Mask tuning on the smoke suite: schedule, learning, records, saved masks, the shared model."""

import math
from pathlib import Path

import pytest

from bench.backbone import weights_digest
from bench.jobs import resolve_params
from bench.masking import evaluate_saved_masks, load_masks, mask_metrics, packed_bytes, read_masks
from methods.mask_tuning import MaskTuning, MaskTuningParams, schedule
from tests.masks.conftest import make_job


def test_low_shot_schedule_raises_epochs_until_masks_can_flip():
    p = MaskTuningParams()
    one = schedule(p, steps_per_epoch=1, shots=1)  # e.g. EuroSAT 1-shot: 10 images, one step an epoch
    assert one["schedule"] == "min_travel" and one["travel"] >= p.min_travel
    assert one["epochs"] == 499 and one["steps"] == 499
    assert schedule(p, 1, 1)["travel"] > 4 * (p.init_value - p.threshold)
    released = schedule(p, steps_per_epoch=5, shots=16)  # 16 shots: the released recipe, untouched
    assert released == {**released, "epochs": 30, "steps": 150, "schedule": "released"}
    assert released["travel"] == pytest.approx(5 * 8e-5 * 31 / 2)
    big = schedule(p, steps_per_epoch=50, shots=2)  # enough travel already: never lowered
    assert big["epochs"] == 30 and big["schedule"] == "released"
    off = schedule(MaskTuningParams(min_travel=0.0), 1, 1)
    assert off["epochs"] == 30 and off["travel"] < p.init_value - p.threshold  # no mask could flip


def test_tasks_toml_settings(smoke_config):
    coop = smoke_config.suite("coop11")
    _, imagenet = resolve_params(coop, "mask_tuning", "imagenet", 16)
    assert (imagenet["lr"], imagenet["epochs"]) == (3e-5, 10)
    _, zhao = resolve_params(coop, "mask_tuning_zhao", "dtd", 4)
    assert zhao["targets"] == "all_linear" and (zhao["first_block"], zhao["last_block"]) == (2, 11)
    assert (zhao["init"], zhao["init_sparsity"], zhao["threshold"], zhao["lr"]) == ("uniform", 0.05, 1e-2, 1e-3)


def test_one_shot_masks_flip_and_the_record_matches_the_saved_masks(run, mask_ws, mask_suite):
    digest = weights_digest(mask_ws.backbone.model)
    record = run("mask_tuning", 1)
    assert weights_digest(mask_ws.backbone.model) == digest  # the shared model is bit-identical after fit
    metrics, config = record["metrics"], record["config"]["method"]
    assert config["schedule"] == "min_travel" and config["steps"] >= 250
    assert metrics["masked_count"] > 0 and metrics["masked_pct_of_masked_tensors"] > 0
    path = Path(mask_suite.results_dir) / next(a for a in record["artifacts"] if a.endswith("masks.npz"))
    masks, info = read_masks(path)
    assert info["threshold"] == 5e-3 and list(masks) == config["masked_tensors"]
    assert mask_metrics(masks, mask_ws.backbone.model) == pytest.approx(
        {k: v for k, v in metrics.items() if k.startswith("masked_")})
    assert record["state_bytes"] == packed_bytes(masks) == sum(math.ceil(m.numel() / 8) for m in masks.values())
    assert record["trainable_params"] == metrics["masked_entries"]
    task = mask_ws.task(make_job(mask_suite, "mask_tuning", 1))
    assert evaluate_saved_masks(task, path) == record["metrics"]["top1"]  # re-evaluated, not retrained


def test_released_schedule_cannot_flip_a_mask_at_one_shot(run):
    record = run("mask_tuning", 1, min_travel=0.0)
    assert record["config"]["method"]["steps"] < 63  # 5e-3 / 8e-5: too few steps to cross τ
    assert record["metrics"]["masked_count"] == 0


def test_sixteen_shots_beat_zero_shot(run):
    zero = run("zeroshot", 16)["metrics"]["top1"]
    record = run("mask_tuning", 16)
    assert record["config"]["method"]["schedule"] == "released"
    assert record["metrics"]["top1"] > zero + 5.0, (record["metrics"]["top1"], zero)
    assert 0 < record["metrics"]["masked_pct_of_masked_tensors"] < 50


def test_shared_model_is_restored_when_training_raises(mask_ws, mask_suite, monkeypatch):
    model = mask_ws.backbone.model
    digest, params = weights_digest(model), dict(model.named_parameters())
    calls, original = [], MaskTuning.step

    def failing_step(self, *args):
        calls.append(1)
        if len(calls) == 2:  # after one real step has changed the scores
            raise RuntimeError("boom")
        return original(self, *args)

    monkeypatch.setattr(MaskTuning, "step", failing_step)
    task = mask_ws.task(make_job(mask_suite, "mask_tuning", 1))
    with pytest.raises(RuntimeError, match="boom"):
        MaskTuning().fit(task, MaskTuningParams(epochs=2, min_travel=0.0))
    assert weights_digest(model) == digest
    assert all(p is params[n] and not p.requires_grad and p.grad is None for n, p in model.named_parameters())


def test_zhao_variant_runs_with_its_masked_set(run):
    record = run("mask_tuning_zhao", 1, epochs=1, min_travel=0.0)
    names = record["config"]["method"]["masked_tensors"]
    assert names and all(n.startswith("transformer.resblocks.2.") for n in names)  # smoke: 3 blocks
    assert 2.0 < record["metrics"]["masked_pct_of_masked_tensors"] < 10.0  # ~5% initial sparsity
    assert load_masks  # the API a user re-evaluates with


def test_every_epoch_logs_its_loss_and_learning_rate(mask_ws, mask_suite, caplog):
    task = mask_ws.task(make_job(mask_suite, "mask_tuning", 1))
    with caplog.at_level("INFO", logger="bench.train"):
        MaskTuning().fit(task, MaskTuningParams(epochs=2, min_travel=0.0))
    lines = [r.getMessage() for r in caplog.records if r.name == "bench.train"]
    assert [line.split(" loss ")[0] for line in lines] == ["mask_tuning epoch 1/2", "mask_tuning epoch 2/2"]
    assert lines[0].endswith("lr 8e-05") and lines[1].endswith("lr 4e-05")  # cosine per epoch, from 8e-5

"""The method contract, for every registered method (feature and image methods alike): it builds, fits
with its cheapest parameters on a tiny smoke task, predicts [N, C] logits, leaves the frozen CLIP exactly
as it was, does not depend on the global RNG, and runs through the engine into an ok record.

A method makes itself cheap here with an optional classmethod `smoke_params()`; otherwise its default
Params with `epochs = 1` when it has that field."""

import dataclasses
import json

import pytest
import torch

from bench.jobs import ANY, expand
from bench.method import Fitted, params_dict
from bench.registry import METHODS
from bench.runner import run_job

SHOTS = 16  # the released-schedule regime: no method stretches its budget for low shots here


def cheapest(method):
    hook = getattr(method, "smoke_params", None)
    if callable(hook):
        return hook()
    names = {f.name for f in dataclasses.fields(method.Params)}
    return dataclasses.replace(method.Params(), **({"epochs": 1} if "epochs" in names else {}))


def frozen_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sample_inputs(method, task):
    if method.inputs == "features":
        return task.features.test()[0][:48]
    images, _, _ = next(iter(task.test_images(batch_size=48)))
    return images


def fit_and_predict(method, task, params):
    torch.manual_seed(torch.seed() % 1000)  # a different global RNG state each call: it must not matter
    fitted = method().fit(task, params)
    with torch.no_grad(), task.autocast():
        logits = fitted.predict(sample_inputs(method, task).to(task.device))
    return fitted, logits.float().cpu()


@pytest.fixture(scope="module")
def task(make_task):
    return make_task(SHOTS)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name, task):
    method = METHODS.get(name)
    assert method.inputs in ("features", "images") and dataclasses.is_dataclass(method.Params)
    model = task.backbone.model
    before = frozen_state(model)
    params = cheapest(method)
    fitted, logits = fit_and_predict(method, task, params)
    assert isinstance(fitted, Fitted)
    assert logits.shape == (48, task.num_classes) and torch.isfinite(logits).all()
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == [], f"{name} changed frozen CLIP weights: {changed[:5]}"
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert fitted.trainable_params >= 0 and fitted.state_bytes >= 0
    assert fitted.validation in ("none", "fewshot_val", "full_val", "oracle_test")
    assert all(isinstance(v, bytes) for v in fitted.artifacts.values())
    json.dumps({"metrics": fitted.metrics, "config": fitted.config})  # goes into the record as is
    _, again = fit_and_predict(method, task, params)
    assert torch.equal(logits, again), f"{name}: same seed, different result"


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_through_the_engine(name, smoke_ws):
    job = expand(smoke_ws.suite, [name], datasets=[smoke_ws.suite.datasets[0]], shots=[SHOTS], seeds=[1])[0]
    job = dataclasses.replace(job, params=params_dict(cheapest(METHODS.get(name))))
    record = run_job(job, smoke_ws)
    assert record["status"] == "ok", record.get("error")
    assert 0 <= record["metrics"]["top1"] <= 100
    expected = (SHOTS, 1) if METHODS.get(name).uses_fewshot else (ANY, ANY)  # shot-independent: one job
    assert (job.shots, job.seed) == (record["shots"], record["seed"]) == expected
    assert record["protocol"] == job.protocol == "fewshot"


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not METHODS.get(n).uses_fewshot])
def test_shot_independent_method_ignores_the_draw(name, task, smoke_ws):
    """uses_fewshot = False is a promise: the engine hands such a method no draw at all, so its
    predictions must equal those it makes from a 16-shot draw."""
    method = METHODS.get(name)
    job = expand(smoke_ws.suite, [name], datasets=[task.dataset])[0]
    empty = smoke_ws.task(job)
    assert empty.fewshot.train == empty.fewshot.val == [] and (empty.shots, empty.seed) == (ANY, ANY)
    _, without = fit_and_predict(method, empty, cheapest(method))
    _, with_draw = fit_and_predict(method, task, cheapest(method))
    assert len(task.fewshot.train) > 0 and torch.equal(without, with_draw)

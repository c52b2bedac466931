"""Precision per method, as released: each method declares its official precision, a suite's "official"
(the default) resolves to it on a GPU and to fp32 on a CPU, the job key carries it, the record says what
ran. The fp16 code path (CLIP's own fp16 model) is exercised on the CPU by building that model directly."""

import dataclasses

import pytest
import torch

from bench.backbone import load_backbone
from bench.features import FeatureStore
from bench.jobs import expand
from bench.method import job_precision, run_precision
from bench.registry import METHODS
from bench.runner import run_job
from methods.coop import CoOp, CoOpParams
from methods.zeroshot import ZeroShot

# What each released code base runs in on a GPU: CoOp's TRAINER.COOP.PREC defaults to "fp16" and its
# ZeroshotCLIP uses CLIP as loaded (fp16); lpclip extracts features with clip.load(..., "cuda") (fp16);
# CLIP-Adapter's and R-AMT's trainers call clip_model.float().
OFFICIAL = {"zeroshot": "fp16", "linear_probe": "fp16", "coop": "fp16", "clip_adapter": "fp32",
            "mask_tuning": "fp32", "rmt": "fp32"}
GPU, CPU = torch.device("cuda"), torch.device("cpu")  # a GPU device object needs no GPU to exist


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_each_method_resolves_to_its_official_precision_on_a_gpu_and_fp32_on_a_cpu(name):
    method = METHODS.get(name)
    assert method.precision == OFFICIAL[name]
    assert job_precision(method, "official") == OFFICIAL[name]
    assert run_precision(job_precision(method, "official"), GPU) == OFFICIAL[name]
    assert run_precision(job_precision(method, "official"), "cuda:1") == OFFICIAL[name]
    assert run_precision(job_precision(method, "official"), CPU) == "fp32"
    for forced in ("amp", "fp32"):  # a suite may force one precision for every method
        assert job_precision(method, forced) == forced
        assert run_precision(job_precision(method, forced), GPU) == forced
        assert run_precision(job_precision(method, forced), CPU) == "fp32"


def test_the_precision_is_in_the_job_key(smoke_config):
    official = dataclasses.replace(smoke_config.suite("smoke"), precision="official")
    amp = dataclasses.replace(official, precision="amp")
    args = dict(datasets=["smoke_shapes"], shots=[1], seeds=[1])
    jobs = {j.method: j for j in expand(official, list(OFFICIAL), **args)}
    assert {m: j.key["precision"] for m, j in jobs.items()} == OFFICIAL
    forced = {j.method: j for j in expand(amp, list(OFFICIAL), **args)}
    assert all(j.key["precision"] == "amp" and j.id != jobs[m].id for m, j in forced.items())


def test_official_is_the_default_when_a_suite_says_nothing(tmp_path):
    from bench.config import load

    path = tmp_path / "tasks.toml"
    path.write_text('[backbones.b]\nbuiltin = "smoke"\n[suites.s]\ndatasets = ["smoke_shapes"]\n'
                    'shots = [1]\nseeds = [1]\nbackbone = "b"\n')
    assert load(path).suite("s").precision == "official"


def test_a_cpu_record_says_fp32_ran_and_what_the_job_asked_for(smoke_ws):
    job = expand(dataclasses.replace(smoke_ws.suite, precision="official"), ["zeroshot"],
                 datasets=[smoke_ws.suite.datasets[0]], shots=[1], seeds=[1])[0]
    assert job.precision == "fp16"
    assert smoke_ws.task(job).precision == "fp32"
    record = run_job(job, smoke_ws)
    assert record["status"] == "ok", record.get("traceback")
    assert record["config"]["precision"] == "fp32" and record["config"]["job_precision"] == "fp16"


@pytest.fixture(scope="module")
def fp16_task(make_task, smoke_ws, tmp_path_factory):
    """A task in "fp16" with CLIP's fp16 model, on the CPU (the engine itself runs fp32 there)."""
    task = make_task(2)
    half = dataclasses.replace(load_backbone(smoke_ws.suite.backbone, "cpu", precision="fp16"),
                               digest=task.backbone.digest)
    store = FeatureStore(half, task.splits, "cpu", "fp16", root=tmp_path_factory.mktemp("fp16-features"))
    return dataclasses.replace(task, backbone=half, precision="fp16", features=store, _text_cache={})


def test_fp16_model_is_clips_own(fp16_task):
    model = fp16_task.backbone.model
    tower = model.transformer.resblocks[0]
    assert tower.mlp.c_fc.weight.dtype == torch.float16 and model.visual.conv1.weight.dtype == torch.float16
    assert model.ln_final.weight.dtype == torch.float32 and type(model.ln_final).__name__ == "LayerNormFp32"


def test_fp16_features_are_the_fp16_models_and_cached_apart(fp16_task, make_task):
    feats, _ = fp16_task.features.test()
    assert feats.dtype == torch.float32 and torch.equal(feats, feats.half().float())  # fp16 values
    fp32 = make_task(2).features
    split, items = "test", fp16_task.splits.test
    assert fp16_task.features._key(split, items, None, (0.08, 1.0))["precision"] == "fp16"
    assert fp16_task.features._path(fp16_task.features._key(split, items, None, (0.08, 1.0))) != \
        fp32._path(fp32._key(split, items, None, (0.08, 1.0)))
    reference, _ = fp32.test()
    assert not torch.equal(feats, reference)  # another computation...
    torch.testing.assert_close(feats, reference, atol=2e-2, rtol=2e-2)  # ...of the same features


def test_coop_in_fp16_trains_an_fp16_context_as_coop(fp16_task):
    fitted = CoOp().fit(fp16_task, CoOpParams(n_ctx=4, epochs=2))
    from safetensors.torch import load

    ctx = load(fitted.artifacts["prompt_context.safetensors"])["ctx"]
    assert ctx.dtype == torch.float16 and fitted.state_bytes == ctx.numel() * 2
    feats, _ = fp16_task.features.test()
    assert torch.isfinite(fitted.predict(feats)).all()


def test_zeroshot_in_fp16_uses_the_fp16_text_tower(fp16_task, make_task):
    fp16_text, fp32_text = fp16_task.text_features(), make_task(2).text_features()
    assert fp16_text.dtype == torch.float32 and not torch.equal(fp16_text, fp32_text)
    torch.testing.assert_close(fp16_text, fp32_text, atol=1e-2, rtol=1e-2)
    feats, _ = fp16_task.features.test()
    logits = ZeroShot().fit(fp16_task, ZeroShot.Params()).predict(feats)
    assert logits.shape == (len(feats), fp16_task.num_classes)

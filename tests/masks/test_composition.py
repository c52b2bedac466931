"""Composition: a feature method run on a mask method's masks (tasks.toml `encoder = "NAME"`).

The tiny smoke backbone on smoke_mini (10 classes). The encoder `ones` is mask tuning with one step
of the released lr: no score can reach τ, so every mask stays on, and a method composed on it must
give exactly what the plain method gives."""

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from bench.backbone import weights_digest
from bench.config import load_config
from bench.errors import BenchError
from bench.executors.base import Gate
from bench.features import FeatureStore
from bench.jobs import ANY, expand, job_for, stable_id, with_cli_set
from bench.results import job_records
from bench.runner import Workspace, run_job
from bench.scheduler import by_dataset, preflight
from methods.mask_tuning import MaskTuning
from tests.conftest import REPO
from tests.masks.conftest import DATASET

COMPOSED = """
[methods.ones]                  # every mask stays on: one Adam step cannot move a score from 1e-2 to τ
base = "mask_tuning"
epochs = 1
min_travel = 0.0

[methods.coop_ones]
base = "coop"
encoder = "ones"
epochs = 2

[methods.clip_adapter_ones]
base = "clip_adapter"
encoder = "ones"
epochs = 2
"""


def tasks_file(folder: Path, extra: str) -> Path:
    path = folder / "tasks.toml"
    path.write_text((REPO / "tasks.toml").read_text() + "\n" + extra)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    folder = tmp_path_factory.mktemp("composition")
    config = load_config(tasks_file(folder, COMPOSED))
    return dataclasses.replace(config.suite("smoke"), datasets=(DATASET,), results_dir=folder / "results")


def cell(suite, method, shots=1, seed=1, **params):
    job = job_for(suite, method, DATASET, shots, seed, suite.backbone.identity())
    return dataclasses.replace(job, params={**job.params, **params}) if params else job


@pytest.fixture(scope="module")
def ran(suite):
    """Two composed jobs on one cell (the first fits the encoder, the second must reuse it), and the
    plain CoOp job with the same parameters; the number of mask fits is counted."""
    preflight(suite, expand(suite, ["zeroshot"], datasets=[DATASET], shots=[1], seeds=[1]))
    ws = Workspace(suite, device="cpu")
    digest = weights_digest(ws.backbone.model)
    fits, original = [], MaskTuning.fit

    def counting_fit(self, task, params):
        fits.append(task.shots)
        return original(self, task, params)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MaskTuning, "fit", counting_fit)
        records = {name: run_job(cell(suite, name), ws) for name in ("coop_ones", "clip_adapter_ones")}
        records["coop"] = run_job(cell(suite, "coop", epochs=2), ws)
    torch.set_num_threads(before)
    for record in records.values():
        assert record["status"] == "ok", record.get("traceback")
    return {"ws": ws, "records": records, "fits": fits, "digest": digest}


def test_all_ones_masks_give_exactly_the_plain_method(ran, suite):
    composed, plain = ran["records"]["coop_ones"], ran["records"]["coop"]
    assert composed["metrics"]["masked_pct_of_masked_tensors"] == 0.0  # every mask on
    assert composed["params"] == plain["params"]
    assert composed["metrics"]["top1"] == plain["metrics"]["top1"]
    # the masked encoder's features (test split and training views) are bit-identical to the plain ones
    ws = ran["ws"]
    task = ws.task(cell(suite, "coop_ones"))
    encoder = job_records(suite.results_dir, cell(suite, "ones"))[0]
    path = Path(suite.results_dir) / encoder["artifacts"][0]
    masked = ws.masked_task(task, path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert masked.backbone.model.visual is not task.backbone.model.visual
    assert torch.equal(masked.features.test()[0], task.features.test()[0])
    assert torch.equal(masked.features.fewshot_train(masked.fewshot, 1, epoch=0)[0],
                       task.features.fewshot_train(task.fewshot, 1, epoch=0)[0])
    # and the same method fitted on both gives the same predictions
    from methods.clip_adapter import ClipAdapter

    params = ClipAdapter.Params(**cell(suite, "clip_adapter_ones").params)
    logits = []
    for t in (task, masked):
        torch.manual_seed(1)
        logits.append(ClipAdapter().fit(t, params).predict(t.features.test()[0]))
    assert torch.equal(*logits)


def test_composed_jobs_reuse_a_finished_mask_job(ran, suite):
    records, encoder_job = ran["records"], cell(suite, "ones")
    assert ran["fits"] == [1]  # one mask fit for two composed jobs
    encoders = job_records(suite.results_dir, encoder_job)
    assert len(encoders) == 1 and encoders[0]["status"] == "ok"
    assert encoders[0]["log"] == f"logs/{records['coop_ones']['job_id']}.log"  # it ran inside that job
    first, second = records["coop_ones"]["encoder"], records["clip_adapter_ones"]["encoder"]
    assert (first["fitted_here"], second["fitted_here"]) == (True, False)
    assert first["job_id"] == second["job_id"] == encoder_job.id
    assert first["created_at"] == second["created_at"] == encoders[0]["created_at"]
    assert first["masks"] == encoders[0]["artifacts"][0]
    assert not Gate(suite.results_dir).wanted(encoder_job)  # the grid's own mask job is done too
    assert weights_digest(ran["ws"].backbone.model) == ran["digest"]  # the shared encoder is untouched


def test_composed_records_carry_both_stages_and_the_total_cost(ran, suite):
    from bench.report.records import load_records

    record = job_records(suite.results_dir, cell(suite, "clip_adapter_ones"))[0]  # as written (JSON)
    encoder = job_records(suite.results_dir, cell(suite, "ones"))[0]
    masked = {k: v for k, v in encoder["metrics"].items() if k.startswith("masked_")}
    assert masked and all(record["metrics"][k] == v for k, v in masked.items())
    assert record["encoder"]["metrics"] == masked and record["encoder"]["params"] == encoder["params"]
    assert record["encoder"]["method"] == "ones" and record["encoder"]["method_version"] == MaskTuning.version
    assert record["timings"]["encoder_fit_s"] == encoder["timings"]["fit_s"] == record["encoder"]["fit_s"]
    composed, plain = ran["records"]["coop_ones"], ran["records"]["coop"]
    for key in ("trainable_params", "state_bytes"):  # both stages: the masks are part of the result
        assert composed[key] == plain[key] + encoder[key] and record["encoder"][key] == encoder[key] > 0
    frame = load_records([Path(suite.results_dir)], suite).frame.set_index("method")
    assert frame.loc["clip_adapter_ones", "current"]
    assert frame.loc["clip_adapter_ones", "fit_s"] == pytest.approx(
        record["timings"]["fit_s"] + encoder["timings"]["fit_s"])
    assert frame.loc["clip_adapter_ones", "masked_pct"] == 0.0
    assert frame.loc["coop", "fit_s"] == ran["records"]["coop"]["timings"]["fit_s"]  # plain: its own fit


def test_feature_cache_key_carries_the_mask_digest(ran, suite):
    task = ran["ws"].task(cell(suite, "coop"))
    stores = {d: FeatureStore(task.backbone, task.splits, "cpu", masks=d) for d in ("", "a" * 64, "b" * 64)}
    keys = {d: s._key("test", task.splits.test, None, (0.08, 1.0)) for d, s in stores.items()}
    assert "masks" not in keys[""]  # the plain encoder's keys are as before
    assert keys["a" * 64] == {**keys[""], "masks": "a" * 64}
    assert len({stores[d]._path(keys[d]) for d in keys}) == 3  # three different files
    assert stores["a" * 64]._key("fewshot_train", [], (1, 0), (0.08, 1.0))["masks"] == "a" * 64  # views too


def test_job_key_includes_the_encoder_job(suite):
    composed, encoder, plain = cell(suite, "coop_ones", 4, 2), cell(suite, "ones", 4, 2), cell(suite, "coop", 4, 2)
    assert composed.encoder == encoder and composed.key["encoder"] == encoder.key
    assert (composed.shots, composed.seed) == (4, 2)
    changed = with_cli_set(suite, ["ones.init_value=0.02"])  # another mask configuration
    moved = job_for(changed, "coop_ones", DATASET, 4, 2, suite.backbone.identity())
    assert moved.params == composed.params and moved.id != composed.id
    assert job_for(changed, "coop", DATASET, 4, 2, suite.backbone.identity()).id == plain.id
    # plain jobs: no encoder field, the key (and so the id) of before composition existed
    fields = {"method", "base", "version", "dataset", "shots", "seed", "backbone", "params", "protocol", "precision"}
    for job in expand(suite):
        assert job.encoder is None and set(job.key) == fields
        assert job.id == stable_id({f: getattr(job, f) for f in fields})
    order = [j.method for j in by_dataset([composed, encoder, plain])]
    assert order.index("ones") < order.index("coop_ones")  # mask jobs run before the composed ones


def test_shot_independent_method_on_masks_is_a_job_per_cell(tmp_path):
    config = load_config(tasks_file(tmp_path, '[methods.zs_rmt]\nbase = "zeroshot"\nencoder = "rmt"\n'))
    suite = config.suite("smoke")
    job = job_for(suite, "zs_rmt", "smoke_shapes", 4, 1, suite.backbone.identity())
    assert (job.shots, job.seed) == (4, 1) and job.encoder.method == "rmt"
    assert job_for(suite, "zeroshot", "smoke_shapes", 4, 1, suite.backbone.identity()).shots == ANY


def test_an_encoder_may_be_a_variant_declared_later(tmp_path):
    extra = '[methods.coop_half]\nbase = "coop"\nencoder = "rmt_half"\n\n[methods.rmt_half]\nbase = "rmt"\nlam = 0.5\n'
    suite = load_config(tasks_file(tmp_path, extra)).suite("smoke")
    job = job_for(suite, "coop_half", "smoke_shapes", 1, 1, suite.backbone.identity())
    assert job.encoder.method == "rmt_half" and job.encoder.params["lam"] == 0.5


@pytest.mark.parametrize("extra, message", [
    ('[methods.coop_x]\nbase = "coop"\nencoder = "rmtt"\n', "[methods.coop_x]: encoder: unknown method 'rmtt' "
                                                            "(did you mean 'rmt'?)"),
    ('[methods.coop_x]\nbase = "coop"\nencoder = "clip_adapter"\n', "encoder 'clip_adapter' produces no masks"),
    ('[methods.mt_x]\nbase = "mask_tuning"\nencoder = "rmt"\n', "encoder needs a feature method as base"),
    ('[methods.coop]\nencoder = "rmt"\n', "[methods.coop]: encoder makes a new method"),
    ('[methods.a]\nbase = "coop"\nencoder = "rmt"\n\n[methods.b]\nbase = "coop"\nencoder = "a"\n',
     "[methods.b]: encoder 'a' is itself composed"),
    ('[methods.coop_x]\nbase = "coop"\nencoder = 3\n', "[methods.coop_x]"),
])
def test_bad_compositions_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(BenchError) as caught:
        load_config(tasks_file(tmp_path, extra))
    text = str(caught.value)
    assert message in text and "\n" not in text, text

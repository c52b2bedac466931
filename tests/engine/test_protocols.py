"""The protocols beyond few-shot, end to end on generated data: base-to-new and cross-dataset through
`bench run` and `bench report`, plus the rules behind them (the base draw, H, how a fitted method meets
another class list, n/a with its reason)."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.data import load_card, load_splits, sample_fewshot
from bench.data.base_to_new import subsample_fewshot
from bench.data.items import DatasetSplits
from bench.method import Fitted
from bench.protocols import harmonic, target_predictor
from bench.report.transfer import harmonic as report_harmonic

runner = CliRunner()

TASKS = """
[backbones.smoke_tiny]
builtin = "smoke"
[suites.b2n]
protocol = "base_to_new"
datasets = ["smoke_mini"]
shots = [2]
seeds = [1, 2]
backbone = "smoke_tiny"
data_root = "{data}"
precision = "fp32"
methods = ["zeroshot", "linear_probe", "clip_adapter"]
[suites.xd]
protocol = "cross_dataset"
datasets = ["smoke_mini"]
targets = ["smoke_shapes"]
shots = [2]
seeds = [1]
backbone = "smoke_tiny"
data_root = "{data}"
precision = "fp32"
methods = ["zeroshot", "linear_probe", "clip_adapter"]
[methods.clip_adapter]
epochs = 3
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Both suites run once through the CLI; (folder, tasks file)."""
    folder = tmp_path_factory.mktemp("protocols")
    tasks = folder / "tasks.toml"
    tasks.write_text(TASKS.format(data=folder / "data"))
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for suite in ("b2n", "xd"):
            result = runner.invoke(app, ["run", "--suite", suite, "--tasks", str(tasks), "--executor", "inline"],
                                   catch_exceptions=False)
            assert result.exit_code == 0, result.output
    finally:
        os.chdir(cwd)
    return folder, tasks


def records(folder, suite):
    return {(r["method"], r["seed"]): r for r in
            (json.loads(p.read_text()) for p in (folder / "results" / suite).glob("records/*/*/*.json"))}


def report(folder, tasks, suite, *args):
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = runner.invoke(app, ["report", "--suite", suite, "--tasks", str(tasks), *args], catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return result.output


def test_base_to_new_records_base_new_and_h(ran):
    folder, _ = ran
    found = records(folder, "b2n")
    zs = found[("zeroshot", 0)]
    assert zs["protocol"] == "base_to_new" and zs["config"]["num_classes"] == 5  # smoke_mini: 10 classes
    new = zs["targets"]["new"]
    assert new["num_classes"] == 5 and new["via"] == "class names" and 0 <= new["top1"] <= 100
    assert zs["metrics"]["harmonic"] == pytest.approx(harmonic(zs["metrics"]["top1"], new["top1"]))
    # a linear head cannot name new classes: n/a with the reason, no number
    probe = found[("linear_probe", 1)]["targets"]["new"]
    assert set(probe) == {"na"} and "linear head" in probe["na"]
    assert "harmonic" not in found[("linear_probe", 1)]["metrics"]


def test_base_to_new_report_has_base_new_h_columns_and_reasons(ran):
    folder, tasks = ran
    text = report(folder, tasks, "b2n")
    assert "Protocol: base_to_new" in text
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "Method", "Val", "smoke_mini Base", "smoke_mini New", "smoke_mini H", "Average Base", "Average New", "Average H"]
    found = records(folder, "b2n")
    runs = [found[("clip_adapter", s)] for s in (1, 2)]
    base = sum(r["metrics"]["top1"] for r in runs) / 2
    new = sum(r["targets"]["new"]["top1"] for r in runs) / 2
    row = next(line for line in text.splitlines() if line.startswith("| clip_adapter"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith(f"{base:.2f} ± ") and cells[3].startswith(f"{new:.2f} ± ")
    assert cells[4] == f"{2 * base * new / (base + new):.2f}"  # H of the seed means
    probe = next(line for line in text.splitlines() if line.startswith("| linear_probe"))
    assert probe.count("n/a") == 4  # New, H, Average New, Average H
    assert "n/a: linear_probe: a linear head has one output per training class" in text
    assert "-shot top-1 accuracy" not in text  # no few-shot tables for another protocol


def test_cross_dataset_evaluates_targets_with_their_names(ran):
    folder, tasks = ran
    zs = records(folder, "xd")[("zeroshot", 0)]
    target = zs["targets"]["smoke_shapes"]
    assert target["num_classes"] == 32 and target["test_items"] == 320
    text = report(folder, tasks, "xd")
    assert "smoke_mini (source)" in text and "| smoke_shapes" in text and "Target avg" in text
    assert f"{target['top1']:.2f}" in next(line for line in text.splitlines() if line.startswith("| zeroshot"))
    for fmt in ("json", "latex", "html", "csv"):
        assert "smoke_shapes" in report(folder, tasks, "xd", "--format", fmt).replace("\\_", "_")


def test_protocol_jobs_never_share_ids_with_fewshot(ran):
    folder, _ = ran
    b2n = {r["job_id"] for r in records(folder, "b2n").values()}
    xd = {r["job_id"] for r in records(folder, "xd").values()}
    assert not b2n & xd


def test_base_draw_is_the_all_class_draw_restricted(tmp_path):
    """CoCoOp's order: draw K shots over all classes, then keep the base ones (the runner's _draw)."""
    from bench.config import load
    from bench.jobs import expand
    from bench.runner import Workspace

    tasks = tmp_path / "tasks.toml"
    tasks.write_text(TASKS.format(data=tmp_path / "data"))
    suite = load(tasks).suite("b2n")
    job = next(j for j in expand(suite) if j.method == "linear_probe" and j.seed == 2)
    workspace = Workspace(suite, device="cpu")
    task = workspace.task(job)
    splits = load_splits(load_card("smoke_mini"), tmp_path / "data")
    expected = subsample_fewshot(sample_fewshot(splits, 2, 2, draw_val=True), splits.num_classes, "base")
    assert [i.path for i in task.fewshot.train] == [i.path for i in expected.train]
    assert {i.label for i in task.fewshot.train} == set(range(5)) and task.splits.num_classes == 5
    assert all(it.label < 5 for it in task.splits.test)
    new = workspace.target_task(task, "smoke_mini", "new")
    assert new.splits.classnames == splits.classnames[5:] and len(new.fewshot.train) == 0


def _splits(ids):
    return DatasetSplits("d", list(ids), [], [], [], "x", class_ids=tuple(ids))


class _Task:
    def __init__(self, ids):
        self.splits = _splits(ids)


def test_a_head_meets_a_class_subset_by_its_columns():
    """ImageNet-A's 200 classes of ImageNet's 1000: a linear head keeps those columns, in the target's order."""
    logits = torch.arange(12.0).reshape(2, 6)
    fitted = Fitted(predict=lambda x: x, no_transfer="tied")
    predict, via = target_predictor(fitted, _Task("abcdef"), _Task("eb"))
    assert via == "trained classes" and torch.equal(predict(logits), logits[:, [4, 1]])
    predict, why = target_predictor(fitted, _Task("abcdef"), _Task("bz"))  # z was never trained on
    assert predict is None and why == "tied"


def test_class_names_beat_columns():
    fitted = Fitted(predict=lambda x: x, for_classes=lambda target: "built for " + "".join(target.splits.ids))
    assert target_predictor(fitted, _Task("abc"), _Task("b")) == ("built for b", "class names")


def test_harmonic_mean():
    assert harmonic(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140) == report_harmonic(80.0, 60.0)
    assert harmonic(0.0, 0.0) == 0.0 and math.isnan(report_harmonic(70.0, math.nan))


def test_published_rows_of_the_protocols():
    """CoCoOp's averages as "(paper)" rows, never ranked with measured ones."""
    from bench.report.published import published_protocol
    from bench.report.transfer import PART_COLUMNS, base_to_new_table, transfer_table

    import pandas as pd

    vit = {"model": "ViT-B-16-quickgelu", "pretrained": "openai"}
    empty = pd.DataFrame(columns=PART_COLUMNS)
    table = base_to_new_table(empty, 16, ["imagenet"], published_protocol(vit, "base_to_new", 16))
    rows = table.set_index("Method")
    assert rows.loc["cocoop (paper)", ["Average Base", "Average New", "Average H"]].tolist() == ["80.47", "71.69", "75.83"]
    assert rows.loc["coop (paper)", "Average H"] == "71.66" and rows.loc["zeroshot (paper)", "Average New"] == "74.22"
    dg = transfer_table(empty, 16, "imagenet", ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"],
                        published_protocol(vit, "domain_generalization", 16)).set_index("Method")
    assert dg.loc["zeroshot (paper)", "imagenet_a"] == "47.77" and dg.loc["zeroshot (paper)", "Target avg"] == "57.18"
    assert published_protocol({"builtin": "smoke"}, "base_to_new", 16) == []


def test_coop_context_transfers_to_other_names(tmp_path):
    """CoOp's for_classes: the learned context before other names equals a prompt learner built for them
    with that context; its own names give its own predictor; csc cannot transfer."""
    from bench.config import load
    from bench.jobs import expand
    from bench.runner import Workspace
    from methods.coop import CoOp, CoOpParams

    tasks = tmp_path / "tasks.toml"
    tasks.write_text(TASKS.format(data=tmp_path / "data"))
    suite = load(tasks).suite("b2n")
    workspace = Workspace(suite, device="cpu")
    task = workspace.task(next(j for j in expand(suite) if j.method == "linear_probe"))
    fitted = CoOp().fit(task, CoOpParams(n_ctx=2, epochs=2))
    feats, _ = task.features.test()
    assert torch.equal(fitted.for_classes(task)(feats), fitted.predict(feats))
    new = workspace.target_task(task, "smoke_mini", "new")
    new_feats, _ = new.features.test()
    logits = fitted.for_classes(new)(new_feats)
    assert logits.shape == (len(new_feats), 5) and not torch.equal(logits, fitted.predict(new_feats))
    csc = CoOp().fit(task, CoOpParams(n_ctx=2, epochs=1, csc=True))
    assert csc.for_classes is None and "csc" in csc.no_transfer

"""The CLI end to end on the smoke suite: run → records → report, resume, failures, bad input."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import REPO

runner = CliRunner()


@pytest.fixture
def tasks(tmp_path):
    """The repository's tasks file, copied so results land in tmp_path/results/<suite>."""
    shutil.copy(REPO / "tasks.toml", tmp_path / "tasks.toml")
    return tmp_path / "tasks.toml"


def bench(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def records(tasks, suite="smoke"):
    return [json.loads(p.read_text()) for p in sorted((tasks.parent / "results" / suite).glob("records/*/*/*.json"))]


@pytest.mark.parametrize("args, message", [
    (["run", "--suite", "smoke", "--methods", "zeroshoot"], "unknown method 'zeroshoot' (did you mean 'zeroshot'?)"),
    (["run", "--suite", "smoek"], "unknown suite 'smoek' (did you mean 'smoke'?)"),
    (["run", "--suite", "smoke", "--shots", "0"], "--shots values must be positive integers"),
    (["run", "--suite", "smoke", "--seeds", "one"], "--seeds takes a comma-separated list of integers"),
    (["run", "--suite", "smoke", "--datasets", "dtd"], "unknown dataset 'dtd'"),
    (["run", "--suite", "smoke", "--backbone", "vit_b61"], "unknown backbone 'vit_b61' (did you mean 'vit_b16'?)"),
    (["list", "method"], "unknown list target 'method' (did you mean 'methods'?)"),
    (["report", "--suite", "smoke", "--format", "xls"], "--format must be 'md' or 'csv'"),
])
def test_bad_input_is_one_line_and_exit_2(tasks, args, message):
    result = bench(*args, "--tasks", str(tasks))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_dataset_fails_fast_before_any_job(tasks, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "no-data"))
    result = bench("run", "--suite", "coop11", "--methods", "zeroshot", "--datasets", "dtd", "--tasks", str(tasks))
    assert result.exit_code == 2 and "dtd" in result.output
    assert records(tasks, "coop11") == []


def test_list_commands(tasks):
    assert "zeroshot" in bench("list", "methods", "--tasks", str(tasks)).output
    datasets = bench("list", "datasets", "--tasks", str(tasks)).output
    assert "imagenet" in datasets and "fgvc_aircraft" in datasets
    assert "smoke" in bench("list", "suites", "--tasks", str(tasks)).output


def test_dry_run_runs_nothing(tasks):
    result = bench("run", "--suite", "smoke", "--methods", "zeroshot", "--dry-run", "--tasks", str(tasks))
    assert result.exit_code == 0 and "12 to run" in result.output
    assert records(tasks) == []


def test_run_resume_force_and_report(tasks):
    args = ["run", "--suite", "smoke", "--methods", "zeroshot", "--shots", "1,16", "--seeds", "1,2", "--tasks", str(tasks)]
    first = bench(*args)
    assert first.exit_code == 0, first.output
    done = records(tasks)
    assert len(done) == 8 and all(r["status"] == "ok" for r in done)
    for record in done:  # every field of DESIGN.md's record
        for key in ("job_id", "method", "method_version", "dataset", "shots", "seed", "backbone", "status",
                    "error", "metrics", "config", "split", "validation", "trainable_params", "state_bytes",
                    "timings", "peak_memory_bytes", "device", "git", "versions", "created_at"):
            assert key in record, key
        chance = 100.0 / record["config"]["num_classes"]
        assert record["metrics"]["top1"] > 2 * chance  # the smoke backbone knows the smoke concepts
        assert record["config"]["backbone"]["quick_gelu"] is True
    again = bench(*args)
    assert "8 already done, 0 to run" in again.output and len(records(tasks)) == 8
    forced = bench(*args, "--force")
    assert forced.exit_code == 0 and len(records(tasks)) == 16
    report = bench("report", "--suite", "smoke", "--tasks", str(tasks), "--out", str(tasks.parent / "r.md"))
    assert report.exit_code == 0
    assert "### 1-shot" in report.output and "### 16-shot" in report.output and "| zeroshot" in report.output
    assert (tasks.parent / "r.md").read_text().strip() == report.output.strip()


def test_failed_job_is_recorded_and_the_grid_goes_on(tasks, monkeypatch):
    from methods.zeroshot import ZeroShot

    original = ZeroShot.fit

    def flaky(self, task, params):
        if task.shots == 2:
            raise RuntimeError("boom")
        return original(self, task, params)

    monkeypatch.setattr(ZeroShot, "fit", flaky)
    # inline: the patched fit lives in this process (the default executor runs jobs in subprocesses)
    args = ["run", "--suite", "smoke", "--methods", "zeroshot", "--shots", "1,2", "--seeds", "1", "--tasks", str(tasks),
            "--executor", "inline"]
    result = bench(*args)
    assert result.exit_code == 1 and "RuntimeError: boom" in result.output
    status = sorted((r["shots"], r["status"]) for r in records(tasks))
    assert status == [(1, "ok"), (1, "ok"), (2, "failed"), (2, "failed")]
    assert all("boom" in r["error"] for r in records(tasks) if r["status"] == "failed")
    monkeypatch.setattr(ZeroShot, "fit", original)
    rerun = bench(*args)  # only the failed jobs run again
    assert rerun.exit_code == 0 and "2 already done, 2 to run" in rerun.output

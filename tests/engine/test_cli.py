"""The CLI end to end on the smoke suite: run → records → report, resume, failures, bad input."""

import json

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.data.fewshot import fewshot_digest
from tests.conftest import REPO, copy_tasks_with_test_grid

runner = CliRunner()


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """The repository's tasks file, copied and run from tmp_path: results land in
    tmp_path/results/<suite> (relative paths are relative to the working directory)."""
    monkeypatch.chdir(tmp_path)
    return copy_tasks_with_test_grid(tmp_path / "tasks.toml")


def bench(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def records(tasks, suite="smoke"):
    return [json.loads(p.read_text()) for p in sorted((tasks.parent / "results" / suite).glob("records/*/*/*.json"))]


@pytest.mark.parametrize("args, message", [
    (["run", "--suite", "smoke", "--methods", "zeroshoot"], "unknown method 'zeroshoot' (did you mean 'zeroshot'?)"),
    (["run", "--suite", "smoek"], "unknown suite 'smoek' (did you mean 'smoke'?)"),
    (["run", "--suite", "smoke", "--shots", "0"], "--shots values must be integers from 1 to"),
    (["run", "--suite", "smoke", "--seeds", "one"], "--seeds takes a comma-separated list of integers"),
    (["run", "--suite", "smoke", "--datasets", "dtd"], "unknown dataset 'dtd'"),
    (["run", "--suite", "smoke", "--backbone", "vit_b61"], "unknown backbone 'vit_b61' (did you mean 'vit_b16'?)"),
    (["list", "method"], "unknown list target 'method' (did you mean 'methods'?)"),
    (["report", "--suite", "smoke", "--format", "xls"], "unknown --format 'xls'"),
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


def test_protocol_typo_in_the_tasks_file_is_one_line_and_exit_2(tasks):
    text = tasks.read_text()
    smoke = text.index("[suites.smoke]")
    typo = text[:smoke] + text[smoke:].replace('protocol = "fewshot"', 'protocol = "fewshots"', 1)
    assert typo != text  # the repository's smoke suite declares its protocol
    tasks.write_text(typo)
    result = bench("run", "--suite", "smoke", "--dry-run", "--tasks", str(tasks))
    assert result.exit_code == 2, result.output
    assert "[suites.smoke]: unknown protocol 'fewshots' (did you mean 'fewshot'?)" in " ".join(result.output.split())
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def dry_run_labels(output: str) -> list[str]:
    return [line.split()[1] for line in output.splitlines() if line.startswith("  ") and "/" in line]


def test_dry_run_runs_nothing_and_lists_zeroshot_once_per_dataset(tasks):
    result = bench("run", "--suite", "smoke", "--methods", "zeroshot", "--dry-run", "--tasks", str(tasks))
    assert result.exit_code == 0 and "2 jobs, 0 already done, 2 to run" in result.output
    assert dry_run_labels(result.output) == ["zeroshot/smoke_shapes/any-shot", "zeroshot/smoke_textures/any-shot"]
    whole = dry_run_labels(bench("run", "--suite", "smoke", "--dry-run", "--tasks", str(tasks)).output)
    assert len(whole) == 2 + 5 * 2 * 3 * 2  # zeroshot once per dataset; 5 methods × datasets × shots × seeds
    assert sorted(label for label in whole if label.startswith("zeroshot/")) == \
        ["zeroshot/smoke_shapes/any-shot", "zeroshot/smoke_textures/any-shot"]
    assert records(tasks) == []


def test_run_resume_force_and_report(tasks):
    # --shots/--seeds select shot tables; the one zero-shot job per dataset belongs to all of them
    args = ["run", "--suite", "smoke", "--methods", "zeroshot", "--shots", "1,16", "--seeds", "1,2",
            "--tasks", str(tasks)]
    first = bench(*args)
    assert first.exit_code == 0, first.output
    done = records(tasks)
    assert len(done) == 2 and all(r["status"] == "ok" for r in done)
    assert sorted(r["dataset"] for r in done) == ["smoke_shapes", "smoke_textures"]
    for record in done:  # every field a record promises (README, Results and reports)
        for key in ("job_id", "method", "method_version", "dataset", "shots", "seed", "protocol", "backbone",
                    "status", "error", "metrics", "config", "split", "validation", "trainable_params",
                    "state_bytes", "timings", "peak_memory_bytes", "device", "git", "versions", "created_at"):
            assert key in record, key
        assert (record["shots"], record["seed"], record["protocol"]) == (0, 0, "fewshot")
        assert record["split"]["train_items"] == record["split"]["val_items"] == 0
        assert record["split"]["fewshot_digest"] == fewshot_digest([], [], "/")  # the empty draw
        chance = 100.0 / record["config"]["num_classes"]
        assert record["metrics"]["top1"] > 2 * chance  # the smoke backbone knows the smoke concepts
        assert record["config"]["backbone"]["quick_gelu"] is True
    again = bench(*args)
    assert "2 already done, 0 to run" in again.output and len(records(tasks)) == 2
    other_filters = bench("run", "--suite", "smoke", "--methods", "zeroshot", "--shots", "4", "--seeds", "2",
                          "--tasks", str(tasks))
    assert "2 jobs, 2 already done, 0 to run" in other_filters.output and len(records(tasks)) == 2
    forced = bench(*args, "--force")
    assert forced.exit_code == 0 and len(records(tasks)) == 4
    report = bench("report", "--suite", "smoke", "--tasks", str(tasks), "--out", str(tasks.parent / "r.md"))
    assert report.exit_code == 0 and "| zeroshot" in report.output
    assert "### 1-shot" in report.output and "### 16-shot" in report.output and "0-shot" not in report.output
    assert (tasks.parent / "r.md").read_text().strip() == report.stdout.strip()


def test_failed_job_is_recorded_and_the_grid_goes_on(tasks, monkeypatch):
    from methods.zeroshot import ZeroShot

    original = ZeroShot.fit

    def flaky(self, task, params):
        if task.dataset == "smoke_textures":
            raise RuntimeError("boom")
        return original(self, task, params)

    monkeypatch.setattr(ZeroShot, "fit", flaky)
    # inline: the patched fit lives in this process (the default executor runs jobs in subprocesses)
    args = ["run", "--suite", "smoke", "--methods", "zeroshot", "--tasks", str(tasks), "--executor", "inline"]
    result = bench(*args)
    assert result.exit_code == 1 and "RuntimeError: boom" in result.output
    assert "failed zeroshot/smoke_textures/any-shot: RuntimeError: boom" in result.output
    status = sorted((r["dataset"], r["status"]) for r in records(tasks))
    assert status == [("smoke_shapes", "ok"), ("smoke_textures", "failed")]
    assert all("boom" in r["error"] for r in records(tasks) if r["status"] == "failed")
    monkeypatch.setattr(ZeroShot, "fit", original)
    rerun = bench(*args)  # only the failed job runs again
    assert rerun.exit_code == 0 and "1 already done, 1 to run" in rerun.output

"""`bench run` and `bench status` through the CLI (with the fake runner behind the hidden --runner
option, so no model is loaded). The driver runs in this process; its workers are subprocesses."""

import os
import signal
import textwrap
import threading

import pytest
from typer.testing import CliRunner

from bench import locks
from bench.cli import app
from tests.scheduler.fake_runner import executions
from tests.scheduler.helpers import RUNNER, all_records, wait_for


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """A suite over two real dataset cards; the fake runner never reads their data. coop (a few-shot
    method: one job per cell, 12 in all) so an interrupt lands mid-grid. Run from tmp_path: relative
    paths are relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tasks.toml"
    path.write_text(textwrap.dedent("""
        default_suite = "t"
        [backbones.tiny]
        builtin = "smoke"
        [suites.t]
        datasets = ["dtd", "eurosat"]
        shots = [1, 2]
        seeds = [1, 2, 3]
        backbone = "tiny"
        data_root = "data"
        results_dir = "results"
        methods = ["coop"]
    """))
    return path


def bench(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_status_shows_the_rest(tasks, monkeypatch):
    results = tasks.parent / "results"
    monkeypatch.setenv("FAKE_SLEEP_S", "0.5")

    def press_ctrl_c():  # the driver is this process: Ctrl-C arrives as SIGINT in the main thread
        wait_for(lambda: len(all_records(results)) >= 2, timeout=60)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    run = CliRunner().invoke(app, ["run", "--tasks", str(tasks), "--gpus", "0", "--runner", RUNNER])
    presser.join()
    assert run.exit_code == 130, run.output
    assert "run the same command again to resume" in run.stderr + run.output
    done = all_records(results)
    assert 2 <= len(done) < 12 and all(r["status"] == "ok" for r in done)  # the interrupted job: no record
    assert not list((results / "locks").glob("*.lock"))

    status = bench("status", "--tasks", tasks)
    assert status.exit_code == 0, status.output
    assert f"12 jobs: {len(done)} done, 0 failed, 0 running, {12 - len(done)} pending" in status.output
    pending = sorted(set(_job_ids(tasks)) - {r["job_id"] for r in done})
    assert locks.try_lock(results, pending[0], where="gpu3#0") is not None  # we are a live holder
    status = bench("status", "--tasks", tasks)
    assert f"1 running, {11 - len(done)} pending" in status.output and "gpu3#0" in status.output


def test_zeroshot_runs_once_per_dataset_through_status_and_resume(tasks):
    tasks.write_text(tasks.read_text().replace('methods = ["coop"]', 'methods = ["zeroshot", "coop"]'))
    results = tasks.parent / "results"
    labels = _dry_run(tasks)
    assert len(labels) == 2 + 12 and sorted(l for l in labels if l.startswith("zeroshot/")) == \
        ["zeroshot/dtd/any-shot", "zeroshot/eurosat/any-shot"]
    run = bench("run", "--tasks", tasks, "--gpus", "0", "--runner", RUNNER)
    assert run.exit_code == 0, run.output
    zeroshot = [r for r in all_records(results) if r["method"] == "zeroshot"]
    assert sorted((r["dataset"], r["shots"], r["seed"], r["protocol"]) for r in zeroshot) == \
        [("dtd", 0, 0, "fewshot"), ("eurosat", 0, 0, "fewshot")]
    assert len(all_records(results)) == 14
    assert "14 jobs: 14 done, 0 failed, 0 running, 0 pending" in bench("status", "--tasks", tasks).output
    again = bench("run", "--tasks", tasks, "--shots", "2", "--seeds", "3", "--runner", RUNNER)
    assert "4 jobs, 4 already done, 0 to run" in again.output and len(all_records(results)) == 14
    assert sorted(executions(results)) == sorted(r["job_id"] for r in all_records(results))  # each ran once


def _dry_run(tasks):
    dry = bench("run", "--tasks", tasks, "--dry-run", "--runner", RUNNER)
    return [line.split()[1] for line in dry.output.splitlines() if line.startswith("  ") and "/" in line]


def _job_ids(tasks):
    dry = bench("run", "--tasks", tasks, "--dry-run", "--runner", RUNNER)
    return [line.split()[0] for line in dry.output.splitlines() if line.startswith("  ") and "/" in line]


@pytest.mark.parametrize("args, message", [
    (["--executor", "local", "--ray-address", "auto"], "--ray-address does not apply to --executor local"),
    (["--executor", "inline", "--gpus", "0,1"], "--gpus does not apply to --executor inline"),
    (["--force", "--retry-failed"], "--force and --retry-failed contradict each other"),
    (["--executor", "rey"], "unknown executor 'rey' (did you mean 'ray'?)"),
])
def test_bad_run_options_are_one_line_errors(tasks, args, message):
    result = bench("run", "--tasks", tasks, *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (tasks.parent / "results").exists()


def test_a_full_results_disk_stops_the_grid_with_one_line_and_exit_1(tasks, monkeypatch):
    import errno

    from bench.executors import base

    results = tasks.parent / "results"
    monkeypatch.setenv("FAKE_DISK_FULL_AFTER", "3")  # the workers' record writes fail from the 4th job on

    def full(*args, **kwargs):  # and so do the driver's (the failed record of the job whose worker died)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base, "write_record", full)
    result = CliRunner().invoke(app, ["run", "--tasks", str(tasks), "--runner", RUNNER, "--gpus", "0"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Traceback" not in out
    assert "done: 3 ok, 0 failed; this driver ran 3; 9 not run (9 stopped: the results folder took no more files" in out
    assert f"stopped early: cannot write to the results folder {results}: No space left on device" in out
    assert len(all_records(results)) == 3 and len(executions(results)) == 4  # no job started after the fault
    assert not list((results / "locks").glob("*.lock"))

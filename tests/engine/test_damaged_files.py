"""Hostile files in a results folder: damaged records and lock files are skipped with one warning line
naming each file, never fatal, and counted by `bench status`; a damaged lock blocks its job for at
most a few seconds and two racing drivers still never both take the job."""

import json
import logging
import os
import re
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from bench import locks, results
from bench.cli import app
from bench.executors.base import latest_record
from bench.jobs import expand
from bench.report import build, render
from bench.results import latest_per_job, read_records
from bench.scheduler import pending_jobs
from bench.status import damaged_note, status_table
from tests.conftest import copy_tasks_with_test_grid
from tests.engine.report_records import record, suite_at
from tests.scheduler.helpers import claims_won_in_a_race


def _without(rec: dict, key: str) -> str:
    return json.dumps({k: v for k, v in rec.items() if k != key})


def damage(folder, good: dict) -> list:
    """One damaged file of every kind next to `good`'s record; returns their paths."""
    kinds = {
        "foreign.json": b'{"hello": "world"}',
        "list.json": b"[1, 2, 3]",
        "no_status.json": _without(good, "status").encode(),
        "no_method.json": _without(good, "method").encode(),
        "no_metrics.json": _without(good, "metrics").encode(),
        "created_int.json": json.dumps({**good, "created_at": 5}).encode(),
        "status7.json": json.dumps({**good, "status": 7}).encode(),
        "shots_str.json": json.dumps({**good, "shots": "4"}).encode(),
        "invalid.json": b'{"job_id": "x", ',
        "binary.json": b"\xff\xfe\x00\x81 not utf-8",
        "empty.json": b"",
        "deep.json": b"[" * 100_000,
        # named like the good job's newest record, so readers that look a job up by id meet it first
        f"{good['job_id']}.20991231T000000.000000Z.json": json.dumps({**good, "status": "running"}).encode(),
    }
    paths = []
    for name, data in kinds.items():
        paths.append(folder / name)
        paths[-1].write_bytes(data)
    return paths


@pytest.fixture
def grid(smoke_config, tmp_path):
    """A smoke suite whose records folder holds one good record and every kind of damaged file."""
    results._warned.clear()  # warnings are once per file per process; these tests count them
    suite = suite_at(smoke_config, "smoke", tmp_path / "results")
    good = record(suite, "linear_probe", "smoke_shapes", 4, 1, 61.0)
    folder = next(suite.results_dir.glob("records/*/*"))
    return suite, good, damage(folder, good)


def warned_files(caplog) -> list[str]:
    return [line for line in caplog.messages if line.startswith("skipping damaged")]


def test_damaged_records_are_skipped_with_one_warning_each_and_counted(grid, caplog):
    suite, good, bad = grid
    skipped = []
    with caplog.at_level(logging.WARNING):
        found = read_records(suite.results_dir, skipped)
        read_records(suite.results_dir)  # a second scan does not warn again
    assert [r["job_id"] for r in found] == [good["job_id"]]
    assert sorted(skipped) == sorted(bad)
    lines = warned_files(caplog)
    assert len(lines) == len(bad) and all("\n" not in line for line in lines)
    for path in bad:
        assert sum(str(path) in line for line in lines) == 1, path
    assert all(path.exists() for path in bad)  # never deleted


def test_status_run_and_report_work_beside_damaged_records(grid):
    suite, good, bad = grid
    jobs = expand(suite)
    job = next(j for j in jobs if j.id == good["job_id"])
    _, totals, _, damaged = status_table(suite.results_dir, jobs)
    assert totals["done"] == 1 and totals["pending"] == len(jobs) - 1
    assert damaged_note(damaged) == [f"{len(bad)} damaged files skipped in {suite.results_dir / 'records'} "
                                     "(see warnings above)"]
    assert job not in pending_jobs(suite, jobs) and len(pending_jobs(suite, jobs)) == len(jobs) - 1
    assert set(latest_per_job(read_records(suite.results_dir))) == {good["job_id"]}
    assert latest_record(suite.results_dir, job)["created_at"] == good["created_at"]  # not the damaged newest
    report = build(suite)
    assert f"{len(bad)} files in records/ are not bench records" in "\n".join(report.footnotes)
    assert "61.00" in render(report)


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return copy_tasks_with_test_grid(tmp_path / "tasks.toml")


def test_cli_status_and_report_exit_0_and_show_each_damaged_file_as_one_plain_line(tasks, smoke_config):
    """A real subprocess, so bench's own logging setup (not pytest's) prints the warnings."""
    suite = suite_at(smoke_config, "smoke", tasks.parent / "results" / "smoke")
    good = record(suite, "linear_probe", "smoke_shapes", 4, 1, 61.0)
    bad = damage(next(suite.results_dir.glob("records/*/*")), good)
    lock = locks.lock_path(suite.results_dir, "somejob")
    lock.parent.mkdir(parents=True)
    lock.write_text('{"pid": "abc"}')
    code = "import sys; from bench.cli import app; sys.argv[0] = 'bench'; app()"
    out = subprocess.run([sys.executable, "-c", code, "status", "--suite", "smoke", "--tasks", str(tasks)],
                         cwd=tasks.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    warnings = out.stderr.splitlines()
    assert len(warnings) == len(bad) + 1  # one line per file, nothing else
    for path in [*bad, lock]:
        assert sum(str(path.relative_to(tasks.parent)) in line for line in warnings) == 1, (path, warnings)
    notes = out.stdout.splitlines()[-2:]  # the results folder as the tasks file gives it, maybe made absolute
    assert re.fullmatch(rf"{len(bad)} damaged files skipped in (\S*/)?results/smoke/records \(see warnings above\)",
                        notes[0]), notes
    assert re.fullmatch(r"1 damaged file skipped in (\S*/)?results/smoke/locks \(see warnings above\)", notes[1])
    report = CliRunner().invoke(app, ["report", "--suite", "smoke", "--tasks", str(tasks)], catch_exceptions=False)
    assert report.exit_code == 0 and "not bench records" in report.output


# ---------------------------------------------------------------- lock files
GARBAGE = {"text": "this is not json", "pid_str": '{"pid": "abc"}', "list": "[1, 2]",
           "pid_bool": json.dumps({"host": locks.HOST, "pid": True, "token": "t"}),
           "no_token": json.dumps({"host": locks.HOST, "pid": os.getpid()}), "binary": "\udcff",
           "pid_zero": json.dumps({"host": locks.HOST, "pid": 0, "token": "t"}),
           "pid_huge": json.dumps({"host": locks.HOST, "pid": 10**30, "token": "t"})}


def garbage_lock(results_dir, kind: str, age_s: float):
    path = locks.lock_path(results_dir, "job1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GARBAGE[kind].encode("utf-8", "surrogateescape"))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_damaged_lock_is_warned_about_once_and_taken_after_the_grace(tmp_path, kind, caplog):
    results._warned.clear()
    path = garbage_lock(tmp_path, kind, age_s=0)
    with caplog.at_level(logging.WARNING):
        assert locks.try_lock(tmp_path, "job1") is None  # brand new: a foreign writer may still be at it
        damaged = []
        assert locks.live_locks(tmp_path, damaged=damaged) == {} and damaged == [path]
        garbage_lock(tmp_path, kind, age_s=locks.DAMAGED_GRACE_S + 1)
        taken = locks.try_lock(tmp_path, "job1")
    assert taken is not None and json.loads(path.read_text())["token"] == taken.token
    assert [line for line in caplog.messages if str(path) in line] == [caplog.messages[0]]  # once, naming it
    assert "skipping damaged lock file" in caplog.messages[0]


def test_racing_drivers_never_both_take_a_job_behind_a_damaged_lock(tmp_path):
    for _ in range(5):
        garbage_lock(tmp_path, "pid_str", age_s=60)
        assert claims_won_in_a_race(tmp_path) == 1
        locks.lock_path(tmp_path, "job1").unlink()


def test_status_counts_damaged_locks_and_a_sweep_removes_old_ones(grid):
    suite, _, bad = grid
    old = garbage_lock(suite.results_dir, "text", age_s=60)
    _, _, _, damaged = status_table(suite.results_dir, expand(suite))
    assert old in damaged and len(damaged) == len(bad) + 1
    assert f"1 damaged file skipped in {suite.results_dir / 'locks'} (see warnings above)" in damaged_note(damaged)
    assert locks.sweep_stale(suite.results_dir) == 1 and not old.exists()

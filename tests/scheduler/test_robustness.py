"""Drivers as real processes: kill -9 mid-grid then rerun, two drivers on one results folder, and
Ctrl-C (SIGINT) stopping cleanly."""

import os
import signal
import time
from collections import Counter

from bench.locks import pid_alive
from tests.scheduler.fake_runner import executions
from tests.scheduler.helpers import all_records, record_counts, start_driver, wait_for

GRID = ["--datasets", "2", "--seeds", "6"]  # 12 jobs


def test_kill_9_mid_grid_loses_nothing_and_the_rerun_runs_only_unfinished(tmp_path):
    results = tmp_path / "results"
    driver = start_driver(results, *GRID, "--sleep", "1.0", "--gpus", "0,1")

    def both_workers_just_started_a_job():
        recorded = {r["job_id"] for r in all_records(results)}
        running = set(executions(results)) - recorded
        return len(recorded) >= 3 and len(running) == 2 and running

    # Kill while both workers are early in a 1 s job: a worker that outlived its driver would finish
    # that job and write its record; one that dies with the driver leaves it unrecorded.
    in_flight = wait_for(both_workers_just_started_a_job, every=0.01)
    workers = {r["worker"]["pid"] for r in all_records(results)}  # long-lived: still alive now
    assert all(pid_alive(pid) for pid in workers)
    driver.kill()  # SIGKILL: no cleanup code runs
    driver.wait()
    # Workers die with their driver (no orphan goes on writing records or holding claims).
    wait_for(lambda: all(not pid_alive(pid) for pid in workers), timeout=10)
    time.sleep(1.5)  # longer than a job: an orphan would have written its record by now
    finished = {r["job_id"] for r in all_records(results)}
    assert not finished & in_flight
    started_before = Counter(executions(results))
    assert 3 <= len(finished) < 12
    rerun = start_driver(results, *GRID, "--sleep", "0", "--gpus", "0,1")
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    assert f"ran {12 - len(finished)}" in out  # stale claims of the killed driver were recovered
    counts = record_counts(results)
    assert len(counts) == 12 and set(counts.values()) == {1} and all(s == "ok" for _, s in counts)
    rerun_started = Counter(executions(results)) - started_before
    assert set(rerun_started) == {f"fake-d{d}-1-{s}" for d in range(2) for s in range(6)} - finished
    assert not list((results / "locks").glob("*.lock"))


def test_two_drivers_on_one_results_folder_never_duplicate_a_job(tmp_path):
    results = tmp_path / "results"
    grid = ["--datasets", "3", "--seeds", "4", "--sleep", "0.3", "--gpus", "0,1"]
    drivers = [start_driver(results, *grid) for _ in range(2)]
    outputs = [d.communicate(timeout=90) for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    counts = record_counts(results)
    assert len(counts) == 12 and set(counts.values()) == {1} and all(s == "ok" for _, s in counts)
    assert sorted(Counter(executions(results)).values()) == [1] * 12  # and no job even started twice


def test_sigint_stops_cleanly_and_the_rerun_resumes(tmp_path):
    results = tmp_path / "results"
    driver = start_driver(results, *GRID, "--sleep", "0.5", "--gpus", "0")
    wait_for(lambda: len(all_records(results)) >= 2)
    os.kill(driver.pid, signal.SIGINT)
    out, err = driver.communicate(timeout=30)
    assert driver.returncode == 130 and "interrupted" in out, err
    records = all_records(results)
    assert records and all(r["status"] == "ok" for r in records)  # the interrupted job left no record
    assert not list((results / "locks").glob("*.lock"))  # and no claim
    rerun = start_driver(results, *GRID, "--gpus", "0")
    out, _ = rerun.communicate(timeout=60)
    assert f"ran {12 - len(records)}: {12 - len(records)} ok" in out
    assert set(record_counts(results).values()) == {1}

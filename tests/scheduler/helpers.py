"""Helpers for the scheduler tests: fake jobs and a fake runner (fake_runner.py) let executors, locks
and crash handling be tested in seconds without torch; these read records and start drivers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.scheduler.drive import RUNNER, fake_grid, fake_suite

__all__ = ["REPO", "RUNNER", "all_records", "claims_won_in_a_race", "fake_grid", "fake_suite", "record_counts",
           "start_driver", "subprocess_env", "wait_for"]

REPO = Path(__file__).resolve().parents[2]


def all_records(results_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("records/*/*/*.json"))]


def record_counts(results_dir: Path) -> Counter:
    """(job id, status) → how many records."""
    return Counter((r["job_id"], r["status"]) for r in all_records(results_dir))


def subprocess_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", **extra}


def start_driver(results_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.scheduler.drive", str(results_dir), *args],
                            cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")



def claims_won_in_a_race(results_dir: Path, job_id: str = "job1", threads: int = 8) -> int:
    """How many of `threads` threads, released at once, got the claim of one job (must be 1)."""
    import threading

    from bench import locks

    wins, barrier = [], threading.Barrier(threads)

    def race():
        barrier.wait()
        wins.append(locks.try_lock(results_dir, job_id))

    racers = [threading.Thread(target=race) for _ in range(threads)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    return sum(w is not None for w in wins)

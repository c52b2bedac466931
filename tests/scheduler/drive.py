"""A driver process for the scheduler tests: the same path as `bench run` (pending_jobs → execute on
an executor) over FakeJobs and the fake runner, without the CLI's torch import, so a test can start,
kill and rerun it in about a second.

    python -m tests.scheduler.drive RESULTS_DIR --datasets 3 --seeds 4 --sleep 0.3 --gpus 0,1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config import BackboneSpec, Suite
from bench.executors import make_executor
from bench.scheduler import execute, pending_jobs
from tests.scheduler.fake_runner import FakeJob

RUNNER = "tests.scheduler.fake_runner"


def fake_suite(results_dir: Path) -> Suite:
    return Suite(name="fake", datasets=(), shots=(1,), seeds=(1,), backbone=BackboneSpec("fake", builtin="fake"),
                 data_root=results_dir.parent / "data", results_dir=results_dir, methods=("fake",),
                 method_entries={})


def fake_grid(datasets: int, seeds: int, sleep: float) -> list[FakeJob]:
    return [FakeJob(f"d{d}", s, {"sleep": sleep}) for d in range(datasets) for s in range(seeds)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--gpus", default=None)
    parser.add_argument("--jobs-per-gpu", type=int, default=1)
    args = parser.parse_args(argv)
    suite = fake_suite(args.results_dir)
    todo = pending_jobs(suite, fake_grid(args.datasets, args.seeds, args.sleep))
    gpus = args.gpus.split(",") if args.gpus else None
    executor = make_executor("local", gpus=gpus, jobs_per_gpu=args.jobs_per_gpu, runner=RUNNER)
    try:
        result = execute(suite, todo, executor)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    print(f"ran {len(todo)}: {len(result.ok)} ok, {len(result.failed)} failed, {len(result.not_run)} not run",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

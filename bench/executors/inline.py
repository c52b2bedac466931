"""In-process executor (tests, debugging with pdb, profiling). No isolation: a segfault ends the grid;
an exception still becomes a failed record. Jobs are claimed like everywhere else, so an inline run
next to another driver never duplicates a job."""

from __future__ import annotations

import functools
import importlib
import logging
from contextlib import contextmanager

from bench import progress
from bench.executors.base import DEFAULT_RUNNER, Executor, Gate, Listener, log_path, summarize
from bench.locks import LockKeeper


@contextmanager
def job_log(path):
    """Logging (not raw prints: those stay on this terminal) of one job into its log file, from INFO
    up as a worker's log (the per-epoch lines of bench.train.log_epoch); the root level is restored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.setLevel(min(level, logging.INFO))  # the root is WARNING unless configured
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


class InlineExecutor(Executor):
    name = "inline"
    options = frozenset({"device", "feature_cache", "runner"})

    def __init__(self, device: str | None = None, feature_cache: bool = True, runner: str = DEFAULT_RUNNER):
        self.device, self.feature_cache, self.runner = device, feature_cache, runner

    def describe(self) -> str:
        return f"inline (in this process, device {self.device or 'auto'})"

    def run(self, suite, jobs: list, gate: Gate | None, listener: Listener, on_record=None) -> None:
        runner = importlib.import_module(self.runner)
        workspace = runner.Workspace(suite, device=self.device, feature_cache=self.feature_cache)
        where = f"inline:{workspace.device}"
        with LockKeeper() as keeper:
            for job in jobs:  # the caller orders them by dataset, so the workspace stays warm
                if gate is not None and not keeper.claim(gate.results_dir, job.id, where, job.label):
                    listener.skipped(job, "claimed by another process")
                    continue
                try:
                    if gate is not None and not gate.wanted(job):
                        listener.skipped(job, "finished by another process")
                        continue
                    listener.started(job, where)
                    sink = functools.partial(listener.progress, job)  # bench.progress reports → the view
                    with job_log(log_path(suite.results_dir, job.id)), progress.reporting_to(sink):
                        record = runner.run_job(job, workspace)
                finally:
                    keeper.release(job.id)
                if on_record:
                    on_record(record)
                listener.finished(job, summarize(record, where))

"""In-process executor (tests, debugging with pdb, profiling). No isolation: a segfault ends the grid;
an exception still becomes a failed record. Jobs are claimed like everywhere else, so an inline run
next to another driver never duplicates a job.

A job's timeout (job.timeout_s) is enforced with SIGALRM in the main thread: the job is interrupted
by an exception (its `finally` blocks run, the workspace stays) and gets a failed record saying so.
This stops Python code, sleeps and waits; a job stuck inside one long C call (a CUDA kernel, a
deadlocked collective) is stopped only when that call returns; the local executor kills its worker
process instead."""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import threading
import time
from contextlib import contextmanager

from bench import progress
from bench.errors import BenchError
from bench.executors.base import (DEFAULT_RUNNER, Executor, Gate, Listener, log_path, results_writes, summarize,
                                  timeout_error, write_crash_record)
from bench.locks import LockKeeper
from bench.results import now_iso

log = logging.getLogger(__name__)


class JobTimedOut(BaseException):
    """Raised by SIGALRM when an inline job runs past its timeout. Not an Exception, so the runner's
    `except Exception` (a failing job writes its own record) lets it through to the executor."""


@contextmanager
def alarm(seconds: float | None):
    """Raise JobTimedOut in the main thread after `seconds` (None: no limit)."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise JobTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        if any(job.timeout_s for job in jobs) and threading.current_thread() is not threading.main_thread():
            raise BenchError("--executor inline enforces timeout_min with SIGALRM, which works only in the main "
                             "thread; run it from the main thread or use --executor local")
        runner = importlib.import_module(self.runner)
        workspace = runner.Workspace(suite, device=self.device, feature_cache=self.feature_cache)
        where = f"inline:{workspace.device}"
        with LockKeeper() as keeper, results_writes(suite.results_dir):
            for job in jobs:  # the caller orders them by dataset, so the workspace stays warm
                if gate is not None and not keeper.claim(gate.results_dir, job.id, where, job.label):
                    listener.skipped(job, "claimed by another process")
                    continue
                try:
                    if gate is not None and not gate.wanted(job):
                        listener.skipped(job, "finished by another process")
                        continue
                    record = _run_one(runner, workspace, suite, job, where, listener)
                finally:
                    keeper.release(job.id)
                if on_record:
                    on_record(record)
                listener.finished(job, summarize(record, where))


def _run_one(runner, workspace, suite, job, where: str, listener: Listener) -> dict:
    """Run one claimed job and return its record; past its timeout, the failed record a job whose
    worker was killed gets (write_crash_record)."""
    started, t0 = now_iso(), time.perf_counter()
    listener.started(job, where)
    sink = functools.partial(listener.progress, job)  # bench.progress reports → the view
    try:
        with job_log(log_path(suite.results_dir, job.id)), progress.reporting_to(sink), alarm(job.timeout_s):
            return runner.run_job(job, workspace)
    except JobTimedOut:
        log.error("%s: %s", job.label, timeout_error(job))
        return write_crash_record(suite, job, timeout_error(job), where, time.perf_counter() - t0, started)

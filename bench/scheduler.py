"""From a list of jobs to records: pick the pending ones, check the data, hand them to an executor
(bench.executors), and read back what happened.

Resume policy (records are the truth): by default a job runs unless its latest record is ok, so a
rerun executes pending AND failed jobs; --retry-failed runs only jobs whose latest record failed;
--force runs everything again (a new record; the newest wins in reports)."""

from __future__ import annotations

import importlib
import logging
import tempfile
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bench import progress
from bench.config import Suite
from bench.errors import BenchError
from bench.executors import DEFAULT_RUNNER, Executor, Gate, Listener
from bench.executors.base import ResultsUnwritable
from bench.locks import sweep_stale
from bench.results import latest_per_job, now_iso, read_records

if TYPE_CHECKING:  # only for annotations
    from bench.jobs import Job

log = logging.getLogger(__name__)


def run_mode(force: bool = False, retry_failed: bool = False) -> str:
    if force and retry_failed:
        raise BenchError("--force and --retry-failed contradict each other; pick one")
    return "force" if force else "retry_failed" if retry_failed else "resume"


def pending_jobs(suite: Suite, jobs: list[Job], force: bool = False, retry_failed: bool = False) -> list[Job]:
    """The jobs a run would execute (see the module docstring for the policy)."""
    mode = run_mode(force, retry_failed)
    if mode == "force":
        return list(jobs)
    latest = latest_per_job(read_records(suite.results_dir))
    if mode == "retry_failed":
        return [job for job in jobs if job.id in latest and latest[job.id]["status"] == "failed"]
    return [job for job in jobs if job.id not in latest or latest[job.id]["status"] != "ok"]


def preflight(suite: Suite, jobs: list[Job], runner: str = DEFAULT_RUNNER) -> None:
    """Fail fast, before any job starts, when a dataset is unusable (the doctor's message). A runner
    module may bring its own `preflight(suite, jobs)` (the scheduler tests' fake runner does).
    Progress (bench.progress): one step "generating dataset NAME" per smoke dataset not yet there."""
    check_writable_folder(suite.results_dir, "results_dir", f"the results_dir of [suites.{suite.name}]")
    custom = getattr(importlib.import_module(runner), "preflight", None) if runner != DEFAULT_RUNNER else None
    if custom is not None:
        custom(suite, jobs)
        return
    from bench.backbone import check_backbone
    from bench.cache import cache_root
    from bench.data import load_card
    from bench.data.doctor import ensure_usable

    if cache_root().is_file():  # a read-only or full cache only slows a run down (bench.features)
        raise BenchError(f"the cache folder {cache_root()} is a file; point BENCH_CACHE at a folder")
    for name in sorted({job.dataset for job in jobs} | {t for job in jobs for t in job.targets}):
        card = load_card(name)
        if card.synthetic:  # smoke datasets are generated on first use
            with unwritable_as_error(f"dataset {name}", suite.data_root, f"data_root of [suites.{suite.name}]"):
                _generate(card, suite.data_root)
        ensure_usable(card, suite.data_root)
    check_backbone(suite.backbone)
    if suite.backbone.builtin:  # expanded once here, not in every worker at once
        from bench.smoke_backbone import ensure_smoke_backbone, smoke_backbone_dir

        with unwritable_as_error("the smoke backbone", smoke_backbone_dir(), "BENCH_CACHE"):
            ensure_smoke_backbone(smoke_backbone_dir())


def _generate(card, root: Path) -> None:
    from bench.data.synthetic import ensure_generated, is_complete

    if is_complete(card, root):
        ensure_generated(card, root)
    else:  # the live view shows the wait (bench.progress)
        with progress.step(f"generating dataset {card.name}"):
            ensure_generated(card, root)


@contextmanager
def unwritable_as_error(what: str, folder: Path, setting: str):
    """A generated asset (smoke data, the smoke backbone) that cannot be written: one line, exit 2."""
    try:
        yield
    except OSError as exc:
        raise BenchError(f"cannot write {what} under {folder}: {exc.strerror or exc}; point {setting} at a "
                         "writable folder") from None


def check_writable_folder(folder: Path, what: str, where: str) -> None:
    """`folder` exists (or is created) and takes a new file: a results folder that is a file, sits
    under a file, or is read-only fails here, before any job, not in every job's record write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = "it is a file" if folder.is_file() else exc.strerror or str(exc)
        raise BenchError(f"{what} {folder} is not a writable folder ({reason}); fix {where} or the folder's "
                         "permissions") from None


def by_dataset(jobs: list[Job]) -> list[Job]:
    """Grouped by dataset; within one, composed jobs after the others, so a mask job in the same run
    is fitted as itself before the composed jobs that reuse it (bench.runner.encoder_record)."""
    return sorted(jobs, key=lambda j: (str(j.backbone), j.dataset, j.encoder is not None, j.method, j.shots, j.seed))


@dataclass
class Outcome:
    ok: list = field(default_factory=list)  # records created during the run (by this driver or another)
    failed: list = field(default_factory=list)
    not_run: list = field(default_factory=list)  # jobs: interrupted, lost, or still running elsewhere
    ran_here: int = 0  # jobs this driver ran itself
    skipped: Counter = field(default_factory=Counter)  # why the others did not run here -> how many
    fault: str = ""  # why the executor stopped early (the results folder took no more files)


class Tally(Listener):
    """Counts what this driver did itself, passing every event on to the progress view."""

    def __init__(self, inner: Listener):
        self.inner, self.finished_here, self.skipped_why = inner, 0, Counter()
        self._lock = threading.Lock()

    def started(self, job, where):
        self.inner.started(job, where)

    def finished(self, job, summary):
        with self._lock:
            self.finished_here += 1
        self.inner.finished(job, summary)

    def skipped(self, job, reason):
        with self._lock:
            self.skipped_why[reason] += 1
        self.inner.skipped(job, reason)

    def progress(self, job, stage, done, total):
        self.inner.progress(job, stage, done, total)


def outcome(suite: Suite, jobs: list[Job], since: str, tally: Tally | None = None) -> Outcome:
    from bench.executors.base import latest_record

    result = Outcome(ran_here=tally.finished_here if tally else 0, skipped=tally.skipped_why if tally else Counter())
    for job in jobs:
        record = latest_record(suite.results_dir, job)
        if record is None or record["created_at"] < since:
            result.not_run.append(job)
        else:
            (result.ok if record["status"] == "ok" else result.failed).append(record)
    return result


def execute(suite: Suite, jobs: list[Job], executor: Executor, listener: Listener | None = None,
            mode: str = "resume") -> Outcome:
    """Run `jobs` (the pending ones) on `executor`; KeyboardInterrupt propagates after a clean stop."""
    since = now_iso()
    sweep_stale(suite.results_dir)
    tally, fault = Tally(listener or Listener()), ""
    try:
        executor.run(suite, by_dataset(jobs), Gate(suite.results_dir, mode, since), tally)
    except ResultsUnwritable as exc:
        fault = str(exc)
    result = outcome(suite, jobs, since, tally)
    result.fault = fault
    return result


def run_inline(suite: Suite, jobs: list[Job], on_done: Callable[[dict], None] | None = None,
               device=None, feature_cache: bool = True, runner: str = DEFAULT_RUNNER) -> list[dict]:
    """Run jobs in this process and return their records (tests and notebooks)."""
    from bench.executors.inline import InlineExecutor

    records = []

    def keep(record):
        records.append(record)
        if on_done:
            on_done(record)

    inline = InlineExecutor(device=device, feature_cache=feature_cache, runner=runner)
    inline.run(suite, by_dataset(jobs), None, Listener(), on_record=keep)
    return records

"""What every executor shares: the interface, the listener that progress views implement, the gate
that decides (after claiming a job's lock) whether the job still has to run, and the failed record a
driver writes when a worker process dies under a job."""

from __future__ import annotations

import logging
import platform
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bench.errors import UNWRITABLE
from bench.results import iter_job_records, job_fields, now_iso, write_record

log = logging.getLogger(__name__)
DEFAULT_RUNNER = "bench.runner"  # a module with Workspace(suite, device, feature_cache) and run_job(job, ws)
MODES = ("resume", "force", "retry_failed")


class Listener:
    """Progress events. Executors call these from any thread; implementations must be thread-safe."""

    def started(self, job, where: str) -> None:
        pass

    def finished(self, job, summary: dict) -> None:
        pass

    def skipped(self, job, reason: str) -> None:
        pass

    def progress(self, job, stage: str, done: int, total: int | None) -> None:
        """A slow step inside a job (or, job None, in the driver before any job starts) advanced:
        `done` of `total` units (total None: unknown). Sent by bench.progress.report."""


class Executor(ABC):
    """Runs jobs so that each leaves exactly one new record, claimed through `gate`."""

    name: ClassVar[str]
    options: ClassVar[frozenset] = frozenset()  # the make_executor keyword options this backend takes

    @abstractmethod
    def run(self, suite, jobs: list, gate: "Gate", listener: Listener) -> None:
        """Run `jobs` (already filtered to the pending ones); KeyboardInterrupt stops cleanly."""

    def describe(self) -> str:
        return self.name


def latest_record(results_dir: Path, job) -> dict | None:
    """The newest valid record of one job."""
    return next(iter_job_records(results_dir, job), None)


@dataclass(frozen=True)
class Gate:
    """Whether a job is still wanted, checked after its lock is held (another driver may have run it
    between our listing and our claim). Picklable: Ray and SLURM chunks carry it to their nodes."""

    results_dir: Path
    mode: str = "resume"  # resume: run pending + failed; force: run all; retry_failed: run failed only
    since: str = ""  # this run's start: a record created after it means the job is done for this run

    def wanted(self, job) -> bool:
        latest = latest_record(self.results_dir, job)
        if latest is not None and self.since and latest["created_at"] >= self.since:
            return False
        if self.mode == "force":
            return True
        if self.mode == "retry_failed":
            return latest is not None and latest["status"] == "failed"
        return latest is None or latest["status"] != "ok"


def summarize(record: dict, where: str = "") -> dict:
    """The few fields a progress view shows."""
    return {"status": record.get("status"), "top1": (record.get("metrics") or {}).get("top1"),
            "error": record.get("error"), "wall_s": (record.get("timings") or {}).get("wall_s"),
            "where": where or record.get("device", "")}


def log_path(results_dir: Path, job_id: str) -> Path:
    return Path(results_dir) / "logs" / f"{job_id}.log"


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def timeout_error(job) -> str:
    """The error of a job the executor stopped at job.timeout_s."""
    minutes = f"{job.timeout_s / 60:g}"
    return (f"timed out after {minutes} min (timeout_min = {minutes} for {job.method}; raise it in tasks.toml "
            f"[methods.{job.method}] or with --job-timeout)")


class ResultsUnwritable(Exception):
    """Records or claims cannot be written (disk full, read-only): every further job would fail the
    same way, so the executor stops taking jobs and the run ends with exit code 1 and this message."""


@contextmanager
def results_writes(results_dir: Path):
    """Turn an OSError that means "the results folder takes no files" into ResultsUnwritable."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        raise ResultsUnwritable(f"cannot write to the results folder {results_dir}: {exc.strerror}; "
                                "free space (or fix its permissions) and run the same command again") from None


def write_crash_record(suite, job, error: str, where: str, wall_s: float, started: str) -> dict:
    """A failed record for a job whose worker process died (segfault, OOM kill, os._exit, killed at
    its timeout) or, inline, that was stopped at its timeout. If the job wrote its own record before
    that, the record stands and is returned instead."""
    latest = latest_record(suite.results_dir, job)
    if latest is not None and latest["created_at"] >= started:
        return latest
    logfile = log_path(suite.results_dir, job.id)
    record = {**job_fields(job, suite.name), "status": "failed", "error": error, "metrics": {}, "device": where,
              "host": platform.node(), "timings": {"wall_s": wall_s}, "artifacts": [],
              "log": str(logfile.relative_to(suite.results_dir)), "log_tail": log_tail(logfile),
              "created_at": now_iso()}
    write_record(suite.results_dir, record)
    return record

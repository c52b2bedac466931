"""A runner module for scheduler tests: same interface as bench.runner (Workspace, run_job, plus an
optional preflight) but no torch, so a worker starts in about a second. A job's behaviour comes from
job.params["fake"] (tests that build jobs themselves) or $FAKE_SLEEP_S (jobs from `bench run`).

Every execution appends one line to <results_dir>/../executions.log (start) so tests can count how
often a job actually started, including runs that were killed before writing a record."""

from __future__ import annotations

import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import now_iso, write_record


@dataclass(frozen=True)
class FakeJob:
    """Duck-types bench.jobs.Job (the executors only read these attributes)."""

    dataset: str
    seed: int
    fake: dict = field(default_factory=dict)
    method: str = "fake"
    shots: int = 1
    timeout_s: float | None = None  # the executor kills the job after this long
    encoder = None  # not a composed job (bench.jobs.Job.encoder)

    base = property(lambda self: self.method)
    version = 1
    protocol = "fewshot"  # write_crash_record reads it
    backbone = property(lambda self: {"builtin": "fake"})
    params = property(lambda self: {"fake": self.fake})
    id = property(lambda self: f"{self.method}-{self.dataset}-{self.shots}-{self.seed}")
    label = property(lambda self: f"{self.method}/{self.dataset}/{self.shots}shot/seed{self.seed}")


class Workspace:
    def __init__(self, suite, device=None, feature_cache=True):
        if os.environ.get("FAKE_BROKEN_WORKSPACE"):
            raise RuntimeError("the backbone does not load")
        self.suite, self.device = suite, device or "cpu"
        self.created = time.time()


def preflight(suite, jobs) -> None:
    """Nothing to check: fake jobs read no data."""


def executions(results_dir: Path) -> list[str]:
    path = Path(results_dir).parent / "executions.log"
    return path.read_text().split() if path.exists() else []


def fake_top1(job_id: str) -> float:
    return float(sum(map(ord, job_id)) % 1000) / 10  # deterministic, differs between jobs


def run_job(job, workspace) -> dict:
    behaviour = dict((job.params or {}).get("fake") or {})
    with open(Path(workspace.suite.results_dir).parent / "executions.log", "a") as log:
        log.write(f"{job.id}\n")
    print(f"fake job {job.id} running", flush=True)  # lands in logs/<job_id>.log
    if behaviour.get("ignore_sigterm"):  # a hang that only SIGKILL ends (local executor only)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(behaviour.get("sleep", os.environ.get("FAKE_SLEEP_S", 0))))
    record = {"job_id": job.id, "suite": workspace.suite.name, "method": job.method, "dataset": job.dataset,
              "shots": job.shots, "seed": job.seed, "protocol": job.protocol, "backbone": job.backbone,
              "params": job.params, "metrics": {}, "error": None, "device": str(workspace.device),
              "worker": {"pid": os.getpid(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                         "workspace_created": workspace.created, "end": time.time()}}
    crash = behaviour.get("crash")
    try:
        if crash == "exit":
            os._exit(7)
        if crash == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if crash == "raise":
            raise RuntimeError("boom from a fake job")
        record.update(status="ok", metrics={"top1": fake_top1(job.id)})
    except Exception as exc:  # as bench.runner does: an exception is a failed record
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["timings"] = {"wall_s": 0.0}
    record["created_at"] = now_iso()
    if os.environ.get("FAKE_DISK_FULL_AFTER") and len(executions(workspace.suite.results_dir)) > int(
            os.environ["FAKE_DISK_FULL_AFTER"]):  # the results folder's disk is full from then on
        raise OSError(28, "No space left on device")
    write_record(workspace.suite.results_dir, record)
    return record

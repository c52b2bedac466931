"""The fake runner (tests/scheduler/fake_runner.py) plus bench.progress reports, the way the real
runner's backbone loading and feature encoding make them: a step without a count, then a counted
step of `PROGRESS_TOTAL` units. A job with fake={"progress_crash": True} dies after its reports."""

from __future__ import annotations

import os

from bench import progress
from tests.scheduler.fake_runner import Workspace, preflight  # noqa: F401  (the runner interface)
from tests.scheduler.fake_runner import run_job as fake_run_job

PROGRESS_TOTAL = 5


def run_job(job, workspace) -> dict:
    with progress.step(f"loading fake backbone for {job.dataset}"):
        pass
    for done in range(PROGRESS_TOTAL + 1):
        progress.report(f"encoding {job.dataset}/test", done, PROGRESS_TOTAL)
    if (job.params.get("fake") or {}).get("progress_crash"):
        os._exit(9)
    return fake_run_job(job, workspace)

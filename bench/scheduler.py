"""Executors that run a grid of jobs. `inline` runs them in this process, grouped by dataset so the
backbone and feature caches stay warm."""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Callable

from bench.config import Suite
from bench.data import load_card
from bench.jobs import Job
from bench.results import finished_ids
from bench.runner import Workspace, run_job

log = logging.getLogger(__name__)


def pending_jobs(suite: Suite, jobs: list[Job], force: bool = False) -> list[Job]:
    """Resume is the default: jobs whose latest record is ok are skipped unless forced."""
    if force:
        return list(jobs)
    done = finished_ids(suite.results_dir)
    return [job for job in jobs if job.id not in done]


def preflight(suite: Suite, jobs: list[Job]) -> None:
    """Fail fast, before any job starts, when a dataset is unusable (the doctor's message)."""
    from bench.data.doctor import ensure_usable

    for name in sorted({job.dataset for job in jobs}):
        card = load_card(name)
        if card.synthetic:  # smoke datasets are generated on first use
            from bench.data.synthetic import ensure_generated

            ensure_generated(card, suite.data_root)
        ensure_usable(card, suite.data_root)


def by_dataset(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda j: (j.dataset, j.method, j.shots, j.seed))


def run_inline(suite: Suite, jobs: list[Job], on_done: Callable[[dict], None] | None = None,
               device=None, feature_cache: bool = True) -> list[dict]:
    workspace = Workspace(suite, device=device, feature_cache=feature_cache)
    records = []
    for _, group in groupby(by_dataset(jobs), key=lambda j: j.dataset):
        for job in group:
            record = run_job(job, workspace)
            records.append(record)
            if on_done:
                on_done(record)
    return records

"""Fabricated result records for report tests: real job ids from the suite, hand-chosen numbers."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

from bench.jobs import job_for
from bench.results import write_record

_clock = itertools.count(1)


def suite_at(config, name: str, results: Path):
    from tests.conftest import TEST_GRID

    grid = TEST_GRID if name == "smoke" else {}
    return dataclasses.replace(config.suite(name), results_dir=Path(results), **grid)


def record(suite, method, dataset, shots, seed, top1, *, params=None, validation="none", weights="ab" * 32,
           split_digest=None, fewshot_digest=None, torch_version="2.14.1", extra_metrics=None, version=None,
           **fields):
    """One ok record for the suite's job of that cell (params= overrides make it another config)."""
    job = job_for(suite, method, dataset, shots, seed, suite.backbone.identity())
    job = dataclasses.replace(job, params={**job.params, **(params or {})}) if params else job
    job = dataclasses.replace(job, version=version) if version is not None else job
    tick = next(_clock)
    rec = {"schema": 1, "job_id": job.id, "suite": suite.name, "method": job.method, "base_method": job.base,
           "method_version": job.version, "dataset": job.dataset, "shots": job.shots, "seed": job.seed,
           "backbone": job.backbone, "params": job.params, "protocol": job.protocol, "status": "ok",
           "error": None, "metrics": {"top1": top1, **(extra_metrics or {})}, "validation": validation,
           "config": {"backbone": {**job.backbone, "weights_sha256": weights}},
           "split": {"split_digest": split_digest or f"split-{dataset}",
                     "fewshot_digest": fewshot_digest or f"fs-{dataset}-{job.shots}-{job.seed}", "test_items": 100},
           "trainable_params": fields.pop("trainable_params", 0), "state_bytes": fields.pop("state_bytes", 0),
           "timings": {"fit_s": fields.pop("fit_s", 1.0), "wall_s": 2.0},
           "peak_memory_bytes": fields.pop("peak_memory_bytes", 2**30),
           "git": {"sha": fields.pop("sha", "0123456789abcdef"), "dirty": fields.pop("dirty", False)},
           "versions": {"bench": "0.1.0", "torch": torch_version, "open_clip": "3.3.0"},
           "created_at": fields.pop("created_at", f"2026-11-01T00:00:00.{tick:06d}+00:00"), **fields}
    write_record(suite.results_dir, rec)
    return rec

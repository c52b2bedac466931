"""Executors run a list of jobs; each job leaves exactly one new record (ok or failed).

    executor = make_executor("local", gpus=["0", "1"], jobs_per_gpu=2)
    executor.run(suite, jobs, gate, listener)

- inline: in this process (tests, pdb).
- local (default): one worker subprocess per GPU slot on this machine (bench.executors.local).
- ray: chunks as Ray tasks with fractional GPUs on a Ray cluster (bench.executors.ray_cluster).
- slurm: a submitit job array of chunks, each running `local` on its allocation (bench.executors.slurm).

Every backend claims a job through a lock file (bench.locks) and re-checks the gate before running it,
so several drivers, array tasks or nodes can share one results folder.
"""

from __future__ import annotations

import importlib

from bench.errors import BenchError, unknown
from bench.executors.base import DEFAULT_RUNNER, MODES, Executor, Gate, Listener

__all__ = ["BACKENDS", "DEFAULT_RUNNER", "MODES", "Executor", "Gate", "Listener", "make_executor"]

BACKENDS = {
    "local": ("bench.executors.local", "LocalExecutor"),
    "inline": ("bench.executors.inline", "InlineExecutor"),
    "ray": ("bench.executors.ray_cluster", "RayExecutor"),
    "slurm": ("bench.executors.slurm", "SlurmExecutor"),
}
FLAGS = {"gpus": "--gpus", "jobs_per_gpu": "--jobs-per-gpu", "ray_address": "--ray-address",
         "chunk_size": "--chunk-size", "slurm_partition": "--slurm-partition",
         "slurm_timeout_min": "--slurm-timeout-min", "slurm_gpus": "--slurm-gpus", "device": "--device"}


def make_executor(name: str, **options) -> Executor:
    """Build a backend from the options the user set (None = not set). An option the backend does not
    take is an error, so `--ray-address` with `--executor local` does not pass silently."""
    if name not in BACKENDS:
        raise unknown("executor", name, BACKENDS)
    module, attr = BACKENDS[name]
    cls = getattr(importlib.import_module(module), attr)
    given = {key: value for key, value in options.items() if value is not None}
    extra = sorted(set(given) - cls.options)
    if extra:
        flags = ", ".join(FLAGS.get(key, key) for key in extra)
        raise BenchError(f"{flags} does not apply to --executor {name}; drop it or pick another executor")
    return cls(**given)

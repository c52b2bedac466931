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
import re

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
    for key, value in given.items():
        check_option(key, value, name)
    extra = sorted(set(given) - cls.options)
    if extra:
        flags = ", ".join(FLAGS.get(key, key) for key in extra)
        raise BenchError(f"{flags} does not apply to --executor {name}; drop it or pick another executor")
    return cls(**given)


POSITIVE = ("jobs_per_gpu", "chunk_size", "slurm_timeout_min", "slurm_gpus")
GPU_ID = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z-]+")  # what CUDA_VISIBLE_DEVICES accepts
TORCH_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps|xpu(:\d+)?")


def check_option(key: str, value, executor: str) -> None:
    """An option's value, checked before anything starts (a bad --gpus would otherwise run on a
    device named "gpuabc")."""
    flag = FLAGS.get(key, key)
    if key in POSITIVE and value < 1:
        raise BenchError(f"{flag} must be at least 1, got {value}")
    if key == "gpus":
        bad = [gpu for gpu in value if not GPU_ID.fullmatch(gpu)]
        if bad:
            raise BenchError(f"--gpus {','.join(value)}: '{bad[0]}' is not a GPU index (e.g. --gpus 0,1) or UUID")
    if key == "device" and not TORCH_DEVICE.fullmatch(value):
        raise BenchError(f"--device {value}: not a device; use cpu, cuda, cuda:N or mps")
    if key == "device" and executor != "inline" and value not in ("cpu", "cuda") and not value.startswith("cuda:"):
        raise BenchError(f"--device {value}: --executor {executor} runs on cpu or its GPUs; use --device cpu "
                         "or --executor inline")

"""SLURM executor through submitit: one job array whose tasks are chunks of one (backbone, dataset);
each task runs the local executor on its allocation (all GPUs SLURM gave it, `jobs_per_gpu` workers
each), claiming jobs through the same lock files as every other executor. A task that hits its time
limit or is preempted is requeued by submitit (ChunkTask.checkpoint) and resumes where it stopped:
jobs with a record from this run are skipped, never retried.

The driver waits and shows progress from the shared results folder; Ctrl-C cancels the array."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from bench.errors import BenchError
from bench.executors.base import DEFAULT_RUNNER, Executor, Gate, Listener
from bench.executors.chunks import Watcher, check_visible, make_chunks, run_chunk

log = logging.getLogger(__name__)

try:
    import submitit
except ImportError:  # the executor explains what to install when it is chosen
    submitit = None


class ChunkTask(submitit.helpers.Checkpointable if submitit else object):
    """The callable submitit pickles. checkpoint() (inherited) resubmits it with the same arguments."""

    def __call__(self, suite, jobs, gate, options):
        return run_chunk(suite, jobs, gate, options)


class SlurmExecutor(Executor):
    name = "slurm"
    options = frozenset({"slurm_partition", "slurm_timeout_min", "slurm_gpus", "jobs_per_gpu", "chunk_size",
                         "feature_cache", "runner", "device", "cluster", "max_parallel", "poll_s"})

    def __init__(self, slurm_partition: str | None = None, slurm_timeout_min: int = 240, slurm_gpus: int = 1,
                 jobs_per_gpu: int = 1, chunk_size: int | None = None, feature_cache: bool = True,
                 runner: str = DEFAULT_RUNNER, device: str | None = None, cluster: str | None = None,
                 max_parallel: int | None = None, poll_s: float = 5.0):
        if submitit is None:
            raise BenchError("the slurm executor needs submitit: pip install 'bench[slurm]'")
        if cluster is None and shutil.which("sbatch") is None:
            raise BenchError("--executor slurm: no `sbatch` on this machine; run from a SLURM login node")
        self.cluster, self.partition, self.timeout_min = cluster or "slurm", slurm_partition, slurm_timeout_min
        self.gpus, self.chunk_size, self.max_parallel, self.poll_s = slurm_gpus, chunk_size, max_parallel, poll_s
        self.chunk_options = {"jobs_per_gpu": jobs_per_gpu, "feature_cache": feature_cache, "runner": runner,
                              "device": device}

    def describe(self) -> str:
        return (f"slurm ({self.cluster}: partition {self.partition or 'default'}, {self.gpus} GPU(s) per task, "
                f"{self.timeout_min} min)")

    def _executor(self, folder: Path):
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        params = {"timeout_min": self.timeout_min, "gpus_per_node": self.gpus, "nodes": 1, "tasks_per_node": 1,
                  "name": "bench"}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.max_parallel:
            params["slurm_array_parallelism"] = self.max_parallel
        executor.update_parameters(**params)
        return executor

    def run(self, suite, jobs: list, gate: Gate, listener: Listener) -> None:
        chunks = make_chunks(jobs, self.chunk_size)
        executor = self._executor(Path(gate.results_dir) / "slurm")
        n = len(chunks)
        submitted = executor.map_array(ChunkTask(), [suite] * n, chunks, [gate] * n, [self.chunk_options] * n)
        log.info("slurm: submitted %d array task(s): %s", n, submitted[0].job_id.split("_")[0] if n else "-")
        watcher, by_id = Watcher(gate.results_dir, jobs, gate.since), {job.id: job for job in jobs}
        try:
            while not all(job.done() for job in submitted):
                watcher.poll(listener)
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for job in submitted:
                job.cancel(check=False)
            raise
        watcher.poll(listener)
        for job, chunk in zip(submitted, chunks):
            try:
                check_visible(gate.results_dir, by_id, job.result())
            except BenchError:
                raise
            except Exception as exc:  # submitit's FailedJobError / UncompletedJobError
                log.error("slurm task %s (%d %s job(s)) failed: %s; unfinished jobs stay pending; its log: %s",
                          job.job_id, len(chunk), chunk[0].dataset, str(exc).splitlines()[0],
                          job.paths.stderr)

"""Ray executor: chunks of one (backbone, dataset) become Ray tasks that each take 1/jobs_per_gpu of a
GPU. A chunk runs its jobs in one worker subprocess on the node (bench.executors.chunks.run_chunk), so
a crash still costs one job. Ray never retries on its own (max_retries=0, retry_exceptions=False):
a lost chunk leaves its unfinished jobs pending for the next run, never silently rerun.

results_dir (and ideally BENCH_CACHE) must be on a filesystem every node shares; the driver checks
that it can see each record a node reports."""

from __future__ import annotations

import logging
import os

from bench.errors import BenchError
from bench.executors.base import DEFAULT_RUNNER, Executor, Gate, Listener
from bench.executors.chunks import Watcher, check_visible, make_chunks, run_chunk
from bench.executors.plugins import ENV, plugin_names

log = logging.getLogger(__name__)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BenchError("the ray executor needs Ray: pip install 'bench[ray]'") from None
    return ray


class RayExecutor(Executor):
    name = "ray"
    options = frozenset({"ray_address", "jobs_per_gpu", "chunk_size", "feature_cache", "runner", "device"})

    def __init__(self, ray_address: str | None = None, jobs_per_gpu: int = 1, chunk_size: int | None = None,
                 feature_cache: bool = True, runner: str = DEFAULT_RUNNER, device: str | None = None):
        self.address, self.jobs_per_gpu, self.chunk_size = ray_address, jobs_per_gpu, chunk_size
        self.worker_options = {"feature_cache": feature_cache, "runner": runner, "device": device}

    def describe(self) -> str:
        return f"ray ({self.address or 'local cluster'}, {self.jobs_per_gpu} job(s) per GPU)"

    def run(self, suite, jobs: list, gate: Gate, listener: Listener) -> None:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
        try:
            self._run(ray, suite, jobs, gate, listener)
        finally:
            if started_here:
                ray.shutdown()

    def _task_options(self, ray) -> tuple[dict, int]:
        """Task resources and how many tasks the cluster runs at once."""
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        extra = {"runtime_env": {"env_vars": {ENV: os.environ[ENV]}}} if plugin_names() else {}
        if gpus and self.worker_options["device"] != "cpu":
            return {"num_gpus": 1.0 / self.jobs_per_gpu, "num_cpus": 1, **extra}, gpus * self.jobs_per_gpu
        return {"num_gpus": 0, "num_cpus": 1, **extra}, max(1, int(resources.get("CPU", 1)))

    def _run(self, ray, suite, jobs, gate, listener) -> None:
        options, slots = self._task_options(ray)
        task = ray.remote(run_chunk).options(max_retries=0, retry_exceptions=False, **options)
        chunk_options = {**self.worker_options, "jobs_per_gpu": 1}
        pending = {task.remote(suite, chunk, gate, chunk_options): chunk
                   for chunk in make_chunks(jobs, self.chunk_size, slots)}
        log.info("ray: %d chunks over %d slot(s), task options %s", len(pending), slots, options)
        watcher, by_id = Watcher(gate.results_dir, jobs, gate.since), {job.id: job for job in jobs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                watcher.poll(listener)
                for ref in ready:
                    chunk = pending.pop(ref)
                    try:
                        check_visible(gate.results_dir, by_id, ray.get(ref))
                    except ray.exceptions.RayError as exc:
                        log.error("ray chunk of %d %s job(s) was lost (%s); unfinished ones stay pending",
                                  len(chunk), chunk[0].dataset, type(exc).__name__)
            watcher.poll(listener)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

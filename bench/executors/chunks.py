"""Pieces the cluster executors (Ray, SLURM) share: cutting the grid into chunks of one
(backbone, dataset) each, the function a chunk runs on its node, and a driver-side watcher that turns
the shared results folder (records + lock files) into progress events."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from pathlib import Path

from bench.executors.base import Gate, Listener, latest_record, summarize
from bench.executors.local import group_key
from bench.locks import is_stale, lock_dir, read_lock
from bench.results import read_record

log = logging.getLogger(__name__)


def make_chunks(jobs: list, chunk_size: int | None, slots: int | None = None) -> list[list]:
    """Each chunk holds jobs of one (backbone, dataset), at most chunk_size of them. Without a size:
    with `slots`, about four chunks per slot over the grid (slots stay busy to the end while a chunk
    still reuses its warm worker); without, one chunk per (backbone, dataset)."""
    groups: dict[tuple, list] = {}
    for job in jobs:
        groups.setdefault(group_key(job), []).append(job)
    if chunk_size is None and slots:
        chunk_size = max(1, math.ceil(len(jobs) / (4 * slots)))
    size = chunk_size or max(1, len(jobs))
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


class Collect(Listener):
    """Remembers what a chunk finished, to send back to the driver."""

    def __init__(self):
        self.done: list[tuple[str, str]] = []
        self._mutex = threading.Lock()

    def finished(self, job, summary: dict) -> None:
        with self._mutex:
            self.done.append((job.id, summary["status"]))


def run_chunk(suite, jobs: list, gate: Gate, options: dict) -> dict:
    """Runs on a cluster node: the local executor over this chunk, on the devices the cluster gave
    us (CUDA_VISIBLE_DEVICES). Returns the host and the (job id, status) pairs it finished."""
    from bench.executors.local import LocalExecutor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    collect = Collect()
    LocalExecutor(**options).run(suite, jobs, gate, collect)
    return {"host": socket.gethostname(), "pid": os.getpid(), "done": collect.done}


def check_visible(results_dir: Path, jobs_by_id: dict, result: dict) -> None:
    """Records a node wrote must be visible to the driver; otherwise results_dir is not shared."""
    from bench.errors import BenchError

    for job_id, _ in result.get("done", []):
        if latest_record(results_dir, jobs_by_id[job_id]) is None:
            raise BenchError(f"node {result.get('host')} finished job {job_id} but its record is not under "
                             f"{results_dir} here: put results_dir on a filesystem every node shares")


class Watcher:
    """Polls records and lock files of the given jobs and reports new starts and finishes. Lists each
    records/<method>/<dataset> folder once per poll and reads only record files it has not seen, so
    polling a thousand-job grid on a network filesystem stays cheap."""

    def __init__(self, results_dir: Path, jobs: list, since: str):
        self.results_dir, self.since = Path(results_dir), since
        self.open = {job.id: job for job in jobs}  # not yet seen finished
        self.running: set[str] = set()
        self.seen: set[str] = set()  # record file names already read

    def poll(self, listener: Listener) -> None:
        for folder in sorted({(job.method, job.dataset) for job in self.open.values()}):
            path = self.results_dir / "records" / folder[0] / folder[1]
            for name in sorted(os.listdir(path)) if path.is_dir() else []:
                job = self.open.get(name.split(".", 1)[0])
                if job is None or name in self.seen or not name.endswith(".json"):
                    continue
                self.seen.add(name)
                record = read_record(path / name)  # None for a damaged file (warned once)
                if record is not None and record["created_at"] >= self.since:
                    del self.open[job.id]
                    self.running.discard(job.id)
                    listener.finished(job, summarize(record))
        folder = lock_dir(self.results_dir)
        for path in folder.glob("*.lock") if folder.is_dir() else []:
            job = self.open.get(path.stem)
            if job is None or path.stem in self.running or is_stale(path):
                continue
            info = read_lock(path) or {}
            self.running.add(path.stem)
            listener.started(job, f"{info.get('host', '?')}:{info.get('where', '?')}")



"""The default executor: every visible GPU gets `jobs_per_gpu` worker slots; each slot owns one worker
subprocess with CUDA_VISIBLE_DEVICES set to its GPU, so an OOM or a segfault costs one job, not the
grid. Slots pull jobs from a queue grouped by (backbone, dataset) and stay on their dataset while it
has jobs, so a worker's backbone and features stay warm. A CPU-only machine runs `jobs_per_gpu`
CPU workers (at least one)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass

from bench.errors import BenchError
from bench.executors.base import DEFAULT_RUNNER, Executor, Gate, Listener, ResultsUnwritable
from bench.executors.handle import WorkerHandle, run_claimed
from bench.locks import LockKeeper
from bench.worker import WorkerSpec

log = logging.getLogger(__name__)


def group_key(job) -> tuple:
    return json.dumps(job.backbone, sort_keys=True), job.dataset


def visible_gpus() -> list[str]:
    """GPU ids this process may use: $CUDA_VISIBLE_DEVICES when set (SLURM and Ray set it), else
    whatever torch counts."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class Slot:
    where: str  # shown in progress views and written into lock files, e.g. gpu1#0
    env: dict


def plan_slots(gpus: list[str] | None, jobs_per_gpu: int, device: str | None) -> list[Slot]:
    if device and device.startswith("cuda:"):
        raise BenchError(f"--device {device}: the local executor pins devices itself; use --gpus {device[5:]}")
    if device == "cpu":  # an empty CUDA_VISIBLE_DEVICES hides the GPUs from a CPU run
        slots = [(f"cpu#{k}", {"CUDA_VISIBLE_DEVICES": ""}) for k in range(jobs_per_gpu)]
    else:
        gpus = visible_gpus() if gpus is None else gpus
        slots = ([(f"gpu{gpu}#{k}", {"CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpus for k in range(jobs_per_gpu)]
                 or [(f"cpu#{k}", {}) for k in range(jobs_per_gpu)])
    # Each torch process would otherwise start one thread per core: N workers would oversubscribe.
    threads = {} if "OMP_NUM_THREADS" in os.environ else {
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(slots)))}
    return [Slot(where, {**env, **threads}) for where, env in slots]


class AffinityQueue:
    """Jobs grouped by (backbone, dataset). A slot keeps taking jobs of its current group; a slot
    with no group (or an exhausted one) joins the group with the most jobs per slot already on it."""

    def __init__(self, jobs: list):
        self._groups: OrderedDict[tuple, deque] = OrderedDict()
        for job in jobs:
            self._groups.setdefault(group_key(job), deque()).append(job)
        self._slots_on: dict[tuple, int] = {key: 0 for key in self._groups}
        self._mutex = threading.Lock()

    def next(self, current: tuple | None):
        """(job, its group) or (None, None) when every group is empty."""
        with self._mutex:
            if current is not None and self._groups.get(current):
                return self._groups[current].popleft(), current
            live = [key for key, jobs in self._groups.items() if jobs]
            if not live:
                return None, None
            key = max(live, key=lambda k: len(self._groups[k]) / (self._slots_on[k] + 1))
            if current is not None:
                self._slots_on[current] -= 1
            self._slots_on[key] += 1
            return self._groups[key].popleft(), key


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (SLURM preemption, `kill`) stops the grid the way Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class LocalExecutor(Executor):
    name = "local"
    options = frozenset({"gpus", "jobs_per_gpu", "device", "feature_cache", "runner"})

    def __init__(self, gpus: list[str] | None = None, jobs_per_gpu: int = 1, device: str | None = None,
                 feature_cache: bool = True, runner: str = DEFAULT_RUNNER):
        self.slots = plan_slots(gpus, jobs_per_gpu, device)
        self.device, self.feature_cache, self.runner = device, feature_cache, runner

    def describe(self) -> str:
        return f"local: {len(self.slots)} worker slot(s) ({', '.join(s.where for s in self.slots)})"

    def run(self, suite, jobs: list, gate: Gate, listener: Listener) -> None:
        spec = WorkerSpec(suite, self.runner, "cpu" if self.device == "cpu" else None, self.feature_cache)
        handles = [WorkerHandle(spec, slot.where, slot.env) for slot in self.slots]
        queue, stop, faults = AffinityQueue(jobs), threading.Event(), []
        with LockKeeper() as keeper, sigterm_as_interrupt():
            threads = [threading.Thread(target=_slot_loop, name=f"slot-{h.where}", daemon=True,
                                        args=(h, queue, suite, gate, keeper, listener, stop, faults))
                       for h in handles]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    while thread.is_alive():
                        thread.join(timeout=0.2)  # short waits keep the main thread responsive to Ctrl-C
            except KeyboardInterrupt:
                stop.set()
                for handle in handles:
                    handle.stop(kill=True)
                for thread in threads:
                    thread.join(timeout=10)
                raise
        if faults:
            raise faults[0]


def _slot_loop(handle, queue, suite, gate, keeper, listener, stop, faults) -> None:
    current = None
    try:
        while not stop.is_set():
            job, current = queue.next(current)
            if job is None:
                return
            run_claimed(handle, job, suite, gate, keeper, listener, stopping=stop.is_set)
    except ResultsUnwritable as fault:  # every slot would hit it: stop them all, the run says why
        faults.append(fault)
        stop.set()
    except Exception:  # a bug here must not hang the driver: log it; the job stays pending
        log.exception("worker slot %s stopped", handle.where)
    finally:
        handle.stop(kill=stop.is_set())

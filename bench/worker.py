"""Worker subprocess: `python -m bench.worker`. Runs jobs one at a time for the process that started it.

Why a long-lived worker per device slot and not a process per job: importing torch + open_clip and
loading the backbone costs seconds, longer than a zero-shot job. A worker keeps a Workspace (backbone,
splits, feature stores) warm across the jobs it is handed (the driver hands it jobs of one dataset
while there are any), and a crash still costs only the job that was running: the driver writes that
job's failed record and starts a fresh worker for the rest.

Protocol: length-prefixed pickles. The parent writes a WorkerSpec, then one Job per message on our
stdin; we answer ("ready", pid) once and a summary dict per job on the original stdout; while a job
runs, ("progress", stage, done, total) messages (bench.progress reports, throttled) precede its
summary. Everything a job prints (Python, C libraries, logging) goes to <results_dir>/logs/<job_id>.log
because fds 1 and 2 are redirected to that file while the job runs.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("bench.worker")
PARENT_ENV = "BENCH_WORKER_PARENT"


@dataclass(frozen=True)
class WorkerSpec:
    suite: object  # bench.config.Suite
    runner: str = "bench.runner"
    device: str | None = None
    feature_cache: bool = True
    sys_path: list = field(default_factory=list)  # the parent's import path (test or plug-in modules)


def send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def recv(stream):
    """The next message, or None at end of stream (the other side is gone)."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    data = stream.read(size)
    return None if len(data) < size else pickle.loads(data)


def _die_with_parent() -> None:
    """A worker must not outlive its driver (kill -9 of the driver would leave it running a job
    the rerun then runs again). Linux: ask the kernel to SIGKILL us when the parent dies."""
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.debug("prctl unavailable: worker will exit when its stdin closes")
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@contextmanager
def _output_to(path: Path):
    """Point fds 1 and 2 (so also C-level output and logging) at `path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _banner(job) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"===== {stamp} {job.label} (job {job.id}) host={socket.gethostname()} pid={os.getpid()} "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')} =====")


def serve(spec: WorkerSpec, inbox, outbox) -> None:
    from bench import progress
    from bench.executors.base import log_path, summarize

    sys.path[:0] = [p for p in spec.sys_path if p not in sys.path]
    runner = importlib.import_module(spec.runner)
    send(outbox, ("ready", os.getpid()))
    workspace = None
    # bench.progress reports (backbone, features) go to the driver's live view, throttled
    forward = progress.Throttle(lambda stage, done, total: send(outbox, ("progress", stage, done, total)))
    with progress.reporting_to(forward):
        while (job := recv(inbox)) is not None:
            with _output_to(log_path(spec.suite.results_dir, job.id)):
                print(_banner(job), flush=True)
                try:
                    if workspace is None:  # built inside the first job so its errors land in that job's log
                        workspace = runner.Workspace(spec.suite, device=spec.device,
                                                     feature_cache=spec.feature_cache)
                    record = runner.run_job(job, workspace)
                except BaseException:  # the driver records the job as failed when we exit
                    log.exception("worker exits: %s raised outside the job's own error handling", job.label)
                    raise
            send(outbox, summarize(record))


def main() -> None:
    _die_with_parent()
    outbox = os.fdopen(os.dup(1), "wb")  # the protocol channel; fd 1 itself becomes log output
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle, not ours
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inbox = sys.stdin.buffer
    spec = recv(inbox)
    if spec is not None:
        serve(spec, inbox, outbox)


if __name__ == "__main__":
    main()

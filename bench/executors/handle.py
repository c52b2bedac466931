"""The driver side of a worker subprocess (bench/worker.py), and the claim → run → record → release
sequence every subprocess-based executor uses for one job."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.executors.base import Gate, Listener, results_writes, summarize, timeout_error, write_crash_record
from bench.locks import LockKeeper
from bench.results import now_iso
from bench.worker import PARENT_ENV, WorkerSpec, recv, send

log = logging.getLogger(__name__)
TERM_GRACE_S = 5.0  # a worker being ended (timeout, Ctrl-C) gets this long between SIGTERM and SIGKILL


class WorkerDied(Exception):
    """The worker process ended while it owed us an answer."""


class JobTimedOut(WorkerDied):
    """The driver killed the worker: its job ran past job.timeout_s. The message is the record's error."""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


class WorkerHandle:
    """A lazily started worker subprocess pinned to one device by its environment."""

    def __init__(self, spec: WorkerSpec, where: str, env: dict | None = None):
        self.spec, self.where, self.env = spec, where, dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.closed = False  # after a kill (Ctrl-C) no new worker may start
        self._mutex = threading.Lock()  # start/stop may race between a slot thread and Ctrl-C

    def _start(self) -> None:
        logs = Path(self.spec.suite.results_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        name = "".join(c if c.isalnum() else "_" for c in self.where)
        with open(logs / f"worker-{name}.log", "ab") as stderr:
            # Own session: a terminal's Ctrl-C reaches only the driver, which stops workers itself.
            self.proc = subprocess.Popen([sys.executable, "-m", "bench.worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=stderr, env=env,
                                         start_new_session=True)
        try:
            send(self.proc.stdin, dataclasses.replace(self.spec, sys_path=list(sys.path)))
        except OSError:
            pass  # it died at once: recv sees the end of the stream
        hello = recv(self.proc.stdout)
        if hello is None:
            raise WorkerDied(f"worker failed to start ({describe_exit(self.proc.wait())}); "
                             f"see {logs / f'worker-{name}.log'}")

    def run(self, job, on_progress=None) -> dict:
        """Hand `job` to the worker and wait for its summary; progress messages that come first go to
        on_progress(stage, done, total)."""
        with self._mutex:
            if self.closed:
                raise WorkerDied("stopped by the driver")
            if self.proc is None or self.proc.poll() is not None:
                stage = "starting a worker process (imports torch)"
                _tell(on_progress, stage, 0, 1)
                self._start()
                _tell(on_progress, stage, 1, 1)
            proc = self.proc
        expired = threading.Event()  # set by the watchdog: the stream ends because it killed the worker
        watchdog = _watchdog(proc, job.timeout_s, expired)
        try:
            try:
                send(proc.stdin, job)
            except (BrokenPipeError, OSError):
                pass  # recv below sees the end of the stream and reports how the worker ended
            while True:
                reply = recv(proc.stdout)
                if reply is None:
                    code = proc.wait()
                    if expired.is_set():
                        raise JobTimedOut(timeout_error(job))
                    raise WorkerDied(describe_exit(code))
                if not (isinstance(reply, tuple) and reply and reply[0] == "progress"):
                    return reply
                _tell(on_progress, *reply[1:])
        finally:
            if watchdog is not None:  # join: a kill racing the reply must be over before the next job
                watchdog.cancel()
                watchdog.join()

    def stop(self, kill: bool = False, grace_s: float = TERM_GRACE_S) -> None:
        """Close stdin (the worker exits after its job) or, with kill, end it now."""
        with self._mutex:
            proc, self.proc = self.proc, None
            self.closed = self.closed or kill
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        if kill:
            end_process(proc, grace_s)
        else:
            proc.wait()


def end_process(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace_s`; returns once it is gone."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _watchdog(proc: subprocess.Popen, seconds: float | None, expired: threading.Event) -> threading.Timer | None:
    """A started timer that, once the job has run `seconds`, sets `expired` and ends the worker:
    SIGTERM, then SIGKILL after TERM_GRACE_S. None without a timeout. The slot's next job finds the
    worker dead and starts a fresh one."""
    if not seconds:
        return None

    def expire():
        expired.set()
        end_process(proc, TERM_GRACE_S)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def _tell(on_progress, stage, done, total) -> None:
    if on_progress is not None:
        try:
            on_progress(stage, done, total)
        except Exception:  # a view's bug must not cost the job
            log.exception("progress listener failed")


def run_claimed(handle: WorkerHandle, job, suite, gate: Gate, keeper: LockKeeper, listener: Listener,
                stopping=lambda: False) -> dict | None:
    """Claim, check, run and release one job. Returns its summary, or None if it did not run here."""
    with results_writes(gate.results_dir):
        return _run_claimed(handle, job, suite, gate, keeper, listener, stopping)


def _run_claimed(handle, job, suite, gate, keeper, listener, stopping) -> dict | None:
    if not keeper.claim(gate.results_dir, job.id, handle.where, job.label):
        listener.skipped(job, "claimed by another process")
        return None
    try:
        if not gate.wanted(job):
            listener.skipped(job, "finished by another process")
            return None
        started, t0 = now_iso(), time.perf_counter()
        listener.started(job, handle.where)
        try:
            summary = handle.run(job, lambda stage, done, total: listener.progress(job, stage, done, total))
        except WorkerDied as died:
            if stopping():  # interrupted on purpose: no record, the rerun picks the job up again
                return None
            what = str(died) if isinstance(died, JobTimedOut) else f"worker process {died} while running this job"
            error = f"{what}; its output: logs/{job.id}.log"
            log.error("%s: %s", job.label, error)
            record = write_crash_record(suite, job, error, handle.where, time.perf_counter() - t0, started)
            summary = summarize(record, handle.where)
    finally:
        keeper.release(job.id)
    summary["where"] = handle.where
    listener.finished(job, summary)
    return summary

"""Job claims: one lock file per job id under <results_dir>/locks, so two drivers (or two SLURM
array tasks, or Ray chunks on different nodes) never run the same job at once.

A lock is created atomically with full content (write a temp file, then os.link it to the lock name:
link fails if the name exists, also on NFS). It holds host, pid, the pid's start time, where the job
runs and a random token. The holder touches the file every lease/4 seconds. A lock is stale when its
holder is provably gone: same host and the pid is dead (or is another process reusing the pid), or
the file was not touched for a whole lease (the only test possible across hosts). A stale lock is
broken under a short-lived "breaker" lock so two processes cannot break and re-take it at once.

A damaged lock (unreadable, not JSON, or not a lock: host and token must be strings, pid an integer)
cannot come from bench, since a lock appears with its full content; a foreign tool or a torn disk left
it. It is warned about once (naming the file), counted by `bench status`, and treated as stale once its
mtime is DAMAGED_GRACE_S old (younger, it blocks its job like a live claim would, in case a foreign
writer is still writing it). Breaking it goes through the same breaker, so two racing drivers still
never both take the job: after the break, only one link of the new lock can win.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.results import now_iso, warn_damaged

log = logging.getLogger(__name__)
LEASE_S = float(os.environ.get("BENCH_LOCK_LEASE_S", "120"))
BREAKER_STALE_S = 30.0  # a breaker is held for milliseconds; one this old was left by a killed process
DAMAGED_GRACE_S = 5.0  # a damaged lock older than this is stale (see the module docstring)
HOST = socket.gethostname()


def lock_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "locks"


def lock_path(results_dir: Path, job_id: str) -> Path:
    return lock_dir(results_dir) / f"{job_id}.lock"


def process_start(pid: int) -> str | None:
    """The kernel's start time of a pid (Linux), which tells a live holder from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 overall; fields after the command name


def pid_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or process_start(pid) in (None, start)


@dataclass(frozen=True)
class JobLock:
    path: Path
    token: str


def read_lock(path: Path, damaged: list | None = None) -> dict | None:
    """A lock's content; None when the file is gone or damaged (warned once, appended to `damaged`)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8 or not JSON
        return _damaged(path, f"not readable as UTF-8 JSON ({exc.__class__.__name__}: {exc})", damaged)
    problem = lock_problem(info)
    return info if problem is None else _damaged(path, problem, damaged)


def lock_problem(info) -> str | None:
    """Why parsed JSON is not a lock bench wrote; None when it is one."""
    if not isinstance(info, dict):
        return f"a JSON {type(info).__name__}, not an object"
    for key, kind in (("host", str), ("pid", int), ("token", str)):
        if type(info.get(key)) is not kind:  # `is`: a bool is not a pid
            return f"not a bench lock: '{key}' must be a {kind.__name__}, got {info.get(key)!r}"
    if not 0 < info["pid"] < 2**31:  # os.kill: 0 and negatives name process groups, huge ones overflow
        return f"not a bench lock: 'pid' {info['pid']} is not a process id"
    if info.get("pid_start") is not None and not isinstance(info["pid_start"], str):
        return f"not a bench lock: 'pid_start' must be a str, got {info['pid_start']!r}"
    return None


def _damaged(path: Path, reason: str, damaged: list | None) -> None:
    warn_damaged(path, "lock file", f"{reason}; it blocks its job for at most {DAMAGED_GRACE_S:.0f} s")
    if damaged is not None:
        damaged.append(path)
    return None


def is_stale(path: Path, lease_s: float = LEASE_S) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # gone: nothing to break
    info = read_lock(path)
    if age > lease_s:
        return True
    if info is None:  # damaged (or removed since the stat: then breaking finds nothing to remove)
        return age > DAMAGED_GRACE_S
    return info["host"] == HOST and not pid_alive(info["pid"], info.get("pid_start"))


def _link_new(path: Path, content: dict) -> bool:
    """Create `path` with `content` atomically; False if it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(content))
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def try_lock(results_dir: Path, job_id: str, where: str = "", label: str = "",
             lease_s: float = LEASE_S) -> JobLock | None:
    """Claim a job, breaking a stale claim if needed. None: someone live holds it."""
    path = lock_path(results_dir, job_id)
    token = uuid.uuid4().hex
    content = {"job_id": job_id, "label": label, "where": where, "host": HOST, "pid": os.getpid(),
               "pid_start": process_start(os.getpid()), "started": now_iso(), "token": token}
    for _ in range(2):  # a second try after breaking a stale lock
        if _link_new(path, content):
            return JobLock(path, token)
        if not _break_if_stale(path, lease_s):
            return None
    return None


def _break_if_stale(path: Path, lease_s: float) -> bool:
    if not is_stale(path, lease_s):
        return False
    breaker = path.with_name(path.name + ".break")
    if not _link_new(breaker, {"host": HOST, "pid": os.getpid()}):
        if time.time() - _mtime(breaker) > BREAKER_STALE_S:
            breaker.unlink(missing_ok=True)
        return False
    try:
        judged = read_lock(path)
        if is_stale(path, lease_s):  # re-check under the breaker: it may have been re-taken meanwhile
            if judged is None:  # damaged: warned about when read
                log.info("removing damaged lock %s", path)
            else:
                log.warning("breaking stale lock %s (%s)", path.name, judged)
            path.unlink(missing_ok=True)
            return True
        return False
    finally:
        breaker.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def release(lock: JobLock) -> None:
    """Remove our lock; never someone else's (it may have been broken and re-taken)."""
    info = read_lock(lock.path)
    if info is not None and info.get("token") == lock.token:
        lock.path.unlink(missing_ok=True)


def sweep_stale(results_dir: Path, lease_s: float = LEASE_S) -> int:
    """Remove the claims of dead holders (a driver killed with -9 after its job's record was written
    leaves a claim nobody will re-take, since the job is done). Returns how many were removed."""
    folder = lock_dir(results_dir)
    return sum(_break_if_stale(p, lease_s) for p in sorted(folder.glob("*.lock"))) if folder.is_dir() else 0


def live_locks(results_dir: Path, lease_s: float = LEASE_S, damaged: list | None = None) -> dict[str, dict]:
    """job_id → lock content, for every claim whose holder is still alive (what `running` means).
    The paths of damaged lock files are appended to `damaged`."""
    out = {}
    folder = lock_dir(results_dir)
    for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        info = read_lock(path, damaged)
        if info is not None and not is_stale(path, lease_s):
            out[path.stem] = info
    return out


class LockKeeper:
    """Touches every held lock every lease/4 seconds from a daemon thread, so a long job keeps its
    claim and a dead holder's claim expires."""

    def __init__(self, lease_s: float = LEASE_S):
        self.lease_s = lease_s
        self._held: dict[str, JobLock] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-lock-keeper", daemon=True)

    def __enter__(self) -> "LockKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._mutex:
            held = list(self._held.values())
            self._held.clear()
        for lock in held:
            release(lock)

    def claim(self, results_dir: Path, job_id: str, where: str = "", label: str = "") -> bool:
        lock = try_lock(results_dir, job_id, where, label, self.lease_s)
        if lock is not None:
            with self._mutex:
                self._held[job_id] = lock
        return lock is not None

    def release(self, job_id: str) -> None:
        with self._mutex:
            lock = self._held.pop(job_id, None)
        if lock is not None:
            release(lock)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            with self._mutex:
                held = list(self._held.values())
            for lock in held:
                try:
                    os.utime(lock.path)
                except FileNotFoundError:
                    log.error("lost the claim %s (removed by someone else)", lock.path.name)

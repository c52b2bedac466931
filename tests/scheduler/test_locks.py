"""Job claims: exclusive, recoverable when the holder is gone, never stolen from a live holder."""

import json
import os
import subprocess
import sys
import time

from bench import locks
from tests.scheduler.helpers import claims_won_in_a_race


def test_a_claim_is_exclusive_and_release_frees_it(tmp_path):
    first = locks.try_lock(tmp_path, "job1", where="gpu0#0", label="m/d/1shot/seed1")
    assert first is not None
    assert locks.try_lock(tmp_path, "job1") is None  # our own pid is alive: not stale
    info = json.loads(first.path.read_text())
    assert info["pid"] == os.getpid() and info["where"] == "gpu0#0" and info["host"] == locks.HOST
    assert set(locks.live_locks(tmp_path)) == {"job1"}
    locks.release(first)
    assert not first.path.exists() and locks.live_locks(tmp_path) == {}
    assert locks.try_lock(tmp_path, "job1") is not None


def test_many_threads_racing_for_one_job_get_one_claim(tmp_path):
    assert claims_won_in_a_race(tmp_path) == 1


def test_a_dead_holders_claim_is_broken(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = locks.lock_path(tmp_path, "job1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": locks.HOST, "pid": int(dead.stdout), "token": "old"}))
    assert locks.is_stale(path) and locks.live_locks(tmp_path) == {}
    taken = locks.try_lock(tmp_path, "job1")
    assert taken is not None and json.loads(path.read_text())["token"] == taken.token


def test_a_reused_pid_does_not_keep_a_claim_alive(tmp_path):
    path = locks.lock_path(tmp_path, "job1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": locks.HOST, "pid": os.getpid(), "pid_start": "1", "token": "old"}))
    assert locks.is_stale(path)  # our pid, but a different process start time: the holder is gone


def test_other_hosts_claims_expire_only_with_their_lease(tmp_path):
    path = locks.lock_path(tmp_path, "job1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "some-other-node", "pid": 1, "token": "theirs"}))
    assert locks.try_lock(tmp_path, "job1", lease_s=60) is None  # fresh: we cannot check their pid
    old = time.time() - 120
    os.utime(path, (old, old))
    assert locks.try_lock(tmp_path, "job1", lease_s=60) is not None


def test_the_keeper_refreshes_claims_and_releases_only_its_own(tmp_path):
    with locks.LockKeeper(lease_s=0.4) as keeper:
        assert keeper.claim(tmp_path, "job1")
        time.sleep(1.0)  # over two leases: only the refresh keeps it live
        assert "job1" in locks.live_locks(tmp_path, lease_s=0.4)
        path = locks.lock_path(tmp_path, "job1")
        path.unlink()  # someone broke it and took it over
        path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "theirs"}))
        keeper.release("job1")
        assert path.exists()  # their claim survives our release
    assert json.loads(path.read_text())["token"] == "theirs"

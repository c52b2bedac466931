"""The local executor: device pinning and packing, warm workers per dataset, crash isolation,
resume policy."""

from collections import Counter, defaultdict

import pytest

from bench.errors import BenchError
from bench.executors import make_executor
from bench.executors.local import AffinityQueue, plan_slots
from bench.scheduler import execute, pending_jobs
from tests.scheduler.fake_runner import FakeJob, executions
from tests.scheduler.helpers import RUNNER, all_records, record_counts


def max_overlap(intervals):
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_fake_gpus_pin_each_job_and_pack_jobs_per_gpu(suite):
    jobs = [FakeJob(f"d{d}", s, {"sleep": 0.6}) for d in range(3) for s in range(4)]
    executor = make_executor("local", gpus=["0", "1", "2"], jobs_per_gpu=2, runner=RUNNER)
    result = execute(suite, jobs, executor)
    assert len(result.ok) == 12 and not result.failed
    records = all_records(suite.results_dir)
    devices = Counter(r["worker"]["cuda_visible_devices"] for r in records)
    assert set(devices) == {"0", "1", "2"}
    workers = defaultdict(set)
    for r in records:
        workers[r["worker"]["cuda_visible_devices"]].add(r["worker"]["pid"])
    assert all(len(pids) == 2 for pids in workers.values())  # two worker processes per GPU
    spans = defaultdict(list)
    for r in records:  # a job's span: [record time - sleep, record time]
        spans[r["worker"]["cuda_visible_devices"]].append((r["worker"]["end"] - 0.6, r["worker"]["end"]))
    assert max(max_overlap(s) for s in spans.values()) <= 2  # packing: never more than 2 jobs on a GPU


def test_workers_stay_on_their_dataset():
    jobs = [FakeJob(f"d{d}", s) for d in range(2) for s in range(4)]
    queue = AffinityQueue(jobs)
    first, key_a = queue.next(None)
    second, key_b = queue.next(None)
    assert key_a != key_b  # two idle slots spread over two datasets
    taken = [queue.next(key_a)[0].dataset for _ in range(3)]
    assert taken == [first.dataset] * 3  # a slot keeps its dataset while it has jobs
    job, key = queue.next(key_a)  # its dataset is exhausted: it joins the other one
    assert key == key_b and job.dataset == second.dataset


def test_cpu_only_machine_runs_jobs_per_gpu_workers(suite):
    assert [s.where for s in plan_slots([], 3, None)] == ["cpu#0", "cpu#1", "cpu#2"]
    assert [s.where for s in plan_slots(None, 1, "cpu")] == ["cpu#0"]
    with pytest.raises(BenchError, match="--gpus 1"):
        plan_slots(None, 1, "cuda:1")
    jobs = [FakeJob("d0", s) for s in range(4)]
    execute(suite, jobs, make_executor("local", jobs_per_gpu=2, runner=RUNNER))
    records = all_records(suite.results_dir)
    assert len(records) == 4 and {r["worker"]["cuda_visible_devices"] for r in records} == {""}
    assert len({r["worker"]["pid"] for r in records}) <= 2


def test_crashing_jobs_fail_alone_and_the_grid_goes_on(suite):
    crashes = {1: "raise", 2: "exit", 3: "segv"}
    jobs = [FakeJob("d0", s, {"crash": crashes.get(s)}) for s in range(6)]
    result = execute(suite, jobs, make_executor("local", jobs_per_gpu=1, runner=RUNNER))
    status = {r["seed"]: r for r in all_records(suite.results_dir)}
    assert [status[s]["status"] for s in range(6)] == ["ok", "failed", "failed", "failed", "ok", "ok"]
    assert "boom from a fake job" in status[1]["error"]
    assert "exited with code 7" in status[2]["error"] and "killed by SIGSEGV" in status[3]["error"]
    assert "fake job fake-d0-1-3 running" in status[3]["log_tail"]  # the dead job's captured output
    assert len(result.failed) == 3 and len(result.ok) == 3
    for job in jobs:  # every job has its own log, with a header naming it
        log = (suite.results_dir / "logs" / f"{job.id}.log").read_text()
        assert job.label in log and f"fake job {job.id} running" in log
    assert not list((suite.results_dir / "locks").glob("*.lock"))


def test_a_worker_that_cannot_build_its_workspace_fails_each_job_with_the_reason(suite, monkeypatch):
    monkeypatch.setenv("FAKE_BROKEN_WORKSPACE", "1")  # inherited by the workers
    result = execute(suite, [FakeJob("d0", 0), FakeJob("d0", 1)], make_executor("local", runner=RUNNER))
    assert len(result.failed) == 2 and not result.ok
    for record in result.failed:
        assert "exited with code 1" in record["error"]
        assert "RuntimeError: the backbone does not load" in record["log_tail"]


def test_resume_skips_ok_and_retry_failed_runs_only_failed(suite):
    jobs = [FakeJob("d0", s, {"crash": "raise" if s % 2 else None}) for s in range(4)]
    execute(suite, jobs, make_executor("local", runner=RUNNER))
    fixed = [FakeJob("d0", s) for s in range(4)]  # same ids, no longer crashing
    assert [j.seed for j in pending_jobs(suite, fixed)] == [1, 3]  # default: pending + failed
    assert [j.seed for j in pending_jobs(suite, fixed, retry_failed=True)] == [1, 3]
    more = fixed + [FakeJob("d0", 9)]
    assert [j.seed for j in pending_jobs(suite, more)] == [1, 3, 9]
    assert [j.seed for j in pending_jobs(suite, more, retry_failed=True)] == [1, 3]  # never-run: not failed
    todo = pending_jobs(suite, more, retry_failed=True)
    execute(suite, todo, make_executor("local", runner=RUNNER), mode="retry_failed")
    assert executions(suite.results_dir).count("fake-d0-1-0") == 1  # ok jobs were not rerun
    counts = record_counts(suite.results_dir)
    assert counts[("fake-d0-1-1", "ok")] == 1 and counts[("fake-d0-1-1", "failed")] == 1
    assert ("fake-d0-1-9", "ok") not in counts
    assert pending_jobs(suite, more) == [FakeJob("d0", 9)]


def test_options_that_do_not_apply_are_errors():
    with pytest.raises(BenchError, match="--ray-address does not apply to --executor local"):
        make_executor("local", ray_address="auto")
    with pytest.raises(BenchError, match="unknown executor 'lokal'"):
        make_executor("lokal")
    with pytest.raises(BenchError, match="at least 1"):
        make_executor("local", jobs_per_gpu=0)

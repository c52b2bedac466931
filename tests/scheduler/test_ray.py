"""The Ray executor end to end on a local Ray cluster that pretends to have two GPUs."""

import pytest

from bench.executors import make_executor
from bench.scheduler import execute
from tests.scheduler.fake_runner import FakeJob, fake_top1
from tests.scheduler.helpers import REPO, RUNNER, all_records, record_counts


@pytest.fixture
def ray_cluster(monkeypatch):
    import ray

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # Ray refuses fake GPUs that the variable hides

    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def test_ray_runs_chunks_on_fractional_gpus_and_records_every_job_once(suite, ray_cluster):
    jobs = [FakeJob(f"d{d}", s, {"crash": "exit" if (d, s) == (1, 2) else None}) for d in range(2) for s in range(4)]
    executor = make_executor("ray", jobs_per_gpu=2, chunk_size=2, runner=RUNNER)
    result = execute(suite, jobs, executor)
    counts = record_counts(suite.results_dir)
    assert len(counts) == 8 and set(counts.values()) == {1}  # no silent retry of the crashed job
    records = {r["job_id"]: r for r in all_records(suite.results_dir)}
    crashed = records["fake-d1-1-2"]
    assert crashed["status"] == "failed" and "exited with code 7" in crashed["error"]
    assert len(result.ok) == 7 and len(result.failed) == 1
    oks = [r for r in records.values() if r["status"] == "ok"]
    assert all(r["metrics"]["top1"] == fake_top1(r["job_id"]) for r in oks)
    assert {r["worker"]["cuda_visible_devices"] for r in oks} <= {"0", "1"}  # Ray pinned a (fake) GPU
    by_chunk = {}
    for r in oks:  # a chunk's jobs ran in one warm worker: one pid per (dataset, seed pair)
        by_chunk.setdefault((r["dataset"], r["seed"] // 2), set()).add(r["worker"]["pid"])
    assert all(len(pids) == 1 for chunk, pids in by_chunk.items() if chunk != ("d1", 1))

"""The SLURM executor through submitit's local cluster: an array of per-dataset chunks, each running
the local executor on the GPUs its allocation lists."""

from bench.executors import Listener, make_executor
from bench.scheduler import execute
from tests.scheduler.fake_runner import FakeJob, fake_top1
from tests.scheduler.helpers import REPO, RUNNER, all_records, record_counts


def test_submitit_array_of_dataset_chunks_runs_the_local_executor_per_task(suite, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # submitit task processes unpickle the test jobs
    jobs = [FakeJob(f"d{d}", s, {"crash": "segv" if (d, s) == (0, 1) else None}) for d in range(2) for s in range(3)]
    executor = make_executor("slurm", slurm_gpus=2, slurm_timeout_min=5, runner=RUNNER, cluster="local", poll_s=0.2)
    finished = []
    listener = Listener()
    listener.finished = lambda job, summary: finished.append((job.id, summary["status"]))
    result = execute(suite, jobs, executor, listener)
    counts = record_counts(suite.results_dir)
    assert len(counts) == 6 and set(counts.values()) == {1}
    records = {r["job_id"]: r for r in all_records(suite.results_dir)}
    assert records["fake-d0-1-1"]["status"] == "failed" and "SIGSEGV" in records["fake-d0-1-1"]["error"]
    assert len(result.ok) == 5 and len(result.failed) == 1
    assert sorted(finished) == sorted((r["job_id"], r["status"]) for r in records.values())  # progress events
    oks = [r for r in records.values() if r["status"] == "ok"]
    assert all(r["metrics"]["top1"] == fake_top1(r["job_id"]) for r in oks)
    # Each array task got "GPUs" 0,1 and ran one worker per GPU on them.
    assert {r["worker"]["cuda_visible_devices"] for r in oks} == {"0", "1"}
    tasks = [p for p in (suite.results_dir / "slurm").iterdir() if p.name != "%j"]  # one folder per task
    assert len(tasks) == 2  # one array task per dataset

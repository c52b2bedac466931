"""The inline executor: in this process, still claiming jobs and logging each one to its file."""

import logging

from bench import locks
from bench.executors import make_executor
from bench.executors.base import Listener
from bench.scheduler import execute, run_inline
from tests.scheduler.fake_runner import FakeJob
from tests.scheduler.helpers import RUNNER, record_counts


def test_inline_claims_jobs_and_writes_a_log_per_job(suite, monkeypatch):
    jobs = [FakeJob("d0", s) for s in range(3)]
    held = locks.try_lock(suite.results_dir, jobs[1].id, where="elsewhere")  # a live claim by "another driver"
    listener = Listener()
    seen = []
    listener.skipped = lambda job, reason: seen.append((job.id, reason))
    monkeypatch.setattr("tests.scheduler.fake_runner.write_record", _logging_write())
    result = execute(suite, jobs, make_executor("inline", runner=RUNNER), listener)
    assert seen == [(jobs[1].id, "claimed by another process")]
    assert [r["seed"] for r in result.ok] == [0, 2] and result.not_run == [jobs[1]]
    assert "writing the record of fake-d0-1-0" in (suite.results_dir / "logs" / "fake-d0-1-0.log").read_text()
    locks.release(held)
    assert not list((suite.results_dir / "locks").glob("*.lock"))


def _logging_write():
    from bench.results import write_record

    def write(results_dir, record):
        logging.getLogger("fake").warning("writing the record of %s", record["job_id"])
        return write_record(results_dir, record)

    return write


def test_run_inline_returns_the_records_in_dataset_order(suite):
    records = run_inline(suite, [FakeJob("d1", 0), FakeJob("d0", 1), FakeJob("d0", 0)], runner=RUNNER)
    assert [(r["dataset"], r["seed"]) for r in records] == [("d0", 0), ("d0", 1), ("d1", 0)]
    assert set(record_counts(suite.results_dir).values()) == {1}

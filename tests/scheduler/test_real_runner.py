"""The real runner (bench.runner) behind the inline and the local executor: same job ids, same
numbers, on the smoke suite."""

import dataclasses

from bench.executors import make_executor
from bench.jobs import expand
from bench.scheduler import execute, preflight
from tests.scheduler.helpers import all_records


def test_inline_and_local_workers_produce_the_same_records(smoke_suite, tmp_path):
    jobs = expand(smoke_suite, ["zeroshot"], shots=[1], seeds=[1, 2])  # one shot-independent job per dataset
    assert len(jobs) == 2 and all(job.shots == job.seed == 0 for job in jobs)
    preflight(smoke_suite, jobs)
    results = {}
    for name, options in (("inline", {"device": "cpu"}), ("local", {"gpus": ["0"]})):
        suite = dataclasses.replace(smoke_suite, results_dir=tmp_path / name)
        outcome = execute(suite, jobs, make_executor(name, **options))
        assert len(outcome.ok) == 2, [r.get("error") for r in outcome.failed]
        results[name] = {r["job_id"]: (r["metrics"]["top1"], r["split"]["fewshot_digest"])
                         for r in all_records(suite.results_dir)}
    assert results["inline"] == results["local"] and set(results["local"]) == {job.id for job in jobs}
    log = (tmp_path / "local" / "logs" / f"{jobs[0].id}.log").read_text()
    assert jobs[0].label in log and "CUDA_VISIBLE_DEVICES=0" in log

import json
import subprocess
import sys

import pytest

from bench.errors import BenchError
from bench.jobs import expand, stable_id
from bench.results import finished_ids, latest_per_job, read_records, write_record


def test_grid_expansion_and_filters(smoke_suite):
    jobs = expand(smoke_suite, ["zeroshot"])
    assert len(jobs) == len(smoke_suite.datasets) * len(smoke_suite.shots) * len(smoke_suite.seeds)
    assert len({j.id for j in jobs}) == len(jobs)
    small = expand(smoke_suite, ["zeroshot"], datasets=[smoke_suite.datasets[0]], shots=[2], seeds=[1, 3])
    assert [(j.shots, j.seed) for j in small] == [(2, 1), (2, 3)]
    with pytest.raises(BenchError, match="did you mean 'zeroshot'"):
        expand(smoke_suite, ["zeroshoot"])
    with pytest.raises(BenchError, match="unknown dataset"):
        expand(smoke_suite, ["zeroshot"], datasets=["imagenett"])


def test_job_ids_are_stable_across_processes(smoke_suite):
    job = expand(smoke_suite, ["zeroshot"], shots=[4], seeds=[2])[0]
    code = ("from bench.jobs import stable_id; import json, sys; "
            "print(stable_id(json.loads(sys.stdin.read())))")
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(job.key), text=True,
                           capture_output=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.stdout.strip() == job.id == stable_id(dict(reversed(list(job.key.items()))))


def record(job_id, created, status="ok", **extra):
    return {"job_id": job_id, "method": "m", "dataset": "d", "shots": 1, "seed": 1,
            "created_at": created, "status": status, "metrics": {}, **extra}


def test_records_are_immutable_and_latest_wins(tmp_path):
    write_record(tmp_path, record("a", "2026-01-01T00:00:00.000001+00:00", "failed"))
    write_record(tmp_path, record("a", "2026-01-02T00:00:00.000001+00:00", "ok"))
    write_record(tmp_path, record("b", "2026-01-02T00:00:00.000001+00:00", "ok"))
    write_record(tmp_path, record("b", "2026-01-03T00:00:00.000001+00:00", "failed"))
    with pytest.raises(FileExistsError):
        write_record(tmp_path, record("b", "2026-01-03T00:00:00.000001+00:00", "ok"))
    latest = latest_per_job(read_records(tmp_path))
    assert latest["a"]["status"] == "ok" and latest["b"]["status"] == "failed"
    assert finished_ids(tmp_path) == {"a"}
    assert not list(tmp_path.rglob("*.tmp"))


def test_unreadable_record_is_skipped_not_deleted(tmp_path):
    write_record(tmp_path, record("a", "2026-01-01T00:00:00.000001+00:00"))
    bad = tmp_path / "records" / "m" / "d" / "x.json"
    bad.write_text("{not json")
    assert [r["job_id"] for r in read_records(tmp_path)] == ["a"]
    assert bad.exists()

import dataclasses
import json
import subprocess
import sys

import pytest

from bench.config import MethodEntry
from bench.errors import BenchError
from bench.jobs import ANY, expand, job_for, method_names, stable_id
from bench.results import latest_per_job, read_records, write_record


def test_grid_expansion_and_filters(smoke_suite):
    jobs = expand(smoke_suite, ["coop"])
    assert len(jobs) == len(smoke_suite.datasets) * len(smoke_suite.shots) * len(smoke_suite.seeds)
    assert len({j.id for j in jobs}) == len(jobs)
    small = expand(smoke_suite, ["coop"], datasets=[smoke_suite.datasets[0]], shots=[2], seeds=[1, 3])
    assert [(j.shots, j.seed) for j in small] == [(2, 1), (2, 3)]
    with pytest.raises(BenchError, match="did you mean 'zeroshot'"):
        expand(smoke_suite, ["zeroshoot"])
    with pytest.raises(BenchError, match="unknown dataset"):
        expand(smoke_suite, ["zeroshot"], datasets=["imagenett"])


def test_shot_independent_method_runs_once_per_dataset(smoke_suite):
    jobs = expand(smoke_suite)
    zeroshot = [j for j in jobs if j.method == "zeroshot"]
    assert [j.dataset for j in zeroshot] == list(smoke_suite.datasets)
    assert all((j.shots, j.seed) == (ANY, ANY) == (0, 0) for j in zeroshot)
    assert zeroshot[0].label == f"zeroshot/{smoke_suite.datasets[0]}/any-shot"
    grid = len(smoke_suite.datasets) * len(smoke_suite.shots) * len(smoke_suite.seeds)
    assert len(jobs) == len(zeroshot) + grid * (len(smoke_suite.methods) - 1)
    # --shots/--seeds pick shot tables; a shot-independent job belongs to every one of them
    filtered = expand(smoke_suite, ["zeroshot", "coop"], shots=[16], seeds=[2])
    assert sorted((j.method, j.shots, j.seed) for j in filtered) == \
        [("coop", 16, 2)] * len(smoke_suite.datasets) + [("zeroshot", 0, 0)] * len(smoke_suite.datasets)
    assert {j.id for j in filtered if j.method == "zeroshot"} == {j.id for j in zeroshot}


def test_job_for_resolves_every_grid_job_to_the_same_id(smoke_suite):
    jobs = expand(smoke_suite, method_names(smoke_suite))  # all methods, the variant included
    assert any(j.method == "mask_tuning_zhao" for j in jobs)
    for job in jobs:
        assert job_for(smoke_suite, job.method, job.dataset, job.shots, job.seed, job.backbone).id == job.id


def test_job_for_cells_outside_the_grid_and_unknown_methods(smoke_suite):
    backbone = smoke_suite.backbone.identity()
    zeroshot = expand(smoke_suite, ["zeroshot"], datasets=[smoke_suite.datasets[0]])[0]
    for shots, seed in ((1, 1), (16, 2), (8, 7)):  # any cell of a shot-independent method: its one job
        assert job_for(smoke_suite, "zeroshot", zeroshot.dataset, shots, seed, backbone).id == zeroshot.id
    # datasets and shot counts outside the suite's lists resolve too, with their own overrides
    assert job_for(smoke_suite, "rmt", "dtd", 16, 1, backbone).params["lam"] == 0.3
    assert job_for(smoke_suite, "rmt", "dtd", 2, 1, backbone).params["lam"] == 1.0
    assert job_for(smoke_suite, "coop", "dtd", 2, 5, backbone).key["shots"] == 2
    assert job_for(smoke_suite, "no_such_method", "dtd", 1, 1, backbone) is None
    variant = MethodEntry("zs_photo", "zeroshot", {"templates": ["a photo of a {}."]})  # inherits shot-independence
    with_variant = dataclasses.replace(smoke_suite, method_entries={**smoke_suite.method_entries, "zs_photo": variant})
    job = job_for(with_variant, "zs_photo", "dtd", 4, 2, backbone)
    assert (job.shots, job.seed, job.params["templates"]) == (ANY, ANY, ("a photo of a {}.",))
    other = {**backbone, "builtin": "other"}
    assert job_for(smoke_suite, "coop", "dtd", 2, 5, other).id != job_for(smoke_suite, "coop", "dtd", 2, 5, backbone).id


def test_protocol_is_part_of_the_job_key(smoke_suite):
    job = expand(smoke_suite, ["coop"], shots=[4], seeds=[2])[0]
    assert job.protocol == smoke_suite.protocol == "fewshot" and job.key["protocol"] == "fewshot"
    elsewhere = dataclasses.replace(smoke_suite, protocol="base_to_new")  # a future protocol: new ids
    moved = expand(elsewhere, ["coop"], shots=[4], seeds=[2])[0]
    assert moved.key == {**job.key, "protocol": "base_to_new"} and moved.id != job.id


def test_job_ids_are_stable_across_processes(smoke_suite):
    job = expand(smoke_suite, ["coop"], shots=[4], seeds=[2])[0]
    code = ("from bench.jobs import stable_id; import json, sys; "
            "print(stable_id(json.loads(sys.stdin.read())))")
    other = subprocess.run([sys.executable, "-c", code], input=json.dumps(job.key), text=True,
                           capture_output=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.stdout.strip() == job.id == stable_id(dict(reversed(list(job.key.items()))))


def record(job_id, created, status="ok", **extra):
    return {"job_id": job_id, "method": "m", "dataset": "d", "shots": 1, "seed": 1, "backbone": {},
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
    assert not list(tmp_path.rglob("*.tmp"))


def test_unreadable_record_is_skipped_not_deleted(tmp_path):
    write_record(tmp_path, record("a", "2026-01-01T00:00:00.000001+00:00"))
    bad = tmp_path / "records" / "m" / "d" / "x.json"
    bad.write_text("{not json")
    assert [r["job_id"] for r in read_records(tmp_path)] == ["a"]
    assert bad.exists()


def test_foreign_json_in_records_is_skipped_not_fatal(tmp_path):
    write_record(tmp_path, record("a", "2026-01-01T00:00:00.000001+00:00", "ok"))
    folder = tmp_path / "records" / "m" / "d"
    for name, text in (("x.json", '{"hello": "world"}'), ("y.json", "[1, 2, 3]"),
                       ("z.json", '{"job_id": "q", "created_at": 5}'), ("w.json", "\xff\xfe not json")):
        (folder / name).write_text(text, encoding="latin-1")
    skipped = []
    records = read_records(tmp_path, skipped)
    assert [r["job_id"] for r in records] == ["a"] and len(skipped) == 4
    assert set(latest_per_job(records)) == {"a"}

"""A newcomer's first commands: `bench run` shows its slow steps and ends with what ran and what to
type next; `bench show` reads one record; `bench --version`; --methods/--datasets/--shots/--seeds on
`bench status` and `bench report`."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import REPO, copy_tasks_with_test_grid


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """The repository's tasks file, run from tmp_path (results land in tmp_path/results/<suite>)."""
    monkeypatch.chdir(tmp_path)
    return copy_tasks_with_test_grid(tmp_path / "tasks.toml")


def bench(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------- bench run: visible work
def test_a_real_local_run_shows_generation_and_encoding_and_ends_with_a_table_and_the_next_command(
        tasks, tmp_path, monkeypatch):
    from bench.status import LiveView

    # A fresh cache: the smoke dataset is generated and its features encoded in this run (the smoke
    # backbone is a shipped asset, expanded in a moment).
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    events, original = [], LiveView.progress

    def spy(self, job, stage, done, total):
        events.append((job.label if job is not None else None, stage, done, total))
        original(self, job, stage, done, total)

    monkeypatch.setattr(LiveView, "progress", spy)
    result = bench("run", "--suite", "smoke", "--methods", "zeroshot", "--datasets", "smoke_shapes",
                   "--tasks", tasks)  # default executor: local, the job runs in a worker subprocess
    assert result.exit_code == 0, result.output
    assert (None, "generating dataset smoke_shapes", 0, 1) in events  # the driver's preflight
    assert (None, "generating dataset smoke_shapes", 1, 1) in events
    job = "zeroshot/smoke_shapes/any-shot"
    assert (job, "loading backbone smoke_tiny", 1, 1) in events  # from the worker, over its pipe
    encoding = [(done, total) for label, stage, done, total in events
                if label == job and stage == "encoding smoke_shapes/test"]
    assert encoding[0][0] == 0 and encoding[-1][0] == encoding[-1][1] > 0  # images encoded / total
    out = result.output
    assert "driver: generating dataset smoke_shapes ..." in out  # the plain (no terminal) view
    table = [line.split() for line in out[out.index("this run"):].splitlines()]
    row = next(r for r in table if r[:3] == ["zeroshot", "smoke_shapes", "any"])
    record = json.loads(next((tmp_path / "results" / "smoke" / "records").glob("*/*/*.json")).read_text())
    assert row[3] == f"{record['metrics']['top1']:.2f}" and row[5] == "0"
    assert out.strip().splitlines()[-1] == "next: bench report --suite smoke"
    again = bench("run", "--suite", "smoke", "--methods", "zeroshot", "--datasets", "smoke_shapes", "--tasks", tasks)
    assert "nothing to run; next: bench report --suite smoke" in again.output


# ---------------------------------------------------------------- records written by hand (no model)
def write_records(tasks, cells):
    """Ok records with the job ids the smoke suite resolves to, for (method, dataset, shots, seed, top1)."""
    from bench.cli import load_config
    from bench.jobs import job_for
    from bench.results import write_record

    suite = load_config(tasks).suite("smoke")
    written = []
    for n, (method, dataset, shots, seed, top1) in enumerate(cells):
        job = job_for(suite, method, dataset, shots, seed, suite.backbone.identity())
        record = {"schema": 1, "job_id": job.id, "suite": "smoke", "method": job.method, "base_method": job.base,
                  "method_version": job.version, "dataset": dataset, "shots": job.shots, "seed": job.seed,
                  "protocol": job.protocol, "backbone": job.backbone, "params": job.params, "status": "ok",
                  "error": None, "metrics": {"top1": top1}, "validation": "none",
                  "config": {"precision": "fp32", "num_classes": 10, "templates": ["a photo of a {}."]},
                  "split": {"split_digest": "s" * 64, "fewshot_digest": "f" * 64, "train_items": shots * 10,
                            "val_items": 0, "test_items": 240},
                  "timings": {"fit_s": 1.5, "eval_s": 0.25, "wall_s": 2.0}, "peak_memory_bytes": 3 * 2 ** 20,
                  "trainable_params": 10, "state_bytes": 40, "device": "cpu (test)", "host": "testhost",
                  "git": {"sha": "0123456789abcdef", "dirty": False}, "versions": {"bench": "0.1.0"},
                  "artifacts": [], "created_at": f"2025-01-01T00:00:{n:02d}.000000+00:00"}
        write_record(suite.results_dir, record)
        written.append(record)
    return written


def test_show_by_full_id_and_by_prefix(tasks):
    record, = write_records(tasks, [("linear_probe", "smoke_shapes", 4, 2, 61.25)])
    job_id = record["job_id"]
    full = bench("show", job_id, "--suite", "smoke", "--tasks", tasks)
    assert full.exit_code == 0, full.output
    lines = full.output.splitlines()
    assert lines[0] == f"job {job_id}  linear_probe/smoke_shapes/4shot/seed2"
    text = " ".join(full.output.split())
    for expected in ("status ok", "top1 61.25", "validation none", "split_digest " + "s" * 64,
                     "fit 1.50s eval 0.25s wall 2.00s", "peak 3.0 MiB", "git 0123456789ab", "bench 0.1.0",
                     "artifacts (none)", f"logs/{job_id}.log (missing)", "backbone smoke_tiny"):
        assert expected in text, expected
    assert bench("show", job_id[:5], "--suite", "smoke", "--tasks", tasks).output == full.output


def test_show_says_which_record_a_report_uses_when_the_newest_failed(tasks):
    record, = write_records(tasks, [("zeroshot", "smoke_shapes", 0, 0, 40.0)])
    from bench.results import write_record

    failed = {**record, "status": "failed", "error": "RuntimeError: boom", "metrics": {},
              "traceback": "Traceback (most recent call last):\n  File x\nRuntimeError: boom",
              "created_at": "2025-02-01T00:00:00.000000+00:00"}
    write_record(tasks.parent / "results" / "smoke", failed)
    out = bench("show", record["job_id"], "--suite", "smoke", "--tasks", tasks).output
    assert "failed  (newest of 2 records; a report uses the newest ok one, 2025-01-01T00:00:00" in out
    assert "RuntimeError: boom" in out and "zeroshot/smoke_shapes/any-shot" in out


def test_show_ambiguous_prefix_lists_the_candidates_and_unknown_is_one_line(tasks):
    records = write_records(tasks, [("linear_probe", "smoke_shapes", 1, s, 50.0 + s) for s in (1, 2, 3, 4, 5)]
                            + [("coop", "smoke_shapes", 1, s, 50.0) for s in (1, 2, 3, 4, 5)])
    ids = sorted(r["job_id"] for r in records)
    prefix = next(a[:1] for a, b in zip(ids, ids[1:]) if a[0] == b[0])  # 10 hex ids: some share a first digit
    sharing = [i for i in ids if i.startswith(prefix)]
    result = bench("show", prefix, "--suite", "smoke", "--tasks", tasks)
    assert result.exit_code == 2
    assert f"job id prefix '{prefix}' is ambiguous: {len(sharing)} jobs match" in result.output
    assert all(i in result.output for i in sharing) and "Traceback" not in result.output
    unknown = bench("show", "zzzz", "--suite", "smoke", "--tasks", tasks)
    assert unknown.exit_code == 2 and len(unknown.output.strip().splitlines()) == 1
    assert "no record of a job 'zzzz'" in unknown.output


# ---------------------------------------------------------------- --version
def test_version_prints_the_version_without_importing_torch():
    from bench import __version__

    result = bench("--version")
    assert result.exit_code == 0 and result.output.strip() == f"bench {__version__}"
    code = ("import sys; from typer.testing import CliRunner; from bench.cli import app; "
            "r = CliRunner().invoke(app, ['--version']); "
            "print(r.exit_code, r.output.strip(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.split() == ["0", "bench", __version__, "False"], out.stderr


# ---------------------------------------------------------------- filters on status and report
def test_status_filters(tasks):
    write_records(tasks, [("zeroshot", "smoke_shapes", 0, 0, 40.0), ("linear_probe", "smoke_shapes", 1, 1, 55.0)])
    result = bench("status", "--suite", "smoke", "--methods", "zeroshot,linear_probe", "--datasets", "smoke_shapes",
                   "--shots", "1", "--seeds", "1,2", "--tasks", tasks)
    assert result.exit_code == 0, result.output
    assert "3 jobs: 2 done, 0 failed, 0 running, 1 pending" in result.output  # zeroshot once + 1 shot × 2 seeds
    assert "smoke_textures" not in result.output


@pytest.mark.parametrize("command", ["status", "report"])
@pytest.mark.parametrize("flag, value, message", [
    ("--methods", "zeroshoot", "unknown method 'zeroshoot' (did you mean 'zeroshot'?)"),
    ("--datasets", "smoke_shape", "unknown dataset 'smoke_shape' (did you mean 'smoke_shapes'?)"),
    ("--shots", "0", "--shots values must be integers from 1 to"),
    ("--seeds", "one", "--seeds takes a comma-separated list of integers"),
])
def test_bad_filters_are_one_line_and_exit_2(tasks, command, flag, value, message):
    result = bench(command, "--suite", "smoke", flag, value, "--tasks", tasks)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def table_rows(output: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table under `heading`, as lists of cell texts."""
    part = output[output.index(heading):].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in part.splitlines()[2:]]


def test_report_filters_narrow_the_tables_and_n_counts_against_the_seeds_asked_for(tasks):
    write_records(tasks, [("zeroshot", "smoke_shapes", 0, 0, 40.0), ("zeroshot", "smoke_textures", 0, 0, 30.0),
                          ("linear_probe", "smoke_shapes", 1, 1, 50.0), ("linear_probe", "smoke_shapes", 1, 2, 60.0),
                          ("linear_probe", "smoke_shapes", 4, 1, 70.0)])
    whole = bench("report", "--suite", "smoke", "--tasks", tasks)
    assert whole.exit_code == 0, whole.output
    assert sorted(r[0] for r in table_rows(whole.output, "### 1-shot")) == ["linear_probe", "zeroshot"]
    # the suite declares 2 seeds: the 4-shot cell (seed 1 only) is short
    four = {r[0]: r for r in table_rows(whole.output, "### 4-shot")}
    assert four["linear_probe"][2] == "70.00 ± 0.00 (n=1)"

    only = bench("report", "--suite", "smoke", "--methods", "linear_probe", "--datasets", "smoke_shapes",
                 "--shots", "1,4", "--seeds", "1", "--tasks", tasks)
    assert only.exit_code == 0, only.output
    # one seed asked for: a one-seed cell is complete (no ± over one value, no n marker)
    assert table_rows(only.output, "### 1-shot") == [["linear_probe", "none", "50.00", "50.00"]]
    assert table_rows(only.output, "### 4-shot") == [["linear_probe", "none", "70.00", "70.00"]]
    assert "### 16-shot" not in only.output and "zeroshot" not in only.output and "smoke_textures" not in only.output
    board = table_rows(only.output, "### Leaderboard")
    assert [r[:2] for r in board] == [["1", "linear_probe"]]
    assert "Records: 2 in the tables (of 5 ok)" in only.output  # of every ok record in the folder
    assert "Filtered: --methods linear_probe --datasets smoke_shapes --shots 1,4 --seeds 1" in only.output

    zeroshot = bench("report", "--suite", "smoke", "--methods", "zeroshot", "--format", "csv", "--tasks", tasks)
    assert zeroshot.exit_code == 0 and "linear_probe" not in zeroshot.output and "zeroshot" in zeroshot.output

"""Per-job timeouts: `timeout_min` per method in tasks.toml and `bench run --job-timeout`. A job past
its timeout is killed by its executor and gets a failed record saying so; the grid goes on."""

import textwrap
import time

import pytest
from typer.testing import CliRunner

from bench import config
from bench.cli import app
from bench.errors import BenchError
from bench.executors import make_executor
from bench.jobs import expand, parse_job_timeout, with_job_timeout
from bench.scheduler import execute
from tests.scheduler.fake_runner import FakeJob, executions
from tests.scheduler.helpers import RUNNER, all_records, record_counts


def grid_with_a_hang(timeout_s=1.0, hang=None):
    """Four jobs of one dataset; seed 1 hangs (sleeps 60 s) unless its timeout stops it."""
    return [FakeJob("d0", s, (hang or {"sleep": 60}) if s == 1 else {}, timeout_s=timeout_s) for s in range(4)]


def check_only_the_hang_timed_out(suite, result, jobs, took):
    records = {r["seed"]: r for r in all_records(suite.results_dir)}
    assert took < 20  # not 60 s: the hanging job was stopped
    assert [records[s]["status"] for s in range(4)] == ["ok", "failed", "ok", "ok"]
    error = records[1]["error"]
    assert error.startswith("timed out after 0.0166667 min (timeout_min = 0.0166667 for fake; raise it in "
                            "tasks.toml [methods.fake] or with --job-timeout)"), error
    assert len(result.ok) == 3 and len(result.failed) == 1 and not result.not_run
    assert set(record_counts(suite.results_dir).values()) == {1}  # one record per job, none twice
    assert executions(suite.results_dir).count(jobs[1].id) == 1
    assert not list((suite.results_dir / "locks").glob("*.lock"))  # the timed-out job's claim is released
    return records


@pytest.mark.parametrize("hang", [{"sleep": 60}, {"sleep": 60, "ignore_sigterm": True}])
def test_local_kills_a_hanging_job_at_its_timeout_and_the_grid_goes_on(suite, monkeypatch, hang):
    monkeypatch.setattr("bench.executors.handle.TERM_GRACE_S", 0.5)  # SIGTERM ignored: SIGKILL after 0.5 s
    jobs = grid_with_a_hang(hang=hang)
    t0 = time.monotonic()
    result = execute(suite, jobs, make_executor("local", jobs_per_gpu=1, runner=RUNNER))
    records = check_only_the_hang_timed_out(suite, result, jobs, time.monotonic() - t0)
    assert "its output: logs/fake-d0-1-1.log" in records[1]["error"]
    assert "fake job fake-d0-1-1 running" in records[1]["log_tail"]
    pids = {s: records[s]["worker"]["pid"] for s in (0, 2, 3)}
    assert pids[2] == pids[3] != pids[0]  # the killed worker was replaced by a fresh one


def test_inline_stops_a_hanging_job_at_its_timeout(suite):
    jobs = grid_with_a_hang()
    t0 = time.monotonic()
    result = execute(suite, jobs, make_executor("inline", runner=RUNNER))
    check_only_the_hang_timed_out(suite, result, jobs, time.monotonic() - t0)


def test_a_job_within_its_timeout_is_not_touched(suite):
    jobs = [FakeJob("d0", s, {"sleep": 0.2}, timeout_s=30.0) for s in range(2)]
    result = execute(suite, jobs, make_executor("local", jobs_per_gpu=1, runner=RUNNER))
    assert len(result.ok) == 2 and not result.failed
    assert len({r["worker"]["pid"] for r in all_records(suite.results_dir)}) == 1  # one warm worker


def test_slurm_chunks_enforce_the_timeout_per_job(suite, monkeypatch):
    from tests.scheduler.helpers import REPO

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # submitit task processes unpickle the test jobs
    jobs = grid_with_a_hang()
    t0 = time.monotonic()
    executor = make_executor("slurm", slurm_timeout_min=5, runner=RUNNER, cluster="local", poll_s=0.2)
    result = execute(suite, jobs, executor)
    check_only_the_hang_timed_out(suite, result, jobs, time.monotonic() - t0)


# tasks.toml and the command line

TASKS = """
default_suite = "t"
[backbones.tiny]
builtin = "smoke"
[suites.t]
datasets = ["dtd"]
shots = [1]
seeds = [1]
backbone = "tiny"
data_root = "data"
results_dir = "results"
methods = ["coop"]
"""


def load_tasks(tmp_path, extra=""):
    path = tmp_path / "tasks.toml"
    path.write_text(TASKS + textwrap.dedent(extra))
    return config.load_config(path)


def test_timeout_min_is_per_method_and_variants_inherit_it(tmp_path):
    cfg = load_tasks(tmp_path, """
        [methods.coop]
        timeout_min = 30
        [methods.coop_same]
        base = "coop"
        [methods.coop_short]
        base = "coop"
        timeout_min = 0.5
    """)
    suite = cfg.suite("t")
    timeouts = {job.method: job.timeout_s for job in expand(suite, ["coop", "coop_same", "coop_short", "zeroshot"])}
    assert timeouts == {"coop": 1800.0, "coop_same": 1800.0, "coop_short": 30.0, "zeroshot": None}
    assert "timeout_min" not in suite.method_entries["coop"].params


def test_a_timeout_changes_no_job_id_and_no_params(tmp_path):
    plain = expand(load_tasks(tmp_path).suite("t"), ["coop", "zeroshot"])
    timed = expand(load_tasks(tmp_path, "[methods.coop]\ntimeout_min = 5\n").suite("t"), ["coop", "zeroshot"])
    assert [j.id for j in plain] == [j.id for j in timed] and [j.params for j in plain] == [j.params for j in timed]
    assert timed[0].timeout_s == 300.0 and "timeout" not in str(timed[0].key)
    overridden = with_job_timeout(timed, 60.0)
    assert [j.id for j in overridden] == [j.id for j in plain] and {j.timeout_s for j in overridden} == {60.0}
    assert with_job_timeout(timed, None) == timed


@pytest.mark.parametrize("value, message", [
    ("-1", "timeout_min = -1 is out of range (0, 527040)"),
    ("0", "timeout_min = 0 is out of range"),
    ('"x"', "key 'timeout_min' must be a number in (0, 527040), got a string 'x'"),
    ("true", "key 'timeout_min' must be a number"),
    ("inf", "timeout_min = inf is out of range"),
])
def test_a_bad_timeout_min_is_one_line_naming_the_method(tmp_path, value, message):
    with pytest.raises(BenchError) as info:
        load_tasks(tmp_path, f"[methods.coop]\ntimeout_min = {value}\n")
    text = str(info.value)
    assert "[methods.coop]" in text and message in text and "\n" not in text, text


@pytest.mark.parametrize("value", ["0", "-2", "abc", "nan", "inf", ""])
def test_parse_job_timeout_refuses_what_is_not_a_positive_number(value):
    with pytest.raises(BenchError, match="--job-timeout takes minutes, a number > 0"):
        parse_job_timeout(value)


def test_parse_job_timeout_gives_seconds():
    assert parse_job_timeout(None) is None and parse_job_timeout("0.5") == 30.0 and parse_job_timeout("2") == 120.0


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # results/ lands in tmp_path
    path = tmp_path / "tasks.toml"
    path.write_text(TASKS)
    return path


@pytest.mark.parametrize("value", ["0", "abc", "-1"])
def test_cli_bad_job_timeout_is_exit_2_before_any_job(tasks, value):
    run = CliRunner().invoke(app, ["run", "--tasks", str(tasks), "--runner", RUNNER, "--job-timeout", value])
    assert run.exit_code == 2, run.output
    assert "--job-timeout takes minutes" in run.output and not (tasks.parent / "results").exists()


@pytest.mark.parametrize("how", ["flag", "tasks file"])
def test_cli_run_kills_a_job_past_its_timeout(tasks, monkeypatch, how):
    monkeypatch.setenv("FAKE_SLEEP_S", "60")  # jobs from `bench run` take their sleep from here
    args = ["--job-timeout", "0.02"]
    if how == "tasks file":
        tasks.write_text(TASKS + "[methods.coop]\ntimeout_min = 0.02\n")
        args = []
    t0 = time.monotonic()
    run = CliRunner().invoke(app, ["run", "--tasks", str(tasks), "--gpus", "0", "--runner", RUNNER, *args])
    assert run.exit_code == 1, run.output
    assert time.monotonic() - t0 < 20
    [record] = all_records(tasks.parent / "results")
    assert record["status"] == "failed" and record["error"].startswith("timed out after 0.02 min (timeout_min = "
                                                                      "0.02 for coop; raise it in tasks.toml")
    assert "timeout" not in str(record["params"])
    assert "timed out after 0.02 min" in run.output

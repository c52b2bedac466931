"""A newcomer's first minutes: read-only commands answer without torch, parameters can be listed and
set for one run (`--set`), every tasks-file value is checked when the file is read, and a training
job's log shows its epochs."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bench.cli import app
from tests.conftest import REPO

runner = CliRunner()


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """The repository's tasks file, copied and run from tmp_path (results land in tmp_path/results)."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(REPO / "tasks.toml", tmp_path / "tasks.toml")
    return tmp_path / "tasks.toml"


def bench(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


# ---------------------------------------------------------------- no torch for read-only commands
# Runs the CLI in a fresh interpreter, then reports which heavy modules the command imported.
PROBE = """
import sys
from bench.cli import app
try:
    app(sys.argv[1:], prog_name="bench")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print("HEAVY", sorted(m for m in ("torch", "open_clip", "torchvision") if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize("args, code, expect", [
    (["--help"], 0, "list"),
    (["list", "methods"], 0, "clip_adapter"),
    (["list", "datasets"], 0, "imagenet"),
    (["list", "suites"], 0, "smoke"),
    (["list", "params", "clip_adapter"], 0, "ratio"),
    (["status", "--suite", "smoke"], 0, "pending"),
    (["status", "--suite", "smoke", "--set", "coop.n_ctx=4"], 0, "pending"),
    (["report", "--suite", "smoke"], 0, "smoke"),
    (["cache", "info"], 0, "smoke_shapes"),
    (["data", "check", "--root", "no-data"], 1, "missing"),  # exit 1: nothing is there
])
def test_read_only_commands_never_import_torch(tasks, args, code, expect):
    env = {**os.environ, "BENCH_TASKS": str(tasks), "BENCH_CACHE": str(tasks.parent / "cache"), "COLUMNS": "200"}
    fake = tasks.parent / "cache" / "features" / "0123456789abcdef"  # what `cache info` lists
    (fake / "smoke_shapes").mkdir(parents=True)
    (fake / "smoke_shapes" / "test-x.safetensors").write_bytes(b"0" * 10)
    (fake / "backbone.json").write_text(json.dumps({"name": "smoke_tiny"}))
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tasks.parent, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == code, out.stdout + out.stderr
    assert "HEAVY []" in out.stderr, out.stderr  # torch, open_clip and torchvision were never imported
    assert expect in out.stdout


# ---------------------------------------------------------------- bench list params
def test_list_params_shows_default_type_range_and_help(tasks):
    result = bench("list", "params", "clip_adapter", "--tasks", tasks)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if re.search(r"│ ratio\s+│", line))
    assert re.search(r"│ 0\.2\s+│ float\s+│ \[0\.0, 1\.0\]\s+│ residual", row), row
    assert re.search(r"│ solver\s+│ \"sklearn\"\s+│ str\s+│ sklearn \| torch", bench(
        "list", "params", "linear_probe", "--tasks", tasks).output)
    variant = bench("list", "params", "mask_tuning_zhao", "--tasks", tasks).output
    assert "variant of mask_tuning" in variant and "uniform" in variant  # the tasks file's value for it


@pytest.mark.parametrize("args, message", [
    (["list", "params"], "`bench list params` needs a method name (choose from: clip_adapter, "),
    (["list", "params", "clip_adaptor"], "unknown method 'clip_adaptor' (did you mean 'clip_adapter'?)"),
])
def test_list_params_mistakes(tasks, args, message):
    assert message in one_line_error(bench(*args, "--tasks", tasks))


# ---------------------------------------------------------------- --set
@pytest.mark.parametrize("command", ["run", "status", "report"])
@pytest.mark.parametrize("assignment, message", [
    ("coopp.n_ctx=4", "--set coopp: unknown method 'coopp' (did you mean 'coop'?)"),
    ("coop.n_ctxx=4", "--set coop: unknown parameter 'n_ctxx' (did you mean 'n_ctx'?)"),
    ("clip_adapter.ratio=7", "--set clip_adapter: ratio = 7 is out of range [0.0, 1.0]"),
    ("coop.n_ctx=four", "--set coop: parameter 'n_ctx' must be a positive integer, got a string 'four'"),
    ("linear_probe.solver=scipy", "--set linear_probe: solver = 'scipy' is not allowed (choose from: sklearn, torch)"),
    ("coop", "--set takes METHOD.PARAM=VALUE (e.g. coop.n_ctx=4), got 'coop'"),
])
def test_bad_set_is_one_line_exit_2_before_any_job(tasks, command, assignment, message):
    extra = ["--executor", "inline"] if command == "run" else []
    result = bench(command, "--suite", "smoke", "--set", assignment, "--tasks", tasks, *extra)
    assert message in one_line_error(result)
    assert not (tasks.parent / "results").exists()  # nothing ran, nothing was written


def dry_run_ids(*args) -> dict[str, str]:
    result = bench("run", "--suite", "smoke", "--dry-run", *args)
    assert result.exit_code == 0, result.output
    return {line.split()[1]: line.split()[0] for line in result.output.splitlines()
            if line.startswith("  ") and "/" in line}


def test_set_is_part_of_the_job_id(tasks):
    plain = dry_run_ids("--tasks", tasks)
    changed = dry_run_ids("--tasks", tasks, "--set", "coop.n_ctx=4", "--set", "rmt.lam=0.3")
    assert plain.keys() == changed.keys()
    for label, job_id in plain.items():
        assert (job_id != changed[label]) == label.startswith(("coop/", "rmt/")), label
    # a value equal to what the tasks file resolves to is the same configuration, so the same job
    assert dry_run_ids("--tasks", tasks, "--set", "coop.n_ctx=16") == plain


def test_set_applies_after_the_tasks_file_for_that_name_only(smoke_config):
    from bench.jobs import resolve_params, with_cli_set

    suite = smoke_config.suite("coop11")
    assert resolve_params(suite, "rmt", "caltech101", 16)[1]["lam"] == 0.3  # a [[methods.rmt.when]] entry
    changed = with_cli_set(suite, ["rmt.lam=0.5", "mask_tuning.l2=0.5", "coop.aug_scale=[0.5, 1.0]"])
    assert resolve_params(changed, "rmt", "caltech101", 16)[1]["lam"] == 0.5  # --set beats `when`
    assert resolve_params(changed, "rmt", "imagenet", 1)[1]["lr"] == 3e-5  # the rest of `when` stays
    assert resolve_params(changed, "coop", "dtd", 1)[1]["aug_scale"] == (0.5, 1.0)
    assert resolve_params(changed, "mask_tuning", "dtd", 1)[1]["l2"] == 0.5
    assert resolve_params(changed, "mask_tuning_zhao", "dtd", 1)[1]["l2"] == 1e-4  # a variant is its own name
    assert changed.cli_set == {"rmt": {"lam": 0.5}, "mask_tuning": {"l2": 0.5}, "coop": {"aug_scale": [0.5, 1.0]}}


# ---------------------------------------------------------------- validation when the file is read
@pytest.mark.parametrize("extra, message", [
    ("[methods.clip_adapter]\nratio = 7.0\n", "[methods.clip_adapter]: ratio = 7.0 is out of range [0.0, 1.0]"),
    ("[suites.bad]\ndatasets = [1]\nshots = [1]\nseeds = [1]\nbackbone = \"mine\"\n",
     "[suites.bad]: key 'datasets' must be a list of strings, got a list [1]"),
    ("[suites.bad]\ndatasets = []\nshots = [1]\nseeds = [1]\nbackbone = \"mine\"\n",
     "[suites.bad]: key 'datasets' must not be empty"),
    ("[suites.bad]\ndatasets = [\"dtd\", \"dtd\"]\nshots = [1]\nseeds = [1]\nbackbone = \"mine\"\n",
     "[suites.bad]: key 'datasets' lists dtd more than once"),
    ("[methods.v]\nbase = 3\n", "[methods.v]: key 'base' must be a string, got an integer 3"),
    ("[[methods.coop.when]]\ndatasets = [\"dtdd\"]\nset = { n_ctx = 4 }\n",
     "[[methods.coop.when]] #1: unknown dataset 'dtdd' (did you mean 'dtd'?)"),
    ("[[methods.coop.when]]\nshots = [\"x\"]\nset = { n_ctx = 4 }\n",
     "[[methods.coop.when]] #1: key 'shots' must be a list of positive integers, got a list ['x']"),
])
def test_tasks_file_mistakes_stop_the_dry_run_with_one_line(tasks, extra, message):
    tasks.write_text(tasks.read_text() + "\n[backbones.mine]\nbuiltin = \"smoke\"\n" + extra)
    output = one_line_error(bench("run", "--suite", "smoke", "--dry-run", "--tasks", tasks))
    assert f"{tasks} " in output and message in output


def test_a_non_utf8_tasks_file_and_a_suite_that_is_not_a_table(tasks):
    text = tasks.read_text()
    tasks.write_bytes(text.encode() + b"\n# r\xe9sum\xe9\n")
    assert "not UTF-8 text" in one_line_error(bench("list", "suites", "--tasks", tasks))
    tasks.write_text("[suites]\nsmoke = 3\n" + text.replace("[suites.smoke]", "[suites.smoke2]"))
    output = one_line_error(bench("list", "suites", "--tasks", tasks))
    assert "[suites.smoke]: must be a table, got an integer 3" in output


# ---------------------------------------------------------------- a real run with --set
def test_set_run_is_recorded_logs_its_epochs_and_status_and_report_find_it(tasks):
    cell = ["--suite", "smoke", "--methods", "clip_adapter", "--datasets", "smoke_shapes", "--shots", "1",
            "--seeds", "1", "--tasks", tasks]
    with_set = dry_run_ids(*cell, "--set", "clip_adapter.epochs=2")
    assert len(with_set) == 1 and with_set != dry_run_ids(*cell)
    job_id = next(iter(with_set.values()))
    result = bench("run", *cell, "--set", "clip_adapter.epochs=2", "--executor", "inline", "--device", "cpu")
    assert result.exit_code == 0, result.output
    (path,) = (tasks.parent / "results" / "smoke" / "records").glob("clip_adapter/*/*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["job_id"] == job_id
    assert record["config"]["cli_set"] == {"epochs": 2} and record["params"]["epochs"] == 2
    log = (tasks.parent / "results" / "smoke" / "logs" / f"{job_id}.log").read_text()
    epochs = re.findall(r"INFO bench\.train: clip_adapter epoch (\d)/2 loss \d+\.\d+ lr (\S+)", log)
    assert [e for e, _ in epochs] == ["1", "2"] and float(epochs[0][1]) == 1e-5, log  # epoch 1: warm-up lr

    def done(*extra):
        out = bench("status", "--suite", "smoke", "--methods", "clip_adapter", "--tasks", tasks, *extra).output
        return int(re.search(r"\d+ jobs: (\d+) done", out).group(1))

    assert done("--set", "clip_adapter.epochs=2") == 1 and done() == 0
    report = bench("report", "--suite", "smoke", "--tasks", tasks, "--set", "clip_adapter.epochs=2")
    assert report.exit_code == 0 and "| clip_adapter" in report.output, report.output
    assert "| clip_adapter" not in bench("report", "--suite", "smoke", "--tasks", tasks).output

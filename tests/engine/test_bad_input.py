"""Hostile input, as a table: every case is one located line on stderr, exit code 2, no traceback,
and no record written, before any job starts. Each case is (tasks-file edit, command line, the text
the line must hold); the tasks file is a one-suite, one-job smoke file, so a case whose check is
missing would run that job (and write its record) instead of stopping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

DATA = Path(os.environ["BENCH_CACHE"]) / "smoke" / "data"  # the tests' generated smoke data
BASE = f'''default_suite = "smoke"
[backbones.tiny]
builtin = "smoke"
[suites.smoke]
datasets = ["smoke_mini"]
shots = [1]
seeds = [1]
backbone = "tiny"
data_root = "{DATA}"
results_dir = "results"
precision = "fp32"
methods = ["zeroshot"]
'''


def swap(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def add(extra: str):
    return lambda text: text + extra


def openclip_backbone(pretrained: str = "", **fields):
    body = '\n'.join(f'{k} = "{v}"' for k, v in fields.items()) or 'model = "ViT-B-16-quickgelu"'
    return swap('builtin = "smoke"', body + (f'\npretrained = "{pretrained}"' if pretrained else ""))


RUN = ["run"]
CASES = {
    # ---- tasks.toml: types and shapes
    "dataset-not-a-string": (swap('["smoke_mini"]', "[1]"), RUN, "key 'datasets' must be a list of strings"),
    "suite-not-a-table": (lambda t: 'default_suite = "smoke"\n[suites]\nsmoke = 3\n', RUN,
                          "[suites.smoke]: must be a table, got an integer 3"),
    "base-not-a-string": (add('[methods.zs]\nbase = 3\n'), RUN, "[methods.zs]: key 'base' must be a string"),
    "not-utf8": (lambda t: t.replace("fp32", "fp32\u00e9").encode("latin-1"), RUN, "not UTF-8 text"),
    "empty-datasets": (swap('["smoke_mini"]', "[]"), RUN, "key 'datasets' must not be empty"),
    "empty-shots": (swap("shots = [1]", "shots = []"), RUN, "key 'shots' must not be empty"),
    "duplicate-datasets": (swap('["smoke_mini"]', '["smoke_mini", "smoke_mini"]'), RUN,
                           "lists smoke_mini more than once"),
    "huge-seed-in-file": (swap("seeds = [1]", "seeds = [99999999999]"), RUN, "positive integers up to 2147483647"),
    "when-unknown-dataset": (add('[[methods.zeroshot.when]]\ndatasets = ["smoke_mni"]\nset = {}\n'), RUN,
                             "[[methods.zeroshot.when]] #1: unknown dataset 'smoke_mni' (did you mean 'smoke_mini'?)"),
    "when-shots-not-ints": (add('[[methods.zeroshot.when]]\nshots = ["x"]\nset = {}\n'), RUN,
                            "key 'shots' must be a list of positive integers"),
    "unknown-suite-key": (swap("precision", "precison"), RUN, "unknown key 'precison' (did you mean 'precision'?)"),
    "bad-precision": (swap('"fp32"', '"fp16"'), RUN, "precision = 'fp16' is not allowed"),
    "unknown-default-suite": (swap('default_suite = "smoke"', 'default_suite = "smok"'), RUN,
                              "default_suite: unknown suite 'smok' (did you mean 'smoke'?)"),
    "unknown-method-in-suite": (swap('["zeroshot"]', '["zeroshto"]'), RUN,
                                "unknown method 'zeroshto' (did you mean 'zeroshot'?)"),
    "param-wrong-type": (add("[methods.zeroshot]\ntemplates = 3\n"), RUN, "parameter 'templates' must be"),
    # ---- names that become paths
    "variant-escapes": (add('[methods."zs/../../../../evil"]\nbase = "zeroshot"\n'), RUN,
                        "method name 'zs/../../../../evil' must start with a letter"),
    "suite-name-with-slash": (swap("[suites.smoke]", '[suites."a/b"]'), RUN, "suite name 'a/b' must start"),
    "backbone-name-dotdot": (swap("[backbones.tiny]", '[backbones."..tiny"]'), RUN, "backbone name '..tiny'"),
    # ---- paths
    "unset-variable": (swap(f'"{DATA}"', '"${BENCH_TEST_UNSET_VAR}/data"'), RUN,
                       "[suites.smoke] data_root: ${BENCH_TEST_UNSET_VAR} is not set"),
    "results-dir-is-a-file": (swap('"results"', '"a-file"'), RUN, "is not a writable folder (it is a file)"),
    "results-dir-under-a-file": (swap('"results"', '"a-file/results"'), RUN, "is not a writable folder"),
    # ---- backbones, checked before any job
    "unknown-builtin": (swap('"smoke"\n[suites', '"smok"\n[suites'), RUN,
                        "unknown builtin backbone 'smok' (did you mean 'smoke'?)"),
    "unknown-model": (openclip_backbone(model="ViT-B-166-quickgelu"), RUN,
                      "unknown open_clip model 'ViT-B-166-quickgelu' (did you mean 'ViT-B-16-quickgelu'?)"),
    "tag-typo": (openclip_backbone("openaii"), RUN, "(did you mean 'openai'?)"),
    "missing-checkpoint": (openclip_backbone("/nonexistent/weights.pt"), RUN,
                           "pretrained '/nonexistent/weights.pt' is neither a checkpoint file nor a tag"),
    "garbage-checkpoint": (openclip_backbone("garbage.pt"), RUN, "garbage.pt is not a checkpoint"),
    "weights-not-offline": (openclip_backbone("openai"), RUN, "are not available offline"),
    "local-dir-missing": (openclip_backbone(local_dir="/nonexistent/clip"), RUN, "local_dir /nonexistent/clip is not a folder"),
    "local-dir-no-config": (openclip_backbone(local_dir="empty-dir"), RUN, "cannot read open_clip_config.json"),
    "local-dir-no-weights": (openclip_backbone(local_dir="config-only"), RUN, "holds no weights file"),
    "two-backbone-sources": (swap('builtin = "smoke"', 'builtin = "smoke"\nlocal_dir = "x"'), RUN,
                             "give exactly one of model (+ pretrained), local_dir or builtin"),
    # ---- command-line flags
    "seeds-twice": (None, ["run", "--seeds", "5,5"], "--seeds lists 5 more than once"),
    "huge-seed": (None, ["run", "--seeds", "99999999999999999999999"], "--seeds values must be integers from 1 to"),
    "seed-zero": (None, ["run", "--seeds", "0"], "--seeds values must be integers from 1 to"),
    "shots-word": (None, ["status", "--shots", "x"], "--shots takes a comma-separated list of integers"),
    "methods-comma": (None, ["run", "--methods", ","], "--methods ',' names nothing"),
    "datasets-empty": (None, ["report", "--datasets", ""], "--datasets '' names nothing"),
    "methods-typo": (None, ["run", "--methods", "zeroshto"], "unknown method 'zeroshto' (did you mean 'zeroshot'?)"),
    "datasets-typo": (None, ["run", "--datasets", "smoke_min"], "(did you mean 'smoke_mini'?)"),
    "gpus-word": (None, ["run", "--gpus", "abc"], "--gpus abc: 'abc' is not a GPU index"),
    "gpus-negative": (None, ["run", "--gpus", "0,-1"], "'-1' is not a GPU index"),
    "device-word": (None, ["run", "--device", "foo"], "--device foo: not a device"),
    "device-cuda-n-local": (None, ["run", "--device", "cuda:1"], "use --gpus 1"),
    "device-mps-local": (None, ["run", "--device", "mps"], "--executor local runs on cpu or its GPUs"),
    "jobs-per-gpu-zero": (None, ["run", "--jobs-per-gpu", "0"], "--jobs-per-gpu must be at least 1, got 0"),
    "chunk-size-negative": (None, ["run", "--executor", "ray", "--chunk-size", "-1"], "--chunk-size must be at least 1"),
    "unknown-executor": (None, ["run", "--executor", "lcal"], "unknown executor 'lcal' (did you mean 'local'?)"),
    "option-for-other-executor": (None, ["run", "--chunk-size", "4"], "--chunk-size does not apply to --executor local"),
    "force-and-retry": (None, ["run", "--force", "--retry-failed"], "--force and --retry-failed contradict"),
    "set-unknown-param": (None, ["run", "--set", "zeroshot.nope=1"], "--set zeroshot: unknown parameter 'nope'"),
    "unknown-backbone-flag": (None, ["run", "--backbone", "tny"], "unknown backbone 'tny' (did you mean 'tiny'?)"),
    "unknown-suite-flag": (None, ["run", "--suite", "smoek"], "unknown suite 'smoek' (did you mean 'smoke'?)"),
    "report-format": (None, ["report", "--format", "xlsx"], "unknown --format 'xlsx'"),
    "report-out-folder": (None, ["report", "--out", "empty-dir"], "--out empty-dir: is a folder; give a file name"),
    "report-results-missing": (None, ["report", "--results", "nowhere"], "--results nowhere: not a folder"),
    "list-typo": (None, ["list", "methodz"], "unknown list target 'methodz' (did you mean 'methods'?)"),
    "list-params-typo": (None, ["list", "params", "zeroshto"], "unknown method 'zeroshto' (did you mean 'zeroshot'?)"),
    "tasks-is-a-folder": (None, ["run", "--tasks", "empty-dir"], "empty-dir: cannot read the tasks file"),
    "tasks-missing": (None, ["run", "--tasks", "nope.toml"], "tasks file not found: nope.toml"),
    "data-root-is-a-file": (None, ["data", "check", "--root", "a-file"], "--root a-file: is a file"),
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with the props the cases name: a file, an empty folder, a garbage
    checkpoint, a local_dir with a config and no weights. HF_HUB_CACHE is empty: nothing is cached."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("BENCH_TEST_UNSET_VAR", raising=False)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint at all")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "open_clip_config.json").write_text('{"model_cfg": {"embed_dim": 8}}')
    return tmp_path


def invoke(args: list[str], tasks: Path):
    if "--tasks" not in args and args[0] not in ("list", "data") or args[:2] == ["list", "params"]:
        args = [*args, "--tasks", str(tasks)]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("edit, args, expected", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_located_line_and_exit_2_before_any_job(workdir, edit, args, expected):
    tasks = workdir / "tasks.toml"
    text = edit(BASE) if edit else BASE
    tasks.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = invoke(args, tasks)
    output = result.output
    assert result.exit_code == 2, (output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not an exception the CLI let through
    assert expected in output and "Traceback" not in output, output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    assert not list(workdir.glob("**/records/**/*.json")), "a job ran"


def test_an_unset_variable_only_stops_the_suite_that_uses_it(workdir):
    tasks = workdir / "tasks.toml"
    tasks.write_text(BASE + '[suites.cluster]\ndatasets = ["smoke_mini"]\nshots = [1]\nseeds = [1]\n'
                     'backbone = "tiny"\nresults_dir = "${BENCH_TEST_UNSET_VAR}/results"\n')
    assert invoke(["status"], tasks).exit_code == 0  # the default suite does not need the variable
    result = invoke(["status", "--suite", "cluster"], tasks)
    assert result.exit_code == 2 and "[suites.cluster] results_dir: ${BENCH_TEST_UNSET_VAR} is not set" in result.output


@pytest.mark.parametrize("body, expected", [
    ("raise RuntimeError('plugin exploded')", "raised RuntimeError while importing at "),
    ("import no_such_module_for_bench", "which does not import"),
])
def test_a_broken_plugin_module_is_one_line(workdir, monkeypatch, body, expected):
    from bench.registry import METHODS

    (workdir / "broken_plugin.py").write_text(body + "\n")
    monkeypatch.syspath_prepend(str(workdir))
    monkeypatch.setenv("BENCH_PLUGINS", "broken_plugin")
    monkeypatch.setattr(METHODS, "_discovered", False)  # discover again, with the plug-in
    (workdir / "tasks.toml").write_text(BASE)
    result = invoke(["list", "methods"], workdir / "tasks.toml")
    assert result.exit_code == 2 and expected in result.output and "broken_plugin" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_read_only_results_folder_stops_before_any_job(workdir, monkeypatch):
    """(As root a chmod does not make a folder read-only, so the refusal of the write is simulated.)"""
    import errno

    from bench import scheduler

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(scheduler.tempfile, "TemporaryFile", read_only)
    (workdir / "tasks.toml").write_text(BASE)
    result = invoke(["run"], workdir / "tasks.toml")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"results_dir {workdir / 'results'} is not a writable folder (Read-only file system)" in result.output
    assert not list(workdir.glob("**/records/**/*.json"))


def test_the_end_of_a_run_says_who_ran_what_and_why_the_rest_did_not_run():
    from collections import Counter

    from bench.commands import _done_line
    from bench.scheduler import Outcome

    racing = Outcome(ok=[{}] * 5, failed=[{}], not_run=[object()] * 2, ran_here=4,
                     skipped=Counter({"claimed by another process": 2, "finished by another process": 2}))
    assert _done_line(racing) == ("done: 5 ok, 1 failed; this driver ran 4, another process ran 2; 2 not run "
                                  "(2 still claimed by another process; see `bench status`, then rerun)")
    alone = Outcome(ok=[{}] * 3, ran_here=3)
    assert _done_line(alone) == "done: 3 ok, 0 failed; this driver ran 3"


def test_smoke_data_that_cannot_be_generated_is_one_line(workdir, monkeypatch):
    import errno

    from bench.data import synthetic

    def disk_full(card, root):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synthetic, "ensure_generated", disk_full)
    monkeypatch.setattr(synthetic, "is_complete", lambda card, root: False)
    (workdir / "tasks.toml").write_text(BASE.replace(f'"{DATA}"', '"fresh-data"'))
    result = invoke(["run"], workdir / "tasks.toml")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert (f"cannot write dataset smoke_mini under {workdir / 'fresh-data'}: No space left on device; point "
            "data_root of [suites.smoke] at a writable folder") in result.output

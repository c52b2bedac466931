"""The `bench` command line. Commands stay thin: they parse, call the engine, and print."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from bench.errors import BenchError
from bench.schema import MAX_COUNT

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Few-shot CLIP benchmark: run method × dataset × shots × seeds grids and report them.")
console = Console()
err_console = Console(stderr=True)

TasksOpt = typer.Option(None, "--tasks", help="tasks file (default: $BENCH_TASKS, ./tasks.toml, the embedded one)")


def _print_version(value: bool) -> None:
    if value:  # bench/__init__.py only: no torch import, so this answers at once
        from bench import __version__

        console.print(f"bench {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="print bench's version and exit")) -> None:
    pass
SuiteOpt = typer.Option(None, "--suite", "-s", help="suite name in the tasks file (default: its default_suite)")
SetOpt = typer.Option(None, "--set", metavar="METHOD.PARAM=VALUE",
                      help="override a method parameter for this command, after the tasks file (repeatable; "
                           "VALUE is a TOML literal, else a string); see `bench list params METHOD`")


def user_errors(func):
    """Bad input → one line on stderr and exit code 2; Ctrl-C → how to resume and exit code 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BenchError as exc:
            # escape: messages name places like "[suites.smoke]", which rich would swallow as markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished jobs are saved; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


def csv_list(value: Optional[str], kind=str, name="value") -> list | None:
    """A comma-separated flag value; None when the flag is not given. Empty lists, repeated items and
    (for integers) values outside 1..MAX_COUNT are refused: `--methods ,` must not mean "all"."""
    if value is None:
        return None
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--{name} takes a comma-separated list of integers, got '{value}'") from None
    if not items:
        raise BenchError(f"--{name} '{value}' names nothing; give a comma-separated list or drop the flag")
    if kind is int and any(not 1 <= v <= MAX_COUNT for v in items):
        raise BenchError(f"--{name} values must be integers from 1 to {MAX_COUNT}, got '{value}'")
    twice = sorted({str(v) for v in items if items.count(v) > 1})
    if twice:
        raise BenchError(f"--{name} lists {', '.join(twice)} more than once")
    return items


def load_config(tasks: Optional[Path]):
    from bench.config import load_config as load  # the tasks file checked against methods and cards

    return load(tasks)


@app.command()
@user_errors
def run(
    suite: Optional[str] = SuiteOpt,
    tasks: Optional[Path] = TasksOpt,
    methods: Optional[str] = typer.Option(None, help="comma-separated methods (default: the suite's)"),
    datasets: Optional[str] = typer.Option(None, help="comma-separated datasets (default: the suite's)"),
    shots: Optional[str] = typer.Option(None, help="comma-separated shot counts, e.g. 1,2,4,8,16"),
    seeds: Optional[str] = typer.Option(None, help="comma-separated seeds, e.g. 1,2,3"),
    backbone: Optional[str] = typer.Option(None, help="a backbone name from the tasks file's [backbones]"),
    force: bool = typer.Option(False, "--force", help="rerun jobs that already have an ok record"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run only jobs whose latest record failed"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the jobs that would run, run nothing"),
    executor: str = typer.Option("local", "--executor", "-x", help="local | inline | ray | slurm"),
    gpus: Optional[str] = typer.Option(None, help="local: GPU ids to use, e.g. 0,1 (default: all visible)"),
    jobs_per_gpu: Optional[int] = typer.Option(None, help="workers sharing one GPU (CPU-only: number of workers)"),
    device: Optional[str] = typer.Option(None, help="cpu to force CPU; inline: any torch device"),
    chunk_size: Optional[int] = typer.Option(None, help="ray/slurm: at most this many jobs per task"),
    ray_address: Optional[str] = typer.Option(None, help="ray: cluster address (default: start a local one)"),
    slurm_partition: Optional[str] = typer.Option(None, help="slurm: partition"),
    slurm_timeout_min: Optional[int] = typer.Option(None, help="slurm: time limit per array task, minutes"),
    slurm_gpus: Optional[int] = typer.Option(None, help="slurm: GPUs per array task"),
    job_timeout: Optional[str] = typer.Option(None, "--job-timeout", metavar="MINUTES",
                                              help="kill a job running longer; beats every method's timeout_min"),
    runner: Optional[str] = typer.Option(None, hidden=True, help="module providing Workspace/run_job (tests)"),
    set_: Optional[list[str]] = SetOpt,
):
    """Expand the grid into jobs and run the unfinished ones; every job leaves one result record."""
    from bench.commands import run_command
    from bench.jobs import parse_job_timeout

    options = {"gpus": csv_list(gpus, name="gpus"), "jobs_per_gpu": jobs_per_gpu, "device": device,
               "chunk_size": chunk_size,
               "ray_address": ray_address, "slurm_partition": slurm_partition,
               "slurm_timeout_min": slurm_timeout_min, "slurm_gpus": slurm_gpus, "runner": runner}
    run_command(load_config(tasks), console, suite=suite, backbone=backbone,
                methods=csv_list(methods, name="methods"), datasets=csv_list(datasets, name="datasets"),
                shots=csv_list(shots, int, "shots"), seeds=csv_list(seeds, int, "seeds"),
                force=force, retry_failed=retry_failed, dry_run=dry_run, executor=executor, executor_options=options,
                cli_set=set_, job_timeout_s=parse_job_timeout(job_timeout))


@app.command()
@user_errors
def status(
    suite: Optional[str] = SuiteOpt,
    tasks: Optional[Path] = TasksOpt,
    methods: Optional[str] = typer.Option(None, help="comma-separated methods (default: the suite's)"),
    datasets: Optional[str] = typer.Option(None, help="comma-separated datasets (default: the suite's)"),
    shots: Optional[str] = typer.Option(None, help="comma-separated shot counts, e.g. 1,2,4,8,16"),
    seeds: Optional[str] = typer.Option(None, help="comma-separated seeds, e.g. 1,2,3"),
    backbone: Optional[str] = typer.Option(None, help="a backbone name from the tasks file's [backbones]"),
    set_: Optional[list[str]] = SetOpt,
):
    """Done / failed / running / pending jobs per method × dataset, from the records and lock files."""
    from bench.commands import status_command

    status_command(load_config(tasks), console, suite=suite, backbone=backbone,
                   methods=csv_list(methods, name="methods"), datasets=csv_list(datasets, name="datasets"),
                   shots=csv_list(shots, int, "shots"),
                   seeds=csv_list(seeds, int, "seeds"), cli_set=set_)


@app.command()
@user_errors
def report(
    suite: Optional[str] = SuiteOpt,
    tasks: Optional[Path] = TasksOpt,
    results: Optional[list[Path]] = typer.Option(None, "--results", help="a results folder to read (repeat to "
                                                 "merge several; default: the suite's results_dir)"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the report to this file as well"),
    fmt: str = typer.Option("md", "--format", help="md | csv | json | latex | html"),
    all_configs: bool = typer.Option(False, "--all-configs", help="show records of other configurations as "
                                     "rows method@<config hash>"),
    compare: Optional[str] = typer.Option(None, "--compare", help="published: add the papers' numbers and Δ"),
    include_oracle: bool = typer.Option(False, "--include-oracle", help="let test-tuned (oracle_test) records "
                                        "into the leaderboard (they stay flagged †)"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="write the plots (PNG + SVG) into this folder"),
    methods: Optional[str] = typer.Option(None, help="only these methods' rows (default: all)"),
    datasets: Optional[str] = typer.Option(None, help="only these datasets (default: the suite's)"),
    shots: Optional[str] = typer.Option(None, help="only these shot tables, e.g. 1,16"),
    seeds: Optional[str] = typer.Option(None, help="only these seeds (a cell's n counts against them)"),
    set_: Optional[list[str]] = SetOpt,
):
    """Tables from the result records: header, per-shot tables, leaderboard, cost; plots; several formats."""
    from bench.commands import report_command

    report_command(load_config(tasks), suite=suite, results=results, out=out, fmt=fmt, all_configs=all_configs,
                   compare=compare, include_oracle=include_oracle, plots=plots,
                   methods=csv_list(methods, name="methods"), datasets=csv_list(datasets, name="datasets"),
                   shots=csv_list(shots, int, "shots"),
                   seeds=csv_list(seeds, int, "seeds"), cli_set=set_)


@app.command()
@user_errors
def show(
    job: str = typer.Argument(..., help="a job id or a unique prefix of one (see `bench run --dry-run`)"),
    suite: Optional[str] = SuiteOpt,
    tasks: Optional[Path] = TasksOpt,
):
    """One job's newest record, readable: status, metrics, config, splits, timings, versions, log."""
    from bench.show import show_command

    show_command(load_config(tasks), console, job, suite=suite)


@app.command("list")
@user_errors
def list_(what: str = typer.Argument(..., help="methods | datasets | suites | params"),
          name: Optional[str] = typer.Argument(None, help="params: the method (or tasks-file variant)"),
          tasks: Optional[Path] = TasksOpt):
    """List registered methods, dataset cards, suites, or one method's parameters (`list params coop`)."""
    from bench.commands import list_command

    list_command(what, tasks, console, name)


from bench.cli_cache import cache_app  # noqa: E402  (sub-apps live in their own modules)
from bench.cli_data import data_app  # noqa: E402

app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")


def main() -> None:  # pragma: no cover - console-script convenience
    app(prog_name="bench")
    sys.exit(0)

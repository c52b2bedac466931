"""The `bench` command line. Commands stay thin: they parse, call the engine, and print."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Few-shot CLIP benchmark: run method × dataset × shots × seeds grids and report them.")
console = Console()
err_console = Console(stderr=True)

TasksOpt = typer.Option(None, "--tasks", help="tasks file (default: $BENCH_TASKS, ./tasks.toml, the embedded one)")
SuiteOpt = typer.Option(None, "--suite", "-s", help="suite name in the tasks file (default: its default_suite)")


def user_errors(func):
    """Bad input → one line on stderr and exit code 2; Ctrl-C → how to resume and exit code 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BenchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished jobs are saved; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper


def csv_list(value: Optional[str], kind=str, name="value") -> list | None:
    if not value:
        return None
    try:
        items = [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--{name} takes a comma-separated list of integers, got '{value}'") from None
    if kind is int and any(v < 1 for v in items):
        raise BenchError(f"--{name} values must be positive integers, got '{value}'")
    return items


def load_config(tasks: Optional[Path]):
    from bench import config
    from bench.data import card_names
    from bench.registry import METHODS

    return config.load(tasks, known_methods=METHODS.names(), known_datasets=card_names())


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
    dry_run: bool = typer.Option(False, "--dry-run", help="list the jobs that would run, run nothing"),
    device: Optional[str] = typer.Option(None, help="torch device for the inline executor (default: cuda if available)"),
):
    """Expand the grid into jobs and run the unfinished ones; every job leaves one result record."""
    from bench.commands import run_command

    cfg = load_config(tasks)
    run_command(cfg, suite, backbone, csv_list(methods), csv_list(datasets), csv_list(shots, int, "shots"),
                csv_list(seeds, int, "seeds"), force, dry_run, device, console)


@app.command()
@user_errors
def report(
    suite: Optional[str] = SuiteOpt,
    tasks: Optional[Path] = TasksOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="write the report to this file as well"),
    fmt: str = typer.Option("md", "--format", help="md | csv"),
):
    """Tables from the result records: per shot count, per dataset, average, leaderboard."""
    from bench.report import render

    if fmt not in ("md", "csv"):
        raise BenchError(f"--format must be 'md' or 'csv', got '{fmt}'")
    chosen = load_config(tasks).suite(suite)
    text = render(chosen.results_dir, list(chosen.datasets), list(chosen.shots), fmt)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    print(text)


@app.command("list")
@user_errors
def list_(what: str = typer.Argument(..., help="methods | datasets | suites"), tasks: Optional[Path] = TasksOpt):
    """List registered methods, dataset cards or suites."""
    from bench.commands import list_command

    list_command(what, tasks, console)


def _mount_subcommands() -> None:
    """Sub-apps live in their own modules so this file stays a table of contents."""
    import importlib

    for module, attr, name in (("bench.cli_data", "data_app", "data"),):
        try:
            sub = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:  # keep the other commands usable
            logging.getLogger(__name__).debug("sub-command %s unavailable: %s", name, exc)
            continue
        app.add_typer(sub, name=name)


_mount_subcommands()


def main() -> None:  # pragma: no cover - console-script convenience
    app(prog_name="bench")
    sys.exit(0)

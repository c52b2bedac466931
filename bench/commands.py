"""What the CLI commands do, kept out of cli.py so that file reads as a table of contents."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.config import Config
from bench.errors import unknown


def select_suite(cfg: Config, suite_name, backbone_name):
    suite = cfg.suite(suite_name)
    if backbone_name:
        if backbone_name not in cfg.backbones:
            raise unknown("backbone", backbone_name, cfg.backbones)
        suite = dataclasses.replace(suite, backbone=cfg.backbones[backbone_name])
    return suite


def run_command(cfg, suite_name, backbone, methods, datasets, shots, seeds, force, dry_run, device, console: Console):
    from bench.jobs import expand
    from bench.scheduler import pending_jobs, preflight, run_inline

    suite = select_suite(cfg, suite_name, backbone)
    jobs = expand(suite, methods, datasets, shots, seeds)
    todo = pending_jobs(suite, jobs, force)
    console.print(f"suite [bold]{suite.name}[/]: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, "
                  f"{len(todo)} to run → {suite.results_dir}")
    if dry_run:
        for job in todo:
            console.print(f"  {job.id}  {job.label}")
        return
    if not todo:
        return
    preflight(suite, todo)
    failed = _run_with_progress(suite, todo, device, console)
    console.print(f"done: {len(todo) - len(failed)} ok, {len(failed)} failed")
    for record in failed:
        console.print(f"  [red]failed[/] {record['method']}/{record['dataset']}/{record['shots']}shot/"
                      f"seed{record['seed']}: {record['error']}", highlight=False)
    if failed:
        raise SystemExit(1)


def _run_with_progress(suite, jobs, device, console):
    from bench.scheduler import run_inline

    failed = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("jobs", total=len(jobs))

        def on_done(record):
            if record["status"] != "ok":
                failed.append(record)
            top1 = record["metrics"].get("top1")
            progress.update(bar, advance=1, description=f"{record['method']}/{record['dataset']}"
                            + (f" {top1:.1f}%" if top1 is not None else " failed"))

        run_inline(suite, jobs, on_done=on_done, device=device)
    return failed


def list_command(what: str, tasks, console: Console):
    from bench.cli import load_config
    from bench.data import card_names, load_card
    from bench.registry import METHODS

    choices = ("methods", "datasets", "suites")
    if what not in choices:
        raise unknown("list target", what, choices)
    table = Table()
    if what == "methods":
        for col in ("name", "version", "inputs", "from"):
            table.add_column(col)
        for name in METHODS.names():
            cls = METHODS.get(name)
            table.add_row(name, str(cls.version), cls.inputs, METHODS.origin(name))
        cfg = load_config(tasks)
        for suite in cfg.suites.values():
            for entry in suite.method_entries.values():
                if entry.base != entry.name:
                    table.add_row(entry.name, "", "", f"variant of {entry.base} ({cfg.path.name})")
            break
    elif what == "datasets":
        for col in ("name", "dir", "split source", "templates"):
            table.add_column(col)
        for name in card_names():
            card = load_card(name)
            table.add_row(name, card.dir, card.split_source, " | ".join(card.templates))
    else:
        cfg = load_config(tasks)
        for col in ("suite", "datasets", "shots", "seeds", "backbone", "methods"):
            table.add_column(col)
        for suite in cfg.suites.values():
            table.add_row(suite.name + (" (default)" if suite.name == cfg.default_suite else ""),
                          str(len(suite.datasets)), ",".join(map(str, suite.shots)),
                          ",".join(map(str, suite.seeds)), suite.backbone.name, ",".join(suite.methods))
    console.print(table)

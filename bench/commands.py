"""What the CLI commands do, kept out of cli.py so that file reads as a table of contents."""

from __future__ import annotations

import dataclasses
import sys

from rich.console import Console
from rich.table import Table

from bench.config import Config
from bench.errors import BenchError, unknown


def select_suite(cfg: Config, suite_name, backbone_name):
    suite = cfg.suite(suite_name)
    if backbone_name:
        if backbone_name not in cfg.backbones:
            raise unknown("backbone", backbone_name, cfg.backbones)
        suite = dataclasses.replace(suite, backbone=cfg.backbones[backbone_name])
    return suite


def run_command(cfg, console: Console, *, suite=None, backbone=None, methods=None, datasets=None, shots=None,
                seeds=None, force=False, retry_failed=False, dry_run=False, executor="local",
                executor_options: dict | None = None):
    from bench.executors import make_executor
    from bench.jobs import cell_label, expand
    from bench.scheduler import pending_jobs, preflight, run_mode

    chosen = select_suite(cfg, suite, backbone)
    mode = run_mode(force, retry_failed)
    jobs = expand(chosen, methods, datasets, shots, seeds)
    todo = pending_jobs(chosen, jobs, force, retry_failed)
    backend = make_executor(executor, **(executor_options or {}))
    counts = (f"{len(todo)} failed to retry, {len(jobs) - len(todo)} others left alone" if mode == "retry_failed"
              else f"{len(jobs) - len(todo)} already done, {len(todo)} to run")
    console.print(f"suite [bold]{chosen.name}[/]: {len(jobs)} jobs, {counts} → {chosen.results_dir}\n"
                  f"  executor: {backend.describe()}")
    if dry_run:
        for job in todo:
            console.print(f"  {job.id}  {job.label}")
        return
    if not todo:
        return
    preflight(chosen, todo, (executor_options or {}).get("runner") or "bench.runner")
    result = _run_with_progress(chosen, todo, backend, mode, console)
    console.print(f"done: {len(result.ok)} ok, {len(result.failed)} failed"
                  + (f", {len(result.not_run)} not run here (see `bench status`)" if result.not_run else "")
                  + f"; per-job logs in {chosen.results_dir / 'logs'}")
    for record in result.failed:
        label = cell_label(record["method"], record["dataset"], record["shots"], record["seed"])
        console.print(f"  [red]failed[/] {label}: {record['error']}", highlight=False)
    if result.failed:
        console.print("rerun only the failed ones with --retry-failed")
        raise SystemExit(1)


def _run_with_progress(suite, jobs, executor, mode, console):
    """The live view while the executor works. Ctrl-C: the executor stops its workers (no record
    for the interrupted jobs) and KeyboardInterrupt reaches the CLI, which says how to resume."""
    from bench.scheduler import execute
    from bench.status import LiveView

    with LiveView(console, total=len(jobs)) as view:
        return execute(suite, jobs, executor, view, mode)


def status_command(cfg, console: Console, *, suite=None, backbone=None, methods=None):
    from bench.jobs import expand
    from bench.status import status_table

    chosen = select_suite(cfg, suite, backbone)
    jobs = expand(chosen, methods)
    table, totals, running = status_table(chosen.results_dir, jobs)
    console.print(table)
    console.print(f"{len(jobs)} jobs: " + ", ".join(f"{totals[s]} {s}" for s in ("done", "failed", "running",
                                                                                  "pending")), highlight=False)
    for info in running:
        console.print(f"  running {info.get('label') or info.get('job_id')} on {info.get('host')}:"
                      f"{info.get('where')} (pid {info.get('pid')}, since {info.get('started')})", highlight=False)


def report_command(cfg, *, suite=None, results=None, out=None, fmt="md", all_configs=False, compare=None,
                   include_oracle=False, plots=None):
    from bench.report import FORMATS, build, render
    from bench.report.formats import summary_csv

    if fmt not in FORMATS:  # checked before any record is read
        raise unknown("--format", fmt, FORMATS)
    for folder in results or []:
        if not folder.is_dir():
            raise BenchError(f"--results {folder}: not a folder (give a results folder holding records/)")
        if not (folder / "records").is_dir():
            hint = f" (did you mean --results {folder.parent}?)" if folder.name == "records" else ""
            raise BenchError(f"--results {folder}: no records/ folder inside{hint}")
    for target, what in ((out, "--out"), (plots, "--plots")):
        if target is not None and target.exists() and target.is_dir() == (what == "--out"):
            raise BenchError(f"{what} {target}: " + ("is a folder; give a file name" if what == "--out"
                                                     else "is a file; give a folder"))
    report = build(cfg.suite(suite), results, all_configs=all_configs, compare=compare,
                   include_oracle=include_oracle)
    text = render(report, fmt)
    written = []
    try:
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            written.append(out)
            if fmt == "csv":
                written.append(out.with_suffix(".summary.csv"))
                written[-1].write_text(summary_csv(report))
        if plots:
            from bench.report.plots import write_plots

            for section in report.sections:
                part = report.summary[report.summary["backbone"] == section.backbone]
                folder = plots / _slug(section.backbone) if len(report.sections) > 1 else plots
                written += write_plots(part, report.datasets, report.shots, folder)
    except OSError as exc:
        raise BenchError(f"cannot write the report: {exc.strerror or exc} ({exc.filename or out})") from None
    print(text)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


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

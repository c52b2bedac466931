"""What the CLI commands do, kept out of cli.py so that file reads as a table of contents."""

from __future__ import annotations

import dataclasses
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.config import Config
from bench.errors import BenchError, unknown


def select_suite(cfg: Config, suite_name, backbone_name, cli_set=None):
    """The suite a command works on: --backbone swapped in, --set overrides applied (and checked)."""
    from bench.jobs import with_cli_set

    suite = cfg.suite(suite_name)
    if backbone_name:
        if backbone_name not in cfg.backbones:
            raise unknown("backbone", backbone_name, cfg.backbones)
        suite = dataclasses.replace(suite, backbone=cfg.backbones[backbone_name])
    return with_cli_set(suite, cli_set)


def run_command(cfg, console: Console, *, suite=None, backbone=None, methods=None, datasets=None, shots=None,
                seeds=None, force=False, retry_failed=False, dry_run=False, executor="local",
                executor_options: dict | None = None, cli_set=None, job_timeout_s=None):
    from bench.executors import make_executor
    from bench.jobs import cell_label, expand, with_job_timeout
    from bench.scheduler import pending_jobs, run_mode

    chosen = select_suite(cfg, suite, backbone, cli_set)
    mode = run_mode(force, retry_failed)
    jobs = with_job_timeout(expand(chosen, methods, datasets, shots, seeds), job_timeout_s)  # ids stay the same
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
        console.print(f"nothing to run; next: {_next_command(cfg, 'report', chosen)}", highlight=False,
                      soft_wrap=True)
        return
    runner = (executor_options or {}).get("runner") or "bench.runner"
    result = _run_with_progress(chosen, todo, backend, mode, console, runner)
    console.print(_done_line(result) + f"; per-job logs in {chosen.results_dir / 'logs'}", highlight=False,
                  soft_wrap=True)
    if result.fault:
        console.print(f"[red]stopped early[/]: {escape(result.fault)}", highlight=False, soft_wrap=True)
    if result.ok or result.failed:
        from bench.status import run_table

        console.print("this run, top-1 % on the test split (mean over the seeds that ran):")
        console.print(run_table(result.ok + result.failed))
    for record in result.failed:
        label = cell_label(record["method"], record["dataset"], record["shots"], record["seed"])
        console.print(f"  [red]failed[/] {escape(label)}: {escape(str(record['error']))}", highlight=False)
    if result.failed:
        console.print("rerun only the failed ones with --retry-failed")
    console.print(f"next: {_next_command(cfg, 'report', chosen)}", highlight=False, soft_wrap=True)
    if result.failed or result.not_run:  # exit 0 means: every job asked for has an ok record
        raise SystemExit(1)


def _done_line(result) -> str:
    """What happened to the jobs of this run, and who ran them (several drivers may share a folder)."""
    text = f"done: {len(result.ok)} ok, {len(result.failed)} failed; this driver ran {result.ran_here}"
    elsewhere = len(result.ok) + len(result.failed) - result.ran_here
    if elsewhere > 0:
        text += f", another process ran {elsewhere}"
    if result.not_run:
        claimed = min(result.skipped.get("claimed by another process", 0), len(result.not_run))
        why = [f"{claimed} still claimed by another process"] if claimed else []
        lost = "stopped: the results folder took no more files" if result.fault else "stopped or lost"
        why += [f"{len(result.not_run) - claimed} {lost}"] if len(result.not_run) > claimed else []
        text += f"; {len(result.not_run)} not run ({', '.join(why)}; see `bench status`, then rerun)"
    return text


def _next_command(cfg, command: str, suite) -> str:
    """`bench COMMAND --suite S`, plus --tasks when the tasks file is not the one found by default."""
    from bench.config import default_tasks_path

    import shlex

    text = f"bench {command} --suite {suite.name}"
    for method, values in suite.cli_set.items():  # the report of a --set run needs the same --set
        text += "".join(f" --set {shlex.quote(f'{method}.{k}={_toml(v)}')}" for k, v in values.items())
    try:
        default = cfg.path.resolve() == default_tasks_path().resolve()
    except OSError:
        default = False
    return text if default else f"{text} --tasks {cfg.path}"


def _run_with_progress(suite, jobs, executor, mode, console, runner="bench.runner"):
    """The live view while the driver checks (and generates) the data and the executor works; the
    driver's own slow steps reach the view through bench.progress. Ctrl-C: the executor stops its
    workers (no record for the interrupted jobs) and KeyboardInterrupt reaches the CLI, which says
    how to resume."""
    import functools

    from bench import progress
    from bench.scheduler import execute, preflight
    from bench.status import LiveView

    with LiveView(console, total=len(jobs)) as view, progress.reporting_to(functools.partial(view.progress, None)):
        preflight(suite, jobs, runner)
        return execute(suite, jobs, executor, view, mode)


def status_command(cfg, console: Console, *, suite=None, backbone=None, methods=None, datasets=None, shots=None,
                   seeds=None, cli_set=None):
    from bench.jobs import expand
    from bench.status import damaged_note, status_table

    chosen = select_suite(cfg, suite, backbone, cli_set)
    jobs = expand(chosen, methods, datasets, shots, seeds)
    table, totals, running, damaged = status_table(chosen.results_dir, jobs)
    console.print(table)
    console.print(f"{len(jobs)} jobs: " + ", ".join(f"{totals[s]} {s}" for s in ("done", "failed", "running",
                                                                                  "pending")), highlight=False)
    for info in running:
        console.print(f"  running {info.get('label') or info.get('job_id')} on {info.get('host')}:"
                      f"{info.get('where')} (pid {info.get('pid')}, since {info.get('started')})", highlight=False,
                      markup=False)  # a lock file's text is not markup
    for line in damaged_note(damaged):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def report_command(cfg, *, suite=None, results=None, out=None, fmt="md", all_configs=False, compare=None,
                   include_oracle=False, plots=None, methods=None, datasets=None, shots=None, seeds=None,
                   cli_set=None):
    """--datasets/--shots/--seeds narrow the suite the report is built for (so a cell counts its n
    against the seeds asked for); --methods keeps only those methods' records (and paper rows)."""
    from bench.jobs import narrow
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
    chosen = narrow(select_suite(cfg, suite, None, cli_set), methods, datasets, shots, seeds)  # before any record
    report = build(chosen, results, all_configs=all_configs, compare=compare, include_oracle=include_oracle,
                   methods=chosen.methods if methods else None)
    filters = [f"--{name} {','.join(map(str, value))}" for name, value in
               (("methods", methods), ("datasets", datasets), ("shots", shots), ("seeds", seeds)) if value]
    if filters:
        report.footnotes.append("Filtered: " + " ".join(filters) + ": records outside the filter are left out; "
                                f"a cell's n counts against the {len(chosen.seeds)} seed(s) asked for.")
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
        if plots and report.protocol != "fewshot":
            print(f"--plots: the figures plot accuracy against shots; protocol {report.protocol} has none",
                  file=sys.stderr)
        elif plots:
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


def params_table(cfg, name: str | None) -> Table:
    """`bench list params NAME`: each parameter as its method declares it (bench.schema), and the
    value the tasks file gives it for NAME (a variant: its base's entry, then its own)."""
    from bench.jobs import method_names
    from bench.registry import METHODS
    from bench.schema import params_spec, range_text

    suite = cfg.suite(None)  # every suite shares the file's [methods] entries
    known = method_names(suite)
    if not name:
        raise BenchError(f"`bench list params` needs a method name (choose from: {', '.join(known)})")
    if name not in known:
        raise unknown("method", name, known)
    entry = suite.method_entries.get(name)
    base = entry.base if entry else name
    entries = [e for e in (suite.method_entries.get(base) if base != name else None, entry) if e]
    title = (f"{name}" + (f" (variant of {base})" if base != name else "")
             + f": parameters, set with --set {name}.NAME=VALUE")
    rows, params_cls = [], METHODS.get(base).Params
    own = set(vars(params_cls).get("__annotations__", {}))  # the method's own fields before shared ones
    for param, key in sorted(params_spec(params_cls).items(), key=lambda item: item[0] not in own):
        kind = key.type.__name__ if key.type else "any"
        if key.items:
            kind = f"list[{key.items.__name__}]"
        allowed = " | ".join(map(str, key.choices)) if key.choices is not None else (
            range_text(key) if key.range else "")
        file_values = []  # in the order they apply: a later one wins where both apply
        for e in entries:
            file_values += [_toml(e.params[param])] if param in e.params else []
            file_values += [f"{_toml(o.params[param])} on {_where(o)}" for o in e.overrides if param in o.params]
        rows.append((param, _toml(key.default), kind, allowed, key.help, " → ".join(file_values)))
    table = Table(title=escape(title))
    for column in ("parameter", "default", "type", "allowed", "help"):
        table.add_column(column, overflow="fold")  # (a min_width would stop rich from fitting the terminal)
    if any(row[-1] for row in rows):  # what the tasks file sets for this name (a later value wins)
        table.add_column(cfg.path.name, overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row[:len(table.columns)]))
    return table


def _toml(value) -> str:
    """A value as one writes it in tasks.toml or after --set."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return repr(value)


def _where(override) -> str:
    parts = [",".join(override.datasets)] if override.datasets else []
    return " ".join(parts + ([f"{','.join(map(str, override.shots))} shots"] if override.shots else [])) or "all"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


def list_command(what: str, tasks, console: Console, name: str | None = None):
    from bench.config import load_config
    from bench.data import card_names, load_card
    from bench.registry import METHODS

    choices = ("methods", "datasets", "suites", "params")
    if what not in choices:
        raise unknown("list target", what, choices)
    if what == "params":
        console.print(params_table(load_config(tasks), name))
        return
    if name:
        raise BenchError(f"`bench list {what}` takes no name (got '{name}'); `bench list params {name}`?")
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
                    masks = f" on the masks of {entry.encoder}" if entry.encoder else ""
                    table.add_row(entry.name, "", "", f"variant of {entry.base}{masks} ({cfg.path.name})")
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

"""Where a grid stands, from the records (done / failed) and the live lock files (running), and the
live progress view `bench run` shows while it works (a Listener rendered with rich)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.executors.base import Listener
from bench.locks import live_locks
from bench.results import latest_per_job, read_records

STATES = ("done", "failed", "running", "pending")


def job_states(results_dir: Path, jobs: list) -> dict[str, str]:
    """job id → done | failed | running | pending. A live claim wins over an old failed record (the
    job is being retried); an ok record wins over a claim (the holder is just releasing it)."""
    latest = latest_per_job(read_records(results_dir))
    claimed = live_locks(results_dir)
    states = {}
    for job in jobs:
        status = (latest.get(job.id) or {}).get("status")
        if status == "ok":
            states[job.id] = "done"
        elif job.id in claimed:
            states[job.id] = "running"
        else:
            states[job.id] = "failed" if status == "failed" else "pending"
    return states


def status_table(results_dir: Path, jobs: list) -> tuple[Table, Counter, list[dict]]:
    """A method × dataset table of state counts, the totals, and the running claims."""
    states = job_states(results_dir, jobs)
    cells: dict[tuple, Counter] = {}
    for job in jobs:
        cells.setdefault((job.method, job.dataset), Counter())[states[job.id]] += 1
    table = Table(title=str(results_dir))
    for col in ("method", "dataset", *STATES):
        table.add_column(col, justify="left" if col in ("method", "dataset") else "right")
    style = {"done": "green", "failed": "red", "running": "yellow", "pending": ""}
    for (method, dataset), counts in sorted(cells.items()):
        table.add_row(method, dataset, *(f"[{style[s]}]{counts[s]}[/]" if counts[s] and style[s] else str(counts[s])
                                          for s in STATES))
    totals = Counter(states.values())
    running = [info for job_id, info in live_locks(results_dir).items() if states.get(job_id) == "running"]
    return table, totals, running


class LiveView(Listener):
    """Progress bar (done/total, elapsed, ETA) and the running job of every device. Thread-safe:
    executors call it from their slot threads."""

    def __init__(self, console, total: int, title: str = "jobs"):
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.bar = self.progress.add_task(title, total=total, ok=0, failed=0)
        self.running: dict[str, tuple[str, str, float]] = {}  # job id → (where, label, start)
        self.counts = Counter()
        self._mutex = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> "LiveView":
        if self.console.is_terminal:  # a log file (SLURM, nohup) gets one line per finished job instead
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def started(self, job, where: str) -> None:
        with self._mutex:
            self.running[job.id] = (where, job.label, time.monotonic())

    def finished(self, job, summary: dict) -> None:
        with self._mutex:
            self.running.pop(job.id, None)
            ok = summary.get("status") == "ok"
            self.counts["ok" if ok else "failed"] += 1
            self.progress.update(self.bar, advance=1, ok=self.counts["ok"], failed=self.counts["failed"])
        if not ok:
            self.console.print(f"[red]failed[/] {job.label} on {summary.get('where', '?')}: {summary.get('error')}",
                               highlight=False)
        elif self._live is None:
            done = self.counts["ok"] + self.counts["failed"]
            top1 = summary.get("top1")
            self.console.print(f"[{done}/{self.progress.tasks[0].total}] ok {job.label} on {summary.get('where')}"
                               + (f" top1 {top1:.2f}" if top1 is not None else ""), highlight=False)

    def skipped(self, job, reason: str) -> None:
        with self._mutex:
            self.running.pop(job.id, None)
            self.counts["skipped"] += 1
            self.progress.update(self.bar, total=max(0, self.progress.tasks[0].total - 1))

    def __rich__(self):
        table = Table(box=None, show_header=True, pad_edge=False)
        for col in ("device", "running", "for"):
            table.add_column(col)
        with self._mutex:
            rows = sorted(self.running.values())
        now = time.monotonic()
        for where, label, start in rows:
            table.add_row(where, label, f"{now - start:5.0f}s")
        return Group(self.progress, table) if rows else self.progress

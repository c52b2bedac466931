"""Where a grid stands, from the records (done / failed) and the live lock files (running); the
live progress view `bench run` shows while it works (a Listener rendered with rich: jobs, and the slow
steps bench.progress reports); and the table of what one run produced."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.executors.base import Listener
from bench.locks import live_locks
from bench.results import latest_per_job, read_records

STATES = ("done", "failed", "running", "pending")


def job_states(jobs: list, latest: dict[str, dict], claimed: dict[str, dict]) -> dict[str, str]:
    """job id → done | failed | running | pending, from the latest records and the live claims. A live
    claim wins over an old failed record (the job is being retried); an ok record wins over a claim
    (the holder is just releasing it)."""
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


def status_table(results_dir: Path, jobs: list) -> tuple[Table, Counter, list[dict], list[Path]]:
    """A method × dataset table of state counts, the totals, the running claims, and the damaged
    record and lock files that were skipped (each already warned about)."""
    damaged: list[Path] = []
    latest = latest_per_job(read_records(results_dir, damaged))
    claimed = live_locks(results_dir, damaged=damaged)
    states = job_states(jobs, latest, claimed)
    cells: dict[tuple, Counter] = {}
    for job in jobs:
        cells.setdefault((job.method, job.dataset), Counter())[states[job.id]] += 1
    table = Table(title=escape(str(results_dir)))
    for col in ("method", "dataset", *STATES):
        table.add_column(col, justify="left" if col in ("method", "dataset") else "right")
    style = {"done": "green", "failed": "red", "running": "yellow", "pending": ""}
    for (method, dataset), counts in sorted(cells.items()):
        table.add_row(method, dataset, *(f"[{style[s]}]{counts[s]}[/]" if counts[s] and style[s] else str(counts[s])
                                          for s in STATES))
    totals = Counter(states.values())
    running = [info for job_id, info in claimed.items() if states.get(job_id) == "running"]
    return table, totals, running, damaged


def damaged_note(damaged: list[Path]) -> list[str]:
    """One line per folder: 'N damaged files skipped in results/x/records (see warnings above)'."""
    folders = Counter(str(path.parent.parent.parent if path.suffix == ".json" else path.parent)
                      for path in damaged)  # records/<method>/<dataset>/x.json; locks/x.lock
    return [f"{n} damaged file{'s' if n > 1 else ''} skipped in {folder} (see warnings above)"
            for folder, n in folders.items()]  # records first: they are scanned first


def run_table(records: list[dict]) -> Table:
    """What one `bench run` produced: method × dataset × shots → mean top-1 over the seeds that ran
    (ok records), which seeds, and how many jobs failed. Shot-independent jobs show shots 'any'."""
    cells: dict[tuple, dict] = {}
    for record in records:
        cell = cells.setdefault((record["method"], record["dataset"], record["shots"]),
                                {"top1": [], "seeds": [], "failed": 0})
        top1 = (record.get("metrics") or {}).get("top1")
        if record.get("status") == "ok" and isinstance(top1, (int, float)):
            cell["top1"].append(float(top1))
            cell["seeds"].append(record["seed"])
        else:
            cell["failed"] += 1
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("method", "dataset", "shots", "top-1", "seeds", "failed"):
        table.add_column(col, justify="right" if col in ("top-1", "failed") else "left")
    for (method, dataset, shots), cell in sorted(cells.items()):
        mean = f"{sum(cell['top1']) / len(cell['top1']):.2f}" if cell["top1"] else "-"
        seeds = "-" if shots == 0 else ",".join(map(str, sorted(cell["seeds"]))) or "-"
        table.add_row(escape(method), escape(dataset), "any" if shots == 0 else str(shots), mean, seeds,
                      f"[red]{cell['failed']}[/]" if cell["failed"] else "0")
    return table


@dataclass
class Step:
    """The slow step a job (or the driver) is in: bench.progress reports, last one wins."""

    stage: str
    done: int
    total: int | None
    start: float
    printed: float  # when a plain-log line about it was last written
    announced: bool = False  # a plain-log line about it was written (so its end gets one too)

    def text(self) -> str:
        if self.total and self.total > 1:
            return f"{self.stage} {self.done}/{self.total} ({100 * self.done // self.total}%)"
        return f"{self.stage} ..."


DRIVER = "driver"  # the key of steps the driver itself runs (dataset generation in preflight)


class LiveView(Listener):
    """Progress bar (done/total, elapsed, ETA), the running job of every device and the slow step it
    is in (backbone, dataset generation, feature encoding: bench.progress). Without a terminal (CLI
    tests, SLURM logs, nohup) it writes plain lines instead: one per finished job; for a step without
    a count (loading a backbone, generating a dataset) one when it starts and one when it ends; for a
    counted step (images encoded) one every `log_every_s` while it lasts and one at its end if it took
    `quiet_below_s` or more, so the many sub-second encodings of a grid stay out of the log.
    Thread-safe: executors call it from their slot threads."""

    def __init__(self, console, total: int, title: str = "jobs", log_every_s: float = 10.0,
                 quiet_below_s: float = 1.0):
        self.console = console
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.bar = self.bars.add_task(title, total=total, ok=0, failed=0)
        self.running: dict[str, tuple[str, str, float]] = {}  # job id → (where, label, start)
        self.steps: dict[str, Step] = {}  # job id or DRIVER → its current slow step
        self.log_every_s, self.quiet_below_s = log_every_s, quiet_below_s
        self.counts = Counter()
        self._mutex = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> "LiveView":
        if self.console.is_terminal:  # a log file (SLURM, nohup) gets plain lines instead
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def started(self, job, where: str) -> None:
        with self._mutex:
            self.running[job.id] = (where, job.label, time.monotonic())

    def progress(self, job, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        key = DRIVER if job is None else job.id
        with self._mutex:
            step = self.steps.get(key)
            new = step is None or step.stage != stage
            if new:
                step = self.steps[key] = Step(stage, done, total, now, now)
            step.done, step.total = done, total
            final = total is not None and done >= total
            if final:
                del self.steps[key]
            who = "driver" if job is None else self.running.get(job.id, (job.label,))[0]
            counted = bool(total and total > 1)
            if final:
                line = (f"  {who}: {stage}: {f'{done}/{total} ' if counted else ''}done in {now - step.start:.1f}s"
                        if step.announced or now - step.start >= self.quiet_below_s else None)
            elif (new and not counted) or now - step.printed >= self.log_every_s:
                line = f"  {who}: {step.text()}"
            else:
                line = None
            if line is not None:
                step.printed, step.announced = now, True
        if line is not None and self._live is None:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def finished(self, job, summary: dict) -> None:
        with self._mutex:
            self.running.pop(job.id, None)
            self.steps.pop(job.id, None)
            ok = summary.get("status") == "ok"
            self.counts["ok" if ok else "failed"] += 1
            self.bars.update(self.bar, advance=1, ok=self.counts["ok"], failed=self.counts["failed"])
        if not ok:
            self.console.print(f"[red]failed[/] {escape(job.label)} on {summary.get('where', '?')}: "
                               f"{escape(str(summary.get('error')))}", highlight=False)
        elif self._live is None:
            done = self.counts["ok"] + self.counts["failed"]
            top1 = summary.get("top1")
            self.console.print(f"[{done}/{self.bars.tasks[0].total}] ok {job.label} on {summary.get('where')}"
                               + (f" top1 {top1:.2f}" if top1 is not None else ""), highlight=False, markup=False)

    def skipped(self, job, reason: str) -> None:
        with self._mutex:
            self.running.pop(job.id, None)
            self.steps.pop(job.id, None)
            self.counts["skipped"] += 1
            self.bars.update(self.bar, total=max(0, self.bars.tasks[0].total - 1))

    def __rich__(self):
        table = Table(box=None, show_header=True, pad_edge=False)
        for col in ("device", "running", "for", "step"):
            table.add_column(col)
        now = time.monotonic()
        with self._mutex:
            rows = [(where, label, start, self.steps.get(job_id)) for job_id, (where, label, start)
                    in self.running.items()]
            driver = self.steps.get(DRIVER)
        if driver is not None:
            table.add_row("driver", "preparing", f"{now - driver.start:5.0f}s", escape(driver.text()))
        for where, label, start, step in sorted(rows, key=lambda r: r[:2]):
            table.add_row(where, escape(label), f"{now - start:5.0f}s",
                          escape(f"{step.text()} ({now - step.start:.0f}s)") if step else "")
        return Group(self.bars, table) if rows or driver else self.bars

"""`bench cache info | clear`: what the frozen-feature cache holds, and emptying it. Mounted by bench/cli.py."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from bench.errors import BenchError

cache_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="Inspect or empty the frozen-feature cache ($BENCH_CACHE/features).")
console = Console()
err_console = Console(stderr=True)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _fail(message: str):
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@cache_app.command("info")
def info():
    """Cache folder, then files and size per backbone and dataset."""
    from bench.cache import cache_summary, features_root

    root = features_root()
    rows = cache_summary(root)
    console.print(f"feature cache: {root}", highlight=False)
    if not rows:
        console.print("empty")
        return
    table = Table("backbone", "weights", "dataset", "files", "size")
    for row in rows:
        table.add_row(row["backbone"], row["digest"], row["dataset"], str(row["files"]), _human(row["bytes"]))
    table.add_row("total", "", "", str(sum(r["files"] for r in rows)), _human(sum(r["bytes"] for r in rows)))
    console.print(table)


@cache_app.command("clear")
def clear(yes: bool = typer.Option(False, "--yes", help="really delete (required)"),
          dataset: Optional[str] = typer.Option(None, "--dataset", help="only this dataset's features")):
    """Delete cached features (everything is recomputed on the next run)."""
    from bench.cache import cache_summary, clear_cache, features_root

    root = features_root()
    rows = [r for r in cache_summary(root) if dataset in (None, r["dataset"])]
    if not rows and not dataset:
        console.print(f"feature cache is empty: {root}", highlight=False)
        return
    try:
        if dataset and not rows:
            raise BenchError(f"no cached features for dataset '{dataset}' under {root}")
        if not yes:
            files, size = sum(r["files"] for r in rows), sum(r["bytes"] for r in rows)
            raise BenchError(f"this deletes {files} files ({_human(size)}) under {root}; "
                             f"run again with --yes to confirm")
    except BenchError as exc:
        _fail(str(exc))
    files, size = clear_cache(root, dataset)
    console.print(f"deleted {files} files ({_human(size)}) from {root}", highlight=False)

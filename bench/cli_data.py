"""`bench data ...`: check datasets on disk and say how to fix what is missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from bench.data.cards import card_names, default_data_root, load_card
from bench.data.doctor import check_dataset, ensure_usable
from bench.errors import BenchError

data_app = typer.Typer(help="Inspect the datasets under the data root.", no_args_is_help=True)
_STYLE = {"ok": "green", "incomplete": "yellow", "corrupt": "red", "missing": "red"}

__all__ = ["data_app", "ensure_usable"]


@data_app.callback()
def _group() -> None:
    """Dataset commands (a callback keeps `check` a subcommand even while it is the only one)."""


@data_app.command("check")
def check(
    root: Optional[Path] = typer.Option(None, help="Data root (default: $BENCH_DATA, else ./data)."),
    datasets: Optional[str] = typer.Option(None, help="Comma-separated names (default: all real datasets)."),
    full: bool = typer.Option(False, "--full", help="Decode every image, not a sample."),
) -> None:
    """Check layout, split-file hashes, counts and images; print what to download where."""
    flag = "--root" if root else "the data root ($BENCH_DATA, else ./data)"
    root = root or default_data_root()
    try:
        if root.exists() and not root.is_dir():  # (a missing root: every dataset "missing", with advice)
            raise BenchError(f"{flag} {root}: is a file; give the folder that holds the datasets")
        cards = [load_card(n) for n in _names(datasets)]
        healths = [check_dataset(c, root, full=full) for c in cards]
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2)
    console = Console()
    table = Table(title=f"datasets under {root}")
    for col in ("dataset", "status", "classes", "train", "val", "test", "problems"):
        table.add_column(col)
    for h in healths:
        c = h.counts
        table.add_row(h.name, f"[{_STYLE[h.status]}]{h.status}[/]",
                      *(f"{c[k]:,}" if k in c else "-" for k in ("classes", "train", "val", "test")),
                      "; ".join(h.problems) or "-")
    console.print(table)
    for h in healths:
        for line in h.advice:
            console.print(f"  {line}", markup=False, soft_wrap=True)
    if any(not h.ok for h in healths):
        raise typer.Exit(1)


def _names(arg: str | None) -> list[str]:
    if arg:
        return [n.strip() for n in arg.split(",") if n.strip()]
    # Synthetic (smoke) cards generate data when loaded: check them only when asked for by name.
    return [n for n in card_names() if not load_card(n).synthetic]

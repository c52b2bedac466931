"""Result records → tables. The records are the source of truth; tables are always regenerated.

For every (method, dataset, shots, seed, backbone) the newest ok record wins (a rerun with changed
parameters replaces the old number). Cells are mean ± std over seeds (std with ddof=0, as CoOp's
parse script computes it); the Average column is the plain mean of the dataset means."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.results import read_records

MASK_METRIC = "masked_pct_of_masked_tensors"
CELL_KEYS = ["backbone", "method", "dataset", "shots", "seed"]


def load_frame(results_dir: Path) -> pd.DataFrame:
    """One row per (backbone, method, dataset, shots, seed): the newest ok record's numbers."""
    rows = []
    for rec in read_records(results_dir):
        if rec.get("status") != "ok":
            continue
        metrics = rec.get("metrics") or {}
        rows.append({"backbone": json.dumps(rec["backbone"], sort_keys=True), "method": rec["method"],
                     "dataset": rec["dataset"], "shots": rec["shots"], "seed": rec["seed"],
                     "created_at": rec["created_at"], "top1": metrics.get("top1"),
                     "masked_pct": metrics.get(MASK_METRIC)})
    frame = pd.DataFrame(rows, columns=CELL_KEYS + ["created_at", "top1", "masked_pct"])
    frame = frame.sort_values("created_at").drop_duplicates(CELL_KEYS, keep="last")
    return frame.reset_index(drop=True)


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Long form: (backbone, method, dataset, shots) → mean, std over seeds, seed count, masked %."""
    grouped = frame.groupby(["backbone", "method", "dataset", "shots"])
    out = grouped.agg(mean=("top1", "mean"), std=("top1", lambda s: s.std(ddof=0)),
                      seeds=("seed", "nunique"), masked_pct=("masked_pct", "mean"))
    return out.reset_index()


def shot_table(summary: pd.DataFrame, shots: int, datasets: list[str]) -> pd.DataFrame:
    """Rows = methods, columns = datasets + Average (+ Masked % where a method reports it)."""
    part = summary[summary["shots"] == shots]
    rows = []
    for method, group in part.groupby("method"):
        by_ds = group.set_index("dataset")
        row = {"Method": method}
        for ds in datasets:
            row[ds] = _cell(by_ds.loc[ds]) if ds in by_ds.index else "–"
        present = [ds for ds in datasets if ds in by_ds.index]
        average = by_ds.loc[present, "mean"].mean() if present else float("nan")
        row["Average"] = f"{average:.2f}" + ("" if len(present) == len(datasets) else f"* ({len(present)}/{len(datasets)})")
        row["_sort"] = average
        masked = group["masked_pct"].dropna()
        row["Masked %"] = f"{masked.mean():.2f}" if len(masked) else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("_sort", ascending=False).drop(columns="_sort")
    if not (table["Masked %"] != "").any():
        table = table.drop(columns="Masked %")
    return table


def leaderboard(summary: pd.DataFrame, datasets: list[str], shots: list[int]) -> pd.DataFrame:
    """Methods ranked by the mean over shot counts of the all-dataset average; '*' marks a cell that
    misses datasets (it is then not comparable and the method ranks after the complete ones)."""
    rows = []
    for method, group in summary.groupby("method"):
        row, values, complete = {"Method": method}, [], True
        for k in shots:
            part = group[group["shots"] == k].set_index("dataset")
            present = [ds for ds in datasets if ds in part.index]
            avg = part.loc[present, "mean"].mean() if present else float("nan")
            full = len(present) == len(datasets)
            complete &= full
            row[f"{k}-shot"] = "–" if not present else f"{avg:.2f}" + ("" if full else "*")
            values.append(avg)
        row["Mean"] = pd.Series(values).mean()
        row["_complete"] = complete
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["_complete", "Mean"], ascending=[False, False]).drop(columns="_complete")
    table.insert(0, "Rank", range(1, len(table) + 1))
    table["Mean"] = table["Mean"].map(lambda v: f"{v:.2f}")
    return table


def _cell(row) -> str:
    return f"{row['mean']:.2f} ± {row['std']:.2f}"


def render(results_dir: Path, datasets: list[str], shots: list[int], fmt: str = "md") -> str:
    summary = summarize(load_frame(results_dir))
    if fmt == "csv":
        return summary.to_csv(index=False)
    if summary.empty:
        return f"No finished results in {results_dir}. Run `bench run` first.\n"
    parts = []
    backbones = sorted(summary["backbone"].unique())
    for backbone in backbones:
        part = summary[summary["backbone"] == backbone]
        if len(backbones) > 1:
            parts.append(f"## Backbone {backbone}\n")
        seen_shots = [k for k in shots if k in set(part["shots"])] + sorted(set(part["shots"]) - set(shots))
        for k in seen_shots:
            parts.append(f"### {k}-shot top-1 accuracy (%), mean ± std over seeds\n")
            parts.append(shot_table(part, k, datasets).to_markdown(index=False) + "\n")
        parts.append("### Leaderboard (average over datasets, %)\n")
        parts.append(leaderboard(part, datasets, seen_shots).to_markdown(index=False) + "\n")
    parts.append("`*` = not every dataset of the suite has results; such averages are not comparable.\n")
    return "\n".join(parts)

"""Record rows → summary cells → the tables a reader sees.

Cells are mean ± std over seeds (std with ddof=0, as CoOp's parse script computes it). An average is
the plain mean of the dataset means and uses the cells' decimals. A cell with fewer seeds than the
suite declares shows its n, and an average built from such a cell, or missing datasets, carries `*`
and ranks after complete ones. Cells whose hyperparameters were chosen on the test split carry `†`."""

from __future__ import annotations

import math

import pandas as pd

SUMMARY_COLUMNS = ["backbone", "method", "dataset", "shots", "mean", "std", "n", "expected_n", "validation",
                   "oracle", "masked_pct", "trainable_params", "state_bytes", "fit_s", "peak_memory_bytes", "source"]
ORACLE, SHORT = "†", "*"


def summarize(rows: pd.DataFrame, shots: list[int], seeds_declared: int) -> pd.DataFrame:
    """One row per (backbone, table row, dataset, shots). Shot-independent records (shots = 0) are
    repeated in every shot count, and one run is all they need."""
    if rows.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    grouped = rows.groupby(["backbone_label", "row", "dataset", "shots"])
    out = grouped.agg(mean=("top1", "mean"), std=("top1", lambda s: s.std(ddof=0)), n=("top1", "size"),
                      validation=("validation", lambda s: ", ".join(sorted(set(s)))), oracle=("oracle", "any"),
                      masked_pct=("masked_pct", "mean"), trainable_params=("trainable_params", "median"),
                      state_bytes=("state_bytes", "median"), fit_s=("fit_s", "median"),
                      peak_memory_bytes=("peak_memory_bytes", "max")).reset_index()
    out = out.rename(columns={"backbone_label": "backbone", "row": "method"})
    out["expected_n"] = [1 if k == 0 else seeds_declared for k in out["shots"]]
    out["source"] = "measured"
    independent = out[out["shots"] == 0]
    repeated = [independent.assign(shots=k) for k in shots]
    out = pd.concat([out[out["shots"] != 0], *repeated], ignore_index=True)
    return out[SUMMARY_COLUMNS]


def cell_text(cell) -> str:
    if cell["source"] == "published":
        return f"{cell['mean']:.2f}"
    text = f"{cell['mean']:.2f}" if cell["expected_n"] == 1 and cell["n"] == 1 else \
        f"{cell['mean']:.2f} ± {cell['std']:.2f}"
    if cell["n"] < cell["expected_n"]:
        text += f" (n={cell['n']})"
    return text + (ORACLE if cell["oracle"] else "")


def row_average(cells: pd.DataFrame, datasets: list[str]) -> tuple[float, str, bool]:
    """(value, text, complete) of a table row: plain mean of the dataset means it has."""
    by_ds = cells[cells["dataset"].isin(datasets)].set_index("dataset")
    present = [ds for ds in datasets if ds in by_ds.index]
    if not present:
        return math.nan, "–", False
    value = float(by_ds.loc[present, "mean"].mean())
    short = bool((by_ds.loc[present, "n"] < by_ds.loc[present, "expected_n"]).any())
    complete = len(present) == len(datasets) and not short
    text = f"{value:.2f}" + ("" if complete else SHORT)
    if len(present) < len(datasets):
        text += f" ({len(present)}/{len(datasets)})"
    return value, text + (ORACLE if by_ds.loc[present, "oracle"].any() else ""), complete


def shot_table(summary: pd.DataFrame, shots: int, datasets: list[str], published: pd.DataFrame | None = None):
    """Rows = methods (measured, ranked by average; then paper rows), columns = Method, Val, datasets,
    Average (+ Δ paper when published rows are given, + Masked % where a method reports it)."""
    part = summary[summary["shots"] == shots]
    rows = [_measured_row(method, cells, datasets) for method, cells in part.groupby("method")]
    rows.sort(key=lambda r: (not r["_complete"], -_finite(r["_value"])))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    if published is not None:
        paper = published[published["shots"] == shots]
        table["Δ paper"] = [_delta(r, paper) for r in rows]
    table = table.drop(columns=["_complete", "_value"])
    if published is not None:
        table = pd.concat([table, pd.DataFrame([_paper_row(m, c, datasets) for m, c in paper.groupby("method")])],
                          ignore_index=True).fillna("")
    if "Masked %" in table and not (table["Masked %"] != "").any():
        table = table.drop(columns="Masked %")
    return table


def _measured_row(method: str, cells: pd.DataFrame, datasets: list[str]) -> dict:
    by_ds = cells.set_index("dataset")
    row = {"Method": method, "Val": regimes(cells["validation"])}
    for ds in datasets:
        row[ds] = cell_text(by_ds.loc[ds]) if ds in by_ds.index else "–"
    value, row["Average"], complete = row_average(cells, datasets)
    masked = cells["masked_pct"].dropna()
    row["Masked %"] = f"{masked.mean():.2f}" if len(masked) else ""
    return {**row, "_value": value, "_complete": complete}


def _paper_row(method: str, cells: pd.DataFrame, datasets: list[str]) -> dict:
    by_ds = cells.set_index("dataset")
    row = {"Method": method, "Val": _paper_regime(cells)}
    for ds in datasets:
        row[ds] = f"{by_ds.loc[ds, 'mean']:.2f}" if ds in by_ds.index else "–"
    row["Average"] = f"{by_ds.loc['Average', 'mean']:.2f}" if "Average" in by_ds.index else "–"
    return row


def _paper_regime(cells: pd.DataFrame) -> str:
    regime = cells["validation"].iloc[0]
    return regime + (ORACLE if "oracle_test" in regime else "")


def _delta(row: dict, paper: pd.DataFrame) -> str:
    """Measured average − published average of the same method ('' when the paper has none)."""
    name = row["Method"].split("@")[0] + " (paper)"
    match = paper[(paper["method"] == name) & (paper["dataset"] == "Average")]
    value = row["_value"]
    if match.empty or math.isnan(value):
        return ""
    delta = round(value - float(match["mean"].iloc[0]), 2) + 0.0  # + 0.0: never print -0.00
    average = row["Average"]
    return f"{delta:+.2f}" + (SHORT if SHORT in average else "") + (ORACLE if ORACLE in average else "")


def leaderboard(summary: pd.DataFrame, datasets: list[str], shots: list[int]) -> pd.DataFrame:
    """Methods ranked by the mean over shot counts of the all-dataset average; incomplete ones
    (missing datasets or seeds, '*') rank after complete ones."""
    rows = []
    for method, group in summary.groupby("method"):
        row, values, complete = {"Method": method, "Val": regimes(group["validation"])}, [], True
        for k in shots:
            value, text, full = row_average(group[group["shots"] == k], datasets)
            row[f"{k}-shot"], complete = text, complete and full
            values.append(value)
        mean = pd.Series(values).mean()
        row["Mean"] = "–" if math.isnan(mean) else f"{mean:.2f}" + ("" if complete else SHORT)
        rows.append({**row, "_complete": complete, "_mean": _finite(mean)})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).sort_values(["_complete", "_mean"], ascending=[False, False])
    table = table.drop(columns=["_complete", "_mean"])
    table.insert(0, "Rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def published_board(published: pd.DataFrame, shots: list[int]) -> pd.DataFrame:
    """The papers' 11-dataset averages, as a table of their own (never ranked with measured rows)."""
    averages = published[published["dataset"] == "Average"]
    rows = []
    for method, group in averages.groupby("method"):
        by_k = group.set_index("shots")["mean"]
        rows.append({"Method": method, "Val": _paper_regime(group),
                     **{f"{k}-shot": f"{by_k[k]:.2f}" if k in by_k.index else "–" for k in shots}})
    return pd.DataFrame(rows)


def cost_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method × shots, over the records behind the tables: trainable parameters and task-state bytes
    (medians), median fit seconds, peak memory (max). A shot-independent method shows shots 'any'."""
    out = []
    for (method, k), group in rows.groupby(["row", "shots"]):
        out.append({"Method": method, "Shots": "any" if k == 0 else str(k),
                    "Trainable params": _count(group["trainable_params"].median()),
                    "Task state": _bytes(group["state_bytes"].median()),
                    "Fit s (median)": _fmt(group["fit_s"].median(), "{:.2f}"),
                    "Peak memory": _bytes(group["peak_memory_bytes"].max(), binary=True)})
    return pd.DataFrame(out)


def regimes(values: pd.Series) -> str:
    """The distinct validation regimes behind some cells, e.g. 'fewshot_val, oracle_test'."""
    found = {part for text in values for part in str(text).split(", ")}
    return ", ".join(sorted(found)) + (ORACLE if "oracle_test" in found else "")


def _finite(value: float) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def _fmt(value, pattern: str) -> str:
    return "–" if value is None or pd.isna(value) else pattern.format(value)


def _count(value) -> str:
    if value is None or pd.isna(value):
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= div:
            return f"{value / div:.2f}{unit}"
    return f"{int(value)}"


def _bytes(value, binary: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    base, units = (1024, ("B", "KiB", "MiB", "GiB")) if binary else (1000, ("B", "kB", "MB", "GB"))
    for unit in units:
        if value < base or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= base
    return "–"

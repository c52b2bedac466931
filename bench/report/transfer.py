"""Tables of the protocols beyond few-shot (bench.protocols): base-to-new and the transfer protocols.

A record of such a protocol holds several numbers: its own test accuracy (`source`; for base-to-new
that is Base) and one per target in record["targets"] (base-to-new: "new"; domain generalization and
cross-dataset: a dataset name), or the reason it is not applicable ("na"). `part_cells` turns the
records into one summary cell per (method, dataset, shots, part), mean ± std over seeds as every
other table. H is computed from the cell means, H = 2·B·N/(B+N), and the average row's H from the
average Base and New, as CoCoOp reports it. A method that cannot classify new classes shows "n/a" and
its reason is a note under the table; it is never silently left out or given a number."""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.report.tables import ORACLE, SHORT, cell_text, regimes

NA = "n/a"
PART_COLUMNS = ["backbone", "method", "dataset", "shots", "part", "mean", "std", "n", "expected_n", "validation",
                "oracle", "na", "masked_pct", "source"]


def part_cells(rows: pd.DataFrame, seeds_declared: int) -> pd.DataFrame:
    """One row per (backbone, table row, dataset, shots, part); `na` holds the reason when no record of
    the cell has a number for that part."""
    long = []
    for row in rows.itertuples():
        parts = {"source": {"top1": row.top1}, **json.loads(row.targets or "{}")}
        for part, value in parts.items():
            long.append({"backbone": row.backbone_label, "method": row.row, "dataset": row.dataset,
                         "shots": row.shots, "part": part, "top1": value.get("top1"), "na": value.get("na", ""),
                         "validation": row.validation, "oracle": row.oracle, "masked_pct": row.masked_pct})
    if not long:
        return pd.DataFrame(columns=PART_COLUMNS)
    frame = pd.DataFrame(long)
    out = frame.groupby(["backbone", "method", "dataset", "shots", "part"], sort=False).agg(
        mean=("top1", "mean"), std=("top1", lambda s: s.dropna().std(ddof=0)), n=("top1", "count"),
        validation=("validation", lambda s: ", ".join(sorted(set(s)))), oracle=("oracle", "any"),
        na=("na", lambda s: next((x for x in s if x), "")), masked_pct=("masked_pct", "mean")).reset_index()
    out["expected_n"] = [1 if k == 0 else seeds_declared for k in out["shots"]]
    out["source"] = "measured"
    return out[PART_COLUMNS]


def harmonic(base: float, new: float) -> float:
    if any(v is None or math.isnan(v) for v in (base, new)):
        return math.nan
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def _text(cell) -> str:
    if cell is None:
        return "–"
    if cell["n"] == 0:
        return NA if cell["na"] else "–"
    return cell_text(cell)


def _cells(group: pd.DataFrame) -> dict:
    return {(r["dataset"], r["part"]): r for r in group.to_dict("records")}


def base_to_new_table(cells: pd.DataFrame, shots: int, datasets: list[str], paper: list | None = None):
    """Rows = methods ranked by average H (complete rows first); per dataset Base, New, H; then the
    averages. Paper rows ("(paper)") follow, never ranked."""
    rows = []
    for method, group in cells[cells["shots"] == shots].groupby("method"):
        by = _cells(group)
        row = {"Method": method, "Val": regimes(group["validation"])}
        bases, news = [], []
        for ds in datasets:
            base, new = by.get((ds, "source")), by.get((ds, "new"))
            row[f"{ds} Base"], row[f"{ds} New"] = _text(base), _text(new)
            b = base["mean"] if base is not None and base["n"] else math.nan
            n = new["mean"] if new is not None and new["n"] else math.nan
            row[f"{ds} H"] = NA if new is not None and not new["n"] and new["na"] else _number(harmonic(b, n))
            bases.append(b)
            news.append(n)
        base_full = not _short(group, datasets) and not any(math.isnan(v) for v in bases)
        complete = base_full and not any(math.isnan(v) for v in news)
        avg_b, avg_n = _mean(bases), _mean(news)
        oracle = ORACLE if group["oracle"].any() else ""
        new_na = bool((group["part"] == "new").any()) and group.loc[group["part"] == "new", "n"].sum() == 0
        row["Average Base"] = _number(avg_b, ("" if base_full else SHORT) + oracle)
        mark = ("" if complete else SHORT) + oracle
        row["Average New"] = NA if new_na else _number(avg_n, mark)
        row["Average H"] = NA if new_na else _number(harmonic(avg_b, avg_n), mark)
        rows.append({**row, "_complete": complete, "_value": harmonic(avg_b, avg_n)})
    for entry in paper or []:
        row = {"Method": f"{entry.method} (paper)", "Val": entry.regime()}
        for ds in [*datasets, "Average"]:
            values = entry.cells.get(ds.lower() if ds == "Average" else ds) or {}
            for column, key in (("Base", "base"), ("New", "new"), ("H", "H")):
                row[f"{ds} {column}"] = _number(values.get(key, math.nan)) if isinstance(values, dict) else "–"
        rows.append({**row, "_complete": None, "_value": None})
    return _ranked(rows)


def transfer_table(cells: pd.DataFrame, shots: int, source: str, targets: list[str], paper: list | None = None):
    """Rows = methods ranked by the target average; columns: the source, each target, Target avg."""
    rows = []
    part = cells[(cells["shots"] == shots) & (cells["dataset"] == source)]
    for method, group in part.groupby("method"):
        by = {r["part"]: r for r in group.to_dict("records")}
        row = {"Method": method, "Val": regimes(group["validation"]), f"{source} (source)": _text(by.get("source"))}
        values = []
        for target in targets:
            row[target] = _text(by.get(target))
            cell = by.get(target)
            values.append(cell["mean"] if cell is not None and cell["n"] else math.nan)
        na = all(by.get(t) is not None and not by[t]["n"] and by[t]["na"] for t in targets)
        complete = not _short(group, [source]) and not any(math.isnan(v) for v in values)
        mark = ("" if complete else SHORT) + (ORACLE if group["oracle"].any() else "")
        row["Target avg"] = NA if na else _number(_mean(values), mark)
        rows.append({**row, "_complete": complete, "_value": _mean(values)})
    for entry in paper or []:
        row = {"Method": f"{entry.method} (paper)", "Val": entry.regime(),
               f"{source} (source)": _number(entry.cells.get(source, math.nan))}
        row.update({t: _number(entry.cells.get(t, math.nan)) for t in targets})
        row["Target avg"] = _number(entry.cells.get("target_average", math.nan))
        rows.append({**row, "_complete": None, "_value": None})
    return _ranked(rows)


def na_notes(cells: pd.DataFrame) -> list[str]:
    """One line per (method, reason) of the n/a cells."""
    missing = cells[(cells["n"] == 0) & (cells["na"] != "")]
    return [f"{NA}: {method}: {reason}." for (method, reason), _ in missing.groupby(["method", "na"])]


def _short(group: pd.DataFrame, datasets: list[str]) -> bool:
    source = group[(group["part"] == "source") & group["dataset"].isin(datasets)]
    return len(source) < len(datasets) or bool((source["n"] < source["expected_n"]).any())


def _mean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def _number(value, mark: str = "") -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}{mark}"


def _ranked(rows: list[dict]) -> pd.DataFrame:
    measured = [r for r in rows if r["_complete"] is not None]
    paper = [r for r in rows if r["_complete"] is None]
    measured.sort(key=lambda r: (not r["_complete"], -(r["_value"] if not math.isnan(r["_value"]) else -math.inf)))
    table = pd.DataFrame(measured + paper)
    return table.drop(columns=["_complete", "_value"]) if not table.empty else table

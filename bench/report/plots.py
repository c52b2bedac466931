"""Report figures: accuracy vs shots, masked % vs accuracy, accuracy vs cost.

Input is the long `summary` frame (one row per backbone × method × dataset × shots; see the report
module). Figures are built with `matplotlib.figure.Figure` and an Agg canvas, never through pyplot:
no global figure registry, no backend switch, nothing to leak or close, safe in any process.

Averages over datasets are the plain mean of the dataset means, as in the report tables. A series
whose average misses some of the suite's datasets at some shot count is still drawn, but its
label carries a "*". Published rows use their own "Average" row when they have one (the paper's
number, over its datasets), else the same mean over whatever per-dataset numbers they give.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

AVERAGE = "Average"
PUBLISHED = "published"
PAPER_SUFFIX = " (paper)"
INCOMPLETE_NOTE = "* average misses some of the suite's datasets"
COST_PANELS = [("trainable_params", "trainable parameters", ""),
               ("state_bytes", "task-state size", "B")]


# ---------------------------------------------------------------------------- data preparation

def _series_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """Adds `series` (the line's label) and `base` (the colour key): a published row shares the
    colour of the measured method it reproduces. Backbones only enter the label when several are
    mixed, so the usual per-backbone report keeps plain method names."""
    frame = summary.copy()
    frame["shots"] = frame["shots"].astype(int)
    frame["series"] = frame["method"].astype(str)
    if frame["backbone"].nunique() > 1:
        frame["series"] = frame["series"] + " · " + frame["backbone"].astype(str)
    frame["base"] = frame["series"].str.replace(PAPER_SUFFIX, "", regex=False)
    frame["published"] = frame["source"].astype(str) == PUBLISHED
    return frame


def _averages(frame: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """One row per (series, shots): average accuracy, mean masked % and costs over the datasets,
    and whether every suite dataset was present (`complete`)."""
    rows = []
    for (series, shots), group in frame.groupby(["series", "shots"], sort=False):
        own = group[group["dataset"] == AVERAGE]
        if group["published"].iloc[0] and len(own):
            part, complete = own.iloc[[0]], True
        else:
            part = group[group["dataset"].isin(datasets)]
            complete = set(datasets) <= set(part["dataset"])
        if part.empty:
            continue
        row = {"series": series, "shots": shots, "complete": complete}
        for col in ["mean", "masked_pct", "trainable_params", "state_bytes"]:
            row[col] = pd.to_numeric(part[col], errors="coerce").mean()  # NaN-skipping
        rows.append(row)
    return pd.DataFrame(rows, columns=["series", "shots", "complete", "mean", "masked_pct",
                                       "trainable_params", "state_bytes"])


def _styles(frame: pd.DataFrame, keep: set[str] | None = None) -> dict[str, dict]:
    """Per series: colour (by base name), dashed for published, and legend order (measured method
    first, its paper numbers right after). Colours come from the whole frame, so a method keeps
    its colour in every figure even when a figure shows only some methods (`keep`)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if frame["base"].nunique() <= 10 else "tab20"]
    bases = sorted(frame["base"].unique())
    colour = {b: cmap(i % cmap.N) for i, b in enumerate(bases)}
    keys = frame.drop_duplicates("series").sort_values(["base", "published"])
    return {r.series: {"color": colour[r.base], "published": bool(r.published)}
            for r in keys.itertuples() if keep is None or r.series in keep}


def _suite_datasets(frame: pd.DataFrame, datasets: list[str] | None) -> list[str]:
    if datasets is not None:
        return list(datasets)
    return sorted(set(frame.loc[~frame["published"], "dataset"]) - {AVERAGE})


# ---------------------------------------------------------------------------- drawing helpers

def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw(ax, x, y, style: dict, label: str, yerr=None):
    """Exactly one Line2D per series (markers on it); error bars via `errorbar(fmt="none",
    capsize=0)`, which adds only a LineCollection, so `ax.get_lines()` counts series."""
    line, = ax.plot(x, y, linestyle="--" if style["published"] else "-",
                    marker="s" if style["published"] else "o", markersize=4, linewidth=1.5,
                    color=style["color"], label=label)
    if yerr is not None:
        yerr = np.asarray(yerr, dtype=float)
        ok = np.isfinite(yerr)
        if ok.any():
            ax.errorbar(np.asarray(x)[ok], np.asarray(y)[ok], yerr=yerr[ok], fmt="none",
                        capsize=0, ecolor=style["color"], elinewidth=1, alpha=0.7)
    return line


def _annotate_shots(ax, xs, ys, shots, color):
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=2, foreground="white")]  # legible across lines
    for x, y, k in zip(xs, ys, shots):
        ax.annotate(str(k), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7,
                    color=color, path_effects=halo)


def _shot_axis(ax, shots: list[int]):
    from matplotlib.ticker import NullLocator

    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.xaxis.set_minor_locator(NullLocator())  # log2 minor ticks at non-shot values only confuse


def _legend(fig, handles: dict, incomplete: set[str]):
    if not handles:
        return
    # the handle's own label: a zero-cost reference line says so in the legend
    labels = [h.get_label() + ("*" if s in incomplete else "") for s, h in handles.items()]
    # as many columns as the width allows (matplotlib fills a legend column by column, so few
    # columns scatter an alphabetical order across rows)
    ncols = max(1, min(len(handles), int(fig.get_figwidth() / 1.8)))
    starred = any(s in incomplete for s in handles)
    fig.legend(list(handles.values()), labels, loc="outside lower center", ncols=ncols,
               frameon=False, fontsize=9, title=INCOMPLETE_NOTE if starred else None,
               title_fontsize=8)


# ---------------------------------------------------------------------------- figures

def accuracy_vs_shots(summary: pd.DataFrame, datasets: list[str], shots: list[int]):
    """One panel per dataset plus an Average panel; one line per method, legend once."""
    frame = _series_frame(summary)
    frame = frame[frame["shots"].isin(shots)]
    styles, avg = _styles(frame), _averages(frame, datasets)
    ncols = min(len(datasets) + 1, 4)
    nrows = -(-(len(datasets) + 1) // ncols)
    fig = _new_figure(3.4 * ncols, 2.8 * nrows + 0.6 + 0.25 * (len(styles) // (2 * ncols)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict = {}
    for ax, ds in zip(axes, datasets):
        part = frame[frame["dataset"] == ds]
        for series, style in styles.items():
            rows = part[part["series"] == series].sort_values("shots")
            if len(rows):
                handles.setdefault(series, _draw(ax, rows["shots"], rows["mean"], style, series,
                                                 None if style["published"] else rows["std"]))
        ax.set_title(ds, fontsize=10)
    ax = axes[len(datasets)]
    incomplete = set(avg.loc[~avg["complete"], "series"])
    for series, style in styles.items():
        rows = avg[avg["series"] == series].sort_values("shots")
        if len(rows):  # no error bars: a std of the average needs per-seed averages
            handles.setdefault(series, _draw(ax, rows["shots"], rows["mean"], style, series))
    ax.set_title(f"{AVERAGE} over {len(datasets)} datasets" + (" (*)" if incomplete else ""),
                 fontsize=10, fontweight="bold")
    for ax in axes[len(datasets) + 1:]:
        ax.remove()  # unused grid cells; removed so fig.axes holds only real panels
    for ax in fig.axes:
        _shot_axis(ax, shots)
        ax.grid(alpha=0.3)
        ax.set_xlabel("shots per class", fontsize=8)
        ax.set_ylabel("top-1 (%)", fontsize=8)
        ax.tick_params(labelsize=8)
    _legend(fig, {s: handles[s] for s in styles if s in handles}, incomplete)
    return fig


def masked_vs_accuracy(summary: pd.DataFrame, datasets: list[str] | None = None):
    """Per mask method one line over its shots at (mean masked % over datasets, average
    accuracy), each point annotated with its shot count. None when no method reports masked %."""
    frame = _series_frame(summary)
    datasets = _suite_datasets(frame, datasets)
    avg = _averages(frame, datasets).dropna(subset=["masked_pct", "mean"])
    if avg.empty:
        return None
    styles = _styles(frame, keep=set(avg["series"]))
    fig = _new_figure(6.0, 4.6)
    ax = fig.add_subplot()
    handles = {}
    for series, style in styles.items():
        rows = avg[avg["series"] == series].sort_values("shots")
        handles[series] = _draw(ax, rows["masked_pct"], rows["mean"], style, series)
        _annotate_shots(ax, rows["masked_pct"], rows["mean"], rows["shots"], style["color"])
    ax.set_xlabel("masked weights (% of masked tensors, mean over datasets)", fontsize=9)
    ax.set_ylabel(f"top-1 (%), average over {len(datasets)} datasets", fontsize=9)
    ax.set_title("Masked % vs accuracy (labels = shots)", fontsize=10)
    ax.grid(alpha=0.3)
    _legend(fig, handles, set(avg.loc[~avg["complete"], "series"]))
    return fig


def cost_view(summary: pd.DataFrame, datasets: list[str] | None = None):
    """Average accuracy vs trainable parameters and vs task-state bytes (log x), one line per
    method over shots. None when no row has a cost."""
    from matplotlib.ticker import EngFormatter

    frame = _series_frame(summary)
    datasets = _suite_datasets(frame, datasets)
    avg = _averages(frame, datasets)
    panels = [p for p in COST_PANELS if avg[p[0]].notna().any()]
    if not panels:
        return None
    styles = _styles(frame, keep=set(avg["series"]))
    fig = _new_figure(5.2 * len(panels), 4.4)
    handles: dict = {}
    for ax, (col, label, unit) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for series, style in styles.items():
            rows = avg[(avg["series"] == series) & avg[col].notna()].sort_values("shots")
            _cost_series(ax, rows, col, series, style, handles)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.set_xlabel(f"{label} (log; mean over datasets)", fontsize=9)
        ax.set_ylabel(f"top-1 (%), average over {len(datasets)} datasets", fontsize=9)
        ax.set_title(f"Accuracy vs {label} (labels = shots)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.grid(alpha=0.08, which="minor")
    _legend(fig, {s: handles[s] for s in styles if s in handles},
            set(avg.loc[~avg["complete"], "series"]))
    return fig


def _cost_series(ax, rows: pd.DataFrame, col: str, series: str, style: dict, handles: dict):
    """A zero cost (zero-shot trains nothing) has no place on a log axis: a method whose cost is
    always 0 becomes a dotted horizontal reference line instead of disappearing."""
    positive = rows[rows[col] > 0]
    if len(positive):
        handles.setdefault(series, _draw(ax, positive[col], positive["mean"], style, series))
        _annotate_shots(ax, positive[col], positive["mean"], positive["shots"], style["color"])
    elif len(rows):
        line = ax.axhline(rows["mean"].mean(), color=style["color"], linestyle=":", linewidth=1.2,
                          label=f"{series} (cost 0)")
        handles.setdefault(series, line)


# ---------------------------------------------------------------------------- output

def _figures(summary: pd.DataFrame, datasets: list[str], shots: list[int]) -> list[tuple[str, object]]:
    if summary.empty:
        return []
    figures = [("accuracy_vs_shots", accuracy_vs_shots(summary, datasets, shots)),
               ("masked_vs_accuracy", masked_vs_accuracy(summary, datasets)),
               ("cost", cost_view(summary, datasets))]
    return [(name, fig) for name, fig in figures if fig is not None]


def _save(fig, target, fmt: str, name: str):
    """SVG text stays text (svg.fonttype none: smaller, selectable, no duplicate glyph ids when
    several SVGs share one page); a per-figure hash salt makes ids reproducible yet distinct
    across figures; no date metadata, so regenerating from the same records gives the same file."""
    import matplotlib

    rc = {"svg.fonttype": "none", "svg.hashsalt": f"bench-{name}"}
    metadata = {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context(rc):
        fig.savefig(target, format=fmt, dpi=150, metadata=metadata)


def write_plots(summary: pd.DataFrame, datasets: list[str], shots: list[int], out_dir: Path) -> list[Path]:
    """Writes every available figure as <name>.png and <name>.svg; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in _figures(summary, datasets, shots):
        for fmt in ("png", "svg"):
            path = out_dir / f"{name}.{fmt}"
            _save(fig, path, fmt, name)
            paths.append(path)
        fig.clear()  # not pyplot-managed: dropping the reference frees it; clear() frees it now
    return paths


def figure_svgs(summary: pd.DataFrame, datasets: list[str], shots: list[int]) -> dict[str, str]:
    """name → SVG text without the XML prolog/DOCTYPE, ready to inline in an HTML page."""
    out = {}
    for name, fig in _figures(summary, datasets, shots):
        buf = io.StringIO()
        _save(fig, buf, "svg", name)
        fig.clear()
        out[name] = strip_svg_prolog(buf.getvalue())
    return out


def strip_svg_prolog(svg: str) -> str:
    """Drops `<?xml …?>`, `<!DOCTYPE …>` and comments before `<svg`: invalid or useless inside
    HTML, and the DOCTYPE names an external DTD URL."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


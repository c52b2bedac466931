"""A Report as text: markdown (default), csv (long form), json (a pydantic schema), latex (booktabs), html.

The JSON schema is `ReportJSON` below; docs/report.schema.json is generated from it and a test keeps
the two equal, so a change of the schema is always a visible diff (bump SCHEMA_VERSION with it)."""

from __future__ import annotations

import json
import math
from typing import Literal

import pandas as pd
from pydantic import BaseModel

SCHEMA_VERSION = 2  # 2: protocol, and cells of the protocols beyond few-shot (part, na)
RECORD_COLUMNS = ["job_id", "row", "method", "method_version", "dataset", "shots", "seed", "top1", "validation",
                  "masked_pct", "trainable_params", "state_bytes", "fit_s", "peak_memory_bytes", "backbone_label",
                  "weights", "protocol", "targets", "params", "split_digest", "fewshot_digest", "git_sha", "git_dirty",
                  "bench_version", "torch", "open_clip", "created_at", "results_dir"]


# ------------------------------------------------------------------------------------------ markdown
def to_md(report) -> str:
    parts = ["\n".join(f"- {line}" for line in report.header) + "\n"]
    if not report.sections:
        parts.append("No finished results for this suite. Run `bench run` first.\n")
    for section in report.sections:
        if len(report.sections) > 1:
            parts.append(f"## Backbone {section.backbone}\n")
        for title, table in section_tables(section):
            parts.append(f"### {title}\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n")
        parts += [note + "\n" for note in section.notes]
    if report.legend:
        parts.append("### Other configurations\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in report.legend.items())
                     + "\n")
    parts.append("\n".join(f"- {note}" for note in report.footnotes) + "\n")
    return "\n".join(parts)


def section_tables(section) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) in reading order; shared by every format so they always show the same tables."""
    out = [(title, table) for title, table in section.protocol_tables.items() if not table.empty]
    out += [(f"{k}-shot top-1 accuracy (%)", table) for k, table in section.shot_tables.items()]
    if not section.leaderboard.empty:
        out.append(("Leaderboard (average over datasets, %)", section.leaderboard))
    if not section.published.empty:
        out.append(("Published averages (paper; not ranked)", section.published))
    if not section.cost.empty:
        out.append(("Cost per method and shot count", section.cost))
    return out


# ------------------------------------------------------------------------------------------ csv
def to_csv(report) -> str:
    """Long form: one row per record behind the tables."""
    return report.records.reindex(columns=RECORD_COLUMNS).to_csv(index=False)


def summary_csv(report) -> str:
    """One row per (backbone, method, dataset, shots) cell, published cells included."""
    return report.summary.to_csv(index=False)


# ------------------------------------------------------------------------------------------ json
class TableJSON(BaseModel):
    title: str
    columns: list[str]
    rows: list[list[str]]


class SectionJSON(BaseModel):
    backbone: str
    tables: list[TableJSON]
    notes: list[str]


class CellJSON(BaseModel):
    backbone: str
    method: str
    dataset: str  # "Average" for a paper's 11-dataset average
    shots: int
    mean: float | None  # None: n/a (see na)
    std: float | None
    n: int | None
    expected_n: int | None
    validation: str
    oracle: bool
    masked_pct: float | None
    source: Literal["measured", "published"]
    # protocols beyond few-shot: which number of the record ("source": its own test split; "new"; a
    # target dataset) and, when none of the cell's records has one, why ("n/a" in the tables)
    part: str | None = None
    na: str | None = None


class RecordJSON(BaseModel):
    job_id: str
    row: str
    method: str
    dataset: str
    shots: int
    seed: int
    top1: float
    validation: str
    created_at: str
    results_dir: str


class ReportJSON(BaseModel):
    schema_version: Literal[2]
    suite: str
    protocol: str
    datasets: list[str]
    shots: list[int]
    header: list[str]
    footnotes: list[str]
    legend: dict[str, str]
    sections: list[SectionJSON]
    cells: list[CellJSON]
    records: list[RecordJSON]


def to_json(report) -> str:
    sections = [SectionJSON(backbone=s.backbone, notes=s.notes,
                            tables=[_table_json(title, t) for title, t in section_tables(s)])
                for s in report.sections]
    doc = ReportJSON(schema_version=SCHEMA_VERSION, suite=report.suite, protocol=report.protocol, datasets=report.datasets,
                     shots=report.shots, header=report.header, footnotes=report.footnotes, legend=report.legend,
                     sections=sections, cells=[CellJSON(**_clean(c)) for c in report.summary.to_dict("records")],
                     records=[RecordJSON(**_clean(r)) for r in report.records.to_dict("records")])
    return doc.model_dump_json(indent=1)


def json_schema() -> str:
    return json.dumps(ReportJSON.model_json_schema(), indent=1, sort_keys=True) + "\n"


def _table_json(title: str, table: pd.DataFrame) -> TableJSON:
    return TableJSON(title=title, columns=[str(c) for c in table.columns],
                     rows=[[str(v) for v in row] for row in table.itertuples(index=False)])


def _clean(row: dict) -> dict:
    """NaN → None (JSON has no NaN); keep only the fields a schema model declares (pydantic ignores extras)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


# ------------------------------------------------------------------------------------------ latex
LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$",
                 "†": r"$^\dagger$", "Δ": r"$\Delta$", "–": "--", "→": r"$\rightarrow$", "·": r"$\cdot$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex_table(title: str, table: pd.DataFrame) -> str:
    """One booktabs tabular (needs \\usepackage{booktabs})."""
    columns = [latex_escape(c) for c in table.columns]
    lines = [f"% {latex_escape(title)}", r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}", r"\toprule",
             " & ".join(columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"


def to_latex(report) -> str:
    parts = ["% " + latex_escape(line) for line in report.header]
    for section in report.sections:
        for title, table in section_tables(section):
            parts.append(latex_table(f"{section.backbone}: {title}", table))
        parts += ["% " + latex_escape(note) for note in section.notes]
    parts += ["% " + latex_escape(note) for note in report.footnotes]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------ html
def to_html(report) -> str:
    from bench.report.html import render_html
    from bench.report.plots import figure_svgs

    sections, figures = [], {}
    for section in report.sections:
        prefix = f"{section.backbone}: " if len(report.sections) > 1 else ""
        sections += [(prefix + title, table) for title, table in section_tables(section)]
        if report.protocol != "fewshot":  # the figures plot accuracy against shots
            continue
        part = report.summary[report.summary["backbone"] == section.backbone]
        figures.update({prefix + name: svg for name, svg in figure_svgs(part, report.datasets, report.shots).items()})
    notes = [n for s in report.sections for n in s.notes] + report.footnotes + \
        [f"{k}: {v}" for k, v in report.legend.items()]
    return render_html(f"bench report: suite {report.suite}", report.header, sections, figures, notes)

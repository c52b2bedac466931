"""Result records → a report. The records are the source of truth; reports are always regenerated.

`build` reads one or more results folders, keeps for each cell only the records of the configuration
the current suite resolves to (bench.report.records), checks that merged folders measured the same
protocol (bench.report.identity), and assembles the tables (bench.report.tables); `render` writes them
as md, csv, json, latex or html (bench.report.formats)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.report.identity import check_identity
from bench.report.provenance import header_lines
from bench.report.published import published_frame
from bench.report.records import load_records
from bench.report.tables import cost_table, leaderboard, published_board, shot_table, summarize

FORMATS = ("md", "csv", "json", "latex", "html")
COMPARE = ("published",)


@dataclass
class Section:
    """Everything reported for one backbone."""

    backbone: str
    protocol_tables: dict = field(default_factory=dict)  # title → DataFrame (protocols beyond few-shot)
    shot_tables: dict = field(default_factory=dict)  # shots → DataFrame
    leaderboard: pd.DataFrame = field(default_factory=pd.DataFrame)
    published: pd.DataFrame = field(default_factory=pd.DataFrame)  # the papers' averages (--compare published)
    cost: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    suite: str
    datasets: list[str]
    shots: list[int]
    header: list[str]
    sections: list[Section]
    footnotes: list[str]
    records: pd.DataFrame  # the record rows behind the tables
    summary: pd.DataFrame  # measured cells (+ published ones with --compare published)
    legend: dict = field(default_factory=dict)  # method@hash → how it differs from the suite's configuration
    protocol: str = "fewshot"  # the suite's; other protocols have their own tables (bench.report.transfer)


def build(suite, results_dirs: list[Path] | None = None, all_configs: bool = False, compare: str | None = None,
          include_oracle: bool = False, methods: list[str] | None = None) -> Report:
    """`methods`: report only these (the suite's `methods` list does not limit a report: every method
    with records in the grid is shown)."""
    if compare is not None and compare not in COMPARE:
        raise BenchError(f"--compare takes 'published', got '{compare}'")
    dirs = [Path(d) for d in (results_dirs or [suite.results_dir])]
    loaded = load_records(dirs, suite)
    frame = loaded.frame
    if methods is not None:
        frame["in_grid"] &= frame["method"].isin(list(methods))
    stale = check_identity(frame)
    usable = frame[frame["in_grid"] & ~frame["stale"]] if not frame.empty else frame
    shown = usable if all_configs else usable[usable["current"]]
    datasets, shots = list(suite.datasets), list(suite.shots)
    if suite.protocol != "fewshot":
        return _protocol_report(suite, dirs, frame, usable, shown, stale, loaded.unreadable, all_configs,
                                compare, include_oracle, methods)
    summary = summarize(shown, shots, len(suite.seeds))
    # The leaderboard ranks without test-tuned records unless asked: only then is it another summary.
    board_summary = summary if include_oracle else summarize(shown[~shown["oracle"]], shots, len(suite.seeds))
    sections, published_parts = [], []
    for label in sorted(set(summary["backbone"])):
        backbone = json.loads(shown[shown["backbone_label"] == label]["backbone"].iloc[0])
        paper = published_frame(backbone, shots, datasets, methods) if compare else None
        sections.append(_section(label, summary[summary["backbone"] == label],
                                 board_summary[board_summary["backbone"] == label], paper, datasets, shots))
        sections[-1].cost = cost_table(shown[shown["backbone_label"] == label])
        if paper is not None:
            published_parts.append(paper.assign(backbone=label))
    footnotes = _footnotes(frame, usable, shown, all_configs, stale, loaded.unreadable, include_oracle)
    header = header_lines(suite.name, shown, len(frame))
    if len(dirs) > 1:
        header.insert(1, "Merged results folders: " + ", ".join(str(d) for d in dirs))
    full = pd.concat([summary, *published_parts], ignore_index=True) if published_parts else summary
    return Report(suite.name, datasets, shots, header, sections, footnotes, shown, full,
                  _legend(shown, suite) if all_configs else {})


def _protocol_report(suite, dirs, frame, usable, shown, stale, unreadable, all_configs, compare, include_oracle,
                     methods) -> Report:
    """base_to_new / domain_generalization / cross_dataset: a table per shot count (and per source),
    the n/a reasons, the cost table; paper rows with --compare published."""
    from bench.report.published import published_protocol
    from bench.report.transfer import base_to_new_table, na_notes, part_cells, transfer_table

    if not include_oracle:  # these tables rank rows: test-tuned records stay out unless asked for
        shown = shown[~shown["oracle"]]
    cells = part_cells(shown, len(suite.seeds))
    sections = []
    for label in sorted(set(cells["backbone"])):
        section, mine = Section(label), cells[cells["backbone"] == label]
        backbone = json.loads(shown[shown["backbone_label"] == label]["backbone"].iloc[0])
        for k in sorted({k for k in mine["shots"] if k} or {0}):
            rows = mine[mine["shots"].isin([k, 0])].assign(shots=k)  # zero-shot's one run joins every shot table
            paper = published_protocol(backbone, suite.protocol, k, methods) if compare else None
            what = f"{k}-shot" if k else "any-shot"
            if suite.protocol == "base_to_new":
                section.protocol_tables[f"Base-to-new, {what}: Base / New / H (%)"] = \
                    base_to_new_table(rows, k, list(suite.datasets), paper)
            for source in (suite.datasets if suite.protocol != "base_to_new" else ()):
                title = PROTOCOL_TITLES[suite.protocol]
                section.protocol_tables[f"{title}, {what}: {source} → targets (%)"] = \
                    transfer_table(rows, k, source, list(suite.targets.get(source, ())), paper)
        section.notes += na_notes(mine)
        section.cost = cost_table(shown[shown["backbone_label"] == label])
        sections.append(section)
    footnotes = _footnotes(frame, usable, shown, all_configs, stale, unreadable, include_oracle)
    footnotes[0] = PROTOCOL_NOTES[suite.protocol]
    header = header_lines(suite.name, shown, len(frame))
    header.insert(1, f"Protocol: {suite.protocol}")
    return Report(suite.name, list(suite.datasets), list(suite.shots), header, sections, footnotes, shown, cells,
                  _legend(shown, suite) if all_configs else {}, protocol=suite.protocol)


PROTOCOL_TITLES = {"domain_generalization": "Domain generalization", "cross_dataset": "Cross-dataset transfer"}
PROTOCOL_NOTES = {
    "base_to_new": "Cells: top-1 % on the test images of the base classes (Base, the classes trained on) and of "
                   "the new classes with their names (New), mean ± std over seeds (ddof=0); H = 2·Base·New / "
                   "(Base + New) of the means; the average row's H is that of the average Base and New.",
    "domain_generalization": "Cells: top-1 % of one fitted method on the source's test split and on each shifted "
                             "variant (among the variant's classes), mean ± std over seeds (ddof=0); Target avg = "
                             "mean over the targets.",
    "cross_dataset": "Cells: top-1 % of one fitted method on the source's test split and on each other dataset "
                     "with that dataset's class names, mean ± std over seeds (ddof=0); Target avg = mean over "
                     "the targets.",
}


def render(report: Report, fmt: str = "md") -> str:
    from bench.report import formats

    if fmt not in FORMATS:
        raise BenchError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return getattr(formats, f"to_{fmt}")(report)


def _section(label, summary, board_summary, paper, datasets, shots) -> Section:
    section = Section(label)
    for k in shots:
        table = shot_table(summary, k, datasets, paper if paper is not None and not paper.empty else None)
        if not table.empty:
            section.shot_tables[k] = table
    section.leaderboard = leaderboard(board_summary, datasets, shots)
    if paper is not None:
        section.published = published_board(paper, shots)
        if paper.empty:
            section.notes.append(f"No published numbers for backbone {label}: the papers report ViT-B/16 "
                                 "(and a few RN50) OpenAI CLIP numbers only.")
    return section


def _footnotes(frame, usable, shown, all_configs, stale, unreadable, include_oracle) -> list[str]:
    notes = ["Cells: top-1 % on the full test split, mean ± std over seeds (ddof=0); (n=k): fewer seeds than "
             "the suite declares. Val: validation regime (none | fewshot_val | full_val | oracle_test).",
             "`*` = misses datasets or seeds of the suite: not comparable, ranks after complete rows.",
             "`†` = hyperparameters chosen on the test split (oracle_test): flagged everywhere and "
             + ("included in the leaderboard because --include-oracle was given." if include_oracle
                else "left out of the leaderboard (--include-oracle adds them).")]
    if frame.empty:
        return notes
    other = int((usable["current"] == False).sum())  # noqa: E712 - pandas elementwise comparison
    if other and not all_configs:
        notes.append(f"{other} records of other configurations (parameters, method version or protocol "
                     "differ from this tasks file) are left out; `bench report --all-configs` shows them "
                     "as rows method@<config hash>.")
    outside = int((~frame["in_grid"]).sum())
    if outside:
        notes.append(f"{outside} records outside this report's methods, datasets, shots or seeds are left out.")
    if stale:
        notes.append(f"{stale} records measured on older data or weights than the newest records of their "
                     "cell are left out.")
    if unreadable:
        notes.append(f"{unreadable} files in records/ are not bench records and were skipped.")
    unknown = sorted(set(shown.loc[~shown["known"], "method"]))
    if unknown:
        notes.append(f"Not in this tasks file: {', '.join(unknown)} (each cell shows its newest configuration).")
    return notes


def _legend(shown: pd.DataFrame, suite) -> dict:
    """method@hash → 'param: suite value → this value; …' for every row of another configuration."""
    from bench.jobs import job_for

    legend = {}
    for label, rows in shown[~shown["current"]].groupby("row"):
        first = rows.iloc[0]
        job = job_for(suite, first.method, first.dataset, int(first.shots), int(first.seed),
                      json.loads(first.backbone))
        if job is None:
            legend[label] = "method not in this tasks file"
            continue
        mine, diffs = json.loads(first.params), []
        current = json.loads(json.dumps(job.params, default=str))  # tuples → lists, as in the record
        if first.method_version != job.version:
            diffs.append(f"version: {job.version} → {first.method_version}")
        for key in sorted(set(mine) | set(current)):
            if mine.get(key) != current.get(key):
                diffs.append(f"{key}: {current.get(key)!r} → {mine.get(key)!r}")
        if first.protocol != job.protocol:
            diffs.append(f"protocol: {job.protocol} → {first.protocol}")
        legend[label] = "; ".join(diffs) or "same parameters; another backbone or job key"
    return legend

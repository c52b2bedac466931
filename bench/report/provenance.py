"""The report's header: where the numbers come from, so a reader can judge them before reading them."""

from __future__ import annotations

import pandas as pd


def header_lines(suite_name: str, rows: pd.DataFrame, total_records: int) -> list[str]:
    """Suite, backbones with short weights digests, record count, date range, bench git shas with dirty
    flags, library versions; a warning when records come from several bench or library versions."""
    if rows.empty:
        return [f"Suite: {suite_name} · no records in the tables"]
    lines = [
        f"Suite: {suite_name} · backbone: {', '.join(sorted(set(rows['backbone_label'])))}",
        f"Records: {len(rows)} in the tables (of {total_records} ok) · created "
        f"{rows['created_at'].min()[:19]} → {rows['created_at'].max()[:19]} UTC",
        "bench: " + _joined(_code_versions(rows)),
        "libraries: " + " · ".join(f"{lib} {_joined(_distinct(rows[lib]))}" for lib in ("torch", "open_clip")),
    ]
    warnings = [what for what, values in (("bench", _code_versions(rows)), ("torch", _distinct(rows["torch"])),
                                          ("open_clip", _distinct(rows["open_clip"]))) if len(values) > 1]
    if warnings:
        lines.append(f"WARNING: records come from more than one version of {', '.join(warnings)}; "
                     "rerun with --force on one version for strictly comparable numbers")
    return lines


def _code_versions(rows: pd.DataFrame) -> list[str]:
    out = set()
    for version, sha, dirty in zip(rows["bench_version"], rows["git_sha"], rows["git_dirty"]):
        text = str(version) if isinstance(version, str) else "?"
        if isinstance(sha, str):
            text += f" @ {sha[:10]}" + (" (dirty)" if dirty is True else "")
        out.add(text)
    return sorted(out)


def _distinct(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values if isinstance(v, str)}) or ["?"]


def _joined(values: list[str]) -> str:
    return ", ".join(values)

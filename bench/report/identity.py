"""Protocol identity: numbers are comparable only when they were measured on the same splits, the same
few-shot draws, the same test set and the same backbone weights.

Within one results folder the newest identity of a key wins and older records measured on other
data or weights are set aside (counted in the report's footer). Across merged folders a disagreement
is refused outright, one line per reason: silently preferring one contributor's data would rank
numbers that were never measured on the same thing."""

from __future__ import annotations

import pandas as pd

from bench.errors import BenchError

# (what must agree, the columns that name one instance of it)
IDENTITY = [
    ("backbone weights digest", "weights", ["backbone"]),
    ("split digest", "split_digest", ["backbone", "dataset"]),
    ("test set size", "test_items", ["backbone", "dataset"]),
    ("few-shot draw digest", "fewshot_digest", ["backbone", "dataset", "shots", "seed"]),
]


def check_identity(frame: pd.DataFrame) -> int:
    """Mark `stale` records (older identity within a folder); refuse cross-folder conflicts. Returns the
    number of stale records. Records that do not state a field (old or hand-made ones) are not judged on it."""
    frame["stale"] = pd.Series(False, index=frame.index, dtype=bool)
    reasons = []
    for what, column, keys in IDENTITY:
        known = frame[frame[column].notna() & frame["in_grid"] & (frame["shots"] > 0 if column == "fewshot_digest"
                                                                  else True)]
        if known.empty:
            continue
        newest = known.sort_values("created_at").groupby(keys + ["results_dir"])[column].last()
        for index, row in known.iterrows():
            if newest[tuple(row[k] for k in keys) + (row["results_dir"],)] != row[column]:
                frame.loc[index, "stale"] = True
        reasons += _conflicts(what, newest, keys)
    if reasons:
        raise BenchError("these results are not comparable, refusing to merge them:\n  "
                         + "\n  ".join(sorted(set(reasons))))
    return int(frame["stale"].sum())


def _conflicts(what: str, newest: pd.Series, keys: list[str]) -> list[str]:
    lines = []
    for cell, values in newest.groupby(level=list(range(len(keys)))):
        distinct = values.unique()
        if len(distinct) > 1:
            dirs = ", ".join(f"{d} ({str(v)[:12]})" for (*_, d), v in values.items())
            label = "/".join(str(c) for c in (cell if isinstance(cell, tuple) else (cell,))[1:]) or "backbone"
            lines.append(f"{label}: {what} differs between {dirs}")
    return lines

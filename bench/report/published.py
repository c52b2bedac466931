"""The papers' own numbers (published.toml), as rows that sit beside measured ones but never mix with them.

A published row is labelled "<method> (paper)" and has source "published"; its 11-dataset average uses
the dataset name "Average" because papers publish averages for shots where they give no per-dataset
numbers."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench.errors import BenchError

PUBLISHED_FILE = Path(__file__).with_name("published.toml")
Regime = Literal["none", "fewshot_val", "full_val", "oracle_test", "unknown"]


class PublishedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str
    label: str
    backbone: str  # "<open_clip model without -quickgelu>/<pretrained tag>", e.g. ViT-B-16/openai
    source: str
    cross_check: str = ""  # a second source the numbers were compared with
    notes: str = ""  # discrepancies between sources, and what was chosen
    validation: Regime
    validation_imagenet: Regime | None = None
    shot_independent: bool = False
    average: dict[str, float] = Field(default_factory=dict)  # shots ("any" when shot-independent) → %
    per_dataset: dict[str, dict[str, float]] = Field(default_factory=dict)  # shots → dataset → %
    # Other protocols (16 shots in every paper): base_to_new: cells = dataset or "average" → {base, new,
    # H}; domain_generalization / cross_dataset: cells = dataset (source and targets) or "target_average" → %
    protocol: Literal["fewshot", "base_to_new", "domain_generalization", "cross_dataset"] = "fewshot"
    shots: int = 16
    cells: dict[str, dict[str, float] | float] = Field(default_factory=dict)

    def regime(self) -> str:
        if self.validation_imagenet and self.validation_imagenet != self.validation:
            return f"{self.validation} (imagenet: {self.validation_imagenet})"
        return self.validation


@lru_cache(maxsize=4)
def load_published(path: Path = PUBLISHED_FILE) -> tuple[PublishedEntry, ...]:
    try:
        raw = tomllib.loads(Path(path).read_text())
        return tuple(PublishedEntry(**entry) for entry in raw.get("entry", []))
    except (OSError, tomllib.TOMLDecodeError, ValidationError, TypeError) as exc:
        raise BenchError(f"{path}: not a valid published-numbers file ({str(exc).splitlines()[0]})") from None


def backbone_key(backbone: dict) -> str | None:
    """The published-table key of a record's backbone, or None when no paper used it (OpenAI CLIP only)."""
    model, tag = backbone.get("model", ""), backbone.get("pretrained", "")
    if not model or tag != "openai":
        return None
    return f"{model.removesuffix('-quickgelu')}/{tag}"


def published_frame(backbone: dict, shots: list[int], datasets: list[str], methods=None) -> pd.DataFrame:
    """Summary-shaped rows (see bench.report.tables.SUMMARY_COLUMNS) for one backbone (and `methods`)."""
    key = backbone_key(backbone)
    rows = []
    for entry in load_published():
        if entry.backbone != key or entry.protocol != "fewshot" or (methods is not None and entry.method not in methods):
            continue
        for k in shots:
            at = "any" if entry.shot_independent else str(k)
            cells = {ds: v for ds, v in entry.per_dataset.get(at, {}).items() if ds in datasets}
            if at in entry.average:
                cells["Average"] = entry.average[at]
            for dataset, value in cells.items():
                rows.append({"method": f"{entry.method} (paper)", "dataset": dataset, "shots": k, "mean": value,
                             "validation": entry.regime(), "source": "published", "paper_source": entry.source,
                             "oracle": "oracle_test" in entry.regime()})
    return pd.DataFrame(rows, columns=["method", "dataset", "shots", "mean", "validation", "source",
                                       "paper_source", "oracle"])


def published_protocol(backbone: dict, protocol: str, shots: int, methods=None) -> list[PublishedEntry]:
    """The papers' entries of one protocol (base_to_new, domain_generalization, cross_dataset) for a
    backbone and shot count; the transfer tables show them as "(paper)" rows."""
    key = backbone_key(backbone)
    return [e for e in load_published() if e.backbone == key and e.protocol == protocol and e.shots == shots
            and (methods is None or e.method in methods)]

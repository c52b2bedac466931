"""Result records → one flat row per usable record, each marked with how it relates to the suite.

A record is *current* when its job id equals the id of the job the current suite resolves to for its
cell (method, method version, resolved parameters, backbone, protocol: bench.jobs.job_for). Every
other ok record belongs to another configuration: left out of the tables by default, shown as its own
row `method@<config hash>` with --all-configs. For each job id the newest ok record wins (a failed
rerun never erases an ok number). Damaged files (bench.results.read_record) are counted, never fatal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.jobs import job_for, stable_id
from bench.results import RecordSchema, read_records

MASK_METRIC = "masked_pct_of_masked_tensors"


# A report reads records through bench.results, which checks each file against this schema (the one
# definition of a record), so every row read here is valid and typed.
RecordIn = RecordSchema


@dataclass
class Loaded:
    frame: pd.DataFrame  # one row per job id (newest ok record), see _row for the columns
    unreadable: int = 0
    dirs: list[Path] = field(default_factory=list)


def load_records(results_dirs: list[Path], suite) -> Loaded:
    rows, skipped = [], []
    for folder in results_dirs:
        for raw in read_records(folder, skipped):  # damaged files: warned about, counted in `skipped`
            record = RecordIn.model_construct(**raw)  # read_records validated it: only give it attributes
            if record.status == "ok" and isinstance(record.metrics.get("top1"), (int, float)):
                rows.append(_row(record, folder))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame = frame.sort_values("created_at").drop_duplicates("job_id", keep="last").reset_index(drop=True)
    _mark(frame, suite)
    return Loaded(frame, len(skipped), list(results_dirs))


COLUMNS = ["job_id", "method", "base_method", "method_version", "dataset", "shots", "seed", "backbone",
           "backbone_label", "weights", "protocol", "targets", "params", "config_hash", "top1", "masked_pct", "validation",
           "trainable_params", "state_bytes", "fit_s", "peak_memory_bytes", "split_digest", "fewshot_digest",
           "test_items", "git_sha", "git_dirty", "bench_version", "torch", "open_clip", "created_at", "results_dir"]


def _row(r: RecordIn, folder: Path) -> dict:
    backbone = json.dumps(r.backbone, sort_keys=True)
    weights = (r.config.get("backbone") or {}).get("weights_sha256")
    return {
        "job_id": r.job_id, "method": r.method, "base_method": r.base_method or r.method,
        "method_version": r.method_version, "dataset": r.dataset, "shots": r.shots, "seed": r.seed,
        "backbone": backbone, "backbone_label": _backbone_label(r.backbone, weights), "weights": weights,
        "protocol": r.protocol, "params": json.dumps(r.params, sort_keys=True, default=str),
        "targets": json.dumps(r.targets or {}, sort_keys=True),
        "config_hash": config_hash(r.method, r.method_version, r.params, r.backbone, r.protocol, r.encoder),
        "top1": float(r.metrics["top1"]), "masked_pct": _number(r.metrics.get(MASK_METRIC)),
        "validation": r.validation, "trainable_params": r.trainable_params, "state_bytes": r.state_bytes,
        "fit_s": _fit_seconds(r.timings), "peak_memory_bytes": r.peak_memory_bytes,
        "split_digest": r.split.get("split_digest"), "fewshot_digest": r.split.get("fewshot_digest"),
        "test_items": r.split.get("test_items"), "git_sha": r.git.get("sha"), "git_dirty": r.git.get("dirty"),
        "bench_version": r.versions.get("bench"), "torch": r.versions.get("torch"),
        "open_clip": r.versions.get("open_clip"), "created_at": r.created_at, "results_dir": str(folder),
    }


def config_hash(method, version, params, backbone, protocol, encoder: dict | None = None) -> str:
    """Everything that defines a configuration except the cell (dataset, shots, seed); for a composed
    record also its encoder's method, version and parameters (other records' hashes are unchanged)."""
    config = {"method": method, "version": version, "params": params, "backbone": backbone, "protocol": protocol}
    if encoder:
        config["encoder"] = {k: encoder.get(k) for k in ("method", "method_version", "params")}
    return stable_id(config)[:7]


def _fit_seconds(timings: dict):
    """The cost of the number: the fit, plus for a composed record its encoder's fit (reused or not)."""
    fit, encoder = _number(timings.get("fit_s")), _number(timings.get("encoder_fit_s"))
    return fit if fit is None or encoder is None else fit + encoder


def _backbone_label(backbone: dict, weights: str | None) -> str:
    name = backbone.get("name") or backbone.get("model") or backbone.get("builtin") or "backbone"
    return f"{name} ({weights[:8]})" if weights else name


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _mark(frame: pd.DataFrame, suite) -> None:
    """Add `current` (the suite's own configuration), `in_grid` and the table row label."""
    expected: dict[tuple, str | None] = {}

    def expected_id(row) -> str | None:
        key = (row.method, row.dataset, row.shots, row.seed, row.backbone)
        if key not in expected:
            job = job_for(suite, row.method, row.dataset, row.shots, row.seed, json.loads(row.backbone))
            expected[key] = job.id if job else None
        return expected[key]

    ids = [expected_id(row) for row in frame.itertuples()]
    frame["known"] = [i is not None for i in ids]
    frame["current"] = [i == row.job_id for i, row in zip(ids, frame.itertuples())]
    _adopt_unknown_methods(frame)
    frame["in_grid"] = [_in_grid(suite, row) for row in frame.itertuples()]
    frame["row"] = [m if cur else f"{m}@{h}" for m, cur, h in zip(frame["method"], frame["current"],
                                                                  frame["config_hash"])]
    frame["oracle"] = frame["validation"] == "oracle_test"
    for flag in ("known", "current", "in_grid", "oracle"):  # bool even when empty: masks, not column lists
        frame[flag] = frame[flag].astype(bool)


def _adopt_unknown_methods(frame: pd.DataFrame) -> None:
    """A method this tasks file cannot resolve (e.g. a contributor's plugin whose records were merged)
    has no suite configuration to match: its newest configuration per cell stands for it, so a cell
    still never mixes configurations."""
    unknown = frame[~frame["known"]]
    if unknown.empty:
        return
    newest = unknown.sort_values("created_at").groupby(["backbone", "method", "dataset", "shots"])["config_hash"].last()
    for index, row in unknown.iterrows():
        frame.loc[index, "current"] = newest[(row.backbone, row.method, row.dataset, row.shots)] == row.config_hash


def _in_grid(suite, row) -> bool:
    """Shot-independent records (shots = seed = 0) belong to every shot count of the suite."""
    shots_ok = row.shots == 0 or row.shots in suite.shots
    seed_ok = (row.seed == 0 and row.shots == 0) or row.seed in suite.seeds
    return row.dataset in suite.datasets and shots_ok and seed_ok

"""Result records: one immutable JSON file per finished job, written atomically.

Layout: <results_dir>/records/<method>/<dataset>/<job_id>.<created_at>.json. A rerun (--force) adds a
new file instead of overwriting; readers keep the latest record per job key.

A records folder is never trusted: every reader (status, the scheduler, the executors' gate, show,
report) goes through read_record, which checks a file against RecordSchema (the fields readers use,
with their types). A file that fails is damaged: skipped with one warning naming it, counted by the
callers that pass `skipped`, never deleted and never fatal."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
_warned: set[str] = set()  # files already warned about in this process: one line per file, not per read


class RecordSchema(BaseModel):
    """What a file must hold to count as a record: every field some reader relies on, strictly typed
    (no coercion: "4" is not a shot count). Other fields are free (extra = ignore)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    job_id: str
    created_at: str
    status: Literal["ok", "failed"]
    method: str
    dataset: str
    shots: int
    seed: int
    backbone: dict
    metrics: dict
    error: str | None = None
    base_method: str | None = None
    method_version: int | None = None
    params: dict = {}
    protocol: str = "fewshot"
    validation: str = "none"
    trainable_params: int | None = None
    state_bytes: int | None = None
    timings: dict = {}
    peak_memory_bytes: int | None = None
    config: dict = {}
    split: dict = {}
    git: dict = {}
    versions: dict = {}
    encoder: dict | None = None  # a composed job's mask stage (job_fields; bench.runner adds the rest)
    # other protocols: what the fitted method scored beyond its own test split (bench.protocols)
    targets: dict = {}


def warn_damaged(path: Path, what: str, reason: str) -> None:
    """One plain warning line per damaged file (record or lock) per process."""
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("skipping damaged %s %s: %s", what, path, reason)


def cell_label(method: str, dataset: str, shots: int, seed: int) -> str:
    """How a job (or a record's cell) reads in listings and logs; shots 0 = shot-independent."""
    if shots == 0:
        return f"{method}/{dataset}/any-shot"
    return f"{method}/{dataset}/{shots}shot/seed{seed}"


def job_fields(job, suite_name: str) -> dict:
    """The fields every record of `job` starts with: its key, as the runner and a crash record write it."""
    fields = {"schema": SCHEMA_VERSION, "job_id": job.id, "suite": suite_name, "method": job.method,
              "base_method": job.base, "method_version": job.version, "dataset": job.dataset,
              "shots": job.shots, "seed": job.seed, "protocol": job.protocol, "backbone": job.backbone,
              "params": job.params}
    if getattr(job, "targets", ()):
        fields["target_datasets"] = list(job.targets)
    encoder = getattr(job, "encoder", None)
    if encoder is not None:  # a composed job: which mask job it runs on
        fields["encoder"] = {"job_id": encoder.id, "method": encoder.method, "base_method": encoder.base,
                             "method_version": encoder.version, "params": encoder.params}
    return fields


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_path(results_dir: Path, record: dict) -> Path:
    stamp = record["created_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    return results_dir / "records" / record["method"] / record["dataset"] / f"{record['job_id']}.{stamp}.json"


def write_record(results_dir: Path, record: dict) -> Path:
    path = record_path(Path(results_dir), record)
    if path.exists():  # records are immutable; a clash means two writers in the same microsecond
        raise FileExistsError(path)
    atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True, default=str).encode())
    return path


def artifact_dir(results_dir: Path, record: dict) -> Path:
    return Path(results_dir) / "artifacts" / record["job_id"] / record["created_at"].replace(":", "")


def read_record(path: Path) -> dict | None:
    """One record file as written, or None when it is damaged (see the module docstring)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON
        warn_damaged(path, "record file", f"not readable as UTF-8 JSON ({exc.__class__.__name__}: {exc})")
        return None
    problem = record_problem(data)
    if problem:
        warn_damaged(path, "record file", problem)
        return None
    return data


def record_problem(data) -> str | None:
    """Why `data` (parsed JSON) is not a record, in a few words; None when it is one."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    try:
        RecordSchema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(map(str, first["loc"])) or "record"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"not a bench record: {field}: {first['msg']}{more}"
    return None


def read_records(results_dir: Path, skipped: list | None = None) -> list[dict]:
    """Every valid record (see read_record); the paths of damaged files are appended to `skipped`."""
    records = []
    for path in sorted(Path(results_dir).glob("records/*/*/*.json")):
        record = read_record(path)
        if record is not None:
            records.append(record)
        elif skipped is not None:
            skipped.append(path)
    return records


def iter_job_records(results_dir: Path, job):
    """Every valid record of one job, newest first (file names sort by creation time), read lazily:
    a caller that wants only the newest (executors.base.latest_record) reads one file."""
    folder = Path(results_dir) / "records" / job.method / job.dataset
    records = (read_record(path) for path in sorted(folder.glob(f"{job.id}.*.json"), reverse=True))
    return (record for record in records if record is not None)


def job_records(results_dir: Path, job) -> list[dict]:
    """Every valid record of one job, newest first."""
    return list(iter_job_records(results_dir, job))


def latest_per_job(records: list[dict]) -> dict[str, dict]:
    """job_id → the newest record (by created_at) for that job."""
    latest: dict[str, dict] = {}
    for record in records:
        current = latest.get(record["job_id"])
        if current is None or record["created_at"] > current["created_at"]:
            latest[record["job_id"]] = record
    return latest

"""Result records: one immutable JSON file per finished job, written atomically.

Layout: <results_dir>/records/<method>/<dataset>/<job_id>.<created_at>.json. A rerun (--force) adds a
new file instead of overwriting; readers keep the latest record per job key."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def cell_label(method: str, dataset: str, shots: int, seed: int) -> str:
    """How a job (or a record's cell) reads in listings and logs; shots 0 = shot-independent."""
    if shots == 0:
        return f"{method}/{dataset}/any-shot"
    return f"{method}/{dataset}/{shots}shot/seed{seed}"


def job_fields(job, suite_name: str) -> dict:
    """The fields every record of `job` starts with: its key, as the runner and a crash record write it."""
    return {"schema": SCHEMA_VERSION, "job_id": job.id, "suite": suite_name, "method": job.method,
            "base_method": job.base, "method_version": job.version, "dataset": job.dataset,
            "shots": job.shots, "seed": job.seed, "protocol": job.protocol, "backbone": job.backbone,
            "params": job.params}


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
    """One record file, or None when it does not parse or is not a record (a foreign JSON without a
    string job_id and created_at): such files are logged and left alone, never deleted."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    if isinstance(data, dict) and isinstance(data.get("job_id"), str) and isinstance(data.get("created_at"), str):
        return data
    log.warning("skipping %s: not a result record", path)
    return None


def read_records(results_dir: Path, skipped: list | None = None) -> list[dict]:
    """Every readable record (see read_record); the paths of the others are appended to `skipped`."""
    records = []
    for path in sorted(Path(results_dir).glob("records/*/*/*.json")):
        record = read_record(path)
        if record is not None:
            records.append(record)
        elif skipped is not None:
            skipped.append(path)
    return records


def latest_per_job(records: list[dict]) -> dict[str, dict]:
    """job_id → the newest record (by created_at) for that job."""
    latest: dict[str, dict] = {}
    for record in records:
        current = latest.get(record["job_id"])
        if current is None or record["created_at"] > current["created_at"]:
            latest[record["job_id"]] = record
    return latest

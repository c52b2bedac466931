"""`bench show JOB_ID_OR_PREFIX`: one job's record, readable. Reads record files only (no torch).

The job is found by its id or any unique prefix of it among the records of the suite's results
folder; a job with several records (--force, --retry-failed) shows the newest and says how many
there are and which one a report uses (the newest ok one)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from bench.errors import BenchError
from bench.results import cell_label, read_record

MAX_CANDIDATES = 20
VALUE_COLUMN = 17


def record_files(results_dir: Path) -> dict[str, list[Path]]:
    """job id → its record files (names are <job_id>.<created_at>.json, so no file is opened)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(Path(results_dir).glob("records/*/*/*.json")):
        found.setdefault(path.name.split(".", 1)[0], []).append(path)
    return found


def find_job(results_dir: Path, prefix: str) -> tuple[str, list[tuple[Path, dict]]]:
    """(job id, [(file, record)] oldest first) for a full id or a unique prefix; BenchError otherwise."""
    files = record_files(results_dir)
    key = prefix.strip().lower()
    matches = [key] if key in files else sorted(job_id for job_id in files if job_id.startswith(key))
    if not key or not matches:
        raise BenchError(f"no record of a job '{prefix}' under {Path(results_dir) / 'records'} "
                         f"(`bench status` shows the grid, `bench run --dry-run` lists job ids)")
    if len(matches) > 1:
        lines = [f"job id prefix '{prefix}' is ambiguous: {len(matches)} jobs match; give more characters:"]
        for job_id in matches[:MAX_CANDIDATES]:
            newest = _newest(files[job_id])
            lines.append(f"  {job_id}  {_label(newest) if newest else '?'}  "
                         f"{(newest or {}).get('status', 'unreadable')}")
        if len(matches) > MAX_CANDIDATES:
            lines.append(f"  ... and {len(matches) - MAX_CANDIDATES} more")
        raise BenchError("\n".join(lines))
    job_id = matches[0]
    records = [(path, record) for path in files[job_id] if (record := read_record(path)) is not None]
    if not records:
        raise BenchError(f"job {job_id}: none of its record files is readable ({files[job_id][0].parent})")
    records.sort(key=lambda pair: pair[1]["created_at"])
    return job_id, records


def _newest(paths: list[Path]) -> dict | None:
    records = [r for r in map(read_record, paths) if r is not None]
    return max(records, key=lambda r: r["created_at"]) if records else None


def _label(record: dict) -> str:
    return cell_label(*(record.get(k) for k in ("method", "dataset", "shots", "seed")))


def _bytes(value) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _short(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _short(value, limit: int = 100) -> str:
    """A config value on one line: long lists and tables are summarised, not dumped."""
    if isinstance(value, (list, tuple)) and (len(value) > 6 or any(isinstance(v, (list, dict)) for v in value)):
        return f"[{len(value)} entries]"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v, 40)}" for k, v in value.items())
    else:
        text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _seconds(value) -> str:
    return f"{value:.2f}s" if isinstance(value, (int, float)) else "-"


def show_lines(results_dir: Path, job_id: str, records: list[tuple[Path, dict]]) -> list[str]:
    path, r = records[-1]
    results_dir = Path(results_dir)
    shots = "any" if r.get("shots") == 0 else r.get("shots")
    seed = "any" if r.get("shots") == 0 else r.get("seed")
    backbone = r.get("backbone") or {}
    resolved = (r.get("config") or {}).get("backbone") or {}
    lines = [f"job {job_id}  {_label(r)}"]

    def kv(key, value, indent=2):
        lines.append(f"{' ' * indent}{key:<{VALUE_COLUMN - indent}}{value}")

    status = str(r.get("status"))
    if len(records) > 1:
        ok = [rec for _, rec in records if rec.get("status") == "ok"]
        status += f"  (newest of {len(records)} records"
        if ok and records[-1][1].get("status") != "ok":
            status += f"; a report uses the newest ok one, {ok[-1]['created_at']}"
        status += ")"
    kv("status", status)
    if r.get("error"):
        kv("error", r["error"])
        tail = [line for line in str(r.get("traceback") or "").strip().splitlines() if line.strip()][-4:]
        for line in tail:
            lines.append(f"{'':{VALUE_COLUMN}}{line.strip()}")
    kv("suite", f"{r.get('suite')}  protocol {r.get('protocol', 'fewshot')}")
    base = r.get("base_method") or r.get("method")
    kv("method", f"{r.get('method')}" + (f" (variant of {base})" if base != r.get("method") else "")
       + f"  version {r.get('method_version')}")
    kv("dataset", f"{r.get('dataset')}  shots {shots}  seed {seed}")
    encoder = r.get("encoder")
    if isinstance(encoder, dict):  # a composed job: the mask job whose masks its encoder ran under
        kv("encoder", f"{encoder.get('method')} job {str(encoder.get('job_id'))[:16]}"
           + (f"  record {encoder['created_at']}" if encoder.get("created_at") else "")
           + (" (fitted by this job)" if encoder.get("fitted_here") else ""))
    weights = resolved.get("weights_sha256")
    kv("backbone", f"{backbone.get('name') or backbone}"
       + (f"  weights {weights[:12]}" if weights else "")
       + (f"  quick_gelu {resolved['quick_gelu']}" if "quick_gelu" in resolved else ""))
    kv("created", f"{r.get('created_at')} on {r.get('host', '?')}, device {r.get('device', '?')}")

    metrics = r.get("metrics") or {}
    lines.append("metrics" if metrics else f"{'metrics':<{VALUE_COLUMN}}(none)")
    for key in sorted(metrics, key=lambda k: (k != "top1", k)):
        kv(key, _number(metrics[key]))
    kv("validation", r.get("validation", "-"), indent=0)

    config = r.get("config") or {}
    if config or r.get("params"):
        lines.append("config")
        kv("params", _short(r.get("params") or config.get("params") or {}, 200))
        if config.get("method"):
            kv("method", _short(config["method"], 200))
        extra = [f"precision {config['precision']}" if "precision" in config else "",
                 f"{config['num_classes']} classes" if "num_classes" in config else "",
                 f"templates {_short(config['templates'], 60)}" if config.get("templates") else ""]
        if any(extra):
            kv("run", "  ".join(e for e in extra if e))
        if config.get("data_root"):
            kv("data_root", config["data_root"])
    split = r.get("split") or {}
    if split:
        lines.append("split")
        for key in ("split_digest", "fewshot_digest"):
            if split.get(key):
                kv(key, split[key])
        kv("items", f"train {split.get('train_items', '-')}  val {split.get('val_items', '-')}  "
                    f"test {split.get('test_items', '-')}")
    timings = r.get("timings") or {}
    kv("timings", f"fit {_seconds(timings.get('fit_s'))}  eval {_seconds(timings.get('eval_s'))}  "
                  f"wall {_seconds(timings.get('wall_s'))}", indent=0)
    kv("memory", f"peak {_bytes(r.get('peak_memory_bytes'))}  trainable params "
                 f"{_number(r.get('trainable_params'))}  task state {_bytes(r.get('state_bytes'))}", indent=0)
    git = r.get("git") or {}
    kv("git", (f"{git['sha'][:12]}" + ("  dirty" if git.get("dirty") else "")) if git.get("sha") else "unknown",
       indent=0)
    versions = r.get("versions") or {}
    kv("versions", "  ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "-", indent=0)
    artifacts = r.get("artifacts") or []
    if len(artifacts) <= 1:
        kv("artifacts", str(results_dir / artifacts[0]) if artifacts else "(none)", indent=0)
    else:
        kv("artifacts", f"{len(artifacts)} files", indent=0)
        lines.extend(f"{'':{VALUE_COLUMN}}{results_dir / artifact}" for artifact in artifacts)
    log = results_dir / (r.get("log") or f"logs/{job_id}.log")
    kv("log", f"{log}" + ("" if log.exists() else "  (missing)"), indent=0)
    kv("record", str(path), indent=0)
    return lines


def show_command(cfg, console: Console, job: str, suite=None) -> None:
    chosen = cfg.suite(suite)
    job_id, records = find_job(chosen.results_dir, job)
    for line in show_lines(chosen.results_dir, job_id, records):
        console.print(line, markup=False, highlight=False, soft_wrap=True)

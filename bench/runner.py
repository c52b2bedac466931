"""Run one job: sample the few-shot split (none for a shot-independent job), fit the method, evaluate
on the full test split, and write one immutable record (ok or failed). A Workspace keeps the backbone,
splits and feature stores of a worker process warm across the jobs it runs.

A composed job (Job.encoder: a feature method on a mask method's masks, tasks.toml `encoder`) runs in
two stages. First the encoder job's newest ok record with its masks file is looked up in the results
folder by job id; when there is none, the encoder job is fitted here, under its own claim, writing its
own normal record (so later composed jobs and reports reuse it). Then the feature method trains and is
evaluated on a masked copy of the image encoder (bench.masking.masked_model; the shared backbone is
never modified), through a feature store keyed by the masks file's sha256. Its record carries the
encoder stage (record["encoder"]), the masked percentages and the encoder's fit time."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import random
import resource
import subprocess
import time
import traceback
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bench import __version__
from bench.backbone import load_backbone
from bench.config import Suite
from bench.data import FewShot, load_card, load_splits, sample_fewshot
from bench.data.base_to_new import subsample_fewshot, subsample_splits
from bench.data.fewshot import fewshot_digest
from bench.features import FeatureStore
from bench.jobs import ANY, Job
from bench.locks import LockKeeper
from bench.masking import MASKS_ARTIFACT, load_masks, masked_model
from bench.method import Fitted, run_precision
from bench.protocols import evaluate_targets, protocol_metrics, retarget, source_subset
from bench.registry import METHODS
from bench.results import artifact_dir, job_fields, job_records, now_iso, write_record
from bench.task import Task

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Workspace:
    """Per-process caches: the backbone (plus CLIP's fp16 model once an fp16 job needs it), splits per
    dataset, and a feature store per (dataset, precision)."""

    def __init__(self, suite: Suite, device=None, feature_cache=True):
        self.suite, self.device = suite, torch.device(device) if device else pick_device()
        self.feature_cache = feature_cache
        self.workers = 0 if self.device.type == "cpu" else min(8, os.cpu_count() or 1)
        self._backbone = None
        self._half = None  # CLIP's fp16 model of the same weights, for jobs that run in "fp16"
        self._datasets: dict[str, tuple] = {}
        self._stores: dict[tuple, FeatureStore] = {}  # (dataset, precision): the features differ

    @property
    def backbone(self):
        if self._backbone is None:
            self._backbone = load_backbone(self.suite.backbone, self.device)
        return self._backbone

    def backbone_for(self, precision: str):
        """The backbone a job running in `precision` uses: the fp32 model, or for "fp16" CLIP's own fp16
        model, loaded once beside it. Both carry the fp32 weights digest: they are the same weights
        (caches and records tell the precisions apart), and merging results checks that digest."""
        if precision != "fp16":
            return self.backbone
        if self._half is None:
            half = load_backbone(self.suite.backbone, self.device, precision="fp16")
            self._half = dataclasses.replace(half, digest=self.backbone.digest)
        return self._half

    def dataset(self, name: str, precision: str = "fp32", subset: str = "all"):
        """(card, splits, feature store for `precision`) of one dataset, or of a class subset of it
        (base-to-new's "base" / "new": bench.data.base_to_new, relabelled, with its own split digest)."""
        if (name, subset) not in self._datasets:
            if (name, "all") not in self._datasets:
                card = load_card(name)
                self._datasets[(name, "all")] = (card, load_splits(card, self.suite.data_root))
            card, splits = self._datasets[(name, "all")]
            self._datasets[(name, subset)] = (card, splits if subset == "all" else subsample_splits(splits, subset))
        card, splits = self._datasets[(name, subset)]
        if (name, subset, precision) not in self._stores:
            self._stores[(name, subset, precision)] = FeatureStore(
                self.backbone_for(precision), splits, self.device, precision, self.workers, enabled=self.feature_cache)
        return card, splits, self._stores[(name, subset, precision)]

    def task(self, job: Job) -> Task:
        precision = run_precision(job.precision, self.device)  # fp32 on a CPU, as asked on a GPU
        subset = source_subset(job.protocol)
        card, splits, store = self.dataset(job.dataset, precision, subset)
        fewshot = _no_draw() if job.shots == ANY else self._draw(job, subset)
        return Task(card=card, splits=splits, fewshot=fewshot, shots=job.shots, seed=job.seed,
                    backbone=self.backbone_for(precision), device=self.device, precision=precision,
                    features=store, workers=self.workers)

    def _draw(self, job: Job, subset: str) -> FewShot:
        """The K-shot draw, always over ALL classes (then restricted to the subset: CoCoOp's order, so
        the base images are the ones the all-class draw with this seed picks)."""
        _, splits = self._datasets[(job.dataset, "all")]
        draw = sample_fewshot(splits, job.shots, job.seed, draw_val=bool(splits.val))
        return draw if subset == "all" else subsample_fewshot(draw, splits.num_classes, subset)

    def target_task(self, task: Task, dataset: str, subset: str = "all") -> Task:
        """`task`'s backbone (masked or not) and precision on another dataset or class subset, for the
        extra evaluations of a protocol (bench.protocols); a masked encoder gets a store keyed by its masks."""
        card, splits, store = self.dataset(dataset, task.precision, subset)
        if task.features.masks:
            store = FeatureStore(task.backbone, splits, self.device, task.precision, self.workers,
                                 enabled=self.feature_cache, masks=task.features.masks)
        return retarget(task, card, splits, store)

    def masked_task(self, task: Task, masks_path: Path, digest: str) -> Task:
        """The task with its image encoder under the masks in `masks_path` (a masked copy, for this
        job only) and a feature store of its own whose keys carry the masks' `digest`."""
        backbone = dataclasses.replace(task.backbone, model=masked_model(task.backbone.model,
                                                                         load_masks(masks_path)))
        store = FeatureStore(backbone, task.splits, self.device, task.precision, self.workers,
                             enabled=self.feature_cache, masks=digest)
        return dataclasses.replace(task, backbone=backbone, features=store)


def _no_draw() -> FewShot:
    """The few-shot split of a shot-independent job: nothing drawn (the sampler refuses 0 shots), with
    the digest of the empty draw so the record's split fields read like any other."""
    return FewShot(train=[], val=[], digest=fewshot_digest([], [], "/"))


def run_job(job: Job, workspace: Workspace, log_file: str | None = None) -> dict:
    """Run a job and write its record. Exceptions become a failed record; the record is returned.
    `log_file`: where its output went, when not its own log (an encoder fitted inside a composed job)."""
    record = _base_record(job, workspace)
    if log_file:
        record["log"] = log_file
    started = time.perf_counter()
    try:
        stage = encoder_record(job, workspace) if job.encoder is not None else None
        _seed_everything(job.seed)
        if workspace.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(workspace.device)
        task = workspace.task(job)
        if stage is not None:
            task = workspace.masked_task(task, stage["path"], stage["digest"])
        method = METHODS.get(job.base)()
        params = METHODS.get(job.base).Params(**job.params)
        fit_start = time.perf_counter()
        fitted = method.fit(task, params)
        eval_start = time.perf_counter()
        top1 = evaluate(fitted, method.inputs, task)
        record.update(_success_fields(job, task, fitted, top1, workspace))
        record["timings"] = {"fit_s": eval_start - fit_start, "eval_s": time.perf_counter() - eval_start}
        if job.protocol != "fewshot":  # the same fitted method on new classes or other datasets
            targets_start = time.perf_counter()
            record["targets"] = evaluate_targets(fitted, method.inputs, task, workspace, job)
            record["metrics"].update(protocol_metrics(job, top1, record["targets"]))
            record["timings"]["targets_eval_s"] = time.perf_counter() - targets_start
        if stage is not None:
            _add_encoder_stage(record, stage)
    except Exception as exc:  # a failing job is a record, and the grid goes on
        log.exception("job %s failed", job.label)
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    record["timings"] = {**record.get("timings", {}), "wall_s": time.perf_counter() - started}
    record["peak_memory_bytes"] = _peak_memory(workspace.device)
    record["created_at"] = now_iso()
    _save_artifacts(record, workspace.suite.results_dir)
    write_record(workspace.suite.results_dir, record)
    return record


ENCODER_POLL_S = 5.0  # how often a composed job looks again at an encoder job claimed elsewhere


def encoder_record(job: Job, workspace: Workspace) -> dict:
    """The encoder stage of a composed job: {"record", "path" (its masks file), "digest" (the file's
    sha256), "fitted_here"}. Reuses the encoder job's newest ok record whose masks file exists; with
    none, claims the encoder job and fits it here (its own record, written as by any run), or, while
    another worker or driver holds that claim, waits for it."""
    encoder, results_dir = job.encoder, workspace.suite.results_dir
    while True:
        found = _reusable_masks(results_dir, encoder)
        if found is not None:
            return {**found, "fitted_here": False}
        with LockKeeper() as keeper:
            if keeper.claim(results_dir, encoder.id, where=_device_name(workspace.device), label=encoder.label):
                found = _reusable_masks(results_dir, encoder)  # finished elsewhere since we looked
                if found is not None:
                    return {**found, "fitted_here": False}
                log.info("composed job %s: fitting its encoder job %s (%s) first", job.label, encoder.label, encoder.id)
                fitted = run_job(encoder, workspace, log_file=f"logs/{job.id}.log")
                if fitted["status"] != "ok":
                    raise RuntimeError(f"encoder job {encoder.label} ({encoder.id}) failed: {fitted['error']}")
                found = _reusable_masks(results_dir, encoder)
                if found is None:
                    raise RuntimeError(f"encoder job {encoder.label} ({encoder.id}) saved no {MASKS_ARTIFACT}: "
                                       f"its method must declare produces_masks only if it saves masks")
                return {**found, "fitted_here": True}
        log.info("composed job %s: encoder job %s is running elsewhere; waiting", job.label, encoder.label)
        time.sleep(ENCODER_POLL_S)


def _reusable_masks(results_dir: Path, encoder: Job) -> dict | None:
    """{"record", "artifact", "path", "digest"} of the encoder job's newest ok record whose masks file
    is there (a shared results folder may come without its artifacts/)."""
    for record in job_records(results_dir, encoder):
        if record["status"] != "ok":
            continue
        artifact = next((a for a in record.get("artifacts") or [] if Path(a).name == MASKS_ARTIFACT), None)
        path = Path(results_dir) / artifact if artifact else None
        if path is not None and path.is_file():
            return {"record": record, "artifact": artifact, "path": path,
                    "digest": hashlib.sha256(path.read_bytes()).hexdigest()}
        log.warning("encoder record %s has no %s file; not reusable", record["job_id"], MASKS_ARTIFACT)
    return None


def _add_encoder_stage(record: dict, stage: dict) -> None:
    """What a composed record says about its encoder stage: which record and masks, its masked
    percentages (also as this record's metrics, so reports show them), its fit time (also in
    timings.encoder_fit_s: a report's cost is both fits) and its size. The record's trainable_params
    and state_bytes count both stages: the masks are needed to reproduce a prediction."""
    encoder = stage["record"]
    masked = {k: v for k, v in (encoder.get("metrics") or {}).items() if k.startswith("masked_")}
    fit_s = (encoder.get("timings") or {}).get("fit_s")
    sizes = {k: encoder.get(k) or 0 for k in ("trainable_params", "state_bytes")}
    record["encoder"] = {**record.get("encoder", {}), "created_at": encoder["created_at"],
                         "masks": stage["artifact"], "masks_sha256": stage["digest"],
                         "fitted_here": stage["fitted_here"], "top1": (encoder.get("metrics") or {}).get("top1"),
                         "metrics": masked, "fit_s": fit_s, **sizes}
    record["metrics"].update(masked)
    record["timings"]["encoder_fit_s"] = fit_s
    for key, value in sizes.items():
        record[key] = (record.get(key) or 0) + value


@torch.no_grad()
def evaluate(fitted: Fitted, inputs: str, task: Task) -> float:
    """Top-1 (micro) accuracy in percent over the full test split."""
    correct = total = 0
    if inputs == "features":
        feats, labels = task.features.test()
        for start in range(0, len(feats), 4096):
            logits = fitted.predict(feats[start:start + 4096].to(task.device))
            correct += (logits.argmax(-1).cpu() == labels[start:start + 4096]).sum().item()
        total = len(labels)
    else:
        for images, labels, _ in task.test_images():
            with task.autocast():
                logits = fitted.predict(images.to(task.device, non_blocking=True))
            correct += (logits.argmax(-1).cpu() == labels).sum().item()
            total += len(labels)
    return 100.0 * correct / max(total, 1)


def _base_record(job: Job, workspace: Workspace) -> dict:
    return {**job_fields(job, workspace.suite.name), "status": "running", "error": None, "metrics": {},
            "device": _device_name(workspace.device), "git": git_state(), "versions": versions(),
            "host": platform.node()}


def _success_fields(job, task, fitted: Fitted, top1: float, workspace) -> dict:
    return {
        "status": "ok",
        "metrics": {"top1": top1, **fitted.metrics},
        "config": {"params": job.params, "method": fitted.config,
                   "precision": task.precision, "job_precision": job.precision,  # ran in / asked for
                   "cli_set": workspace.suite.cli_set.get(job.method, {}),  # `--set` overrides behind params
                   "backbone": task.backbone.describe(), "data_root": str(workspace.suite.data_root),
                   "num_classes": task.num_classes, "templates": list(task.templates)},
        "split": {"split_digest": task.splits.split_digest, "fewshot_digest": task.fewshot.digest,
                  "train_items": len(task.fewshot.train), "val_items": len(task.fewshot.val),
                  "test_items": len(task.splits.test)},
        "validation": fitted.validation,
        "trainable_params": fitted.trainable_params,
        "state_bytes": fitted.state_bytes,
        "_artifacts": fitted.artifacts,
    }


def _save_artifacts(record: dict, results_dir: Path) -> None:
    from bench.results import atomic_write_bytes

    blobs = record.pop("_artifacts", None) or {}
    folder = artifact_dir(results_dir, record)
    for name, data in blobs.items():
        atomic_write_bytes(folder / name, data)
    record["artifacts"] = [str((folder / name).relative_to(results_dir)) for name in blobs]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"


@lru_cache(maxsize=1)
def git_state() -> dict:
    """sha + dirty flag of the git checkout bench's own source runs from; both None for an installed
    wheel, even one whose site-packages lies inside some other checkout (bench's files untracked)."""
    package_dir = Path(__file__).resolve().parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=package_dir, capture_output=True, text=True, timeout=10)

    unknown_state = {"sha": None, "dirty": None}
    try:
        if git("ls-files", "--error-unmatch", "--", Path(__file__).name).returncode != 0:
            return unknown_state  # no git, no checkout, or a checkout that does not track this file
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return unknown_state
    if sha.returncode != 0 or dirty.returncode != 0:
        return unknown_state
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


@lru_cache(maxsize=1)
def versions() -> dict:
    import open_clip

    return {"bench": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "numpy": np.__version__}

"""Grid expansion: suite × CLI filters → Jobs with stable ids, and job_for, the one cell → job rule
that both the grid and the report's lookup of records use.

A job id is a sha256 of the canonical JSON of everything that defines the job (never Python's
salted hash()), so ids are equal across processes and machines."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field

from bench.config import MAX_TIMEOUT_MIN, Suite
from bench.errors import BenchError, unknown
from bench.method import build_params, job_precision, params_dict
from bench.registry import METHODS
from bench.results import cell_label  # noqa: F401 - re-exported: Job.label and the CLI use it


ANY = 0  # shots and seed of a job whose method ignores both (see Job)


@dataclass(frozen=True)
class Job:
    """One run of one method on one (dataset, shots, seed) cell.

    shots = seed = ANY (0) means "independent of shots and seed": the job of a method that declares
    `uses_fewshot = False` (zero-shot CLIP). It runs once per dataset, without a few-shot draw, and
    its record stands for every shots × seed cell of that dataset (its label reads `.../any-shot`).

    `encoder` (a composed method, tasks.toml `encoder = "rmt"`): the mask job of the same cell whose
    masks the image encoder runs under; its whole key is part of this job's key, so another mask
    configuration is another job. None for every other job, whose key (and id) it leaves as it was."""

    method: str  # the name in the suite (a base method or a named variant)
    base: str  # the registered method that runs
    version: int
    dataset: str
    shots: int  # ANY: shot-independent
    seed: int  # ANY: shot-independent
    backbone: dict  # BackboneSpec.identity()
    params: dict  # fully resolved hyperparameters
    protocol: str = "fewshot"  # Suite.protocol: the same cell under another protocol is another job
    # The executor kills the job after this long (timeout_min, --job-timeout). Not in the key: a
    # timeout does not change what a finished job computes, so raising it must not make a new job.
    timeout_s: float | None = field(default=None, compare=False)
    # What the job asks to run in (bench.method.RUN_PRECISIONS; on a CPU it runs fp32). In the key:
    # fp16, amp and fp32 give different numbers, so they are different jobs.
    precision: str = "fp32"
    encoder: Job | None = None  # composed: the mask job this one runs on (bench.runner.encoder_record)
    # domain_generalization / cross_dataset: the datasets the fitted method is also evaluated on
    # (Suite.targets of this job's dataset). In the key only when there are some: other ids unchanged.
    targets: tuple[str, ...] = ()

    @property
    def key(self) -> dict:
        key = {"method": self.method, "base": self.base, "version": self.version, "dataset": self.dataset,
               "shots": self.shots, "seed": self.seed, "backbone": self.backbone, "params": self.params,
               "protocol": self.protocol, "precision": self.precision}
        if self.targets:
            key["targets"] = list(self.targets)
        return key if self.encoder is None else {**key, "encoder": self.encoder.key}

    @property
    def id(self) -> str:
        return stable_id(self.key)

    @property
    def label(self) -> str:
        return cell_label(self.method, self.dataset, self.shots, self.seed)


def stable_id(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_names(suite: Suite) -> list[str]:
    """Every name a user may pass to --methods: registered methods and the suite file's variants."""
    return sorted(set(METHODS.names()) | set(suite.method_entries))


def _base(suite: Suite, method: str) -> str:
    entry = suite.method_entries.get(method)
    return entry.base if entry else method


def method_timeout_s(suite: Suite, method: str) -> float | None:
    """A method's timeout_min in seconds: its own entry's, else (a variant) its base's; None: no limit."""
    entry = suite.method_entries.get(method)
    base = suite.method_entries.get(_base(suite, method))
    minutes = next((e.timeout_min for e in (entry, base) if e is not None and e.timeout_min), None)
    return None if minutes is None else minutes * 60


def parse_job_timeout(text: str | None) -> float | None:
    """`--job-timeout MINUTES` in seconds (None: not given)."""
    if text is None:
        return None
    try:
        minutes = float(text)
    except ValueError:
        minutes = float("nan")
    if not 0 < minutes <= MAX_TIMEOUT_MIN:  # also refuses nan and inf
        raise BenchError(f"--job-timeout takes minutes, a number > 0 (e.g. --job-timeout 30), got '{text}'")
    return minutes * 60


def with_job_timeout(jobs: list[Job], seconds: float | None) -> list[Job]:
    """`--job-timeout`: the same jobs (same ids) with every method's timeout replaced."""
    return jobs if seconds is None else [dataclasses.replace(job, timeout_s=seconds) for job in jobs]


def resolve_params(suite: Suite, method: str, dataset: str, shots: int) -> tuple[str, dict]:
    """(base method name, resolved params) for one cell of the grid. For a shot-independent job
    shots is ANY, so `when` overrides restricted to shot counts never apply to it."""
    entry = suite.method_entries.get(method)
    base = _base(suite, method)
    cls = METHODS.get(base)
    values = {}
    if entry and entry.base != method and base in suite.method_entries:
        values.update(suite.method_entries[base].params_for(dataset, shots))  # a variant inherits its base
    if entry:
        values.update(entry.params_for(dataset, shots))
    values.update(suite.cli_set.get(method, {}))  # `--set` beats the tasks file, for this name only
    params = build_params(cls, values, where=f"[methods.{method}]")
    return base, params_dict(params)


def parse_set(assignments) -> dict[str, dict]:
    """`--set METHOD.PARAM=VALUE` (repeatable) → {method: {param: value}}. VALUE is a TOML literal
    (4, 0.3, true, "a b", [0.5, 1.0]); anything else is taken as a string (`--set coop.ctx_init=a_photo`)."""
    sets: dict[str, dict] = {}
    for text in assignments or ():
        target, eq, raw = text.partition("=")
        method, dot, param = target.strip().partition(".")
        if not (eq and dot and method and param):
            raise BenchError(f"--set takes METHOD.PARAM=VALUE (e.g. coop.n_ctx=4), got '{text}'")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        sets.setdefault(method, {})[param.strip()] = value
    return sets


def with_cli_set(suite: Suite, assignments) -> Suite:
    """The suite with `--set` overrides applied (after the tasks file's, for exactly the method name
    given: a variant does not inherit its base's --set), each checked like a tasks-file value."""
    sets = parse_set(assignments)
    if not sets:
        return suite
    merged = {name: dict(values) for name, values in suite.cli_set.items()}
    for method, values in sets.items():
        if method not in method_names(suite):
            raise BenchError(f"--set {method}: {unknown('method', method, method_names(suite))}")
        build_params(METHODS.get(_base(suite, method)), values, where=f"--set {method}")
        merged.setdefault(method, {}).update(values)
    return dataclasses.replace(suite, cli_set=merged)


def job_for(suite: Suite, method: str, dataset: str, shots: int, seed: int, backbone: dict) -> Job | None:
    """The job the suite's current config resolves to for one cell and backbone identity (a dict as in
    record["backbone"]); None for a method name the suite does not know. Datasets and shot counts
    outside the suite's lists are allowed: a report may ask about records of an older config.
    A shot-independent method maps every (shots, seed) to its one ANY/ANY job, unless it is composed
    on an encoder that depends on them (zero-shot CLIP on a cell's masks is a job per cell)."""
    if method not in method_names(suite):
        return None
    base = _base(suite, method)
    cls = METHODS.get(base)
    entry = suite.method_entries.get(method)
    encoder = job_for(suite, entry.encoder, dataset, shots, seed, backbone) if entry and entry.encoder else None
    if not cls.uses_fewshot and (encoder is None or encoder.shots == ANY):
        shots, seed = ANY, ANY
    _, params = resolve_params(suite, method, dataset, shots)
    return Job(method, base, cls.version, dataset, shots, seed, backbone, params, suite.protocol,
               timeout_s=method_timeout_s(suite, method), precision=job_precision(cls, suite.precision),
               encoder=encoder, targets=tuple(suite.targets.get(dataset, ())))


def expand(suite: Suite, methods=None, datasets=None, shots=None, seeds=None) -> list[Job]:
    """Every job of the grid, in method × dataset × shots × seed order. Built cell by cell through
    job_for so the report's lookup and the grid can never disagree; a shot-independent method's
    cells collapse to one job, which --shots/--seeds therefore never filter out."""
    methods = _methods(suite, methods)
    datasets = _subset("dataset", datasets, suite.datasets)
    backbone = suite.backbone.identity()
    jobs: dict[str, Job] = {}  # id → job: insertion order is grid order, duplicates collapse
    for method in methods:
        for dataset in datasets:
            for k in shots or suite.shots:
                for seed in seeds or suite.seeds:
                    job = job_for(suite, method, dataset, k, seed, backbone)
                    jobs.setdefault(job.id, job)
    return list(jobs.values())


def narrow(suite: Suite, methods=None, datasets=None, shots=None, seeds=None) -> Suite:
    """The suite restricted to the given filters (None: keep the suite's list), checked the way
    `bench run`'s filters are (an unknown method or dataset: did-you-mean). Shot counts and seeds
    are free, as in expand: a report may ask about records of an older grid."""
    changes = {}
    if methods:
        changes["methods"] = tuple(_methods(suite, methods))
    if datasets:
        changes["datasets"] = tuple(_subset("dataset", datasets, suite.datasets))
    if shots:
        changes["shots"] = tuple(shots)
    if seeds:
        changes["seeds"] = tuple(seeds)
    return dataclasses.replace(suite, **changes) if changes else suite


def _methods(suite: Suite, chosen) -> list[str]:
    methods = list(chosen or suite.methods)
    if not methods:
        raise BenchError(f"suite '{suite.name}' lists no methods; pass --methods a,b")
    known = method_names(suite)
    for name in methods:
        if name not in known:
            raise unknown("method", name, known)
    return methods


def _subset(kind: str, chosen, available) -> list:
    if not chosen:
        return list(available)
    for name in chosen:
        if name not in available:
            raise unknown(kind, name, available)
    return list(chosen)

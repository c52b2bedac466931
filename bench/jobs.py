"""Grid expansion: suite × CLI filters → Jobs with stable ids.

A job id is a sha256 of the canonical JSON of everything that defines the job (never Python's
salted hash()), so ids are equal across processes and machines."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from bench.config import Suite
from bench.errors import BenchError, unknown
from bench.method import build_params, params_dict
from bench.registry import METHODS


@dataclass(frozen=True)
class Job:
    method: str  # the name in the suite (a base method or a named variant)
    base: str  # the registered method that runs
    version: int
    dataset: str
    shots: int
    seed: int
    backbone: dict  # BackboneSpec.identity()
    params: dict  # fully resolved hyperparameters

    @property
    def key(self) -> dict:
        return {"method": self.method, "base": self.base, "version": self.version, "dataset": self.dataset,
                "shots": self.shots, "seed": self.seed, "backbone": self.backbone, "params": self.params}

    @property
    def id(self) -> str:
        return stable_id(self.key)

    @property
    def label(self) -> str:
        return f"{self.method}/{self.dataset}/{self.shots}shot/seed{self.seed}"


def stable_id(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_names(suite: Suite) -> list[str]:
    """Every name a user may pass to --methods: registered methods and the suite file's variants."""
    return sorted(set(METHODS.names()) | set(suite.method_entries))


def resolve_params(suite: Suite, method: str, dataset: str, shots: int) -> tuple[str, dict]:
    """(base method name, resolved params) for one cell of the grid."""
    entry = suite.method_entries.get(method)
    base = entry.base if entry else method
    cls = METHODS.get(base)
    values = {}
    if entry and entry.base != method and base in suite.method_entries:
        values.update(suite.method_entries[base].params_for(dataset, shots))  # a variant inherits its base
    if entry:
        values.update(entry.params_for(dataset, shots))
    params = build_params(cls, values, where=f"[methods.{method}]: ")
    return base, params_dict(params)


def expand(suite: Suite, methods=None, datasets=None, shots=None, seeds=None) -> list[Job]:
    methods = list(methods or suite.methods)
    if not methods:
        raise BenchError(f"suite '{suite.name}' lists no methods; pass --methods a,b")
    known = method_names(suite)
    for name in methods:
        if name not in known:
            raise unknown("method", name, known)
    datasets = _subset("dataset", datasets, suite.datasets)
    jobs = []
    for method in methods:
        for dataset in datasets:
            for k in shots or suite.shots:
                base, params = resolve_params(suite, method, dataset, k)
                cls = METHODS.get(base)
                for seed in seeds or suite.seeds:
                    jobs.append(Job(method, base, cls.version, dataset, k, seed,
                                    suite.backbone.identity(), params))
    return jobs


def _subset(kind: str, chosen, available) -> list:
    if not chosen:
        return list(available)
    for name in chosen:
        if name not in available:
            raise unknown(kind, name, available)
    return list(chosen)

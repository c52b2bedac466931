"""tasks.toml → frozen dataclasses, strictly validated.

Every mistake (unknown key, wrong type, unknown name) raises BenchError with one line that names the
place in the file and, where it can, the closest valid name.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError, did_you_mean, unknown

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BackboneSpec:
    """How to build an image/text encoder pair. Code reads these fields, never the name."""

    name: str
    model: str = ""  # open_clip model name, e.g. ViT-B-16-quickgelu
    pretrained: str = ""  # open_clip pretrained tag (openai) or a local checkpoint file
    local_dir: str = ""  # an open_clip local-dir (open_clip_config.json + weights)
    builtin: str = ""  # a backbone this project builds itself (the smoke model)

    def identity(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass(frozen=True)
class Override:
    """Parameter overrides that apply to some datasets and/or shot counts (empty = all)."""

    datasets: tuple[str, ...] = ()
    shots: tuple[int, ...] = ()
    params: dict = field(default_factory=dict)

    def applies(self, dataset: str, shots: int) -> bool:
        return (not self.datasets or dataset in self.datasets) and (not self.shots or shots in self.shots)


@dataclass(frozen=True)
class MethodEntry:
    """A method as the suite runs it: a registered base method plus parameter overrides."""

    name: str
    base: str
    params: dict = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()

    def params_for(self, dataset: str, shots: int) -> dict:
        merged = dict(self.params)
        for override in self.overrides:
            if override.applies(dataset, shots):
                merged.update(override.params)
        return merged


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[str, ...]
    shots: tuple[int, ...]
    seeds: tuple[int, ...]
    backbone: BackboneSpec
    data_root: Path
    results_dir: Path
    methods: tuple[str, ...]
    method_entries: dict  # name -> MethodEntry, every entry in the file (base methods and variants)
    precision: str = "amp"  # amp (bf16/fp16 autocast on GPU) | fp32
    protocol: str = "fewshot"  # the evaluation protocol; part of every job key (PROTOCOLS lists the valid ones)


@dataclass(frozen=True)
class Config:
    path: Path
    default_suite: str
    suites: dict  # name -> Suite
    backbones: dict  # name -> BackboneSpec

    def suite(self, name: str | None) -> Suite:
        name = name or self.default_suite
        if name not in self.suites:
            raise unknown("suite", name, self.suites)
        return self.suites[name]


SUITE_KEYS = {"datasets": list, "shots": list, "seeds": list, "backbone": str, "data_root": str,
              "results_dir": str, "methods": list, "precision": str, "protocol": str}
BACKBONE_KEYS = {"model": str, "pretrained": str, "local_dir": str, "builtin": str}
OVERRIDE_KEYS = {"datasets": list, "shots": list, "set": dict}
PROTOCOLS = ("fewshot",)  # implemented protocols; a new one (e.g. base-to-new) gets its own jobs and ids


def default_tasks_path() -> Path:
    """--tasks beats BENCH_TASKS beats ./tasks.toml beats the repository's embedded tasks.toml."""
    if os.environ.get("BENCH_TASKS"):
        return Path(os.environ["BENCH_TASKS"])
    local = Path("tasks.toml")
    return local if local.exists() else REPO_ROOT / "tasks.toml"


def expand_path(text: str, base: Path) -> Path:
    """Expand ${VAR:-default} and ~; relative paths are relative to the tasks file's folder."""

    def env(match: re.Match) -> str:
        return os.environ.get(match.group(1)) or (match.group(3) or "")

    expanded = re.sub(r"\$\{(\w+)(:-([^}]*))?\}", env, text)
    path = Path(expanded).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load(path: Path | None = None, known_methods=None, known_datasets=None) -> Config:
    """Parse and validate a tasks file. Names are checked against the given registries."""
    path = Path(path) if path else default_tasks_path()
    if not path.exists():
        raise BenchError(f"tasks file not found: {path} (pass --tasks FILE or set BENCH_TASKS)")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: invalid TOML: {exc}") from None
    _check_keys(raw, {"default_suite": str, "backbones": dict, "suites": dict, "methods": dict}, str(path))
    where = f"{path}"
    backbones = {n: _backbone(n, t, f"{where} [backbones.{n}]") for n, t in raw.get("backbones", {}).items()}
    entries = _method_entries(raw.get("methods", {}), where, known_methods)
    suites = {}
    for name, table in raw.get("suites", {}).items():
        suites[name] = _suite(name, table, backbones, entries, path, known_datasets, known_methods)
    if not suites:
        raise BenchError(f"{path}: no [suites.NAME] table; declare at least one suite")
    default = raw.get("default_suite", next(iter(suites)))
    if default not in suites:
        raise BenchError(f"{path}: default_suite: {unknown('suite', default, suites)}")
    return Config(path=path, default_suite=default, suites=suites, backbones=backbones)


def _check_keys(table: dict, allowed: dict, where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise BenchError(f"{where}: unknown key '{key}'{did_you_mean(key, allowed)}")
        want = allowed[key]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise BenchError(f"{where}: '{key}' must be a {want.__name__}, got {type(value).__name__}")


def _backbone(name: str, table: dict, where: str) -> BackboneSpec:
    _check_keys(table, BACKBONE_KEYS, where)
    sources = [k for k in ("model", "local_dir", "builtin") if table.get(k)]
    if len(sources) != 1:
        raise BenchError(f"{where}: give exactly one of model (+ pretrained), local_dir or builtin")
    return BackboneSpec(name=name, **table)


def _method_entries(raw: dict, where: str, known_methods) -> dict:
    entries = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise BenchError(f"{where}: [methods.{name}] must be a table of parameter overrides")
        table = dict(table)
        base = table.pop("base", name)
        overrides = tuple(_override(o, f"{where} [[methods.{name}.when]]") for o in table.pop("when", []))
        if known_methods is not None and base not in known_methods:
            raise BenchError(f"{where}: [methods.{name}]: {unknown('method', base, known_methods)}")
        entries[name] = MethodEntry(name=name, base=base, params=table, overrides=overrides)
    return entries


def _override(table, where: str) -> Override:
    if not isinstance(table, dict):
        raise BenchError(f"{where}: each entry must be a table with datasets/shots/set")
    _check_keys(table, OVERRIDE_KEYS, where)
    return Override(tuple(table.get("datasets", ())), tuple(table.get("shots", ())), dict(table.get("set", {})))


def _suite(name, table, backbones, entries, path, known_datasets, known_methods) -> Suite:
    where = f"{path} [suites.{name}]"
    _check_keys(table, SUITE_KEYS, where)
    for key in ("datasets", "shots", "seeds", "backbone"):
        if key not in table:
            raise BenchError(f"{where}: missing required key '{key}'")
    for key in ("shots", "seeds"):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in table[key]):
            raise BenchError(f"{where}: '{key}' must be a list of positive integers")
    if known_datasets is not None:
        for ds in table["datasets"]:
            if ds not in known_datasets:
                raise BenchError(f"{where}: {unknown('dataset', ds, known_datasets)}")
    if table["backbone"] not in backbones:
        raise BenchError(f"{where}: {unknown('backbone', table['backbone'], backbones)}")
    precision = table.get("precision", "amp")
    if precision not in ("amp", "fp32"):
        raise BenchError(f"{where}: precision must be 'amp' or 'fp32', got '{precision}'")
    protocol = table.get("protocol", "fewshot")
    if protocol not in PROTOCOLS:
        raise BenchError(f"{where}: {unknown('protocol', protocol, PROTOCOLS)}")
    methods = tuple(table.get("methods", ()))
    if known_methods is not None:
        valid = set(entries) | set(known_methods)
        for method in methods:
            if method not in valid:
                raise BenchError(f"{where}: {unknown('method', method, valid)}")
    base = path.parent
    return Suite(
        name=name, datasets=tuple(table["datasets"]), shots=tuple(table["shots"]),
        seeds=tuple(table["seeds"]), backbone=backbones[table["backbone"]],
        data_root=expand_path(table.get("data_root", "${BENCH_DATA:-data}"), base),
        results_dir=expand_path(table.get("results_dir", f"results/{name}"), base),
        methods=methods, method_entries=entries, precision=precision, protocol=protocol,
    )


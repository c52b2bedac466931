"""tasks.toml → frozen dataclasses, strictly validated when the file is read (bench.schema).

Every mistake (unknown key, wrong type, a value out of its declared range, unknown name, a method
parameter that does not exist or does not fit its declaration) raises BenchError with one line that
names the place in the file and, where it can, the closest valid name.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from bench.errors import BenchError, unknown
from bench.schema import MAX_COUNT, Key, check, check_identifier, params_spec, type_name


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
    timeout_min: float | None = None  # the executor kills a job running longer; not a parameter (no new job id)
    # a method whose masks the image encoder runs under (`encoder = "rmt"`): this feature method then
    # trains and is evaluated on the masked encoder's features (bench.runner). Not a parameter: the
    # encoder job's whole key joins this job's key (bench.jobs.Job.key).
    encoder: str = ""

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
    # official: each method in its released precision on a GPU (Method.precision); amp | fp32: one for
    # all. A CPU always runs fp32 (bench.method.run_precision).
    precision: str = "official"
    protocol: str = "fewshot"  # the evaluation protocol; part of every job key (PROTOCOLS lists the valid ones)
    # domain_generalization / cross_dataset: source dataset → the datasets its fitted method is also
    # evaluated on (from the suite's `targets`, see _targets). Empty for the other protocols.
    targets: dict = field(default_factory=dict)
    cli_set: dict = field(default_factory=dict)  # method name -> {param: value} from `--set` (bench.jobs.with_cli_set)
    unresolved: str = ""  # why a path could not be expanded (an unset ${VAR}); raised when the suite is chosen


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
        if self.suites[name].unresolved:  # only now: a cluster suite's ${SCRATCH} must not block a laptop
            raise BenchError(self.suites[name].unresolved)
        return self.suites[name]


# fewshot: fit on K shots, test on the dataset's test split. base_to_new: fit on the base half of the
# classes, test on base and on new classes. domain_generalization: fit on a source (ImageNet), test also
# on its shifted variants (cards with domain_of = the source). cross_dataset: fit on a source, test also
# on other datasets with their own class names. bench.protocols runs them; the job key holds the protocol.
PROTOCOLS = ("fewshot", "base_to_new", "domain_generalization", "cross_dataset")
TRANSFER = ("domain_generalization", "cross_dataset")  # the protocols that take `targets`
PRECISIONS = ("official", "amp", "fp32")  # "official" = per method (bench.method.job_precision)
TOP_SPEC = {"default_suite": Key(str), "backbones": Key(dict), "suites": Key(dict), "methods": Key(dict)}
BACKBONE_SPEC = {**{k: Key(str) for k in ("model", "pretrained", "local_dir")},
                 "builtin": Key(str, choices=("smoke",), kind="builtin backbone")}
MAX_TIMEOUT_MIN = 366 * 24 * 60  # a year: more is a typo, and timers overflow on inf
ENTRY_SPEC = {"base": Key(str), "when": Key(list, items=dict),  # besides the method's own parameters
              "timeout_min": Key(float, range=(0, MAX_TIMEOUT_MIN), open=True), "encoder": Key(str)}
COUNTS = Key(list, required=True, items=int, range=(1, MAX_COUNT), nonempty=True, unique=True)


def _names(kind: str, known, **extra) -> Key:
    """A list of names checked against `known` (None: not checked here)."""
    return Key(list, items=str, choices=None if known is None else tuple(known), kind=kind, unique=True, **extra)


def _suite_spec(backbones, known_datasets, known_methods) -> dict[str, Key]:
    return {"datasets": _names("dataset", known_datasets, required=True, nonempty=True), "shots": COUNTS,
            "seeds": COUNTS, "backbone": Key(str, required=True, choices=tuple(backbones), kind="backbone"),
            "data_root": Key(str), "results_dir": Key(str), "methods": _names("method", known_methods),
            "precision": Key(str, choices=PRECISIONS), "protocol": Key(str, choices=PROTOCOLS, kind="protocol"),
            "targets": _names("dataset", known_datasets, nonempty=True)}


def _when_spec(known_datasets) -> dict[str, Key]:
    return {"datasets": _names("dataset", known_datasets), "set": Key(dict, required=True),
            "shots": Key(list, items=int, range=(1, None), unique=True)}


def default_tasks_path() -> Path:
    """--tasks beats BENCH_TASKS beats ./tasks.toml beats the tasks.toml installed with bench."""
    if os.environ.get("BENCH_TASKS"):
        return Path(os.environ["BENCH_TASKS"])
    local = Path("tasks.toml")
    return local if local.exists() else Path(str(files("bench") / "tasks.toml"))


class UnsetVariable(BenchError):
    """A ${VAR} without a default names a variable that is not set."""


def expand_path(text: str, base: Path) -> Path:
    """Expand ${VAR:-default} and ~; a relative path is relative to `base`: the loader passes the
    current working directory, never the tasks file's folder (the embedded one is in site-packages).
    An unset ${VAR} without a default is an error, not an empty string: "${SCRATCH}/data" must not
    become "/data"."""

    def env(match: re.Match) -> str:
        value = os.environ.get(match.group(1)) or match.group(3)
        if value is None:
            raise UnsetVariable(f"${{{match.group(1)}}} is not set; export {match.group(1)}=... or write "
                                f"${{{match.group(1)}:-default}}")
        return value

    expanded = re.sub(r"\$\{(\w+)(:-([^}]*))?\}", env, text)
    path = Path(expanded).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def load_config(tasks: Path | None = None) -> Config:
    """The tasks file checked against the registered methods (names and parameters) and dataset cards."""
    from bench.data.cards import card_names
    from bench.registry import METHODS

    return load(tasks, known_methods=METHODS.names(), known_datasets=card_names(), method_of=METHODS.get,
                domain_of=_domain_of)


def _domain_of(dataset: str) -> str:
    from bench.data.cards import load_card

    return getattr(load_card(dataset), "domain_of", None) or ""


def load(path: Path | None = None, known_methods=None, known_datasets=None, method_of=None,
         domain_of=None) -> Config:
    """Parse and validate a tasks file. Names are checked against the given registries; with
    `method_of(base method) → its class`, so is every method parameter (its Params, bench.schema) and
    every `encoder` (_check_encoder); with `domain_of(dataset) → the dataset it is a shifted variant
    of ("" if none)`, so are domain-generalization targets (_targets)."""
    path = Path(path) if path else default_tasks_path()
    raw = check(_read(path), TOP_SPEC, str(path))
    for kind, table in (("backbone", "backbones"), ("method", "methods"), ("suite", "suites")):
        for name in raw.get(table, {}):
            check_identifier(kind, name, f"{path} [{table}.{name}]")
    backbones = {n: _backbone(n, t, f"{path} [backbones.{n}]") for n, t in raw.get("backbones", {}).items()}
    entries = {n: _method_entry(n, t, path, known_methods, known_datasets, method_of)
               for n, t in raw.get("methods", {}).items()}
    for entry in entries.values():
        if entry.encoder and known_methods is not None:
            _check_encoder(entry, entries, known_methods, method_of, f"{path} [methods.{entry.name}]")
    methods = None if known_methods is None else sorted(set(entries) | set(known_methods))
    spec = _suite_spec(backbones, known_datasets, methods)
    suites = {n: _suite(n, check(t, spec, f"{path} [suites.{n}]"), backbones, entries, f"{path} [suites.{n}]",
                        domain_of) for n, t in raw.get("suites", {}).items()}
    if not suites:
        raise BenchError(f"{path}: no [suites.NAME] table; declare at least one suite")
    default = raw.get("default_suite", next(iter(suites)))
    if default not in suites:
        raise BenchError(f"{path}: default_suite: {unknown('suite', default, suites)}")
    return Config(path=path, default_suite=default, suites=suites, backbones=backbones)


def _read(path: Path) -> dict:
    if not path.exists():
        raise BenchError(f"tasks file not found: {path} (pass --tasks FILE or set BENCH_TASKS)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the tasks file: {exc.strerror or exc}") from None


def _backbone(name: str, table, where: str) -> BackboneSpec:
    fields = check(table, BACKBONE_SPEC, where)
    sources = [k for k in ("model", "local_dir", "builtin") if fields.get(k)]
    if len(sources) != 1:
        raise BenchError(f"{where}: give exactly one of model (+ pretrained), local_dir or builtin")
    return BackboneSpec(name=name, **fields)


def _method_entry(name: str, table, path: Path, known_methods, known_datasets, method_of) -> MethodEntry:
    """[methods.NAME]: `base`, `when` and parameter overrides, each parameter checked against the
    base method's declaration (type, range, choices) when `method_of` is given."""
    where = f"{path} [methods.{name}]"
    if not isinstance(table, dict):
        raise BenchError(f"{where}: must be a table of parameter overrides, got {type_name(table)}")
    head = check({k: v for k, v in table.items() if k in ENTRY_SPEC}, ENTRY_SPEC, where)
    base = head.get("base", name)
    if known_methods is not None and base not in known_methods:
        raise BenchError(f"{where}: {unknown('method', base, known_methods)}")
    spec = params_spec(method_of(base).Params) if method_of else None
    params = {k: v for k, v in table.items() if k not in ENTRY_SPEC}
    if spec is not None:
        params = check(params, spec, where, noun="parameter")
    overrides = tuple(_override(o, f"{path} [[methods.{name}.when]] #{i + 1}", known_datasets, spec)
                      for i, o in enumerate(head.get("when", ())))
    return MethodEntry(name=name, base=base, params=params, overrides=overrides, timeout_min=head.get("timeout_min"),
                       encoder=head.get("encoder", ""))


def _check_encoder(entry: MethodEntry, entries: dict, known_methods, method_of, where: str) -> None:
    """`encoder` composes a feature method on a mask method's masks: it must name a method or variant
    whose base declares `produces_masks`, and the entry must be a new name whose base is a feature
    method (a plain `[methods.coop]` keeps meaning plain CoOp). Checked after every entry is read, so
    an encoder may be a variant declared further down the file."""
    names = sorted(set(known_methods) | set(entries))
    if entry.name in known_methods:
        raise BenchError(f"{where}: encoder makes a new method; declare it under a new name, e.g. "
                         f"[methods.{entry.name}_{entry.encoder}] with base = \"{entry.name}\"")
    if entry.encoder not in names:
        raise BenchError(f"{where}: encoder: {unknown('method', entry.encoder, names)}")
    if entries.get(entry.encoder) is not None and entries[entry.encoder].encoder:
        raise BenchError(f"{where}: encoder '{entry.encoder}' is itself composed; name a mask method")
    if method_of is None:
        return

    def base_of(name):
        return entries[name].base if name in entries else name

    if method_of(entry.base).inputs != "features":
        raise BenchError(f"{where}: encoder needs a feature method as base (inputs = \"features\"); "
                         f"'{entry.base}' trains on images")
    if not getattr(method_of(base_of(entry.encoder)), "produces_masks", False):
        masks = [n for n in names if getattr(method_of(base_of(n)), "produces_masks", False)]
        raise BenchError(f"{where}: encoder '{entry.encoder}' produces no masks; name a mask method "
                         f"(one of: {', '.join(masks) or 'none registered'})")


def _override(table, where: str, known_datasets, spec) -> Override:
    fields = check(table, _when_spec(known_datasets), where)
    values = check(fields["set"], spec, where, noun="parameter") if spec is not None else dict(fields["set"])
    return Override(tuple(fields.get("datasets", ())), tuple(fields.get("shots", ())), values)


def _targets(table: dict, where: str, domain_of) -> dict:
    """source → targets of a transfer protocol. domain_generalization: each target is a shifted variant
    of one source (its card's domain_of) and is evaluated on that source's jobs only; cross_dataset:
    every source is evaluated on every target but itself. The other protocols take no targets."""
    protocol, targets, sources = table.get("protocol", "fewshot"), table.get("targets", []), table["datasets"]
    if protocol not in TRANSFER:
        if targets:
            raise BenchError(f"{where}: targets: only protocol = \"domain_generalization\" or \"cross_dataset\" "
                             f"evaluates on other datasets (this suite's protocol is \"{protocol}\"); remove targets")
        return {}
    if not targets:
        raise BenchError(f"{where}: protocol = \"{protocol}\" needs targets = [...], the datasets to evaluate on")
    if protocol == "cross_dataset":
        return _nonempty({source: tuple(t for t in targets if t != source) for source in sources}, where)
    if domain_of is None:  # names unchecked (tests of the parser alone): every target on every source
        return {source: tuple(targets) for source in sources}
    for target in targets:
        if domain_of(target) not in sources:
            of = domain_of(target)
            raise BenchError(f"{where}: targets: '{target}' is " + (f"a variant of '{of}', which is not in datasets"
                             if of else "not a shifted variant of a dataset (its card has no domain_of)")
                             + "; domain generalization evaluates a source's variants (use protocol = "
                               "\"cross_dataset\" for other datasets)")
    return _nonempty({source: tuple(t for t in targets if domain_of(t) == source) for source in sources}, where)


def _nonempty(found: dict, where: str) -> dict:
    empty = [source for source, targets in found.items() if not targets]
    if empty:
        raise BenchError(f"{where}: datasets: '{empty[0]}' has nothing to be evaluated on in targets (no other "
                         "dataset, or none of its shifted variants); add one or drop it")
    return found


def _suite(name: str, table: dict, backbones: dict, entries: dict, where: str, domain_of=None) -> Suite:
    """A [suites.NAME] table already checked against _suite_spec."""
    paths, unresolved = {}, ""
    defaults = {"data_root": "${BENCH_DATA:-data}", "results_dir": f"results/{name}"}
    for key, default in defaults.items():
        try:  # relative data_root/results_dir: the working directory (see expand_path)
            paths[key] = expand_path(table.get(key, default), Path.cwd())
        except UnsetVariable as exc:
            paths[key], unresolved = Path(table[key]), unresolved or f"{where} {key}: {exc}"
    return Suite(
        name=name, datasets=tuple(table["datasets"]), shots=tuple(table["shots"]),
        seeds=tuple(table["seeds"]), backbone=backbones[table["backbone"]], **paths,
        methods=tuple(table.get("methods", ())), method_entries=entries,
        precision=table.get("precision", "official"), protocol=table.get("protocol", "fewshot"),
        targets=_targets(table, where, domain_of), unresolved=unresolved,
    )


"""The method protocol: what a method file declares and what it hands back to the engine.

A method is a class with `name`, `version`, `Params` (a frozen dataclass of hyperparameters with
defaults; a field's `metadata["help"]` documents it), `inputs` and `uses_fewshot`:
- "features": the predictor maps frozen image embeddings [N, D] to logits (the engine caches them);
- "images": the predictor maps normalised image batches [N, 3, H, W] to logits.
`uses_fewshot = False` declares that fit() ignores the few-shot split, shots and seed (zero-shot CLIP):
the grid then runs the method once per dataset (bench.jobs.Job with shots = seed = 0), not per cell.
`fit(task, params)` trains on the few-shot split the engine hands over (bench.task.Task) and returns a
Fitted. The engine owns seeding, device, precision, evaluation, timing and the result record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar

if TYPE_CHECKING:  # workers unpickle Jobs without paying for a torch import
    import torch

from bench.errors import BenchError, did_you_mean


@dataclass
class Fitted:
    predict: Callable[[torch.Tensor], torch.Tensor]  # batch of features or images → logits [N, C]
    trainable_params: int = 0  # parameters the method trained
    state_bytes: int = 0  # bytes of task-specific state a user must store to reproduce predictions
    metrics: dict = field(default_factory=dict)  # extra numbers for the record (e.g. masked_pct_*)
    validation: str = "none"  # none | fewshot_val | full_val | oracle_test
    artifacts: dict = field(default_factory=dict)  # file name → bytes, saved next to the record
    config: dict = field(default_factory=dict)  # resolved choices the method made (e.g. epochs)


class Method:
    name: ClassVar[str]
    version: ClassVar[int] = 1
    inputs: ClassVar[str] = "features"  # "features" | "images"
    uses_fewshot: ClassVar[bool] = True  # False: one job per dataset serves every shots × seed cell
    Params: ClassVar[type]

    def fit(self, task, params) -> Fitted:  # pragma: no cover - interface
        raise NotImplementedError


def build_params(method: type[Method], values: dict, where: str = ""):
    """Defaults of `method.Params` updated by `values`; unknown names and wrong types are user errors."""
    fields = {f.name: f for f in dataclasses.fields(method.Params)}
    clean = {}
    for key, value in values.items():
        if key not in fields:
            raise BenchError(f"{where}method '{method.name}' has no parameter '{key}'{did_you_mean(key, fields)}")
        clean[key] = _coerce(method.name, fields[key], value)
    return method.Params(**clean)


def _coerce(method_name: str, f: dataclasses.Field, value):
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or (default is not None and not isinstance(default, bool)):
            raise BenchError(f"method '{method_name}': parameter '{f.name}' must be "
                             f"{type(default).__name__}, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if default is not None and not isinstance(value, type(default)):
        raise BenchError(f"method '{method_name}': parameter '{f.name}' must be "
                         f"{type(default).__name__}, got {value!r}")
    return value


def params_dict(params) -> dict:
    return dataclasses.asdict(params)

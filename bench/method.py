"""The method protocol: what a method file declares and what it hands back to the engine.

A method is a class with `name`, `version`, `Params` (a frozen dataclass of hyperparameters with
defaults; a field's metadata documents it: "help", and optionally "range" = (low, high) with None for
no bound, "open" = True to exclude the bounds, "choices" = a tuple; bench.schema checks them when the
tasks file or `--set` is read, so fit() never re-checks them), `inputs` and `uses_fewshot`:
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

from bench.schema import check, params_spec


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
    """Defaults of `method.Params` updated by `values`, each checked against the field's declared type,
    range and choices (bench.schema): a mistake is one BenchError line that starts with `where`."""
    clean = check(values, params_spec(method.Params), where or f"method '{method.name}'", noun="parameter")
    return method.Params(**clean)


def params_dict(params) -> dict:
    return dataclasses.asdict(params)

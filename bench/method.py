"""The method protocol: what a method file declares and what it hands back to the engine.

A method is a class with `name`, `version`, `Params` (a frozen dataclass of hyperparameters with
defaults; a field's metadata documents it: "help", and optionally "range" = (low, high) with None for
no bound, "open" = True to exclude the bounds, "choices" = a tuple; bench.schema checks them when the
tasks file or `--set` is read, so fit() never re-checks them), `inputs` and `uses_fewshot`:
- "features": the predictor maps frozen image embeddings [N, D] to logits (the engine caches them);
- "images": the predictor maps normalised image batches [N, 3, H, W] to logits.
`uses_fewshot = False` declares that fit() ignores the few-shot split, shots and seed (zero-shot CLIP):
the grid then runs the method once per dataset (bench.jobs.Job with shots = seed = 0), not per cell.
`precision` declares what the method's released code runs in on a GPU (see RUN_PRECISIONS); a suite's
`precision = "official"` (the default) runs each method in its own, "amp" or "fp32" force one for all.
`produces_masks = True` declares that fit() returns binary masks on the image encoder as the artifact
bench.masking.MASKS_ARTIFACT (written by bench.masking.pack_masks): a feature method can then run on
the encoder those masks make (tasks.toml `encoder = "NAME"`; bench.runner runs that composition).
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
    # Other protocols (bench.protocols) evaluate the same fitted method on other classes: base-to-new's
    # new classes, cross-dataset targets, the 200 classes of ImageNet-A/R. `for_classes(target_task)`
    # returns a predict function over target_task's class names (same inputs as `predict`: features or
    # images of the same, possibly masked, encoder). None: the predictor is tied to its training classes
    # (a linear head, a cache of one-hot labels); `no_transfer` says why, and the report shows "n/a".
    for_classes: Callable | None = None
    no_transfer: str = ""


class Method:
    name: ClassVar[str]
    version: ClassVar[int] = 1
    inputs: ClassVar[str] = "features"  # "features" | "images"
    uses_fewshot: ClassVar[bool] = True  # False: one job per dataset serves every shots × seed cell
    precision: ClassVar[str] = "fp32"  # the released code's precision on a GPU (RUN_PRECISIONS)
    produces_masks: ClassVar[bool] = False  # True: Fitted.artifacts holds image-encoder masks (see above)
    Params: ClassVar[type]

    def fit(self, task, params) -> Fitted:  # pragma: no cover - interface
        raise NotImplementedError


def tensors_file(tensors: dict) -> bytes:
    """A method's trained tensors as the bytes of one safetensors artifact (Fitted.artifacts)."""
    from safetensors.torch import save

    return save({name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()})


# What a job can run in. "fp32": everything fp32. "amp": fp16 autocast over the fp32 model, fp32 master
# copies of trained values and dynamic loss scaling (fast, not any paper's setting). "fp16": CLIP's own
# fp16 model (open_clip precision "fp16" = OpenAI's convert_weights: conv/linear/attention weights fp16,
# LayerNorm computed in fp32), no autocast and no loss scaling: what CoOp's default PREC = "fp16" runs.
RUN_PRECISIONS = ("fp32", "amp", "fp16")


def job_precision(method: type[Method], suite_precision: str) -> str:
    """The precision a job asks for, part of its key: the suite's, where "official" is the method's own."""
    return method.precision if suite_precision == "official" else suite_precision


def run_precision(precision: str, device) -> str:
    """What a job with `precision` runs in on `device`: as asked on a GPU, fp32 anywhere else (the
    CPU is for tests and demos: fp16 there is slow and would change their results for nothing)."""
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    return precision if kind == "cuda" else "fp32"


def build_params(method: type[Method], values: dict, where: str = ""):
    """Defaults of `method.Params` updated by `values`, each checked against the field's declared type,
    range and choices (bench.schema): a mistake is one BenchError line that starts with `where`."""
    clean = check(values, params_spec(method.Params), where or f"method '{method.name}'", noun="parameter")
    return method.Params(**clean)


def params_dict(params) -> dict:
    return dataclasses.asdict(params)

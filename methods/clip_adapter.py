"""CLIP-Adapter (Gao et al., IJCV 2023): a small bottleneck MLP on the frozen image embedding, mixed with
the original embedding by a residual ratio, classified by the frozen zero-shot text features.

feature = ratio · adapter(f) + (1 − ratio) · f,  adapter = ReLU ∘ Linear(D/r → D) ∘ ReLU ∘ Linear(D → D/r)
(no biases), then L2-normalised and compared with the dataset template's text embeddings × exp(logit_scale).
ratio = 0 is exactly zero-shot CLIP. Trained on the cached augmented views (one view per epoch) with
CoOp's optimiser and schedule (bench.train.train_on_views)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.method import Fitted, Method
from bench.registry import register_method
from bench.train import coop_epochs, train_on_views


@dataclass(frozen=True)
class ClipAdapterParams:
    ratio: float = field(default=0.2, metadata={"help": "residual ratio: weight of the adapted feature "
                                                        "(the paper tunes it per dataset)"})
    reduction: int = field(default=4, metadata={"help": "bottleneck width = D / reduction"})
    epochs: int = field(default=0, metadata={"help": "0 = CoOp's rule (1 shot 50, 2/4 shots 100, 8/16 "
                                                     "shots 200) and 200 on ImageNet (Tip-Adapter paper)"})
    imagenet_epochs: int = field(default=200, metadata={"help": "epochs on ImageNet when epochs = 0"})
    lr: float = field(default=0.002, metadata={"help": "SGD learning rate (cosine, 1 warm-up epoch at 1e-5)"})
    batch_size: int = field(default=32, metadata={"help": "mini-batch size"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay"})
    warmup_epochs: int = field(default=1, metadata={"help": "constant warm-up epochs inside the budget"})
    warmup_lr: float = field(default=1e-5, metadata={"help": "learning rate of the warm-up epochs"})
    aug_scale: tuple = field(default=(0.08, 1.0), metadata={"help": "RandomResizedCrop scale range"})


class Adapter(torch.nn.Module):
    def __init__(self, dim: int, reduction: int, generator: torch.Generator):
        super().__init__()
        hidden = max(1, dim // reduction)
        self.down = torch.nn.Linear(dim, hidden, bias=False)
        self.up = torch.nn.Linear(hidden, dim, bias=False)
        for layer in (self.down, self.up):  # nn.Linear's default init, drawn from the task's RNG
            torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.up(F.relu(self.down(x))))


def adapted_logits(adapter, feats, text, ratio: float, scale: float) -> torch.Tensor:
    mixed = ratio * adapter(feats) + (1 - ratio) * feats
    return scale * F.normalize(mixed, dim=-1) @ text.t().to(mixed.dtype)


@register_method
class ClipAdapter(Method):
    name = "clip_adapter"
    version = 1
    inputs = "features"
    Params = ClipAdapterParams

    def fit(self, task, params: ClipAdapterParams) -> Fitted:
        if params.reduction < 1 or not 0.0 <= params.ratio <= 1.0:
            raise BenchError(f"clip_adapter: need reduction ≥ 1 and 0 ≤ ratio ≤ 1, got "
                             f"{params.reduction} and {params.ratio}")
        text, scale = task.text_features(), task.logit_scale
        adapter = Adapter(text.shape[1], params.reduction, task.generator("clip_adapter", "init")).to(task.device)
        epochs = params.epochs or coop_epochs(task.shots, task.dataset, params.imagenet_epochs)
        views = task.features.train_views(task.fewshot, task.seed, epochs, params.aug_scale)

        def loss_fn(feats, labels):
            return F.cross_entropy(adapted_logits(adapter, feats, text, params.ratio, scale).float(), labels)

        losses = train_on_views(views, loss_fn, list(adapter.parameters()), epochs=epochs, lr=params.lr,
                                batch_size=params.batch_size,
                                generator=task.generator("clip_adapter", "batches"), device=task.device,
                                precision=task.precision, momentum=params.momentum,
                                weight_decay=params.weight_decay, warmup_epochs=params.warmup_epochs,
                                warmup_lr=params.warmup_lr)
        adapter.eval().requires_grad_(False)

        def predict(image_features):
            return adapted_logits(adapter, image_features.float(), text, params.ratio, scale)

        count = sum(p.numel() for p in adapter.parameters())
        return Fitted(predict=predict, trainable_params=count, state_bytes=count * 4,
                      metrics={"train_loss_last_epoch": losses[-1]},
                      artifacts={"adapter.safetensors": _save(adapter)},
                      config={"epochs": epochs, "hidden": adapter.down.out_features})


def _save(adapter: torch.nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in adapter.state_dict().items()})

"""CLIP-Adapter (Gao et al., IJCV 2023): a small bottleneck MLP on the frozen image embedding, mixed with
the original embedding by a residual ratio, classified by the frozen zero-shot text features.

feature = ratio · adapter(f) + (1 − ratio) · f,  adapter = ReLU ∘ Linear(D/r → D) ∘ ReLU ∘ Linear(D → D/r)
(no biases), then L2-normalised and compared with the dataset template's text embeddings × exp(logit_scale).
ratio = 0 is exactly zero-shot CLIP. Trained on the cached augmented views (one view per epoch) with
CoOp's optimiser and schedule (bench.train.train_on_views)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.method import Fitted, Method, tensors_file
from bench.registry import register_method
from bench.train import SGDParams, coop_epochs, train_on_views


@dataclass(frozen=True)
class ClipAdapterParams(SGDParams):  # + CoOp's optimiser, schedule and aug_scale (bench.train.SGDParams)
    ratio: float = field(default=0.2, metadata={"help": "residual ratio: weight of the adapted feature "
                                                        "(the paper tunes it per dataset)", "range": (0.0, 1.0)})
    reduction: int = field(default=4, metadata={"help": "bottleneck width = D / reduction", "range": (1, None)})
    epochs: int = field(default=0, metadata={"help": "0 = CoOp's rule (1 shot 50, 2/4 shots 100, 8/16 "
                                                     "shots 200) and 200 on ImageNet (Tip-Adapter paper)",
                                             "range": (0, None)})
    imagenet_epochs: int = field(default=200, metadata={"help": "epochs on ImageNet when epochs = 0",
                                                        "range": (1, None)})


def make_adapter(dim: int, reduction: int, generator):
    """The bottleneck: a ModuleDict (down, up) so this file imports without torch; see `adapt`."""
    import torch

    hidden = max(1, dim // reduction)
    adapter = torch.nn.ModuleDict({"down": torch.nn.Linear(dim, hidden, bias=False),
                                   "up": torch.nn.Linear(hidden, dim, bias=False)})
    for layer in adapter.values():  # nn.Linear's default init, drawn from the task's RNG
        torch.nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    return adapter


def adapt(adapter, x):
    import torch.nn.functional as F

    return F.relu(adapter["up"](F.relu(adapter["down"](x))))


def adapted_logits(adapter, feats, text, ratio: float, scale: float):
    import torch.nn.functional as F

    mixed = ratio * adapt(adapter, feats) + (1 - ratio) * feats
    return scale * F.normalize(mixed, dim=-1) @ text.t().to(mixed.dtype)


@register_method
class ClipAdapter(Method):
    name = "clip_adapter"
    version = 1
    inputs = "features"
    precision = "fp32"  # CLIP-Adapter's trainer calls clip_model.float()
    Params = ClipAdapterParams

    def fit(self, task, params: ClipAdapterParams) -> Fitted:
        import torch.nn.functional as F

        text, scale = task.text_features(), task.logit_scale
        adapter = make_adapter(text.shape[1], params.reduction, task.generator("clip_adapter", "init")).to(task.device)
        epochs = params.epochs or coop_epochs(task.shots, task.dataset, params.imagenet_epochs)
        views = task.features.train_views(task.fewshot, task.seed, epochs, params.aug_scale)

        def loss_fn(feats, labels):
            return F.cross_entropy(adapted_logits(adapter, feats, text, params.ratio, scale).float(), labels)

        losses = train_on_views(views, loss_fn, list(adapter.parameters()), epochs=epochs, lr=params.lr,
                                batch_size=params.batch_size,
                                generator=task.generator("clip_adapter", "batches"), device=task.device,
                                precision=task.precision, momentum=params.momentum,
                                weight_decay=params.weight_decay, warmup_epochs=params.warmup_epochs,
                                warmup_lr=params.warmup_lr, name=self.name)
        adapter.eval().requires_grad_(False)

        def for_classes(target):  # the adapter acts on image features: any class names' text classifier fits
            target_text = target.text_features()

            def predict(image_features):
                return adapted_logits(adapter, image_features.float(), target_text, params.ratio, target.logit_scale)

            return predict

        count = sum(p.numel() for p in adapter.parameters())
        return Fitted(predict=for_classes(task), for_classes=for_classes, trainable_params=count, state_bytes=count * 4,
                      metrics={"train_loss_last_epoch": losses[-1]},
                      artifacts={"adapter.safetensors": tensors_file(adapter.state_dict())},
                      config={"epochs": epochs, "hidden": adapter["down"].out_features})

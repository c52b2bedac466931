"""Full fine-tuning of CLIP's image encoder: the reference that Zhao et al. 2020 ("Masking as an
efficient alternative to finetuning") measure masks against. Every image-encoder parameter trains; the
classifier is the frozen zero-shot text classifier (the dataset's templates, computed once, exactly as
the mask methods use it), so training starts at zero-shot CLIP and only the image side moves. Loss:
cross-entropy on CLIP's logits, logit_scale · norm(image) @ textᵀ.

Optimiser: AdamW, lr 1e-5, weight decay 0.01. A small lr because every weight moves (CLIP fine-tuning
recipes use 1e-5 to 3e-5 at large batches; few-shot sets overfit fast); 0.01 is BERT's fine-tuning
convention, the finetuning Zhao et al. compare against, and like BERT it spares biases and norm gains
(every tensor with fewer than 2 dimensions). The budget is mask tuning's, so the two compare on the
same batches and steps: batch 32, the last partial batch dropped only when one full batch exists, 30
epochs with cosine annealing per epoch and no warm-up, RandomResizedCrop scale (0.5, 1) (the same
augmented views, deterministic per (seed, epoch, item)), and below 16 shots the epochs mask tuning's
low-shot rule gives (methods/mask_tuning.py `schedule`, evaluated at mask tuning's lr `budget_lr` = 8e-5
and `min_travel` = 2e-2; ImageNet: 10 epochs at 3e-5, as mask tuning, a `when` entry in tasks.toml).
The resolved epochs and steps are in every record (config.method). The last epoch is evaluated.

Side effects: the engine keeps one backbone warm for every job of a worker, so fit() trains a deep copy
of the image encoder and never touches the shared model. The copy stays in eval mode, as the mask
methods run the frozen encoder: on a ResNet, BatchNorm normalises with the pre-trained running
statistics and never updates them (its affine weights train like every other parameter); no dropout.

Cost: trainable_params = every image-encoder parameter; state_bytes = their bytes (fp32), the
fine-tuned encoder a user must store per task (ViT-B/16: 86.2M parameters ≈ 345 MB, against ≈ 3.6 MB of
packed mask bits). BatchNorm running statistics are not counted: they stay the backbone's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.masking import class_logits
from bench.method import Fitted, Method
from bench.registry import register_method
from bench.train import cosine_lr, log_epoch, set_lr
from methods.mask_tuning import MaskTuningParams, schedule


@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = field(default=30, metadata={"help": "epochs of the 16-shot schedule (mask tuning's)",
                                              "range": (1, None)})
    batch_size: int = field(default=32, metadata={"help": "images per step", "range": (1, None)})
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate, cosine per epoch",
                                              "range": (0.0, None), "open": True})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decoupled weight decay (not on biases "
                                                                "and norm gains)", "range": (0.0, None)})
    scale: tuple = field(default=(0.5, 1.0), metadata={"help": "RandomResizedCrop scale range", "range": (0.0, 1.0)})
    budget_lr: float = field(default=8e-5, metadata={"help": "mask tuning's lr: its low-shot epoch rule, "
                                                             "evaluated at this lr, sets the epochs",
                                                     "range": (0.0, None), "open": True})
    min_travel: float = field(default=2e-2, metadata={"help": "mask tuning's low-shot rule: epochs rise until "
                                                              "budget_lr's Σ lr ≥ this (0 = always `epochs`)",
                                                      "range": (0.0, None)})
    released_shots: int = field(default=16, metadata={"help": "shots at or above which the low-shot rule is off",
                                                      "range": (1, None)})


def budget(params: FinetuneParams, steps_per_epoch: int, shots: int) -> dict:
    """Epochs and steps: exactly what mask tuning with the same epochs, lr = budget_lr, min_travel and
    released_shots would run, so both methods take the same number of steps on the same batches."""
    mask = MaskTuningParams(epochs=params.epochs, lr=params.budget_lr, min_travel=params.min_travel,
                            released_shots=params.released_shots)
    plan = schedule(mask, steps_per_epoch, shots)
    plan["budget_travel"] = plan.pop("travel")  # mask tuning's Σ lr, not finetune's own
    return plan


@register_method
class Finetune(Method):
    name = "finetune"
    version = 1
    inputs = "images"
    # fp32, as R-AMT's trainer runs the mask methods it is compared with (clip_model.float()); fp16
    # weights could not hold AdamW updates of ~1e-5 on weights of ~1e-2 (fp16 resolves ~1e-3 relative).
    precision = "fp32"
    Params = FinetuneParams

    def fit(self, task, params) -> Fitted:
        visual, config = self.train_encoder(task, params)
        def for_classes(target):  # the frozen zero-shot classifier of any class list on the tuned encoder
            text, scale = target.text_features(), target.logit_scale

            def predict(images):
                return class_logits(visual(images), text, scale)

            return predict

        weights = list(visual.parameters())
        return Fitted(predict=for_classes(task), for_classes=for_classes, trainable_params=sum(p.numel() for p in weights),
                      state_bytes=sum(p.numel() * p.element_size() for p in weights), config=config)

    def train_encoder(self, task, params):
        """(the fine-tuned copy of the image encoder, frozen again and in eval mode; resolved config)."""
        import copy

        import torch
        import torch.nn.functional as F

        shared = task.backbone.model.visual
        visual = copy.deepcopy(shared).requires_grad_(True)  # the shared encoder serves later jobs
        visual.eval()  # as the mask methods: BatchNorm keeps its pre-trained statistics, no dropout
        text, scale = task.text_features(), task.logit_scale
        count = len(task.fewshot.train)
        drop_last = count >= params.batch_size  # Dassl / mask tuning: drop a partial batch only if one is full
        per_epoch = count // params.batch_size if drop_last else math.ceil(count / params.batch_size)
        plan = budget(params, per_epoch, task.shots)
        decay = [p for p in visual.parameters() if p.ndim >= 2]
        no_decay = [p for p in visual.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": params.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=params.lr)
        # dynamic loss scaling under "amp" on a GPU (fp16 autocast); a no-op in fp32 and on CPU
        scaler = torch.amp.GradScaler("cuda", enabled=task.precision == "amp" and task.device.type == "cuda")
        losses, current, lr, last = [], -1, params.lr, None
        for epoch, images, labels, _ in task.train_epochs(plan["epochs"], params.batch_size, params.scale,
                                                          drop_last=drop_last):
            if epoch != current:
                last = self._log_epoch(current, plan, losses, lr) if losses else last
                lr = cosine_lr(epoch, plan["epochs"], params.lr)
                set_lr(optimizer, lr)
                current, losses = epoch, []
            images, labels = images.to(task.device, non_blocking=True), labels.to(task.device)
            with task.autocast():
                logits = class_logits(visual(images), text, scale)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.detach())  # no .item(): a GPU sync per step
        last = self._log_epoch(current, plan, losses, lr) if losses else last
        optimizer.zero_grad(set_to_none=True)
        visual.requires_grad_(False)  # training is over: predict builds no autograd graph
        with torch.no_grad():  # how far the weights moved: ‖θ − θ₀‖ / ‖θ₀‖ over the whole encoder
            moved = sum(float((a - b).pow(2).sum()) for a, b in zip(visual.parameters(), shared.parameters()))
            norm = sum(float(b.pow(2).sum()) for b in shared.parameters())
        config = {**plan, "drop_last": drop_last, "last_epoch_loss": last, "optimizer": "AdamW",
                  "relative_weight_change": math.sqrt(moved / norm) if norm else 0.0}
        return visual, config

    def _log_epoch(self, epoch: int, plan: dict, losses: list, lr: float) -> float:
        """Log the finished epoch's mean loss and lr (one sync per epoch) and return the loss."""
        import torch

        loss = float(torch.stack(losses).mean())
        log_epoch(self.name, epoch, plan["epochs"], loss, lr)
        return loss

"""Mask tuning (binary masks of Zhao et al. 2020; "AMT" in the RMT paper, Zheng et al.): learn which
weights of CLIP's frozen image encoder to switch off, one real-valued score per masked weight, forward
W ⊙ 1[s > τ], straight-through gradient (bench/masking.py). Defaults are the RMT paper's: attention
weights + conv1 (on a ResNet every convolution + the attention pool's projections, as R-AMT's code), fp32
as R-AMT's trainer (clip_model.float()), scores init 1e-2 (every mask on: training starts exactly at
zero-shot CLIP), τ = 5e-3, loss = cross-entropy against the frozen zero-shot text features +
1e-4·Σ‖S_t‖₂, Adam lr 8e-5 without weight decay, cosine per epoch, 30 epochs, batch 32,
RandomResizedCrop scale (0.5, 1); ImageNet lr 3e-5, 10 epochs (a [[methods.mask_tuning.when]] entry in
tasks.toml). The last epoch is evaluated.

Low-shot schedule (the released recipe is the 16-shot one; low-shot settings were never released).
Adam moves a score by at most about the learning rate per step, so a mask can only flip once the
summed learning rate of the run (its "travel", Σ_t lr_t) exceeds init − τ = 5e-3. With 30 epochs of a
cosine schedule the travel is steps_per_epoch · lr · 31/2: at 1 shot a 10-class dataset makes one
step per epoch, travel 1.2e-3, and not a single mask can flip (a 1-shot run would silently return
zero-shot CLIP). Below `released_shots` (16) the number of epochs is therefore raised, never lowered,
until the travel reaches `min_travel` = 2e-2 = 4 × (init − τ): enough for a consistently pushed score to
cross τ in the first quarter of the run and still come back if later gradients disagree. That is about
500 steps at lr 8e-5 whatever the dataset (EuroSAT 1-shot: 499 epochs of one step; SUN397 1-shot: 41
epochs of 12 steps), ~1.3k steps at ImageNet's 3e-5; and 2e-2 is inside the range the released 16-shot
recipe itself gives (6e-3 on EuroSAT to 8e-2 on ImageNet). 16-shot runs keep the released schedule.
The resolved epochs, steps and travel are recorded in the result (Fitted.config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.masking import (MASKS_ARTIFACT, MaskScores, class_logits, encode, mask_metrics, mask_targets,
                           masked_predictor, pack_masks, packed_bytes, resolve_targets)
from bench.method import Fitted, Method
from bench.registry import register_method
from bench.train import cosine_lr, log_epoch, set_lr

# which exist depends on the encoder (bench.masking); "rmt" is R-AMT's set for the architecture
TARGETS = ("rmt", "attn", "mlp", "all_linear", "all_conv_attnpool", "conv1_attnpool", "conv")


@dataclass(frozen=True)
class MaskTuningParams:
    epochs: int = field(default=30, metadata={"help": "epochs of the released (16-shot) schedule",
                                              "range": (1, None)})
    batch_size: int = field(default=32, metadata={"help": "images per step", "range": (1, None)})
    lr: float = field(default=8e-5, metadata={"help": "Adam learning rate (no weight decay), cosine per epoch",
                                              "range": (0.0, None), "open": True})
    threshold: float = field(default=5e-3, metadata={"help": "τ: a weight is kept while its score is > τ"})
    init: str = field(default="constant", metadata={"help": "score init: constant (init_value) or uniform",
                                                    "choices": ("constant", "uniform")})
    init_value: float = field(default=1e-2, metadata={"help": "constant init (> τ: every mask starts on)"})
    init_sparsity: float = field(default=0.05, metadata={"help": "uniform init: fraction starting masked",
                                                         "range": (0.0, 1.0), "open": True})
    l2: float = field(default=1e-4, metadata={"help": "weight of Σ‖S_t‖₂ (plain L2 norm per score tensor)",
                                              "range": (0.0, None)})
    targets: str = field(default="rmt", metadata={"help": "rmt = R-AMT's set (ViT: attn, ModifiedResNet: "
                                                          "all_conv_attnpool); ViT: attn (attention + conv1) | "
                                                          "mlp | all_linear; ModifiedResNet: all_conv_attnpool "
                                                          "| conv1_attnpool | conv",
                                                  "choices": TARGETS})
    first_block: int = field(default=0, metadata={"help": "first masked transformer block (bottleneck on a ResNet)",
                                                  "range": (0, None)})
    last_block: int = field(default=-1, metadata={"help": "last masked block, inclusive (-1 = the last)",
                                                  "range": (-1, None)})
    scale: tuple = field(default=(0.5, 1.0), metadata={"help": "RandomResizedCrop scale range", "range": (0.0, 1.0)})
    min_travel: float = field(default=2e-2, metadata={"help": "low-shot: raise epochs until Σ lr ≥ this",
                                                      "range": (0.0, None)})
    released_shots: int = field(default=16, metadata={"help": "shots at or above which min_travel is off",
                                                      "range": (1, None)})


def schedule(params, steps_per_epoch: int, shots: int) -> dict:
    """The resolved schedule: epochs (the released count, or more at low shot), steps and travel."""
    def travel(epochs):  # Σ of the per-step lr over the run; Σ_e cos(πe/E) = 1, so it is (E+1)/2 · lr
        return steps_per_epoch * sum(cosine_lr(e, epochs, params.lr) for e in range(epochs))

    epochs = params.epochs
    raised = shots < params.released_shots and params.min_travel > 0 and steps_per_epoch > 0
    if raised and travel(epochs) < params.min_travel:
        epochs = max(epochs, math.ceil(2 * params.min_travel / (steps_per_epoch * params.lr)) - 1)
        while travel(epochs) < params.min_travel:  # guard the closed form against rounding
            epochs += 1
    return {"epochs": epochs, "released_epochs": params.epochs, "steps_per_epoch": steps_per_epoch,
            "steps": epochs * steps_per_epoch, "travel": travel(epochs),
            "schedule": "min_travel" if epochs > params.epochs else "released"}


@register_method
class MaskTuning(Method):
    name = "mask_tuning"
    version = 2  # 2: ResNets mask R-AMT's set (every convolution + attention pool), not conv1 + pool
    inputs = "images"
    precision = "fp32"  # R-AMT's trainer casts CLIP to float (rmt inherits it)
    produces_masks = True  # saves MASKS_ARTIFACT: feature methods can run on the masked encoder (rmt inherits it)
    Params = MaskTuningParams

    def fit(self, task, params) -> Fitted:
        import torch

        visual = task.backbone.model.visual
        names = mask_targets(visual, params.targets, params.first_block, params.last_block)
        state = MaskScores(visual, names, params.threshold, params.init, params.init_value,
                           params.init_sparsity, task.generator(self.name, "init"))
        count = len(task.fewshot.train)
        drop_last = count >= params.batch_size  # Dassl: drop the last partial batch only if one is full
        per_epoch = count // params.batch_size if drop_last else math.ceil(count / params.batch_size)
        plan = schedule(params, per_epoch, task.shots)
        optimizer = torch.optim.Adam(state.scores, lr=params.lr, weight_decay=0.0)
        context = self.begin(task, params, plan)
        losses, current, lr = [], -1, params.lr
        for epoch, images, labels, indices in task.train_epochs(plan["epochs"], params.batch_size,
                                                                 params.scale, drop_last=drop_last):
            if epoch != current:
                self._log_epoch(current, plan, losses, lr)
                lr = cosine_lr(epoch, plan["epochs"], params.lr)
                set_lr(optimizer, lr)
                current, losses = epoch, []
            images, labels = images.to(task.device, non_blocking=True), labels.to(task.device)
            optimizer.zero_grad(set_to_none=True)
            losses.append(self.step(task, params, state, context, images, labels, indices, epoch))
            context["scaler"].step(optimizer)  # skips the step if fp16 gradients overflowed
            context["scaler"].update()
        self._log_epoch(current, plan, losses, lr)
        return self.finish(task, params, state, plan, losses, context)

    def _log_epoch(self, epoch: int, plan: dict, losses: list, lr: float) -> None:
        """The finished epoch's mean loss and lr in the job log (one GPU sync per epoch, not per step)."""
        if losses:
            import torch

            log_epoch(self.name, epoch, plan["epochs"], float(torch.stack(losses).mean()), lr)

    def begin(self, task, params, plan) -> dict:
        """Per-run state a subclass needs (RMT: its teacher and dropout RNG)."""
        # fp16 autocast (GPU, precision "amp") would flush the smallest weight gradients, hence the score
        # gradients, to zero: the usual dynamic loss scaling. A no-op in fp32 and on CPU.
        import torch

        fp16 = task.precision == "amp" and task.device.type == "cuda"
        return {"text": task.text_features(), "scale": task.logit_scale,
                "scaler": torch.amp.GradScaler("cuda", enabled=fp16)}

    def forward(self, task, state, context, images):
        """Class logits (fp32) of the images under the current masks, differentiable in the scores."""
        with task.autocast():
            features = encode(task.backbone.model.visual, state.weights(), images)
        return class_logits(features, context["text"], context["scale"])

    def step(self, task, params, state, context, images, labels, indices, epoch):
        """Fill each score's .grad (times the loss scale) for this batch; return the loss, detached."""
        import torch.nn.functional as F

        logits = self.forward(task, state, context, images)
        loss = F.cross_entropy(logits, labels) + params.l2 * state.l2()
        context["scaler"].scale(loss).backward()
        return loss.detach()  # no .item(): a GPU sync per step

    def finish(self, task, params, state, plan, losses, context) -> Fitted:
        import torch

        masks = state.binary()
        meta = {"method": self.name, "dataset": task.dataset, "shots": task.shots, "seed": task.seed,
                "targets": resolve_targets(task.backbone.model.visual, params.targets),
                "backbone_sha256": task.backbone.digest}
        config = {**plan, "masked_tensors": state.names, "drop_last": len(task.fewshot.train) >= params.batch_size,
                  "last_epoch_loss": float(torch.stack(losses).mean()) if losses else None, **self.extra_config(params)}
        return Fitted(predict=masked_predictor(task, masks), for_classes=lambda target: masked_predictor(target, masks),
                      trainable_params=sum(s.numel() for s in state.scores),
                      state_bytes=packed_bytes(masks), metrics=mask_metrics(masks, task.backbone.model),
                      artifacts={MASKS_ARTIFACT: pack_masks(masks, params.threshold, meta)}, config=config)

    def extra_config(self, params) -> dict:
        return {}

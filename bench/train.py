"""Shared training pieces: optimisers, the CoOp-style schedule (a constant warm-up epoch inside the
epoch budget, then cosine annealing stepped once per epoch), the AMP policy, mini-batch order, and the
loop that trains a small head or prompt on cached augmented views (CoOp's image side, CLIP-Adapter),
and the per-epoch log line every training method writes to its job log.

torch is imported inside the functions: method files import this module for their Params, and the
CLI lists and validates those without paying for torch."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SGDParams:
    """CoOp's optimiser, schedule and augmentation, shared by CoOp and CLIP-Adapter (declared once)."""

    lr: float = field(default=0.002, metadata={"help": "SGD learning rate (cosine, 1 warm-up epoch at 1e-5)",
                                               "range": (0.0, None)})
    batch_size: int = field(default=32, metadata={"help": "mini-batch size", "range": (1, None)})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum", "range": (0.0, 1.0)})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay", "range": (0.0, None)})
    warmup_epochs: int = field(default=1, metadata={"help": "constant warm-up epochs inside the budget",
                                                    "range": (0, None)})
    warmup_lr: float = field(default=1e-5, metadata={"help": "learning rate of the warm-up epochs",
                                                     "range": (0.0, None)})
    aug_scale: tuple = field(default=(0.08, 1.0), metadata={"help": "RandomResizedCrop scale range",
                                                            "range": (0.0, 1.0)})


def log_epoch(method: str, epoch: int, epochs: int, loss: float, lr: float) -> None:
    """One INFO line per epoch (0-based `epoch`); workers send INFO to the job's log file."""
    log.info("%s epoch %d/%d loss %.4f lr %.3g", method, epoch + 1, epochs, loss, lr)


def sgd(params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def coop_lr(epoch: int, epochs: int, base_lr: float, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> float:
    """Learning rate of epoch `epoch` (0-based). Dassl's constant warm-up replaces the first epochs of
    the cosine budget; epoch e ≥ warm-up follows ½·lr·(1 + cos(π·(e − warm-up)/E))."""
    if epoch < warmup_epochs:
        return warmup_lr
    return 0.5 * base_lr * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))


def cosine_lr(epoch: int, epochs: int, base_lr: float) -> float:
    """Plain cosine annealing stepped per epoch (no warm-up)."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / epochs))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def coop_epochs(shots: int, dataset: str, imagenet_epochs: int = 50) -> int:
    """CoOp's budget: 1 shot 50 epochs, 2/4 shots 100, 8/16 shots 200; ImageNet a fixed count."""
    if dataset == "imagenet":
        return imagenet_epochs
    return 50 if shots <= 1 else 100 if shots <= 4 else 200


# ---------------------------------------------------------------- precision
def use_fp16(device, precision: str) -> bool:
    """Whether to autocast to fp16 and scale the loss: "amp" on CUDA. Not under "fp16": there the model
    and the trained values are fp16 themselves and, as in CoOp's fp16 runs, the loss is not scaled."""
    import torch

    return precision == "amp" and torch.device(device).type == "cuda"


def autocast(device, precision: str):
    import torch

    return torch.autocast("cuda", dtype=torch.float16) if use_fp16(device, precision) else contextlib.nullcontext()


def grad_scaler(device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling keeps small fp16 gradients (prompt vectors get ~1e-4) from flushing to zero."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=use_fp16(device, precision))


# ---------------------------------------------------------------- the loop
def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch as index batches. Like Dassl, the last partial batch is dropped only when the
    train set holds at least one full batch (a 1-shot set smaller than the batch still trains)."""
    import torch

    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if n >= batch_size and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def train_on_views(views: Sequence, loss_fn: Callable, params: list, *, epochs: int, lr: float,
                   batch_size: int, generator: torch.Generator, device, precision: str = "fp32",
                   momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int = 1,
                   warmup_lr: float = 1e-5, name: str = "train") -> list[float]:
    """SGD with CoOp's schedule; epoch e trains on `views[e]` = (features [N, D], labels [N]).
    `loss_fn(features, labels)` returns the mini-batch loss. Returns the mean loss of every epoch,
    each also logged (log_epoch) under the method's `name`."""
    import torch

    device = torch.device(device)
    opt = sgd(params, lr, momentum, weight_decay)
    scaler = grad_scaler(device, precision)
    losses = []
    for epoch in range(epochs):
        epoch_lr = coop_lr(epoch, epochs, lr, warmup_epochs, warmup_lr)
        set_lr(opt, epoch_lr)
        feats, labels = (t.to(device, non_blocking=True) for t in views[epoch])
        total, steps = torch.zeros((), device=device), 0
        for idx in epoch_batches(len(labels), batch_size, generator):
            idx = idx.to(device)
            with autocast(device, precision):
                loss = loss_fn(feats[idx], labels[idx])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total, steps = total + loss.detach().float(), steps + 1
        losses.append(float(total) / max(steps, 1))  # one sync per epoch, not per step
        log_epoch(name, epoch, epochs, losses[-1], epoch_lr)
    return losses


def peak_memory_bytes(device) -> int:
    """Peak allocated accelerator memory since the last reset (0 on CPU)."""
    import torch

    device = torch.device(device)
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0

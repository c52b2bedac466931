"""Shared training pieces: optimisers and the CoOp-style schedule (a constant warm-up epoch inside the
epoch budget, then cosine annealing stepped once per epoch)."""

from __future__ import annotations

import math

import torch


def sgd(params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
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

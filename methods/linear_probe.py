"""Linear probe (CLIP paper; CoOp's lpclip): L2-regularised multinomial logistic regression on the frozen,
unnormalised image embeddings of the few-shot images (test transform, no augmentation).

The objective is scikit-learn's LogisticRegression(multinomial, lbfgs): Σ_i CE_i + ‖W‖²/(2C) with an
unregularised bias, minimised here in torch (float64, L-BFGS with strong-Wolfe line search, so it runs
on the GPU) in the mean-scaled form scikit-learn hands to scipy (same minimiser, same gradient
tolerance). C is chosen on the few-shot val split as lpclip does: a coarse grid, then 8 rounds that
compare the two ends of a range in log10 space and halve it towards the better end; the last chosen
end is C*. The probe is then refitted on the few-shot train split with C*."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.method import Fitted, Method
from bench.registry import register_method

COARSE_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)


@dataclass(frozen=True)
class LinearProbeParams:
    search: bool = field(default=True, metadata={"help": "search C on the validation split (else use c)"})
    c: float = field(default=0.316, metadata={"help": "inverse L2 strength when search = false"})
    rounds: int = field(default=8, metadata={"help": "bisection rounds after the coarse grid"})
    max_iter: int = field(default=1000, metadata={"help": "L-BFGS iterations per fit (lpclip: 1000)"})
    tol: float = field(default=1e-4, metadata={"help": "stop when max |gradient| ≤ tol (scikit-learn's tol)"})
    history: int = field(default=100, metadata={"help": "L-BFGS memory; more than scipy's 10 reaches the "
                                                        "same minimiser in far fewer iterations"})
    when_no_val: str = field(default="test", metadata={
        "help": "datasets without a val draw (ImageNet): 'test' searches C on the test split as "
                "Dassl does (ImageNet val = test; recorded as oracle_test) or 'fixed' uses c"})


def fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int = 1000,
               tol: float = 1e-4, history: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [K, D], b [K]) minimising mean CE + ‖W‖²/(2·C·N) from zero, as scikit-learn's lbfgs does."""
    x = x.double()
    n, dim = x.shape
    params = torch.zeros(num_classes * (dim + 1), dtype=torch.float64, device=x.device, requires_grad=True)
    strength = 1.0 / (c * n)
    opt = torch.optim.LBFGS([params], lr=1, max_iter=max_iter, max_eval=max_iter * 5 // 4, history_size=history,
                            tolerance_grad=tol, tolerance_change=64 * torch.finfo(torch.float64).eps,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        w, b = params[: num_classes * dim].view(num_classes, dim), params[num_classes * dim:]
        loss = F.cross_entropy(x @ w.t() + b, y) + 0.5 * strength * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = params.detach()[: num_classes * dim].view(num_classes, dim), params.detach()[num_classes * dim:]
    return w.clone(), b.clone()


def accuracy(w, b, x, y) -> float:
    return float(((x.double() @ w.t() + b).argmax(-1) == y).double().mean()) if len(y) else 0.0


def search_c(score, rounds: int = 8) -> tuple[float, list]:
    """lpclip's search. `score(C)` → validation accuracy. Ties keep the earlier grid entry (larger C)
    and, in the bisection, the left (smaller) end, as lpclip's strict comparison does."""
    cache: dict[float, float] = {}

    def at(log_c: float) -> float:
        key = round(log_c, 12)
        if key not in cache:
            cache[key] = score(10.0 ** log_c)
        return cache[key]

    accs = [at(math.log10(c)) for c in COARSE_GRID]
    peak = math.log10(COARSE_GRID[accs.index(max(accs))])
    left, right, best = peak - 1, peak + 1, peak
    for _ in range(rounds):
        if at(left) < at(right):
            best, left = right, (left + right) / 2
        else:
            best, right = left, (left + right) / 2
    trace = [(10.0 ** k, v) for k, v in cache.items()]
    return 10.0 ** best, trace


@register_method
class LinearProbe(Method):
    name = "linear_probe"
    version = 1
    inputs = "features"
    Params = LinearProbeParams

    def fit(self, task, params: LinearProbeParams) -> Fitted:
        if params.when_no_val not in ("test", "fixed"):
            raise BenchError(f"linear_probe: when_no_val must be 'test' or 'fixed', got '{params.when_no_val}'")
        dev, k = task.device, task.num_classes
        x, y = (t.to(dev) for t in task.features.fewshot_train(task.fewshot, task.seed))
        val, validation = self._validation(task, params)
        c, trace = params.c, []
        if val is not None:
            xv, yv = (t.to(dev) for t in val)

            def score(c_value):
                return accuracy(*fit_logreg(x, y, k, c_value, params.max_iter, params.tol, params.history), xv, yv)

            c, trace = search_c(score, params.rounds)
        w, b = fit_logreg(x, y, k, c, params.max_iter, params.tol, params.history)

        def predict(image_features):
            return (image_features.to(w.device).double() @ w.t() + b).float()

        count = w.numel() + b.numel()
        return Fitted(predict=predict, trainable_params=count, state_bytes=count * 4, validation=validation,
                      metrics={"c": c, "train_accuracy": 100.0 * accuracy(w, b, x, y)},
                      artifacts={"probe.safetensors": _save(w, b)},
                      config={"c": c, "c_search": [[cv, 100.0 * a] for cv, a in sorted(trace)]})

    @staticmethod
    def _validation(task, params):
        if not params.search:
            return None, "none"
        if len(task.fewshot.val):
            return task.features.fewshot_val(task.fewshot), "fewshot_val"
        if params.when_no_val == "test":
            return task.features.test(), "oracle_test"
        return None, "none"


def _save(w: torch.Tensor, b: torch.Tensor) -> bytes:
    from safetensors.torch import save

    return save({"weight": w.float().cpu().contiguous(), "bias": b.float().cpu().contiguous()})

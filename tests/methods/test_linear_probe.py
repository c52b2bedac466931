"""Linear probe: scikit-learn's objective (the oracle), lpclip's C search, and learning on the smoke suite."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bench.runner import evaluate
from tests.methods.conftest import LEARN_DATASET, zero_shot_top1
from methods.linear_probe import COARSE_GRID, LinearProbe, LinearProbeParams, accuracy, fit_logreg, search_c


def blobs(n_per_class, classes=5, dim=12, seed=0, spread=2.5):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 1.2
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g) + 3.0  # offset: the bias matters
    return x, y


def sklearn_fit(x, y, c, tol=1e-4, max_iter=1000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=max_iter, tol=tol, solver="lbfgs").fit(
            x.double().numpy(), y.numpy())


def objective(x, y, w, b, c):
    """scikit-learn's objective divided by N: mean CE + ‖W‖² / (2CN)."""
    w, b = torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(F.cross_entropy(x.double() @ w.t() + b, y) + (w * w).sum() / (2 * c * len(y)))


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0, 1e4])
def test_reaches_sklearns_objective_and_accuracy(c):
    # (C ≥ 1e6 is left out: nearly unregularised, the objective is so flat that any two solvers
    # stopping at gradient 1e-4 sit at different points; the end-to-end test below covers the search)
    x, y = blobs(16)
    xt, yt = blobs(40, seed=1)
    w, b = fit_logreg(x, y, 5, c)
    clf = sklearn_fit(x, y, c)
    assert objective(x, y, w, b, c) <= objective(x, y, clf.coef_, clf.intercept_, c) + 1e-4  # both stop at gradient 1e-4
    assert abs(100 * accuracy(w, b, xt, yt) - 100 * clf.score(xt.double().numpy(), yt.numpy())) <= 0.5


def test_same_minimiser_as_sklearn_when_both_converge_tightly():
    x, y = blobs(16)
    w, b = fit_logreg(x, y, 5, 1.0, max_iter=5000, tol=1e-9)
    clf = sklearn_fit(x, y, 1.0, tol=1e-9, max_iter=5000)
    np.testing.assert_allclose(w.numpy(), clf.coef_, atol=1e-5)
    # the bias is only defined up to a shift, but both start at 0 and its gradient sums to 0: same shift
    np.testing.assert_allclose(b.numpy(), clf.intercept_, atol=1e-4)


def test_bias_is_not_regularised():
    # tiny C shrinks W to ~0 but the bias still fits the (unbalanced) class prior, as in scikit-learn
    x, y = blobs(10, classes=3)
    y[:5] = 0  # make class 0 the most frequent
    w, b = fit_logreg(x, y, 3, 1e-8)
    assert w.abs().max() < 1e-4
    prior = torch.bincount(y, minlength=3).double() / len(y)
    assert torch.allclose(torch.softmax(b, 0), prior, atol=1e-4)


def test_search_converges_to_the_peak_in_log_space():
    calls = []

    def score(c):
        calls.append(c)
        return -abs(math.log10(c) - 2.3)

    best, trace = search_c(score)
    assert abs(math.log10(best) - 2.3) < 2 / 2 ** 8 + 1e-9  # the range halves 8 times from width 2
    assert len(calls) == len(set(calls)) == len(trace)  # every C is fitted once (memoised)
    assert calls[:7] == list(COARSE_GRID)


def test_search_tie_rules_follow_lpclip():
    best, _ = search_c(lambda c: 0.5)  # flat: coarse argmax keeps 1e6, then the left end wins each round
    assert math.isclose(best, 1e5)


def lpclip_reference(x, y, xv, yv):
    """lpclip's search written out with scikit-learn as the fitter (independent of search_c)."""
    def acc(c):
        return sklearn_fit(x, y, c).score(xv.numpy(), yv.numpy())

    accs = [acc(c) for c in COARSE_GRID]
    peak = COARSE_GRID[int(np.argmax(accs))]
    left, right = 0.1 * peak, 10 * peak
    for _ in range(8):
        if acc(left) < acc(right):
            final, left = right, 10 ** (0.5 * (np.log10(right) + np.log10(left)))
        else:
            final, right = left, 10 ** (0.5 * (np.log10(right) + np.log10(left)))
    return sklearn_fit(x, y, final)


def test_method_matches_sklearn_lpclip_on_smoke_features(make_task):
    # 16 shots: the val split is big enough for the search to find an interior optimum. (With a few
    # val images many C tie, and ties at C ≥ 1e4 compare fits in the flat, nearly unregularised regime
    # where any two solvers stopping at gradient 1e-4 differ: there the chosen C is solver-dependent.)
    task = make_task(16, dataset=LEARN_DATASET)
    fitted = LinearProbe().fit(task, LinearProbeParams())
    assert fitted.validation == "fewshot_val"
    x, y = task.features.fewshot_train(task.fewshot, task.seed)
    xv, yv = task.features.fewshot_val(task.fewshot)
    xt, yt = task.features.test()
    clf = lpclip_reference(x.double(), y, xv.double(), yv)
    theirs = 100 * clf.score(xt.double().numpy(), yt.numpy())
    assert abs(evaluate(fitted, "features", task) - theirs) <= 0.5


@pytest.mark.parametrize("c", [1e-2, 1e-1, 1.0])
def test_same_accuracy_as_sklearn_at_fixed_c_on_smoke_features(make_task, c):
    # (not large C: few points in 64-d are separable, the optimum is flat and scikit-learn stops
    # further from it than we do at the same tolerance)
    task = make_task(16, dataset=LEARN_DATASET)
    fitted = LinearProbe().fit(task, LinearProbeParams(search=False, c=c))
    x, y = task.features.fewshot_train(task.fewshot, task.seed)
    xt, yt = task.features.test()
    theirs = 100 * sklearn_fit(x, y, c).score(xt.double().numpy(), yt.numpy())
    assert abs(evaluate(fitted, "features", task) - theirs) <= 0.5


def test_learns_with_more_shots(make_task):
    one, many = make_task(1, dataset=LEARN_DATASET), make_task(16, dataset=LEARN_DATASET)
    acc1 = evaluate(LinearProbe().fit(one, LinearProbeParams()), "features", one)
    acc16 = evaluate(LinearProbe().fit(many, LinearProbeParams()), "features", many)
    assert acc16 >= acc1 + 10
    assert acc16 > zero_shot_top1(many) + 10


def test_no_val_split_uses_test_as_dassl_and_says_so(make_task):
    import dataclasses

    task = make_task(2)
    task = dataclasses.replace(task, fewshot=dataclasses.replace(task.fewshot, val=[]))
    assert LinearProbe().fit(task, LinearProbeParams(rounds=1)).validation == "oracle_test"
    fixed = LinearProbe().fit(task, LinearProbeParams(when_no_val="fixed", c=1.0))
    assert fixed.validation == "none" and fixed.config["c"] == 1.0

"""Linear probe: scikit-learn's objective (the oracle), lpclip's C search, learning on the smoke suite, and
where C is chosen when a dataset has no val split."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bench.data import holdout_val, sample_fewshot
from bench.errors import BenchError
from bench.method import build_params
from bench.runner import evaluate
from tests.methods.conftest import LEARN_DATASET, zero_shot_top1
from methods.linear_probe import (COARSE_GRID, LinearProbe, LinearProbeParams, accuracy, fit_logreg, fit_sklearn,
                                  search_c)


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


@pytest.mark.parametrize("c, slack", [(0.01, 1e-4), (1.0, 1e-4), (100.0, 1e-4), (1e4, 1e-3)])
def test_torch_solver_reaches_sklearns_objective_and_accuracy(c, slack):
    # Both stop at gradient 1e-4. At C = 1e4 the objective is so flat that torch's L-BFGS stops about
    # 2e-4 above scikit-learn's iterate (0.235316 vs 0.235160 with scikit-learn 1.8-1.9): one reason
    # the faithful default is scikit-learn itself. (C ≥ 1e6 is left out: flatter still.)
    x, y = blobs(16)
    xt, yt = blobs(40, seed=1)
    w, b = fit_logreg(x, y, 5, c)
    clf = sklearn_fit(x, y, c)
    assert objective(x, y, w, b, c) <= objective(x, y, clf.coef_, clf.intercept_, c) + slack
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
    """lpclip's search written out with scikit-learn as the fitter (independent of search_c): (clf, C*)."""
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
    return sklearn_fit(x, y, final), final


@pytest.mark.parametrize("shots", [2, 16])
def test_default_solver_is_lpclip_exactly_on_smoke_features(make_task, shots):
    # 2 shots: the val draw is tiny and many C tie; only the same fits break ties the same way.
    task = make_task(shots, dataset=LEARN_DATASET)
    fitted = LinearProbe().fit(task, LinearProbeParams())
    assert fitted.validation == "fewshot_val" and fitted.config["val_source"] == "fewshot_val"
    assert fitted.config["val_items"] == len(task.fewshot.val) and fitted.config["solver"] == "sklearn"
    x, y = task.features.fewshot_train(task.fewshot, task.seed)
    xv, yv = task.features.fewshot_val(task.fewshot)
    xt, yt = task.features.test()
    clf, c_star = lpclip_reference(x.double(), y, xv.double(), yv)
    assert math.isclose(fitted.config["c"], c_star, rel_tol=1e-9)
    theirs = 100 * clf.score(xt.double().numpy(), yt.numpy())
    assert abs(evaluate(fitted, "features", task) - theirs) <= 1e-9


def test_torch_solver_is_close_to_lpclip_and_recorded(make_task):
    # 16 shots: the val split is big enough for the search to find an interior optimum, where the two
    # solvers agree; at the grid's extremes they may not (see the module docstring).
    task = make_task(16, dataset=LEARN_DATASET)
    fitted = LinearProbe().fit(task, LinearProbeParams(solver="torch"))
    assert fitted.config["solver"] == "torch"
    x, y = task.features.fewshot_train(task.fewshot, task.seed)
    xv, yv = task.features.fewshot_val(task.fewshot)
    xt, yt = task.features.test()
    clf, _ = lpclip_reference(x.double(), y, xv.double(), yv)
    theirs = 100 * clf.score(xt.double().numpy(), yt.numpy())
    assert abs(evaluate(fitted, "features", task) - theirs) <= 0.5


def test_unknown_solver_is_a_clear_error():
    # declared once with the parameter (choices), checked when the tasks file or --set is read
    with pytest.raises(BenchError, match="solver = 'scipy' is not allowed \\(choose from: sklearn, torch\\)"):
        build_params(LinearProbe, {"solver": "scipy"})


@pytest.mark.parametrize("c", [1e-2, 1e-1, 1.0])
def test_same_accuracy_as_sklearn_at_fixed_c_on_smoke_features(make_task, c):
    task = make_task(16, dataset=LEARN_DATASET)
    for solver, slack in (("sklearn", 1e-9), ("torch", 0.5)):
        fitted = LinearProbe().fit(task, LinearProbeParams(search=False, c=c, solver=solver))
        x, y = task.features.fewshot_train(task.fewshot, task.seed)
        xt, yt = task.features.test()
        theirs = 100 * sklearn_fit(x, y, c).score(xt.double().numpy(), yt.numpy())
        assert abs(evaluate(fitted, "features", task) - theirs) <= slack, solver


def test_learns_with_more_shots(make_task):
    one, many = make_task(1, dataset=LEARN_DATASET), make_task(16, dataset=LEARN_DATASET)
    acc1 = evaluate(LinearProbe().fit(one, LinearProbeParams()), "features", one)
    acc16 = evaluate(LinearProbe().fit(many, LinearProbeParams()), "features", many)
    assert acc16 >= acc1 + 10
    assert acc16 > zero_shot_top1(many) + 10


def without_val(task):
    """The task as on ImageNet: no val split, hence no few-shot val draw."""
    return dataclasses.replace(task, fewshot=dataclasses.replace(task.fewshot, val=[]))


def spy_encode(task, monkeypatch) -> list:
    """Record (split name, items) of every feature request; test() and fewshot_*() go through encode."""
    seen, encode = [], task.features.encode

    def spy(split, items, *args, **kwargs):
        seen.append((split, list(items)))
        return encode(split, items, *args, **kwargs)

    monkeypatch.setattr(task.features, "encode", spy)
    return seen


def test_no_val_split_searches_c_on_a_train_holdout_never_on_test(make_task, monkeypatch):
    task = without_val(make_task(2, seed=2))  # not seed 1: the draw must follow the task's seed
    seen = spy_encode(task, monkeypatch)
    params = LinearProbeParams(rounds=1)
    assert params.when_no_val == "train_holdout"  # the default
    fitted = LinearProbe().fit(task, params)
    held = holdout_val(task.splits, task.fewshot, task.shots, task.seed)
    assert fitted.validation == "fewshot_val"
    assert fitted.config["val_source"] == "train_holdout"
    assert fitted.config["val_items"] == len(held) == 2 * task.num_classes
    assert [split for split, _ in seen] == ["fewshot_train", "holdout_val"]
    assert seen[1][1] == held and not set(held) & set(task.fewshot.train)
    test_paths = {it.path for it in task.splits.test}
    assert not any(it.path in test_paths for _, items in seen for it in items)
    # C is the one the search picks on the holdout's features
    x, y = task.features.fewshot_train(task.fewshot, task.seed)
    xv, yv = task.features.encode("holdout_val", held)
    best, _ = search_c(lambda c: accuracy(*fit_sklearn(x, y, c), xv, yv), rounds=1)  # the default solver
    assert fitted.config["c"] == best


def test_test_split_search_only_when_asked_and_recorded_as_oracle(make_task, monkeypatch):
    task = without_val(make_task(2))
    seen = spy_encode(task, monkeypatch)
    fitted = LinearProbe().fit(task, LinearProbeParams(rounds=1, when_no_val="test"))
    assert fitted.validation == "oracle_test"
    assert fitted.config["val_source"] == "test" and fitted.config["val_items"] == len(task.splits.test)
    assert "test" in [split for split, _ in seen] and "holdout_val" not in [split for split, _ in seen]


def test_fixed_c_and_unknown_choice(make_task, monkeypatch):
    task = without_val(make_task(2))
    seen = spy_encode(task, monkeypatch)
    fixed = LinearProbe().fit(task, LinearProbeParams(when_no_val="fixed", c=1.0))
    assert fixed.validation == "none" and fixed.config["c"] == 1.0
    assert fixed.config["val_source"] == "none" and fixed.config["c_search"] == []
    assert [split for split, _ in seen] == ["fewshot_train"]
    with pytest.raises(BenchError, match="when_no_val = 'val' is not allowed \\(choose from: fixed, test, train_holdout\\)"):
        build_params(LinearProbe, {"when_no_val": "val"})


def test_holdout_features_are_cached_per_draw(make_task, tmp_path):
    # Same split name and size for every seed: only the items digest in the key tells the draws apart.
    task = without_val(make_task(2, features=(tmp_path, True)))
    fresh = without_val(make_task(2, features=(tmp_path / "off", False)))
    draws = [holdout_val(task.splits, sample_fewshot(task.splits, 2, seed), 2, seed) for seed in (1, 2)]
    assert draws[0] != draws[1] and len(draws[0]) == len(draws[1])
    for items in draws + draws:  # the second pass reads what the first one wrote
        got, want = task.features.encode("holdout_val", items), fresh.features.encode("holdout_val", items)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert len(list(tmp_path.rglob("holdout_val-*.safetensors"))) == 2

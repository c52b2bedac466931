"""The protocols beyond few-shot: one fitted method, evaluated on more than its own test split.

- base_to_new (CoCoOp): the job's task holds the base classes only (the first ceil(n/2) sorted labels;
  the K-shot draw is made over all classes and then restricted, bench.data.base_to_new). Its own test
  accuracy is Base; the same fitted method is then evaluated on the new classes' test images with the
  new class names (New). H = 2·B·N/(B+N).
- domain_generalization: fit on a source (ImageNet), evaluate on its shifted variants (Job.targets).
- cross_dataset: fit on a source, evaluate on other datasets with their own class names (Job.targets).

How a fitted method meets another class list (one rule for all three): through its `for_classes`
(the method builds a predictor for the target's class names: prompts, text classifiers); else, when
every target class is one of the training classes (ImageNet-A's 200 of ImageNet's 1000, matched by
class id), by taking those columns of its logits; else it is not applicable and the record says why.
"""

from __future__ import annotations

import dataclasses
import logging

from bench.method import Fitted

log = logging.getLogger(__name__)

SOURCE_SUBSET = {"base_to_new": "base"}  # the classes a job trains on, by protocol (default: all)


def source_subset(protocol: str) -> str:
    return SOURCE_SUBSET.get(protocol, "all")


def target_list(job) -> list[tuple[str, str, str]]:
    """(name in the record, dataset, class subset) of every extra evaluation of a job."""
    if job.protocol == "base_to_new":
        return [("new", job.dataset, "new")]
    return [(dataset, dataset, "all") for dataset in job.targets]


def evaluate_targets(fitted: Fitted, inputs: str, task, workspace, job) -> dict:
    """record["targets"]: name → {"top1", "via", test_items, num_classes, split_digest} or {"na": why}."""
    from bench.runner import evaluate

    out = {}
    for name, dataset, subset in target_list(job):
        target = workspace.target_task(task, dataset, subset)
        predict, via = target_predictor(fitted, task, target)
        if predict is None:
            out[name] = {"na": via}
            continue
        out[name] = {"top1": evaluate(Fitted(predict=predict), inputs, target), "via": via, "test_items": len(target.splits.test),
                     "num_classes": target.num_classes, "split_digest": target.splits.split_digest}
    return out


def target_predictor(fitted: Fitted, source, target):
    """(predict over the target's classes, how) or (None, why not)."""
    if fitted.for_classes is not None:
        return fitted.for_classes(target), "class names"
    index = {cid: i for i, cid in enumerate(source.splits.ids)}
    if all(cid in index for cid in target.splits.ids):
        columns = [index[cid] for cid in target.splits.ids]

        def predict(inputs):
            return fitted.predict(inputs)[:, columns]

        return predict, "trained classes"
    return None, fitted.no_transfer or "the predictor knows only its training classes"


def protocol_metrics(job, top1: float, targets: dict) -> dict:
    """Summary metrics of a protocol for the record (the report recomputes them from the parts)."""
    if job.protocol == "base_to_new":
        new = targets.get("new", {}).get("top1")
        return {} if new is None else {"top1_new": new, "harmonic": harmonic(top1, new)}
    scores = [t["top1"] for t in targets.values() if "top1" in t]
    return {"top1_target_avg": sum(scores) / len(scores)} if scores and len(scores) == len(targets) else {}


def harmonic(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def retarget(task, card, splits, store):
    """`task` (same backbone, precision, seed) on another dataset or class subset, with no few-shot draw."""
    from bench.runner import _no_draw

    return dataclasses.replace(task, card=card, splits=splits, fewshot=_no_draw(), features=store,
                               _text_cache={}, _decoded_train={})

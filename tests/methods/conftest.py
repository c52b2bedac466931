"""Shared smoke-suite fixtures for the method tests: one warm Workspace per session (loading the tiny
backbone and the generated datasets is the slow part), and tasks whose feature store is private."""

import dataclasses

import pytest

from bench.features import FeatureStore
from bench.jobs import expand
from bench.runner import Workspace
from bench.scheduler import preflight


@pytest.fixture(scope="session")
def smoke_ws(smoke_config, tmp_path_factory):
    suite = dataclasses.replace(smoke_config.suite("smoke"), datasets=TEST_DATASETS,
                                results_dir=tmp_path_factory.mktemp("results"))
    preflight(suite, expand(suite, ["zeroshot"], datasets=list(suite.datasets), shots=[1], seeds=[1]))
    return Workspace(suite, device="cpu")


@pytest.fixture(scope="session")
def make_task(smoke_ws):
    """make_task(shots, seed=1, dataset=first smoke dataset, features=None) → a Task. `features` =
    (root, enabled) gives the task its own FeatureStore; default: the workspace's shared store."""

    def make(shots, seed=1, dataset=None, features=None):
        dataset = dataset or smoke_ws.suite.datasets[0]
        # any few-shot method's job gives the (dataset, shots, seed) draw; zeroshot's would give none
        job = expand(smoke_ws.suite, ["coop"], datasets=[dataset], shots=[shots], seeds=[seed])[0]
        task = smoke_ws.task(job)
        if features is not None:
            root, enabled = features
            store = FeatureStore(task.backbone, task.splits, "cpu", task.precision, root=root, enabled=enabled)
            task = dataclasses.replace(task, features=store)
        return task

    return make


# The method tests run the smoke suite on smoke_mini, a 10-class cut of smoke_textures: the released
# schedules scale with the class count, and on the demo's 30+ classes they would take minutes per fit.
# It has headroom for few-shot learning (a domain shift for the smoke backbone: patterned fills, swapped
# colour channels): learning tests run there with the protocol's defaults.
TEST_DATASETS = ("smoke_mini",)
LEARN_DATASET = "smoke_mini"


def zero_shot_top1(task) -> float:
    from bench.runner import evaluate
    from methods.zeroshot import ZeroShot

    return evaluate(ZeroShot().fit(task, ZeroShot.Params()), "features", task)


@pytest.fixture(autouse=True)
def one_thread():
    """Smoke-sized tensors: one thread avoids OpenMP hand-offs that crawl on a shared, busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""One warm smoke Workspace for every mask test, and memoised runs (a fit is the slow part)."""

import dataclasses

import pytest

DATASET = "smoke_mini"  # 10 classes of smoke_textures (a domain shift for the smoke backbone: room to learn)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models step in well under a millisecond per op: with 2 intra-op threads on this shared
    2-core machine, thread hand-offs cost 10× the work (measured: 114 s vs 10 s for a 1-shot fit)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def mask_suite(smoke_config, tmp_path_factory):
    return dataclasses.replace(smoke_config.suite("smoke"), datasets=(DATASET,),
                               results_dir=tmp_path_factory.mktemp("mask-results"))


@pytest.fixture(scope="session")
def mask_ws(mask_suite):
    from bench.jobs import expand
    from bench.runner import Workspace
    from bench.scheduler import preflight

    preflight(mask_suite, expand(mask_suite, ["zeroshot"], datasets=[DATASET], shots=[1], seeds=[1]))
    return Workspace(mask_suite, device="cpu")


def make_job(suite, method: str, shots: int, seed: int = 1, **params):
    """The suite's job for (method, smoke dataset, shots, seed), with parameter overrides."""
    from bench.jobs import expand

    job = expand(suite, [method], datasets=[DATASET], shots=[shots], seeds=[seed])[0]
    return dataclasses.replace(job, params={**job.params, **params}) if params else job


@pytest.fixture(scope="session")
def run(mask_suite, mask_ws):
    """run(method, shots, **params) → the job's record (each distinct job runs once per session)."""
    from bench.runner import run_job

    done = {}

    def go(method, shots, **params):
        job = make_job(mask_suite, method, shots, **params)
        if job.id not in done:
            done[job.id] = run_job(job, mask_ws)
            assert done[job.id]["status"] == "ok", done[job.id].get("traceback")
        return done[job.id]

    return go

"""Shared fixtures. Tests never touch the network and keep their caches inside the repo's .bench/."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A folder of CoOp's published few-shot draws and split files (splits/, indices/<dataset>/); the tests
# that compare against them skip without it. Never inside the repository.
CONFORMANCE = Path(os.environ.get("BENCH_CONFORMANCE") or REPO.parent / "shared" / "conformance")

# Set before anything imports huggingface_hub/open_clip: a test must never try to download.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("BENCH_CACHE", str(REPO / ".bench" / "test-cache"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def smoke_config():
    from bench.cli import load_config

    return load_config(REPO / "tasks.toml")


@pytest.fixture
def smoke_suite(smoke_config, tmp_path):
    """The smoke suite writing its records into a fresh results dir."""
    import dataclasses

    return dataclasses.replace(smoke_config.suite("smoke"), results_dir=tmp_path / "results")

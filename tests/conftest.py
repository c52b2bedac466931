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


# The tests' smoke grid: two datasets and two seeds, so that means, stds, n markers and dataset
# averages are exercised. The demo's [suites.smoke] is smaller (it is sized to run in minutes).
TEST_GRID = {"datasets": ("smoke_shapes", "smoke_textures"), "shots": (1, 4, 16), "seeds": (1, 2)}


def copy_tasks_with_test_grid(dst: Path) -> Path:
    """The repository's tasks.toml with [suites.smoke] set to TEST_GRID, written to `dst`."""
    import re

    text = (REPO / "tasks.toml").read_text()
    start = text.index("[suites.smoke]")
    end = text.find("\n[", start + 1)
    end = end if end > 0 else len(text)
    block = text[start:end]
    for key, values in TEST_GRID.items():
        listed = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values)
        block = re.sub(rf"(?m)^{key} = \[[^\]]*\]", f"{key} = [{listed}]", block, count=1)
    dst.write_text(text[:start] + block + text[end:])
    return dst


@pytest.fixture
def smoke_suite(smoke_config, tmp_path):
    """The smoke suite (with the tests' grid) writing its records into a fresh results dir."""
    import dataclasses

    return dataclasses.replace(smoke_config.suite("smoke"), results_dir=tmp_path / "results", **TEST_GRID)

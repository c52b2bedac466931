"""Fixtures for the scheduler tests (helpers live in helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.scheduler.*` must import here and in worker subprocesses
    sys.path.insert(0, str(REPO))

from tests.scheduler.drive import fake_suite  # noqa: E402


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    """Nothing here may touch a GPU; an empty CUDA_VISIBLE_DEVICES also spares the driver the torch
    import that GPU discovery would cost."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def suite(tmp_path):
    return fake_suite(tmp_path / "results")

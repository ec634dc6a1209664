"""Shared fixtures. Reference data lives in ../shared and is never committed.

Tests that need it skip with a clear reason when it is absent, except under
CI=true, where its absence is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_runtime.reference_data import shared_dir

ROOT = Path(__file__).resolve().parents[1]


def _require_shared() -> Path:
    d = shared_dir()
    if d is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("../shared/models is missing, and CI=true: the reference data must be present in CI")
        pytest.skip("../shared/models is not present beside this checkout (a user's own clone)")
    return d


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder (fails under CI=true when missing, else skips)."""
    return _require_shared()


@pytest.fixture(scope="session")
def mlperf_models(shared: Path) -> Path:
    """``shared/models/mlperf_tiny/models``."""
    return shared / "models" / "mlperf_tiny" / "models"


@pytest.fixture(scope="session")
def kws01(shared: Path):
    """All 1000 kws01 inputs (int8, (1000,1,49,10,1)), labels and file names."""
    from edge_runtime.reference_data import load_kws01

    return load_kws01()

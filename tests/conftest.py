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


# ---------------------------------------------------------------------------- op parity
# Tests marked ``@pytest.mark.parity(OP, TYPE)`` (or ``parity(OP, TYPE, "close")`` for float checks
# within a tolerance) compare one op and type with tflite-micro. Their outcomes become the op parity
# table: with EDGE_PARITY_JSON=PATH set, the session writes {op: {type: {"passed": n, "failed": n,
# "kind": "exact"|"close"}}} there (``python -m benchmarks.op_parity`` does this and renders the table).
_PARITY: dict = {}


def pytest_runtest_logreport(report):  # type: ignore[no-untyped-def]
    """Count each parity-marked test's outcome under its (op, type)."""
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    for mark in getattr(report, "_parity_marks", ()):
        op, dtype = mark[0], mark[1]
        kind = mark[2] if len(mark) > 2 else "exact"
        slot = _PARITY.setdefault(op, {}).setdefault(dtype, {"passed": 0, "failed": 0, "skipped": 0, "kind": kind})
        slot[report.outcome] = slot.get(report.outcome, 0) + 1
        if kind == "close":  # one tolerance check makes the (op, type) "close", whatever order the tests ran in
            slot["kind"] = "close"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Attach the test's parity marks to its report."""
    outcome = yield
    rep = outcome.get_result()
    rep._parity_marks = [tuple(m.args) for m in item.iter_markers("parity")]


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    """Write the parity outcomes when EDGE_PARITY_JSON names a file."""
    out = os.environ.get("EDGE_PARITY_JSON")
    if out and _PARITY:
        import json

        Path(out).write_text(json.dumps(_PARITY, indent=1, sort_keys=True))


@pytest.fixture(autouse=True, scope="session")
def _native_guard_cache(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Keep the native guard's verified-model stamps (backends/native_guard.py) inside this test session."""
    old = os.environ.get("EDGE_RUNTIME_CACHE_DIR")
    os.environ["EDGE_RUNTIME_CACHE_DIR"] = str(tmp_path_factory.mktemp("edge-runtime-cache"))
    yield
    if old is None:
        os.environ.pop("EDGE_RUNTIME_CACHE_DIR", None)
    else:
        os.environ["EDGE_RUNTIME_CACHE_DIR"] = old

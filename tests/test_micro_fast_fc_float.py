"""The compiled float32 FULLY_CONNECTED (``fast/fully_connected_float.py``) sums in tflite-micro's order.

Each output is ``0 + x0*w0 + x1*w1 + ...`` in float32, one rounding per product and per sum, no fused
multiply-add: the compiled loop must give the same bits as tflite-micro (``np.array_equal``) on every
shape the numpy kernel handles, in place and not, including overflow to +-FLT_MAX and NaN; and the op
must really take the compiled path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from test_real_models_round4_tflite import _float_fc

from edge_runtime.backends.micro import fast, open_model

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
if not fast._numba_importable():
    pytest.skip("numba is not installed (pip install 'edge-runtime[fast]')", allow_module_level=True)


@pytest.fixture(autouse=True)
def _compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "1")


@pytest.mark.parametrize("in_shape,units,bias,act", [
    ((33, 512), 57, True, 0),
    ((1, 1000), 10, False, 1),
    ((2, 5, 64), 24, True, 3),
    ((4, 7), 300, True, 0),      # more units than depth: the output outgrows the input
    ((1, 3264), 64, True, 0),
    ((5, 3), 2, True, 2),        # RELU_N1_TO_1
    ((7, 129), 131, False, 0),
])
def test_compiled_float_fc_equals_tflite_micro(tmp_path: Path, in_shape: tuple[int, ...], units: int, bias: bool,
                                               act: int) -> None:
    path = _float_fc(tmp_path / "fc.tflite", in_shape, units, bias, act, seed=units + 1)
    m = open_model(str(path))
    assert [p["path"] for p in m.info["kernel_paths"] if p["name"] == "FULLY_CONNECTED"] == ["numba"]
    rng = np.random.default_rng(2)
    sets = [[(rng.standard_normal(in_shape) * s).astype(np.float32)] for s in (1.0, 3.0, 1e3)]
    tb.assert_exact(path, sets)


def test_compiled_float_fc_overflow_and_nan(tmp_path: Path) -> None:
    path = _float_fc(tmp_path / "fc.tflite", (3, 16), 8, True, 0, seed=3)
    x = np.full((3, 16), 3e38, np.float32)
    x[1] *= -1
    x[2, 5] = np.nan
    want, got = tb.run_tflm(path, [[x]])[0][0], tb.run_micro(path, [[x]])[0][0]
    assert np.isnan(want[2]).all() and np.abs(want[:2]).max() == np.finfo(np.float32).max
    assert np.array_equal(got, want, equal_nan=True)

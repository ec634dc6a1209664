"""float32 UNIDIRECTIONAL_SEQUENCE_LSTM on micro is bit-exact with tflite-micro (``np.array_equal``, state carried).

tflite-micro's float ``LstmStep`` (``lstm_eval.h``/``lstm_eval.cc``): per gate ``FC(x) + bias`` and
``FC(h) + 0``, each a float32 sum in depth order clamped to +-FLT_MAX, added; ``reference_ops::Logistic`` on
the forget/input/output gates and ``std::tanh`` on the cell gate (glibc's ``expf`` and ``tanhf``); the cell
``clamp(f c) + clamp(i g)`` then the cell clip; the hidden state ``clamp(tanh(c) o)``. micro's kernel before
this change took exp and tanh from float64 rounded once: nearly every output differed in the last bits.
Random batch, time steps, input and state sizes, time-major and batch-major layouts, cell clipping, several
invocations without reset (the standard LSTM only: tflite-micro has no peephole, projection or CIFG).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tflite_builder as tb
from test_micro_ops_recurrent import _lstm_model

pytest.importorskip("tflite_micro")


def _config(seed: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    wide = rng.random() < 0.5
    return dict(b=int(rng.integers(1, 5)), t=int(rng.integers(1, 7)), i=int(rng.integers(1, 40 if wide else 9)),
                s=int(rng.integers(1, 40 if wide else 9)), time_major=bool(rng.integers(2)),
                cell_clip=float(rng.choice([0.0, 0.0, 0.5, 3.0])), seed=seed)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "float32")
@pytest.mark.parametrize("seed", range(14))
def test_float_lstm_equals_tflite_micro(tmp_path: Path, seed: int) -> None:
    path = _lstm_model(tmp_path / "lstm.tflite", "float32", _config(seed))
    sets = tb.random_inputs(path, np.random.default_rng(seed + 1), 3)
    tb.assert_exact(path, sets, reset_each=False)


@pytest.mark.parity("UNIDIRECTIONAL_SEQUENCE_LSTM", "float32")
@pytest.mark.parametrize("time_major", [True, False])
def test_float_lstm_long_sequence_saturated_gates(tmp_path: Path, time_major: bool) -> None:
    """40 steps with inputs up to +-60: sigmoids below -9 (expf(x)) and above 16.6 (1), tanh saturating,
    a cell clip that binds."""
    c = dict(b=2, t=40, i=12, s=10, time_major=time_major, cell_clip=2.5, seed=11)
    path = _lstm_model(tmp_path / "lstm.tflite", "float32", c)
    rng = np.random.default_rng(3)
    shape = (40, 2, 12) if time_major else (2, 40, 12)
    sets = [[(rng.standard_normal(shape) * 20).astype(np.float32)] for _ in range(2)]
    tb.assert_exact(path, sets, reset_each=False)


def test_float_lstm_overflow_and_nan(tmp_path: Path) -> None:
    """Inputs near FLT_MAX (gate sums overflow: tflite-micro's FCs clamp them to +-FLT_MAX, or reach NaN as
    inf - inf) and NaN inputs, with and without a cell clip (a NaN cell stays NaN through it): micro gives
    tflite-micro's values, NaN where NaN."""
    for clip in (0.0, 1.5):
        c = dict(b=1, t=3, i=6, s=4, time_major=True, cell_clip=clip, seed=5)
        path = _lstm_model(tmp_path / f"lstm_{clip}.tflite", "float32", c)
        x = np.full((3, 1, 6), 3e38, np.float32)
        x[1, 0, ::2] = -3e38
        x[2, 0, 3] = np.nan
        want, got = tb.run_tflm(path, [[x]])[0][0], tb.run_micro(path, [[x]])[0][0]
        assert np.array_equal(got, want, equal_nan=True), f"clip {clip}: {got.ravel()} vs tflite-micro {want.ravel()}"
        assert np.isnan(want[2]).all() and not np.isnan(want[0]).all()

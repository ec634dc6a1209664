"""float32 SVDF on micro is bit-exact with tflite-micro (``np.array_equal`` at every invocation, state carried).

tflite-micro's float SVDF (``svdf_common.cc``): the state shifted left by one, the feature dot products
``0 + w x`` in input order into the newest slot, the time dot products ``0 + w_t s`` in memory order, the bias
plus the rank's filters in order, then ``ActivationValFloat`` (glibc's ``tanhf`` for TANH). micro's kernel
before this change took tanh from float64 rounded once (correctly rounded, where glibc's fdlibm ``tanhf`` is
not): TANH models differed in the last bit. Random batch, input size, units, rank, memory and activation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tflite_builder as tb
from test_micro_ops_recurrent import _svdf_model

pytest.importorskip("tflite_micro")

ACT_TANH = 4


def _config(seed: int, act: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    return dict(b=int(rng.integers(1, 5)), i=int(rng.integers(1, 48)), u=int(rng.integers(1, 14)),
                rank=int(rng.integers(1, 5)), m=int(rng.integers(1, 14)), act=act, bias=True, per_channel=False,
                seed=seed)


def _sets(path: Path, seed: int, n: int, scale: float = 1.0) -> list[list[np.ndarray]]:
    sets = tb.random_inputs(path, np.random.default_rng(seed + 1), n)
    return [[(x * scale).astype(np.float32) for x in xs] for xs in sets]


@pytest.mark.parity("SVDF", "float32")
@pytest.mark.parametrize("seed", range(10))
def test_float_svdf_tanh_equals_tflite_micro(tmp_path: Path, seed: int) -> None:
    """TANH (glibc's tanhf) over several invocations without reset: the state carries last-bit differences."""
    path = _svdf_model(tmp_path / "svdf.tflite", "float32", _config(seed, ACT_TANH))
    tb.assert_exact(path, _sets(path, seed, 4, scale=1.0 / 3), reset_each=False)


@pytest.mark.parity("SVDF", "float32")
@pytest.mark.parametrize("act", [0, 1, 2, 3, 5])
def test_float_svdf_other_activations_equal_tflite_micro(tmp_path: Path, act: int) -> None:
    """NONE, RELU, RELU_N1_TO_1, RELU6 and SIGN_BIT, two sizes each."""
    for seed in (act, act + 50):
        path = _svdf_model(tmp_path / f"svdf_{seed}.tflite", "float32", _config(seed, act))
        tb.assert_exact(path, _sets(path, seed, 3), reset_each=False)


def test_float_svdf_saturating_tanh(tmp_path: Path) -> None:
    """Large inputs: tanh saturates to +-1 (glibc's |x| >= 22 branch) and its steep middle is crossed."""
    c = dict(_config(7, ACT_TANH), b=2, i=24, u=6, rank=2, m=5)
    path = _svdf_model(tmp_path / "svdf.tflite", "float32", c)
    tb.assert_exact(path, _sets(path, 7, 3, scale=40.0), reset_each=False)
    out = tb.run_tflm(path, _sets(path, 7, 1, scale=40.0))[0][0]
    assert (np.abs(out) == 1.0).any() and (np.abs(out) < 1.0).any()

"""The micro backend's speed paths, bit for bit (reference: tflite-micro, ``np.array_equal``).

- int8 ADD/SUB/MUL gather from a 256x256 table built at prepare time: checked on
  all 65,536 input pairs at once, with and without a fused ReLU.
- FULLY_CONNECTED with one row and small weights folds the requantization into
  float64 weights plus a column of ones; without an activation it also takes the
  negative-tie correction of :class:`FloatRequantizer`.
- The float requantizer's tiled constants with per-channel shifts and no activation
  (the correction path) in a convolution.
Single-op models are built with the helpers of tests/test_micro_ops.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from test_micro_ops import T, build, check_int8, opts, tflm, w8


@pytest.mark.parametrize("op,act", [("ADD", 0), ("ADD", 1), ("SUB", 0), ("MUL", 0), ("MUL", 3)])
def test_binary_table_on_all_input_pairs(tmp_path, op, act):
    p = tmp_path / f"{op}.tflite"
    kind = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    build(p, op, [T((1, 65536), scale=0.05, zp=-4), T((1, 65536), scale=0.11, zp=9)],
          [T((1, 65536), scale=0.08 if op != "MUL" else 0.3, zp=2)], opts(kind, fusedActivationFunction=act),
          version=2)
    grid = np.arange(65536)
    a = ((grid >> 8) & 0xFF).astype(np.uint8).view(np.int8).reshape(1, -1)
    b = (grid & 0xFF).astype(np.uint8).view(np.int8).reshape(1, -1)
    ref = tflm.Interpreter.from_file(str(p), arena_size=1 << 20)
    ref.set_input(a, 0)
    ref.set_input(b, 1)
    ref.invoke()
    expect = ref.get_output(0)
    for in_place in (False, True):
        m = open_model(str(p), in_place=in_place)
        assert m.info["cache_bytes"] >= 65536
        assert np.array_equal(m.run([a, b])[0], expect)


@pytest.mark.parametrize("act", [0, 1])
def test_fully_connected_one_row_folded_weights(tmp_path, act, monkeypatch):
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "0")  # (numpy-path internals; numba: test_micro_fast_numba.py)
    p = tmp_path / "fc.tflite"
    rng = np.random.default_rng(5)
    build(p, "FULLY_CONNECTED",
          [T((1, 96), scale=0.07, zp=-10), T((24, 96), scale=list(rng.uniform(0.002, 0.01, 24)), data=w8((24, 96))),
           T((24,), "int32", scale=0.0, data=rng.integers(-2000, 2000, 24).astype(np.int32))],
          [T((1, 24), scale=0.09, zp=3)], opts("FullyConnectedOptions", fusedActivationFunction=act), version=9)
    m = open_model(str(p))
    k = m.interpreter.kernels[0]
    assert k.fused is not None and k.frq.correct == (act == 0)
    check_int8(p, n=200)


def test_conv_without_activation_per_channel_takes_the_tie_correction(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "0")  # (numpy-path internals; numba: test_micro_fast_numba.py)
    p = tmp_path / "conv.tflite"
    rng = np.random.default_rng(7)
    scales = list(rng.uniform(0.0005, 0.02, 16))
    build(p, "CONV_2D",
          [T((1, 12, 12, 8), scale=0.05, zp=-3), T((16, 3, 3, 8), scale=scales, data=w8((16, 3, 3, 8))),
           T((16,), "int32", scale=0.0, data=rng.integers(-3000, 3000, 16).astype(np.int32))],
          [T((1, 12, 12, 16), scale=0.06, zp=1)],
          opts("Conv2DOptions", padding=0, strideW=1, strideH=1, dilationWFactor=1, dilationHFactor=1,
               fusedActivationFunction=0), version=3)
    k = open_model(str(p)).interpreter.kernels[0]
    assert k.frq is not None and k.frq.correct
    check_int8(p, n=50)

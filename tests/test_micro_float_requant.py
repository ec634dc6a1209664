"""The float64 form of the int8 requantization (fixedpoint.FloatRequantizer).

Reference: the scalar C transcription of TFLite Micro's MultiplyByQuantizedMultiplier
in tests/test_micro_fixedpoint.py (``ref_mbqm``) plus zero point and clamp, and the
int64 :class:`Requantizer` it replaces where the exactness bound holds. Inputs: every
accumulator in a window around zero and around each rounding tie, and random values
up to the bound, for per-tensor and per-channel multipliers, with and without a
clamp that hides the negative-tie correction.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import fixedpoint as fp
from test_micro_fixedpoint import ref_mbqm


def _case(reals, zp, lo, hi, bias, acc):
    ms, ss = zip(*[fp.quantize_multiplier(r) for r in reals])
    ms, ss = np.array(ms, np.int64), np.array(ss, np.int64)
    bias = np.asarray(bias, np.int64)
    bound = np.full(len(reals), int(np.abs(acc).max()), np.int64)
    frq = fp.FloatRequantizer.create(ms, ss, zp, lo, hi, bias, bound)
    assert frq is not None
    out = np.empty(acc.shape, np.int8)
    y = np.empty(acc.shape, np.float64)
    tmp = np.empty(acc.shape, np.float64)
    expect = np.array([[min(hi, max(lo, ref_mbqm(int(v) + int(b), int(m), int(s)) + zp))
                        for v, m, s, b in zip(row, ms, ss, bias)] for row in acc], np.int64)
    rq = fp.Requantizer(ms, ss, zp, lo, hi, bias=bias)
    out2 = np.empty_like(out)
    acc_i = acc.astype(np.int64)
    rq.apply(acc_i, np.empty_like(acc_i), out2)
    assert np.array_equal(out2, expect)
    for dt in (np.float64, np.float32):  # (float32: what the matrix products give for short sums)
        a = acc.astype(dt)
        assert np.array_equal(a, acc)
        frq.bind(a, y, tmp, out)()
        assert np.array_equal(out, expect)


def _accs(reals, channels, rng, extra=2000):
    """Small values, values near each channel's rounding ties, and random ones."""
    rows = [np.arange(-3000, 3000)]
    for r in reals:
        m, s = fp.quantize_multiplier(r)
        real = m * 2.0 ** (s - 31)
        k = np.arange(-300, 300)
        ties = np.round((k + 0.5) / real).astype(np.int64)
        ties = ties[np.abs(ties) < (1 << 20)]
        rows.append((ties[:, None] + np.arange(-2, 3)[None, :]).reshape(-1))
    rows.append(rng.integers(-(1 << 20), 1 << 20, extra))
    flat = np.concatenate(rows)
    n = -(-flat.size // channels) * channels
    flat = np.resize(flat, n)
    return flat.reshape(-1, channels)


@pytest.mark.parametrize("reals", [[0.3], [0.0049], [1e-4], [1.7], [0.999999],
                                   [0.003, 0.0007, 0.25, 1.3e-4], [0.5, 0.75, 0.0123, 0.9]])
@pytest.mark.parametrize("zp,lo,hi", [(-128, -128, 127), (5, -128, 127), (-3, -3, 127), (-128, -128, -100),
                                      (17, 17, 60), (127, -128, 127), (-60, -100, 20)])
def test_float_requantizer_equals_tflm_mbqm(reals, zp, lo, hi):
    rng = np.random.default_rng(len(reals) * 1000 + zp + 300)
    acc = _accs(reals, len(reals), rng)
    bias = rng.integers(-5000, 5000, len(reals))
    _case(reals, zp, lo, hi, bias, acc)
    _case(reals, zp, lo, hi, np.zeros(len(reals), np.int64), acc)


def test_float_requantizer_refuses_inexact_ranges():
    m, s = fp.quantize_multiplier(0.3)
    ms, ss = np.array([m]), np.array([s])
    assert fp.FloatRequantizer.create(ms, ss, 0, -128, 127, None, np.array([1 << 20])) is not None
    assert fp.FloatRequantizer.create(ms, ss, 0, -128, 127, None, np.array([1 << 31])) is None
    # a tiny multiplier: zp + fraction at a resolution of 2**-49 needs more than 53 bits, and with
    # accumulators up to 2**25 the output takes many values: refused
    m, s = fp.quantize_multiplier(2.6e-6)
    assert fp.FloatRequantizer.create(np.array([m]), np.array([s]), -128, -128, 127, None,
                                      np.array([1 << 25])) is None


def test_float_requantizer_constant_channels_equal_tflm_mbqm():
    """A dead channel (tiny multiplier, the bias dominates): inexact in float64 but constant over
    every accumulator the weights allow, so it is accepted as a constant; live channels beside it."""
    reals = [2.6e-6, 0.004, 3e-9]
    ms, ss = zip(*[fp.quantize_multiplier(r) for r in reals])
    ms, ss = np.array(ms, np.int64), np.array(ss, np.int64)
    bias = np.array([3_000_000, -700, -(1 << 30)], np.int64)
    bound = np.array([2000, 20000, 5000], np.int64)
    zp, lo, hi = -128, -128, 127
    frq = fp.FloatRequantizer.create(ms, ss, zp, lo, hi, bias, bound)
    assert frq is not None and frq.constant_channels == 2
    acc = np.stack([np.arange(-2000, 2001), np.linspace(-20000, 20000, 4001).round(), np.arange(-5000, 5001, 2.5)
                    .round()[:4001]], axis=1).astype(np.int64)
    out = np.empty(acc.shape, np.int8)
    frq.bind(acc.astype(np.float64), np.empty(acc.shape), np.empty(acc.shape), out)()
    expect = np.array([[min(hi, max(lo, ref_mbqm(int(v) + int(b), int(m), int(s)) + zp))
                        for v, m, s, b in zip(row, ms, ss, bias)] for row in acc], np.int64)
    assert np.array_equal(out, expect)

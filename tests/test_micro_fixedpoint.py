"""The micro backend's fixed-point arithmetic (edge_runtime/backends/micro/fixedpoint.py).

Reference: a line-by-line scalar transcription, written here, of TFLite Micro's C
definitions (``QuantizeMultiplier``, ``SaturatingRoundingDoublingHighMul`` with C's
truncating division, ``RoundingDivideByPOT`` with its mask/threshold form,
``MultiplyByQuantizedMultiplier``), applied to random and edge-case int32 values.
End-to-end bit-exactness against tflite-micro is in test_micro_models/test_micro_ops.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edge_runtime.backends.micro import fixedpoint as fp

I32 = st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1)


def c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def ref_srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def ref_mbqm(x: int, m: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return ref_rdbpot(ref_srdhm(x * (1 << left), m), right)


def test_quantize_multiplier_known_values():
    assert fp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fp.quantize_multiplier(0.75) == (1610612736, 0)
    assert fp.quantize_multiplier(0.0) == (0, 0)
    # rounding up to 2**31 renormalises
    assert fp.quantize_multiplier(1 - 2.0 ** -40) == (1 << 30, 1)
    m, s = fp.quantize_multiplier(0.0123)
    assert (1 << 30) <= m < (1 << 31) and abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-11


@settings(max_examples=300, deadline=None)
@given(st.lists(I32, min_size=1, max_size=40), st.integers(min_value=1 << 30, max_value=(1 << 31) - 1))
def test_srdhm_matches_c_semantics(xs, m):
    got = fp.srdhm(np.array(xs, np.int64), m)
    assert got.tolist() == [ref_srdhm(x, m) for x in xs]


@settings(max_examples=300, deadline=None)
@given(st.lists(I32, min_size=1, max_size=40), st.integers(min_value=0, max_value=31))
def test_rounding_divide_by_pot_matches_c_semantics(xs, e):
    got = fp.rounding_divide_by_pot(np.array(xs, np.int64), e)
    assert got.tolist() == [ref_rdbpot(x, e) for x in xs]
    per_channel = np.array([e, 0, max(0, e - 1)] * 14, np.int64)[:len(xs)]
    got2 = fp.rounding_divide_by_pot(np.array(xs, np.int64), per_channel)
    assert got2.tolist() == [ref_rdbpot(x, int(s)) for x, s in zip(xs, per_channel)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(1 << 24), max_value=1 << 24), min_size=4, max_size=4),
       st.lists(st.floats(min_value=1e-6, max_value=0.99), min_size=4, max_size=4),
       st.integers(min_value=-128, max_value=127))
def test_requantizer_matches_scalar_mbqm_per_channel(accs, reals, zp):
    ms, ss = zip(*[fp.quantize_multiplier(r) for r in reals])
    rq = fp.Requantizer(np.array(ms), np.array(ss), zp, -128, 127)
    acc = np.array([accs, accs[::-1]], np.int64)
    out = np.empty(acc.shape, np.int8)
    rq.apply(acc.copy(), np.empty_like(acc), out)
    expect = [[min(127, max(-128, ref_mbqm(a, m, s) + zp)) for a, m, s in zip(row, ms, ss)]
              for row in (accs, accs[::-1])]
    assert out.tolist() == expect


def test_scalar_and_vector_reciprocal_agree():
    xs = [1 << 19, (1 << 19) + 12345, 3 << 20, 123456789, (1 << 31) - 1]
    vec, bits = fp.get_reciprocal(np.array(xs, np.int64), 12)
    for x, v, b in zip(xs, vec.tolist(), bits.tolist()):
        assert fp.get_reciprocal_scalar(x, 12) == (v, b)
        # 1/x in the fixed-point meaning: v / 2**31 * 2**-b ~= 2**(31-12) / x
        assert v / 2.0 ** 31 * 2.0 ** -b == pytest.approx(2.0 ** 19 / x, rel=1e-6)


def test_exp_logistic_tanh_are_accurate_fixed_point():
    """Sanity of the gemmlowp transcriptions against math (exactness is tested against tflite-micro)."""
    x = np.linspace(-7.9, -0.01, 50)
    raw = np.round(x * 2 ** 26).astype(np.int64)  # Q5.26
    e = fp.exp_on_negative_values(raw, 5) / 2.0 ** 31
    assert np.allclose(e, np.exp(raw / 2.0 ** 26), atol=2e-6)
    y = np.linspace(-7.5, 7.5, 61)
    r4 = np.round(y * 2 ** 27).astype(np.int64)  # Q4.27
    assert np.allclose(fp.logistic(r4, 4) / 2.0 ** 31, 1 / (1 + np.exp(-r4 / 2.0 ** 27)), atol=2e-6)
    assert np.allclose(fp.tanh(r4, 4) / 2.0 ** 31, np.tanh(r4 / 2.0 ** 27), atol=4e-6)


def test_calculate_input_radius():
    assert fp.calculate_input_radius(4, 20) == math.floor(15 * 2.0 ** 27 / 2.0 ** 20)


@pytest.mark.parametrize("real", [0.3, 0.25, 0.5, 0.75, 1e-3, 2.6e-6, 1.7, 0.999999])
def test_requantizer_single_shift_form_equals_two_step_rounding(real):
    """The one-shift form of SRDHM + RoundingDivideByPOT, on every small value (ties, -1, -2 ...)
    and random int32 values, against the scalar C transcription."""
    m, s = fp.quantize_multiplier(real)
    rng = np.random.default_rng(int(real * 1e6))
    xs = list(range(-3000, 3000)) + [int(v) for v in rng.integers(-(1 << 31), 1 << 31, 3000) >> (max(s, 0) + 1)]
    rq = fp.Requantizer(np.array([m]), np.array([s]), 0, -(1 << 40), 1 << 40)
    acc = np.array(xs, np.int64)
    rq.scale(acc, np.empty_like(acc))
    assert acc.tolist() == [ref_mbqm(x, m, s) for x in xs]

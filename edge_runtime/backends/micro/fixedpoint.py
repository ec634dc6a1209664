"""TFLite Micro's fixed-point arithmetic, vectorised over numpy int64 arrays.

The reference kernels of TFLite Micro (``tensorflow/lite/kernels/internal/common.h``
and gemmlowp's ``fixedpoint.h``) define int8 results bit for bit. This module
reproduces them:

- :func:`quantize_multiplier`: a real multiplier as a Q31 integer and a shift
  (``frexp`` + round half away from zero, as ``QuantizeMultiplier``).
- :func:`srdhm`: SaturatingRoundingDoublingHighMul. With a 64-bit product ``p``,
  ``(p + nudge) / 2**31`` truncated toward zero equals ``(p + 2**30) >> 31`` for
  both signs, which is what we compute.
- :func:`rounding_divide_by_pot`: RoundingDivideByPOT (round half away from zero).
- :class:`Requantizer`: MultiplyByQuantizedMultiplier (the "double rounding" form
  used when ``TFLITE_SINGLE_ROUNDING`` is off, TFLM's default), per channel, plus
  output offset and activation clamp, all with ``out=`` into preallocated buffers.
- gemmlowp's ``exp_on_negative_values``, ``one_over_one_plus_x_for_x_in_0_1``,
  ``logistic`` and ``tanh`` on raw int32 values (softmax, LOGISTIC, TANH).

Values are held in int64 so that products of two int32 fit; results that the C
code keeps in int32 are wrapped with :func:`wrap32` where overflow can happen.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def tflite_round(x: float) -> int:
    """``std::round``: round half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: ``real ~= m * 2**(shift - 31)`` with ``m`` in [2**30, 2**31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    """``QuantizeMultiplierGreaterThanOne``: as :func:`quantize_multiplier`, shift >= 0."""
    m, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError(f"multiplier {real} is below one")
    return m, shift


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """``CalculateInputRadius``: the largest |input| that does not saturate the fixed-point range."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


def wrap32(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values to the int32 range in place (two's complement), as C int32 arithmetic does."""
    x += 1 << 31
    x &= (1 << 32) - 1
    x -= 1 << 31
    return x


def srdhm(a: np.ndarray, b: "np.ndarray | int", out: Optional[np.ndarray] = None) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul of int32 values held in int64 arrays."""
    out = np.multiply(a, b, out=out)
    out += 1 << 30
    out >>= 31
    # The only overflow: INT32_MIN * INT32_MIN -> INT32_MAX.
    np.minimum(out, INT32_MAX, out=out)
    return out


def rounding_divide_by_pot(x: np.ndarray, exponent: "int | np.ndarray", out: Optional[np.ndarray] = None,
                           tmp: Optional[np.ndarray] = None) -> np.ndarray:
    """RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero (``exponent`` >= 0)."""
    if out is None:
        out = np.array(x, dtype=np.int64, copy=True)
    elif out is not x:
        np.copyto(out, x)
    if np.isscalar(exponent) or np.ndim(exponent) == 0:
        e = int(exponent)
        if e == 0:
            return out
        if tmp is None:
            tmp = np.empty_like(out)
        np.right_shift(out, 63, out=tmp)  # -1 where negative
        out += (1 << (e - 1))
        out += tmp
        out >>= e
        return out
    e = np.asarray(exponent, dtype=np.int64)
    half = np.where(e > 0, np.left_shift(1, np.maximum(e - 1, 0)), 0).astype(np.int64)
    neg = (e > 0).astype(np.int64)
    if tmp is None:
        tmp = np.empty_like(out)
    np.right_shift(out, 63, out=tmp)
    tmp *= neg
    out += half
    out += tmp
    np.right_shift(out, e, out=out)
    return out


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: "int | np.ndarray", shift: "int | np.ndarray"
                                     ) -> np.ndarray:
    """MultiplyByQuantizedMultiplier on a new int64 array (used at prepare time and in tests)."""
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    left = np.left_shift(np.int64(1), np.maximum(s, 0))
    right = np.maximum(-s, 0)
    a = np.asarray(x, dtype=np.int64) * left
    srdhm(a, m, out=a)
    return rounding_divide_by_pot(a, right if right.ndim else int(right), out=a)


class Requantizer:
    """int32 accumulators (+ bias) -> int8: MultiplyByQuantizedMultiplier per channel, zero point, clamp.

    Channels run along the last axis. With ``z = (acc + bias) * 2**left * M + 2**30``,
    SaturatingRoundingDoublingHighMul is ``floor(z / 2**31)`` and RoundingDivideByPOT by
    ``r`` adds ``2**(r-1)`` (minus one when negative) before an arithmetic shift. Nested
    floor divisions by powers of two compose, and ``floor(z / 2**31) < 0`` exactly when
    ``z < 0``, so both steps are one shift:

        result = (z + [r > 0] * (2**(30 + r) - [z < 0] * 2**31)) >> (31 + r)

    which equals TFLM's two-step rounding for every input (tests/test_micro_fixedpoint.py).
    The bias is folded into the per-channel constant added to ``acc * factor``. All
    steps run in place on the int64 buffer, with one int64 temporary.
    """

    def __init__(self, multipliers: np.ndarray, shifts: np.ndarray, output_zero_point: int,
                 act_min: int, act_max: int, bias: Optional[np.ndarray] = None) -> None:
        m = np.asarray(multipliers, dtype=np.int64).reshape(-1)
        s = np.asarray(shifts, dtype=np.int64).reshape(-1)
        n = max(m.size, 1 if bias is None else np.asarray(bias).size)
        m = np.broadcast_to(m, (n,)).copy()
        s = np.broadcast_to(s, (n,)).copy()
        left = np.maximum(s, 0)
        right = np.maximum(-s, 0)
        self.factor = (m << left).astype(np.int64)
        b = np.zeros(n, np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(-1)
        self.half = np.where(right > 0, np.left_shift(np.int64(1), 30 + right), 0).astype(np.int64)
        self.offset = (b * self.factor + (1 << 30)).astype(np.int64)
        self.neg_fix = np.where(right > 0, np.int64(1) << 31, 0).astype(np.int64)
        self.shift = (31 + right).astype(np.int64)
        self.uniform_factor = bool(np.all(self.factor == self.factor[0]))
        self.uniform_offset = bool(np.all(self.offset == self.offset[0]))
        self.uniform_shift = bool(np.all(self.shift == self.shift[0]))
        # The output zero point can ride along with the rounding half: adding zp * 2**(31 + r)
        # before the final shift adds exactly zp after it (when that stays inside int64).
        self.zero_point = np.int64(output_zero_point)
        self.fold_zp = bool(np.all(self.shift <= 54))
        self.half_zp = (self.half + (np.int64(output_zero_point) << self.shift)) if self.fold_zp else self.half
        self.uniform_half = bool(np.all(self.half == self.half[0]))
        self.h0 = np.int64(self.half[0])
        self.uniform_half_zp = bool(np.all(self.half_zp == self.half_zp[0]))
        self.hz0 = np.int64(self.half_zp[0])
        self.all_round = bool(np.all(right > 0))
        self.f0, self.o0, self.s0 = np.int64(self.factor[0]), np.int64(self.offset[0]), int(self.shift[0])
        self.act_min = np.int64(act_min)
        self.act_max = np.int64(act_max)

    def apply(self, acc: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
        """Requantize int64 ``acc`` (…, C) in place and store it into ``out`` (int8, same shape)."""
        if self.fold_zp:
            self.scale(acc, tmp, with_zero_point=True)
        else:
            self.scale(acc, tmp)
            acc += self.zero_point
        np.clip(acc, self.act_min, self.act_max, out=out, casting="unsafe")

    def scale(self, acc: np.ndarray, tmp: np.ndarray, with_zero_point: bool = False) -> None:
        """MultiplyByQuantizedMultiplier(acc + bias) in place (plus the zero point if asked; no clamp or cast)."""
        np.multiply(acc, self.f0 if self.uniform_factor else self.factor, out=acc)
        np.add(acc, self.o0 if self.uniform_offset else self.offset, out=acc)
        np.right_shift(acc, 63, out=tmp)  # -1 where z < 0 (z: before the rounding half is added)
        if self.all_round:
            tmp <<= 31
        else:
            tmp *= self.neg_fix
        if with_zero_point:
            np.add(tmp, self.hz0 if self.uniform_half_zp else self.half_zp, out=tmp)
        else:
            np.add(tmp, self.h0 if self.uniform_half else self.half, out=tmp)
        acc += tmp
        if self.uniform_shift:
            acc >>= self.s0
        else:
            np.right_shift(acc, self.shift, out=acc)


# ---------------------------------------------------------------------------
# gemmlowp fixed-point transcendental functions on raw int32 values (int64 arrays)

def _sat_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent> (new array)."""
    if exponent == 0:
        return x.copy()
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent, out=x.copy())
    threshold = (1 << (31 - exponent)) - 1
    r = x << exponent
    r = np.where(x > threshold, INT32_MAX, r)
    r = np.where(x < -threshold, INT32_MIN, r)
    return r


def _mul(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    """FixedPoint multiplication: SaturatingRoundingDoublingHighMul (new array)."""
    both_min = (np.asarray(a) == INT32_MIN) & (np.asarray(b) == INT32_MIN)
    r = (np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64) + (1 << 30)) >> 31
    return np.where(both_min, INT32_MAX, r)


def _add(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    return wrap32(np.asarray(a, dtype=np.int64) + b)


def _rounding_half_sum(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    s = np.asarray(a, dtype=np.int64) + b
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    # C division truncates toward zero.
    return np.where(t >= 0, t // 2, -((-t) // 2))


def _one(integer_bits: int) -> int:
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    constant_term = 1895147668
    constant_1_over_3 = 715827883
    x = _add(a, 1 << 28)
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = _sat_mul_pot(x4, -2)
    t = _add(_mul(_add(x4_over_4, x3), constant_1_over_3), x2)
    poly = _sat_mul_pot(t, -1)
    return _add(constant_term, _mul(constant_term, _add(x, poly)))


_EXP_BARREL = [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242)]


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values`` for a Q(integer_bits) input; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    frac = 31 - integer_bits
    one_quarter = 1 << (frac - 2)
    mask = one_quarter - 1
    a_mod = _add(a & mask, -one_quarter)
    # Rescale<0> from integer_bits: multiply by 2**integer_bits, saturating.
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(_sat_mul_pot(a_mod, integer_bits))
    remainder = _add(a_mod, -a)
    for exponent, mult in _EXP_BARREL:
        if integer_bits > exponent:
            shift = frac + exponent
            bit = (remainder & (1 << shift)) != 0
            result = np.where(bit, _mul(result, mult), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Q0.31 in and out (Newton-Raphson)."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    c48_17 = 1515870810
    cneg32_17 = -1010580540
    x = _add(c48_17, _mul(half_denominator, cneg32_17))
    one_f2 = _one(2)
    for _ in range(3):
        hdx = _mul(half_denominator, x)
        one_minus = _add(one_f2, -hdx)
        x = _add(x, _sat_mul_pot(_mul(x, one_minus), 2))
    # Rescale<0>(ExactMulByPot<-1>(x)): from 1 integer bit to 0 -> multiply by 2**1.
    return _sat_mul_pot(x, 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1`` (tanh helper)."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    x = _add(1515870810, _mul(half_denominator, -1010580540))
    one_f2 = _one(2)
    for _ in range(3):
        hdx = _mul(half_denominator, x)
        one_minus = _add(one_f2, -hdx)
        x = _add(x, _sat_mul_pot(_mul(x, one_minus), 2))
    return _sat_mul_pot(_add(x, -one_f2), 2)


def logistic(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``logistic`` of a Q(integer_bits) raw value; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_in = np.where(positive, a, wrap32(-a))
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap32(-abs_in), integer_bits))
    neg = _add(INT32_MAX, -pos)
    return np.where(a == 0, 1 << 30, np.where(positive, pos, neg))


def tanh(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``tanh`` of a Q(integer_bits) raw value; Q0.31 result."""
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap32(-a))
    # neg_tanh_on_negative_values: ExactMulByPot<1> keeps the raw value, adds an integer bit.
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap32(-t), t))


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """``GetReciprocal``: (Q0.31 scale, num_bits_over_unit) for positive int32 ``x``."""
    x = np.asarray(x, dtype=np.int64)
    # exact count of leading zeros of the 32-bit values
    bl = np.array([int(v).bit_length() for v in x.reshape(-1)], dtype=np.int64).reshape(x.shape)
    headroom_plus_one = 32 - bl
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    shifted = wrap32(shifted)
    return one_over_one_plus_x_for_x_in_0_1(shifted), num_bits_over_unit


# ---------------------------------------------------------------------------
# Scalar (Python int) forms, for per-row values such as softmax's reciprocal.

def _wrap32_s(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm_scalar(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul of two Python ints."""
    if a == b == INT32_MIN:
        return INT32_MAX
    return (a * b + (1 << 30)) >> 31


def rounding_divide_by_pot_scalar(x: int, exponent: int) -> int:
    """RoundingDivideByPOT of a Python int."""
    if exponent == 0:
        return x
    return (x + (1 << (exponent - 1)) - (1 if x < 0 else 0)) >> exponent


def _sat_mul_pot_scalar(x: int, exponent: int) -> int:
    if exponent <= 0:
        return rounding_divide_by_pot_scalar(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return x << exponent


def one_over_one_plus_x_scalar(a: int) -> int:
    """``one_over_one_plus_x_for_x_in_0_1`` on a Python int (Q0.31)."""
    s = a + INT32_MAX
    half_denominator = (s + (1 if s >= 0 else -1))
    half_denominator = half_denominator // 2 if half_denominator >= 0 else -((-half_denominator) // 2)
    x = _wrap32_s(1515870810 + srdhm_scalar(half_denominator, -1010580540))
    one_f2 = 1 << 29
    for _ in range(3):
        one_minus = _wrap32_s(one_f2 - srdhm_scalar(half_denominator, x))
        x = _wrap32_s(x + _sat_mul_pot_scalar(srdhm_scalar(x, one_minus), 2))
    return _sat_mul_pot_scalar(x, 1)


def get_reciprocal_scalar(x: int, x_integer_digits: int) -> tuple[int, int]:
    """``GetReciprocal`` of a positive Python int: (Q0.31 scale, num_bits_over_unit)."""
    headroom_plus_one = 32 - int(x).bit_length()
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = _wrap32_s(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_scalar(shifted), num_bits_over_unit

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
from typing import Callable, Optional

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1



def _exponent(e: np.ndarray) -> np.ndarray:
    """``np.ldexp``'s exponent as C ints: numpy has no ldexp loop for int64 exponents where C long is
    32 bits (armv7), and every exponent here is small."""
    return np.asarray(e).astype(np.intc)

def tflite_round(x: float) -> int:
    """``std::round``: round half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def frexp_multiplier(real: float) -> tuple[int, int]:
    """``frexp`` of ``real`` with the fraction rounded to 31 bits: ``(round(q * 2**31), exponent)``,
    with no correction when the rounding reaches 2**31 (as TFLM's tanh/logistic Prepare uses it)."""
    q, shift = math.frexp(real)
    return tflite_round(q * (1 << 31)), shift


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: ``real ~= m * 2**(shift - 31)`` with ``m`` in [2**30, 2**31)."""
    if real == 0.0:
        return 0, 0
    q_fixed, shift = frexp_multiplier(real)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return int(q_fixed), int(shift)


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` of every value of ``reals`` (float64), as two int64 arrays.

    The same integers as the scalar form: ``np.frexp``, the scaling by ``2**31`` and the
    ``+ 0.5`` are the same IEEE double operations, done per element. Non-finite values go
    through the scalar form, which raises as it does (OverflowError, ValueError)."""
    r = np.asarray(reals, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(r)):
        pairs = [quantize_multiplier(float(v)) for v in r]
        return (np.array([p[0] for p in pairs], np.int64).reshape(-1),
                np.array([p[1] for p in pairs], np.int64).reshape(-1))
    q, shift = np.frexp(r)
    x = q * float(1 << 31)
    q_fixed = np.floor(np.abs(x) + 0.5) * np.where(x >= 0, 1.0, -1.0)  # tflite_round, still exact in float64
    m = q_fixed.astype(np.int64)
    s = shift.astype(np.int64)
    top = m == (1 << 31)
    m[top] //= 2
    s[top] += 1
    gone = (s < -31) | (r == 0.0)
    m[gone] = 0
    s[gone] = 0
    return m, s


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
        CLIP(acc, self.act_min, self.act_max, out=out, casting="unsafe")

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


def _clip_ufunc() -> Callable[..., np.ndarray]:
    umath = getattr(getattr(np, "_core", None), "umath", None)
    return getattr(umath, "clip", None) or np.clip


#: Clamping in one ufunc call: ``np.clip`` is a Python wrapper that spends a few microseconds
#: on its arguments per call; the ``clip`` ufunc underneath does the same work without that.
CLIP = _clip_ufunc()

F64_EXACT = 1 << 53


def float_requant_exact(multipliers: np.ndarray, shifts: np.ndarray, output_zero_point: int,
                        bias: np.ndarray, acc_bound: np.ndarray) -> bool:
    """True when :class:`FloatRequantizer` is exact for accumulators ``|acc_c| <= acc_bound[c]``.

    (See :func:`float_requant_channels` for the per-channel form.)

    Every float64 value the float form computes is an integer multiple of ``2**-S_c``
    (``S_c = 31 + right shift``) whose integer part, in those units, is bounded by
    ``(bound + |bias|) * M * 2**left + 2**30 + 2**(30 + r) + 2**31 + |zp| * 2**S``. Below
    ``2**53`` it is exact in float64, and so is each multiply, add, compare and floor.
    """
    return all(_channel_exact(mc, sc, bc, ac, output_zero_point)
               for mc, sc, bc, ac in _per_channel(multipliers, shifts, bias, acc_bound))


def _per_channel(multipliers: np.ndarray, shifts: np.ndarray, bias: np.ndarray,
                 acc_bound: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(multiplier, shift, bias, bound) per channel as Python ints, per-tensor values broadcast."""
    m = np.asarray(multipliers, dtype=np.int64).reshape(-1)
    s = np.asarray(shifts, dtype=np.int64).reshape(-1)
    n = max(m.size, np.asarray(bias).size, np.asarray(acc_bound).size)
    m, s = np.broadcast_to(m, (n,)), np.broadcast_to(s, (n,))
    b = np.broadcast_to(np.asarray(bias, dtype=np.int64).reshape(-1), (n,))
    a = np.broadcast_to(np.asarray(acc_bound, dtype=np.int64).reshape(-1), (n,))
    return list(zip(m.tolist(), s.tolist(), b.tolist(), a.tolist()))


def _channel_exact(mc: int, sc: int, bc: int, ac: int, zp: int) -> bool:
    left, right = max(sc, 0), max(-sc, 0)
    total = ((ac + abs(bc)) * (mc << left) + (1 << 30) + (1 << (30 + right)) + (1 << 31)
             + abs(zp) * (1 << (31 + right)))
    return total < F64_EXACT and mc >= 0


def _broadcast_channels(*arrays: np.ndarray) -> list[np.ndarray]:  # (multipliers, shifts, bias, bound)
    """The per-channel int64 arrays of :func:`_per_channel`, as arrays (per-tensor values broadcast)."""
    m, s, b, a = (np.asarray(x, dtype=np.int64).reshape(-1) for x in arrays)
    n = max(m.size, b.size, a.size)
    return [np.broadcast_to(x, (n,)) for x in (m, s, b, a)]


#: Relative margin around 2**53 within which :func:`_exact_mask` asks the exact Python-int test.
_EXACT_MARGIN = 2.0 ** -40


def _exact_mask(m: np.ndarray, s: np.ndarray, b: np.ndarray, a: np.ndarray, zp: int) -> np.ndarray:
    """:func:`_channel_exact` of every channel (int64 arrays of one length), mostly in float64.

    For ``m >= 0`` and ``a >= 0`` every term of the bound is non-negative, so its float64
    estimate is within a relative ``2**-50`` of the exact sum; channels whose estimate lies
    within :data:`_EXACT_MARGIN` of ``2**53`` (or that are not finite, or have ``a < 0``)
    take the exact Python-int test."""
    if not isinstance(zp, int):  # (the Python-int test with a numpy zero point: numpy arithmetic, as before)
        return np.array([_channel_exact(mc, sc, bc, ac, zp) for mc, sc, bc, ac in
                         zip(m.tolist(), s.tolist(), b.tolist(), a.tolist())], dtype=bool).reshape(-1)
    left = np.minimum(np.maximum(s, 0), 4096)
    right = np.minimum(np.maximum(-s, 0), 4096)
    with np.errstate(all="ignore"):
        total = ((a.astype(np.float64) + np.abs(b.astype(np.float64)))
                 * np.ldexp(m.astype(np.float64), _exponent(left))
                 + 2.0 ** 30 + np.ldexp(1.0, _exponent(30 + right)) + 2.0 ** 31
                 + abs(float(zp)) * np.ldexp(1.0, _exponent(31 + right)))
    limit = float(F64_EXACT)
    out = (total < limit * (1 - _EXACT_MARGIN)) & (m >= 0)
    sure = (m < 0) | ((a >= 0) & ((total < limit * (1 - _EXACT_MARGIN)) | (total > limit * (1 + _EXACT_MARGIN))))
    for c in np.flatnonzero(~sure).tolist():
        out[c] = _channel_exact(int(m[c]), int(s[c]), int(b[c]), int(a[c]), zp)
    return out


def float_requant_channels(multipliers: np.ndarray, shifts: np.ndarray, output_zero_point: int, act_min: int,
                           act_max: int, bias: np.ndarray, acc_bound: np.ndarray) -> Optional[dict[int, int]]:
    """Channels whose output is the same for every ``|acc| <= acc_bound`` and that the float form
    could not compute exactly (``{channel: output}``), or ``None`` if some other channel is inexact.

    Trained models often hold "dead" channels: tiny weight scales, so a huge right shift, and a
    bias that dominates every possible accumulator. MultiplyByQuantizedMultiplier is monotone in
    its input, so when both ends of ``[bias - bound, bias + bound]`` give the same clamped output,
    every accumulator does; such a channel is a constant, computed here with the int64 form.
    (Channels are checked together in float64 where that decides :func:`_channel_exact` for
    sure, one by one with Python ints elsewhere.)
    """
    constant: dict[int, int] = {}
    m, s, b, a = _broadcast_channels(multipliers, shifts, bias, acc_bound)
    exact = _exact_mask(m, s, b, a, output_zero_point)
    if exact.all():
        return constant
    for c in np.flatnonzero(~exact).tolist():
        mc, sc, bc, ac = int(m[c]), int(s[c]), int(b[c]), int(a[c])
        ends = multiply_by_quantized_multiplier(np.array([bc - ac, bc + ac], np.int64), mc, sc) + output_zero_point
        lo_out, hi_out = (min(act_max, max(act_min, int(v))) for v in ends)
        if lo_out != hi_out:
            return None
        constant[c] = lo_out
    return constant


def _float_form_channel(mc: int, sc: int, bc: int, zp: int) -> tuple[float, float, float]:
    """``(g, h, d)`` of :class:`FloatRequantizer` for one channel, with Python ints."""
    left, right = max(sc, 0), max(-sc, 0)
    f = mc << left
    shift = 31 + right
    num = bc * f + (1 << 30) + ((1 << (30 + right)) if right > 0 else 0) + zp * (1 << shift)
    return math.ldexp(float(f), -shift), math.ldexp(float(num), -shift), (math.ldexp(1.0, -right) if right > 0
                                                                           else 0.0)


def _float_form(m: np.ndarray, s: np.ndarray, b: np.ndarray, zp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(g, h, d)`` of :class:`FloatRequantizer` for every channel (int64 arrays of one length).

    Where the integers ``f = m * 2**left`` and ``num`` surely fit in int64 (|m| < 2**31,
    left <= 30, right <= 31 and a float64 bound of ``|num|`` below 2**62) they are computed
    in int64; converting an int64 to float64 rounds to nearest-even as ``float(int)`` does,
    and ``ldexp`` is the same C function. Other channels take :func:`_float_form_channel`."""
    g = np.zeros(m.size, np.float64)
    h = np.zeros(m.size, np.float64)
    d = np.zeros(m.size, np.float64)
    if isinstance(zp, int) and abs(zp) < (1 << 31):
        left = np.maximum(s, 0)
        right = np.maximum(-s, 0)
        safe = (m > -(1 << 31)) & (m < (1 << 31)) & (left <= 30) & (right <= 31)
        with np.errstate(all="ignore"):
            bound = (np.abs(b.astype(np.float64)) * np.ldexp(float(1 << 31), _exponent(np.minimum(left, 64)))
                     + 2.0 ** 30 + np.ldexp(1.0, _exponent(30 + np.minimum(right, 64)))
                     + abs(float(zp)) * np.ldexp(1.0, _exponent(31 + np.minimum(right, 64))))
        safe &= bound < 2.0 ** 62
        left, right, ms, bs = (np.where(safe, v, 0) for v in (left, right, m, b))
        shift = 31 + right
        f = ms << left
        num = bs * f + (1 << 30) + np.where(right > 0, np.int64(1) << (30 + right), 0) + zp * (np.int64(1) << shift)
        g = np.ldexp(f.astype(np.float64), _exponent(-shift))
        h = np.ldexp(num.astype(np.float64), _exponent(-shift))
        d = np.where(right > 0, np.ldexp(1.0, _exponent(-right)), 0.0)
        rest = np.flatnonzero(~safe).tolist()
    else:
        rest = list(range(m.size))
    for c in rest:
        g[c], h[c], d[c] = _float_form_channel(int(m[c]), int(s[c]), int(b[c]), zp)
    return g, h, d


class FloatRequantizer:
    """The :class:`Requantizer` result computed in float64, exactly, in a few ufunc passes.

    With ``f = M * 2**left``, ``r`` the right shift and ``S = 31 + r``, TFLM's
    MultiplyByQuantizedMultiplier of ``x = acc + bias`` plus the zero point is (see
    :class:`Requantizer`, where ``z = x * f + 2**30``)

        floor((z + [r > 0] * (2**(30 + r) - [z < 0] * 2**31)) / 2**S) + zp

    Write ``y = acc * g + h`` with ``g = f * 2**-S`` and
    ``h = (bias * f + 2**30 + [r > 0] * 2**(30 + r)) * 2**-S + zp``. When the bound of
    :func:`float_requant_exact` holds, ``y`` is exact in float64 and the result is
    ``floor(y)``, except that where ``z < 0`` the term ``d = 2**-r`` is subtracted
    first (the tie of RoundingDivideByPOT goes away from zero). ``z < 0`` means
    ``y < zp + 1/2``; on ``[zp + 1/2, zp + 1)`` subtracting ``d <= 1/2`` does not change
    the floor, so "subtract ``d`` where ``y < zp + 1``" is equivalent, and that is

        y' = max(y - d, min(y, 2**32 * (y - zp - 1) + zp + 1))

    since ``y`` is a multiple of ``2**-S``: below ``zp + 1`` the steep line lies at or
    below ``y - d`` (``2**32 - 1 >= d * 2**S``), from ``zp + 1`` on at or above ``y``. Float
    rounding of the steep line cannot cross ``y`` or ``y - d`` (both exact, rounding is
    monotone). Channels with ``r = 0`` use ``d = 0``. The correction only lowers values
    that are already at most ``zp``; when the activation's lower clamp is at least
    ``zp`` (ReLU, ReLU6) the clamp hides it and it is skipped.

    Per-channel constants are tiled along rows (``T`` rows, at most ``TILE`` values,
    all the rows of a chunk when they fit): with operands of one shape numpy runs a
    pass as one contiguous loop, while a broadcast pays a per-call iterator setup
    and one short inner loop per row. The tiles are a fixed cost per op, built at
    bind time (:meth:`tile_bytes`).
    """

    TILE = 8192
    STEEP = float(1 << 32)

    def __init__(self, multipliers: np.ndarray, shifts: np.ndarray, output_zero_point: int,
                 act_min: int, act_max: int, bias: Optional[np.ndarray] = None,
                 constant: Optional[dict[int, int]] = None) -> None:
        m = np.asarray(multipliers, dtype=np.int64).reshape(-1)
        s = np.asarray(shifts, dtype=np.int64).reshape(-1)
        n = max(m.size, 1 if bias is None else np.asarray(bias).size)
        b = np.zeros(n, np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(-1)
        length = min(n, b.size)  # (one value per channel of the bias, as the per-channel loop always had)
        g, h, d = _float_form(np.broadcast_to(m, (n,))[:length], np.broadcast_to(s, (n,))[:length], b[:length],
                              output_zero_point)
        if constant:
            gl, hl, dl = g.tolist(), h.tolist(), d.tolist()
            for c, value in constant.items():  # y = value + 1/2: floor gives the value
                gl[c], hl[c], dl[c] = 0.0, value + 0.5, 0.0
            g, h, d = np.array(gl), np.array(hl), np.array(dl)
        self.constant_channels = len(constant or {})
        self.channels = n
        self.g, self.h, self.d = g, h, d
        self.correct = bool(act_min < output_zero_point and np.any(self.d > 0))
        zp1 = float(output_zero_point + 1)
        self.steep_offset = zp1 - self.STEEP * zp1  # exact: an integer below 2**40
        self.lo, self.hi = np.float64(act_min), np.float64(act_max)
        self._tiles: dict[int, tuple["np.ndarray | np.float64", ...]] = {}

    @classmethod
    def create(cls, multipliers: np.ndarray, shifts: np.ndarray, output_zero_point: int, act_min: int,
               act_max: int, bias: Optional[np.ndarray], acc_bound: np.ndarray) -> Optional["FloatRequantizer"]:
        """A float requantizer when it is provably exact for ``|acc| <= acc_bound``, else ``None``.

        Channels the float form cannot compute exactly are accepted when their output is
        constant over that range (:func:`float_requant_channels`)."""
        b = np.zeros(1, np.int64) if bias is None else bias
        constant = float_requant_channels(multipliers, shifts, output_zero_point, act_min, act_max, b, acc_bound)
        if constant is None:
            return None
        return cls(multipliers, shifts, output_zero_point, act_min, act_max, bias, constant)

    def _constant(self, v: np.ndarray, t: int) -> "np.ndarray | np.float64":
        if np.all(v == v[0]):
            return np.float64(v[0])
        tiled = np.ascontiguousarray(np.tile(v, t))
        tiled.flags.writeable = False
        return tiled

    def _tiled(self, key: int, t: int, arrays: tuple[np.ndarray, ...], ch: int) -> tuple:
        if key not in self._tiles:
            self._tiles[key] = tuple(self._constant(np.broadcast_to(v, (ch,)), t) for v in arrays)
        return self._tiles[key]

    def tile_bytes(self) -> int:
        """Bytes of the tiled constants built so far (a fixed cost, reported by the interpreter)."""
        return sum(int(a.nbytes) for tiles in self._tiles.values() for a in tiles if isinstance(a, np.ndarray))

    def folded_weights(self, weights: np.ndarray) -> np.ndarray:
        """``[W * g; h]``: int-valued weights (K, C) scaled per channel, plus ``h`` as row K.

        With an input row ``[x, 1]`` one float64 matrix product gives ``y = acc * g + h``
        exactly: every product and partial sum is a multiple of ``2**-S_c`` whose integer
        part stays inside the bound :func:`float_requant_exact` checked (the bound covers
        any subset of the terms), so BLAS's order of summation (or FMA) cannot round.
        """
        k, ch = weights.shape
        full = np.empty((k + 1, ch), np.float64)
        np.multiply(weights, np.broadcast_to(self.g, (ch,)), out=full[:k])
        full[k] = np.broadcast_to(self.h, (ch,))
        full.flags.writeable = False
        return full

    def _rounding(self, yv: np.ndarray, tv: Optional[np.ndarray], dt: "np.ndarray | np.float64", y: np.ndarray,
                  out: np.ndarray) -> "Callable[[], None]":
        lo, hi, correct = self.lo, self.hi, self.correct
        steep, offset = self.STEEP, self.steep_offset
        mul, add, sub, mn, mx, floor, copyto, clip = (np.multiply, np.add, np.subtract, np.minimum, np.maximum,
                                                       np.floor, np.copyto, CLIP)

        def run() -> None:
            if correct:
                mul(yv, steep, out=tv)
                add(tv, offset, out=tv)
                mn(tv, yv, out=tv)
                sub(yv, dt, out=yv)
                mx(yv, tv, out=yv)
            floor(yv, out=yv)
            clip(yv, lo, hi, out=yv)
            copyto(out, y, casting="unsafe")

        return run

    def bind_rounding(self, y: np.ndarray, tmp: Optional[np.ndarray], out: np.ndarray) -> "Callable[[], None]":
        """A closure turning ``y = acc * g + h`` (float64, (m, C), already computed) into ``out``.

        ``tmp`` is a float64 buffer of ``y``'s shape (used when the correction applies)."""
        if y.shape[1] != self.channels and self.channels != 1:
            raise ValueError(f"values have {y.shape[1]} channels, the requantizer {self.channels}")
        (dt,) = self._tiled(-1, 1, (self.d,), y.shape[1])  # (C,): broadcasts over the rows
        return self._rounding(y, tmp, dt, y, out)

    def bind(self, acc: np.ndarray, y: np.ndarray, tmp: Optional[np.ndarray], out: np.ndarray
             ) -> "Callable[[], None]":
        """A closure computing ``out`` (int8, (m, C)) from ``acc`` (float32/float64, (m, C)).

        ``y`` and ``tmp`` are float64 (m, C) work buffers (``tmp`` is used when the
        correction applies). All views are made here; the closure only runs ufuncs.
        """
        m_rows, ch = acc.shape
        if ch != self.channels and self.channels != 1:
            raise ValueError(f"accumulators have {ch} channels, the requantizer {self.channels}")
        t = 1
        for cand in range(1, m_rows + 1):
            if m_rows % cand == 0 and cand * ch <= max(self.TILE, ch):
                t = cand
        used = (self.g, self.h, self.d) if self.correct else (self.g, self.h)
        gt, ht, *rest = self._tiled(t, t, used, ch)
        dt = rest[0] if self.correct else None
        shape = (m_rows // t, t * ch)
        accv = acc.reshape(shape)
        yv = y.reshape(shape)
        tv = tmp.reshape(shape) if self.correct else None
        rounding = self._rounding(yv, tv, dt, y, out)
        widen = acc.dtype != np.float64
        mul, add, copyto = np.multiply, np.add, np.copyto

        def run() -> None:
            if widen:
                copyto(yv, accv)
                mul(yv, gt, out=yv)
            else:
                mul(accv, gt, out=yv)
            add(yv, ht, out=yv)
            rounding()

        return run


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


def saturating_mul_pot_scalar(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT on a Python int (int32 raw value)."""
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
        x = _wrap32_s(x + saturating_mul_pot_scalar(srdhm_scalar(x, one_minus), 2))
    return saturating_mul_pot_scalar(x, 1)


def get_reciprocal_scalar(x: int, x_integer_digits: int) -> tuple[int, int]:
    """``GetReciprocal`` of a positive Python int: (Q0.31 scale, num_bits_over_unit)."""
    headroom_plus_one = 32 - int(x).bit_length()
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = _wrap32_s(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_scalar(shifted), num_bits_over_unit

"""More of TFLite Micro's integer arithmetic, for the unary kernels' tables and per-row values.

- Tables: every 8-bit (or 16-bit) input value, in the order of the tensor's unsigned
  view (:func:`table_inputs`), so a kernel's ``run`` is ``table.take(x.view(uint))``.
- int16 gemmlowp arithmetic (SaturatingRoundingDoublingHighMul, its truncating
  variant, saturating shifts) as HARD_SWISH uses it.
- ``GetInvSqrtQuantizedMultiplierExp`` (RSQRT, L2_NORMALIZATION), vectorised for
  tables and scalar for per-row use at run time.
- ``log_x_for_x_greater_than_or_equal_to_1`` (LOG_SOFTMAX), scalar per row.

Values are Python ints or int64 arrays; results the C code keeps in int32 are wrapped.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    INT32_MAX, INT32_MIN, one_over_one_plus_x_scalar, quantize_multiplier, rounding_divide_by_pot,
    rounding_divide_by_pot_scalar, saturating_mul_pot_scalar, srdhm_scalar, wrap32,
)

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def table_inputs(dtype: "np.dtype | type") -> np.ndarray:
    """All values of an 8- or 16-bit integer type (or bool), ordered by their unsigned bit pattern."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return np.arange(256, dtype=np.int64)  # byte patterns; only 0 and 1 occur
    unsigned = np.dtype(f"u{dt.itemsize}")
    return np.arange(1 << (8 * dt.itemsize), dtype=np.int64).astype(unsigned).view(dt).astype(np.int64)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """``std::round`` on an array (new float array)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def wrap16(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values to int16 (two's complement), in place."""
    x += 1 << 15
    x &= (1 << 16) - 1
    x -= 1 << 15
    return x


def srdhm16(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16 values (new int64 array)."""
    a = np.asarray(a, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    t = ab + nudge
    r = np.where(t >= 0, t >> 15, -((-t) >> 15))  # C division truncates toward zero
    return np.where((a == INT16_MIN) & (np.asarray(b) == INT16_MIN), INT16_MAX, r)


def sdhm16(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    """SaturatingDoublingHighMul on int16 values: product / 2**15 truncated toward zero (new array)."""
    a = np.asarray(a, dtype=np.int64)
    ab = a * b
    r = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == INT16_MIN) & (np.asarray(b) == INT16_MIN), INT16_MAX, r)


def rounding_divide_by_pot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT on int16 values, as TFLM runs it (new int64 array).

    Below 16 it is the ordinary rounding shift. From 16 up, the int16 mask ``(1 << exponent) - 1``
    wraps to -1, and the result is 1 for every ``x >= 0`` and -1 for every ``x < 0`` (the shift itself
    runs on the int-promoted value).
    """
    x = np.asarray(x, dtype=np.int64)
    if exponent < 16:
        return rounding_divide_by_pot(x, exponent, out=x.copy())
    return np.where(x >= 0, 1, -1).astype(np.int64)


def saturating_left_shift16(x: np.ndarray, amount: int) -> np.ndarray:
    """``x * 2**amount`` clamped to int16 (new array)."""
    return np.clip(np.asarray(x, dtype=np.int64) * (1 << amount), INT16_MIN, INT16_MAX)


def saturating_mul_pot(x: np.ndarray, exponent: int, bits: int = 32) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<exponent> on ``bits``-bit raw values (new array)."""
    x = np.asarray(x, dtype=np.int64)
    if exponent == 0:
        return x.copy()
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent, out=x.copy())
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    threshold = (1 << (bits - 1 - exponent)) - 1
    r = x << exponent
    r = np.where(x > threshold, hi, r)
    return np.where(x < -threshold, lo, r)


def _srdhm(a: np.ndarray, b: "np.ndarray | int") -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    r = (a * b + (1 << 30)) >> 31
    return np.minimum(r, INT32_MAX)


def multiply_by_quantized_multiplier_scalar(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (double rounding) on Python ints."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rounding_divide_by_pot_scalar(srdhm_scalar(_wrap32(x * (1 << left)), multiplier), right)


def _wrap32(v: int) -> int:
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def downscale_multiplier_to_int16(multiplier: int) -> int:
    """``DownScaleInt32ToInt16Multiplier``: a Q31 multiplier rounded to Q15."""
    if multiplier >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: (multiplier, left shift <= 0)."""
    if not 0.0 < real < 1.0:
        raise ValueError(f"multiplier {real} is not in (0, 1)")
    return quantize_multiplier(real)


# ---------------------------------------------------------------------------
# GetInvSqrtQuantizedMultiplierExp (reverse_shift = -1)

_HALF_THREE_F3 = (1 << 28) + (1 << 27)
_HALF_SQRT2_F0 = 1518500250


def inv_sqrt_multiplier_exp(value: int) -> tuple[int, int]:
    """``GetInvSqrtQuantizedMultiplierExp(value, kReverseShift)`` on a Python int: (multiplier, shift)."""
    if value <= 1:
        return INT32_MAX, 0
    shift = 11
    while value >= (1 << 29):
        value //= 4
        shift += 1
    clz = 32 - value.bit_length()
    pairs = (clz - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    half_input = rounding_divide_by_pot_scalar(value >> 1, 1)
    x = 1 << 28
    for _ in range(5):
        x3 = saturating_mul_pot_scalar(srdhm_scalar(srdhm_scalar(x, x), x), 6)
        x = saturating_mul_pot_scalar(_wrap32(srdhm_scalar(_HALF_THREE_F3, x) - srdhm_scalar(half_input, x3)), 3)
    x = srdhm_scalar(x, _HALF_SQRT2_F0)
    if shift < 0:
        x = _wrap32(x << -shift)
        shift = 0
    return x, -shift


def inv_sqrt_multiplier_exp_array(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`inv_sqrt_multiplier_exp` over an int64 array (values >= 0)."""
    v = np.asarray(values, dtype=np.int64)
    small = v <= 1
    v = np.where(small, 2, v)
    big = v >= (1 << 29)
    v = np.where(big, v // 4, v)
    shift = 11 + big.astype(np.int64)
    bit_length = np.frexp(v.astype(np.float64))[1].astype(np.int64)
    pairs = (32 - bit_length - 1) // 2 - 1
    shift = shift - pairs
    v = v << (2 * pairs)
    half_input = rounding_divide_by_pot(v >> 1, 1)
    x = np.full(v.shape, 1 << 28, dtype=np.int64)
    for _ in range(5):
        x3 = saturating_mul_pot(_srdhm(_srdhm(x, x), x), 6)
        x = saturating_mul_pot(wrap32(_srdhm(x, _HALF_THREE_F3) - _srdhm(half_input, x3)), 3)
    x = _srdhm(x, _HALF_SQRT2_F0)
    neg = shift < 0
    x = np.where(neg, wrap32(x << np.maximum(-shift, 0)), x)
    shift = np.where(neg, 0, shift)
    return np.where(small, INT32_MAX, x), np.where(small, 0, -shift)


# ---------------------------------------------------------------------------
# log(x) for x >= 1 (gemmlowp-style, TFLite's log_x_for_x_greater_than_or_equal_to_1)

_LOG_2 = 1488522236
_SQRT_SQRT_HALF = 1805811301
_SQRT_HALF = 1518500250
_ONE_QUARTER = 536870912
_ALPHA_N = 117049297
_ALPHA_D = 127690142
_ALPHA_I = 1057819769
_ALPHA_F = 638450708


def _clz32(v: int) -> int:
    return 32 - (v & 0xFFFFFFFF).bit_length()


def _rounding_half_sum(a: int, b: int) -> int:
    s = a + b
    t = s + (1 if s >= 0 else -1)
    return t // 2 if t >= 0 else -((-t) // 2)


def _sat_add(a: int, b: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, a + b))


def log_x_ge_1(raw: int, input_integer_bits: int, output_integer_bits: int) -> int:
    """Raw Q(output_integer_bits) log of a Q(input_integer_bits) raw value >= 1."""
    accum_bits = output_integer_bits + 1
    mul = srdhm_scalar
    shifted_quarter = rounding_divide_by_pot_scalar(_ONE_QUARTER, accum_bits)
    z_a = raw
    z_a_headroom_plus_1 = _clz32(z_a)
    r_a_tmp = saturating_mul_pot_scalar(z_a, z_a_headroom_plus_1 - 1)
    r_a_raw = saturating_mul_pot_scalar(mul(r_a_tmp, _SQRT_HALF), 1)
    z_a_pow_2_adj = _sat_add(saturating_mul_pot_scalar(input_integer_bits - z_a_headroom_plus_1, 31 - accum_bits),
                             shifted_quarter)
    z_b = mul(z_a, _SQRT_HALF)
    z_b_headroom = _clz32(z_b) - 1
    r_b_raw = saturating_mul_pot_scalar(z_a, z_b_headroom)
    z_b_pow_2_adj = _sat_add(saturating_mul_pot_scalar(input_integer_bits - z_b_headroom, 31 - accum_bits),
                             -shifted_quarter)
    r = min(r_a_raw, r_b_raw)
    z_pow_2_adj = max(z_a_pow_2_adj, z_b_pow_2_adj)
    p = _rounding_half_sum(r, _SQRT_SQRT_HALF)
    q = _wrap32(r - _SQRT_SQRT_HALF)
    q = _wrap32(q + q)
    common_sq = mul(q, q)
    num = _wrap32(mul(q, r) + mul(mul(q, common_sq), _ALPHA_N))
    denom_minus_one = _wrap32(mul(p, _wrap32(_wrap32(_ALPHA_I + q) + mul(_ALPHA_D, common_sq))) + mul(_ALPHA_F, q))
    recip_denom = one_over_one_plus_x_scalar(denom_minus_one)
    num_scaled = rounding_divide_by_pot_scalar(num, accum_bits)
    total = _wrap32(mul(z_pow_2_adj, _LOG_2) + mul(num_scaled, recip_denom))
    return saturating_mul_pot_scalar(total, accum_bits - output_integer_bits)


# ---------------------------------------------------------------------------
# int16 LOGISTIC / TANH: TFLite's 256-entry table of sigmoid(i / 24) in unsigned Q0.16
# (data published with TFLite's reference kernels), linearly interpolated.

SIGMOID_TABLE_U16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498,
    40149, 40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255,
    46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865,
    52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174,
    56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544, 58800, 59048, 59288,
    59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279, 61441,
    61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886,
    62990, 63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835,
    63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450,
    64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845,
    64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097,
    65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425,
    65429, 65433, 65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465,
    65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508,
    65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516, 65517, 65517, 65518,
    65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524, 65525,
    65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529,
    65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531,
    65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533,
    65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65535], dtype=np.int64)


def checked_log2(x: float) -> tuple[bool, int]:
    """``CheckedLog2``: (x is a power of two within 1e-3 in log2, rounded log2)."""
    v = math.log(x) * (1.0 / math.log(2.0))
    r = math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)
    return abs(v - r) < 1e-3, int(r)


def int16_sigmoid_input_rescale(scale: float, tanh: bool) -> tuple[int, int]:
    """TFLM's (multiplier, left shift) taking an int16 input to the table's 1/(3 * 4096) scale.

    A power-of-two scale of 2**-12 (or 2**-13 for TANH) gives multiplier ``3 << shift``,
    shift 0; otherwise ``scale * 3 * 4096`` is doubled until above 32767 / 2 and truncated.
    """
    pot, log2 = checked_log2(scale)
    left = 12 + log2
    if pot and (left == 0 or (tanh and left == 1)):
        return 3 << left, 0
    mult = scale * 4096.0 * 3.0
    left = 0
    while mult <= 32767.0 / 2.0 and left <= 30:
        left += 1
        mult *= 2.0
    return int(mult), left


def int16_sigmoid_lut(x: np.ndarray, multiplier: int, left_shift: int, tanh: bool) -> np.ndarray:
    """int16 LOGISTIC (``tanh=False``) or TANH of raw int16 values, as TFLM's reference kernels."""
    rnd = (1 << (left_shift - 1)) if left_shift > 0 else 0
    v = (np.asarray(x, dtype=np.int64) * multiplier + rnd) >> left_shift
    a = np.abs(v)
    frac_bits = 8 if tanh else 9
    uh = a >> frac_bits
    sat = uh >= 255
    uhc = np.minimum(uh, 254)
    ua = SIGMOID_TABLE_U16[uhc]
    ub = SIGMOID_TABLE_U16[uhc + 1]
    ut = a & ((1 << frac_bits) - 1)
    if tanh:
        r = np.where(sat, 0xFFFF << 8, (ua << 8) + ut * (ub - ua))
        r = np.where(v >= 0, r - (1 << 23) + (1 << 7), -r + (1 << 23) + (1 << 7) - 1)
        return r >> 8
    r = np.where(sat, 0x7FFF << 10, (ua << 9) + ut * (ub - ua))
    r = np.where(v >= 0, r + (1 << 9), (1 << 25) - r + (1 << 9) - 1)
    return (r >> 10) & 0xFFFF


def multiply_by_quantized_multiplier_wrapped(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier with C's int32 wrap-around of ``x * 2**left`` (new array)."""
    left = max(shift, 0)
    a = wrap32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(_srdhm(a, multiplier), max(-shift, 0))


def _round_f32(x: np.ndarray) -> np.ndarray:
    """``std::round`` of float32 values, exact (float64 holds every float32 plus one half)."""
    return round_half_away(np.asarray(x, dtype=np.float64)).astype(np.float32)


def gen_int16_lut(func: "Callable[[np.ndarray], np.ndarray]", input_min: float, input_max: float,
                  output_min: float, output_max: float) -> np.ndarray:
    """TFLite's ``gen_lut<float, int16_t, int16_t>``: 512 interpolation bases plus an end value (513 int16).

    Every step runs in float32 as the C++ template does: each base is the sampled value less half
    the error a linear interpolation would make at the step's midpoint. ``func`` maps a float32 array
    to float32 values.
    """
    f32 = np.float32
    steps = 512
    step = (f32(input_max) - f32(input_min)) / f32(steps)
    half = step / f32(2)
    scale_inv = f32(65536) / (f32(output_max) - f32(output_min))
    i = np.arange(steps, dtype=np.float32)
    at = f32(input_min) + i * step
    val = np.asarray(func(at), dtype=np.float32)
    mid = np.asarray(func(at + half), dtype=np.float32)
    nxt = np.asarray(func(f32(input_min) + (i + f32(1)) * step), dtype=np.float32)
    sample = _round_f32(val * scale_inv)
    interp = _round_f32((nxt * scale_inv + sample) / f32(2))
    bias = _round_f32((interp - _round_f32(mid * scale_inv)) / f32(2))
    lut = np.empty(steps + 1, dtype=np.int16)
    lut[:steps] = np.clip(sample - bias, INT16_MIN, INT16_MAX)
    end = _round_f32(np.asarray(func(np.array([input_max], dtype=np.float32)), dtype=np.float32) * scale_inv)
    lut[steps] = np.clip(end, INT16_MIN, INT16_MAX)[0]
    return lut


def int16_lut_lookup(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """TFLite's ``generic_int16_table_lookup``: base at ``256 + (v >> 7)`` plus the rounded slope part (int64)."""
    v = np.asarray(values, dtype=np.int64)
    index = 256 + (v >> 7)
    offset = v & 0x7F
    base = lut[index].astype(np.int64)
    slope = lut[index + 1].astype(np.int64) - base
    return base + ((slope * offset + 64) >> 7)


def int16_lut_lookup_scalar(value: int, lut: "list[int]") -> int:
    """:func:`int16_lut_lookup` of one Python int, on the table as a list (no array per call)."""
    index = 256 + (value >> 7)
    base = lut[index]
    return base + (((lut[index + 1] - base) * (value & 0x7F) + 64) >> 7)


def exp_f32(x: np.ndarray) -> np.ndarray:
    """``std::exp`` on float32 (computed in float64, rounded once to float32)."""
    return np.exp(np.asarray(x, dtype=np.float64)).astype(np.float32)


def one_over_one_plus_x_f32(x: np.ndarray) -> np.ndarray:
    """``1.0f / (1.0f + x)`` in float32."""
    x = np.asarray(x, dtype=np.float32)
    return np.float32(1) / (np.float32(1) + x)

"""Integer arithmetic of TFLM's recurrent kernels (LSTM, SVDF), vectorised on int64 buffers.

Everything here works in place on preallocated int64 arrays holding int32 (or int16)
values, so kernels can call it from ``run()`` without allocating:

- :class:`ColumnRequant`: MultiplyByQuantizedMultiplier on int32 values, with
  (multiplier, shift) per gate or channel, in TFLM's default double-rounding form
  (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT), with the int32 wrap
  of ``x * 2**left`` that the C code shows when it overflows.
- :class:`ColumnRequant64`: the int64-accumulator overload of
  MultiplyByQuantizedMultiplier (the multiplier reduced to 16 bits, one rounding
  shift), used by 16x8 fully connected layers with int64 bias.
- :class:`Int16Sigmoid` and :class:`Int16Tanh`: the int16 logistic/tanh of TFLite's
  reference integer ops: a 256-entry table of sigmoid(i/24) in 0.16 fixed point,
  linear interpolation on the low bits, symmetry for negative inputs.
- :func:`checked_log2`: TFLite's ``CheckedLog2`` (the power of two of a scale).
"""
from __future__ import annotations

import math

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier, wrap32

#: sigmoid(i / 24) in unsigned 0.16 fixed point, i = 0..255 (TFLite's int16 logistic/tanh table).
SIGMOID_TABLE_U16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794, 41432, 42064, 42688,
    43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409,
    51865, 52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110,
    61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186,
    63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900,
    64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208,
    65221, 65234, 65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433, 65438, 65442, 65445, 65449,
    65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530,
    65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535,
], dtype=np.int64)

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def checked_log2(x: float) -> tuple[int, bool]:
    """``CheckedLog2`` on a float32 scale: (rounded log2, whether it is a power of two within 1e-3)."""
    lg = np.float32(np.log(np.float32(x))) * np.float32(1.0 / math.log(2.0))
    rounded = math.floor(abs(float(lg)) + 0.5) * (1 if lg >= 0 else -1)
    return int(rounded), abs(float(lg) - rounded) < 1e-3


def _segment_tables(top: int) -> tuple[np.ndarray, np.ndarray]:
    """Table bases and slopes indexed by ``min(|x| >> frac, 255)``; index 255 holds ``top`` and slope 0
    (the saturated value of the C code)."""
    base = SIGMOID_TABLE_U16.copy()
    base[255] = top
    slope = np.zeros(256, np.int64)
    slope[:255] = SIGMOID_TABLE_U16[1:] - SIGMOID_TABLE_U16[:255]
    return base, slope


class ColumnRequant:
    """``MultiplyByQuantizedMultiplier(int32 x, M_c, shift_c)``, double rounding; the parameters are shaped
    ``param_shape`` and broadcast against the values (one per gate, per channel, or a scalar)."""

    def __init__(self, multipliers: "list[int] | np.ndarray", shifts: "list[int] | np.ndarray",
                 param_shape: tuple[int, ...] = (-1,)) -> None:
        m = np.asarray(multipliers, np.int64).reshape(param_shape)
        s = np.asarray(shifts, np.int64).reshape(param_shape)
        self.left = np.maximum(s, 0)
        right = np.maximum(-s, 0)
        self.right = right
        self.mult = m
        self.half = np.where(right > 0, np.left_shift(np.int64(1), np.maximum(right - 1, 0)), 0).astype(np.int64)
        self.round_neg = (right > 0).astype(np.int64)
        self.any_left = bool(np.any(self.left > 0))
        if m.size == 1:  # scalars broadcast without per-call iterator setup over a vector
            self.left, self.right, self.mult = (np.int64(v.reshape(-1)[0]) for v in (self.left, self.right, self.mult))
            self.half, self.round_neg = np.int64(self.half.reshape(-1)[0]), np.int64(self.round_neg.reshape(-1)[0])

    def apply(self, x: np.ndarray, tmp: np.ndarray) -> None:
        """``x`` (int64 holding int32 values) <- MultiplyByQuantizedMultiplier(x), in place."""
        if self.any_left:
            np.left_shift(x, self.left, out=x)
            wrap32(x)
        np.multiply(x, self.mult, out=x)
        x += 1 << 30
        x >>= 31
        np.right_shift(x, 63, out=tmp)  # -1 where negative: RoundingDivideByPOT rounds ties away from zero
        np.multiply(tmp, self.round_neg, out=tmp)
        x += self.half
        x += tmp
        np.right_shift(x, self.right, out=x)


def quantized_multipliers(scales: "list[float]") -> tuple[list[int], list[int]]:
    """``QuantizeMultiplier`` of each real multiplier (given as doubles): (multipliers, shifts)."""
    pairs = [quantize_multiplier(float(s)) for s in scales]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class ColumnRequant64:
    """``MultiplyByQuantizedMultiplier(int64 x, M_c, shift_c)``: the multiplier reduced to 16 bits, one
    rounding; parameters shaped ``param_shape`` as in :class:`ColumnRequant`."""

    def __init__(self, multipliers: "list[int] | np.ndarray", shifts: "list[int] | np.ndarray",
                 param_shape: tuple[int, ...] = (-1,)) -> None:
        m = np.asarray(multipliers, np.int64).reshape(param_shape)
        s = np.asarray(shifts, np.int64).reshape(param_shape)
        self.reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF).astype(np.int64)
        total = 15 - s
        self.total = total
        self.round = np.left_shift(np.int64(1), total - 1).astype(np.int64)
        if m.size == 1:
            self.reduced, self.total, self.round = (np.int64(v.reshape(-1)[0]) for v in
                                                    (self.reduced, self.total, self.round))

    def apply(self, x: np.ndarray) -> None:
        """``x`` (int64) <- the int32 result, wrapped as the C cast does, in place."""
        np.multiply(x, self.reduced, out=x)
        x += self.round
        np.right_shift(x, self.total, out=x)
        wrap32(x)


class _Int16Segmented:
    """Shared core of TFLite's int16 reference Logistic and Tanh: scale the input, then interpolate
    ``|x|`` in a 256-segment table (``frac_bits`` fractional bits per segment). In place, no allocation."""

    frac_bits = 0
    table_end = 0

    def __init__(self, shape: tuple[int, ...], input_multiplier: int = 0, input_left_shift: int = 0) -> None:
        if input_multiplier == 0:
            input_multiplier, input_left_shift = 3 << input_left_shift, 0
        self.mult = np.int64(input_multiplier)
        self.shift = int(input_left_shift)
        self.round = np.int64((1 << (self.shift - 1)) if self.shift > 0 else 0)
        self.base, self.slope = _segment_tables(self.table_end)
        self.a = np.empty(shape, np.int64)
        self.b = np.empty(shape, np.int64)
        self.c = np.empty(shape, np.int64)

    def _interpolate(self, x: np.ndarray) -> None:
        """``x`` <- the scaled input; ``c`` <- the interpolated table value of ``|x|``; ``b`` <- -1 where x < 0,
        ``a`` <- +1 / -1."""
        a, b, c, bits = self.a, self.b, self.c, self.frac_bits
        np.multiply(x, self.mult, out=x)
        wrap32(x)
        if self.shift:
            x += self.round
            x >>= self.shift
        np.abs(x, out=a)
        np.right_shift(a, bits, out=b)
        np.minimum(b, 255, out=b)
        np.bitwise_and(a, (1 << bits) - 1, out=a)
        np.take(self.slope, b, out=c, mode="clip")  # indices are in range; no buffering
        a *= c
        np.take(self.base, b, out=c, mode="clip")
        c <<= bits
        c += a
        np.right_shift(x, 63, out=b)  # -1 where the scaled input is negative
        np.multiply(b, 2, out=a)
        a += 1  # +1 / -1


class Int16Sigmoid(_Int16Segmented):
    """TFLite's int16 ``Logistic(input_multiplier, input_left_shift)`` (reference integer ops), in place."""

    frac_bits = 9
    table_end = 65534  # 0x7FFF << 10 == 65534 << 9

    def apply(self, x: np.ndarray) -> None:
        """``x`` (int64 holding int16 values) <- sigmoid(x) as int16 values."""
        a, b, c = self.a, self.b, self.c
        self._interpolate(x)  # c: the table value (unsigned, < 2**25)
        c *= a
        c += 512
        np.multiply(b, -((1 << 25) - 1), out=a)
        c += a
        np.right_shift(c, 10, out=x)


class Int16Tanh(_Int16Segmented):
    """TFLite's int16 ``Tanh(input_multiplier, input_left_shift)`` (reference integer ops), in place."""

    frac_bits = 8
    table_end = 65535  # 0xFFFF << 8

    @classmethod
    def for_cell_state(cls, shape: tuple[int, ...], cell_scale_power: int) -> "Int16Tanh":
        """The tanh TFLM's LSTM applies to a value of scale ``2**cell_scale_power``."""
        left = 15 + cell_scale_power - 3
        if left < 0:
            return cls(shape, 3, -left)
        return cls(shape, 0, left)

    def apply(self, x: np.ndarray) -> None:
        """``x`` (int64 holding int16 values) <- tanh(x) as int16 values."""
        a, b, c = self.a, self.b, self.c
        self._interpolate(x)
        c -= 1 << 23
        c *= a
        c += 128
        c += b
        np.right_shift(c, 8, out=x)

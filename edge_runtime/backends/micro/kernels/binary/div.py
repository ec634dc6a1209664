"""DIV: elementwise division with broadcasting (up to rank 6) and a fused activation.

- float32: ``a / b``, then the activation clamp.
- int32: C division (truncating toward zero), then the activation clamp. Computed as
  ``trunc(a / b)`` in float64, which is exact for int32 operands (the quotient is at
  least ``1/|a| >= 2**-31`` relative away from the next integer, far above float64's
  rounding).
- int8: TFLM's reference arithmetic per pair of values (a 65,536-entry table): the
  offset divisor is made positive (flipping both signs), its Q0.31 reciprocal taken
  (GetReciprocal), the offset dividend shifted up by its headroom and multiplied by
  it, and the quotient rescaled by the output multiplier with the combined shift.
  The output multiplier ``s1 / (s2 * s_out)`` is computed in double (the source we read
  casts a float32 quotient, but the tflite-micro build's results follow the double
  value: checked on all pairs, where ties such as 87.5 tell them apart). A zero
  divisor (input value equal to its zero point) is undefined in TFLM; the table holds
  the output zero point there.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import quantize_multiplier, srdhm, wrap32
from edge_runtime.backends.micro.fixedpoint_binary import count_leading_sign_bits, reciprocal_q31
from edge_runtime.backends.micro.kernels.base import float_activation_range, quantized_activation_range
from edge_runtime.backends.micro.kernels.binary.common import (
    PairTableKernel, int_activation_range, require_quantized,
)

F64 = np.dtype(np.float64)


class Div(PairTableKernel):
    """DIV: float32, int32, int8."""

    max_version = 2

    def prepare(self) -> None:
        """Types, activation range, int8 table."""
        ctx = self.ctx
        kind = self.require_types(("FLOAT32", "INT32", "INT8"))
        self.kind = kind
        act = opt.activation_only(ctx.op)["activation"]
        if kind == "FLOAT32":
            self.act = float_activation_range(ctx, act)
        elif kind == "INT32":
            for t in (*self.ins, self.out):
                if t.quantization is not None and t.quantization.scale.size:
                    raise ctx.fail(f"int32 DIV needs unquantized tensors; '{t.name}' is quantized")
            self.lo, self.hi = int_activation_range(ctx, act)
            self.temps = {"q": F64}
        else:
            s1, z1 = require_quantized(ctx, self.ins[0], "first input")
            s2, z2 = require_quantized(ctx, self.ins[1], "second input")
            so, zo = require_quantized(ctx, self.out, "output")
            lo, hi = quantized_activation_range(ctx, act, so, zo)
            real = s1 / (s2 * so)  # in double (what the tflite-micro build does), not float32
            m, shift = quantize_multiplier(real)
            if shift > 23:
                raise ctx.fail(f"the DIV output multiplier {real:g} is too large for TFLM's int8 arithmetic")
            self.use_table(lambda a, b: self._int8(a - z1, b - z2, m, shift, zo, lo, hi), np.int8,
                           (z1, z2, m, shift, zo, lo, hi))

    @staticmethod
    def _int8(v1: np.ndarray, v2: np.ndarray, m: int, shift: int, zo: int, lo: int, hi: int) -> np.ndarray:
        """TFLM's quantized division of offset values (prepare time, on all pairs).

        Where the final rounding shift exceeds 31 (tiny dividends over large divisors with
        small output multipliers) TFLM's RoundingDivideByPOT runs with an out-of-range
        exponent; that is reproduced with x86 shift semantics (the shift count taken modulo
        32, the mask from a 64-bit shift truncated to 32 bits), as tflite-micro's build does.
        """
        zero = v2 == 0
        neg = v2 < 0
        v1 = np.where(neg, -v1, v1)
        v2 = np.where(neg | zero, np.abs(v2) + zero, v2)
        divisors = np.arange(257, dtype=np.int64)
        inv_t, shift_t = reciprocal_q31(np.maximum(divisors, 1))  # |divisor| <= 256
        inv, recip_shift = inv_t[v2], shift_t[v2]
        headroom = count_leading_sign_bits(np.arange(-256, 257, dtype=np.int64))[v1 + 256]
        q = srdhm(wrap32(v1 << headroom), inv)  # MultiplyByQuantizedMultiplierGreaterThanOne
        x = srdhm(q, m)
        exponent = recip_shift + headroom - shift  # minus TFLM's total_shift
        e = exponent & 31
        mask = np.where(exponent > 31, ((np.int64(1) << (exponent & 63)) - 1) & 0xFFFFFFFF, (np.int64(1) << e) - 1)
        mask = np.where(mask >= 1 << 31, mask - (1 << 32), mask)
        remainder = x & mask
        threshold = (mask >> 1) + (x < 0)
        out = (x >> e) + (remainder > threshold)  # RoundingDivideByPOT, as the compiled code runs it
        out = np.clip(out + zo, lo, hi)
        return np.where(zero, zo, out)

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.table is not None:
            self.compute_table(ins, y, t)
        elif self.kind == "FLOAT32":
            with np.errstate(divide="ignore", invalid="ignore"):  # x/0 gives inf or nan, as in C
                np.divide(ins[0], ins[1], out=y)
            np.clip(y, self.act[0], self.act[1], out=y)
        else:
            q = t["q"]
            with np.errstate(all="ignore"):  # (x/0 traps in TFLM; micro gives a saturated or junk value)
                np.divide(ins[0], ins[1], out=q)
                np.trunc(q, out=q)
                np.clip(q, self.lo, self.hi, out=q)
                np.copyto(y, q, casting="unsafe")

"""SQUARED_DIFFERENCE: ``(a - b)**2`` with broadcasting.

float32 and int32 (wrapping) directly. int8 and int16 follow TFLM: each offset input
is shifted left (7 bits for int8, 0 for int16), rescaled by ``scale / (2 * max scale)``,
the difference squared (in int32) and rescaled by ``(2 * max scale)**2 /
(2**(2 * shift) * output scale)``. int8 runs as a pair table, int16 directly (its zero
points must be 0, as TFLM requires).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier, wrap32
from edge_runtime.backends.micro.fixedpoint_binary import mbqm, mbqm_array
from edge_runtime.backends.micro.kernels.binary.common import I64, QRANGE, PairTableKernel, require_quantized


class SquaredDifference(PairTableKernel):
    """SQUARED_DIFFERENCE: float32, int32, int8, int16."""

    max_version = 2

    def prepare(self) -> None:
        """Types and the quantized multipliers."""
        ctx = self.ctx
        kind = self.require_types(("FLOAT32", "INT32", "INT8", "INT16"))
        self.kind = kind
        if kind not in QRANGE:
            return
        s1, z1 = require_quantized(ctx, self.ins[0], "first input")
        s2, z2 = require_quantized(ctx, self.ins[1], "second input")
        so, zo = require_quantized(ctx, self.out, "output")
        if kind == "INT16" and (z1, z2, zo) != (0, 0, 0):
            raise ctx.fail("int16 SQUARED_DIFFERENCE needs zero points of 0")
        left = 7 if kind == "INT8" else 0
        twice_max = 2.0 * max(s1, s2)
        self.m1, self.sh1 = quantize_multiplier(s1 / twice_max)
        self.m2, self.sh2 = quantize_multiplier(s2 / twice_max)
        self.mo, self.sho = quantize_multiplier(twice_max * twice_max / float(np.float32((1 << (2 * left)) * so)))
        self.left, self.z1, self.z2, self.zo = left, z1, z2, zo
        self.lo, self.hi = QRANGE[kind]
        if kind == "INT8":
            key = (z1, z2, zo, self.m1, self.sh1, self.m2, self.sh2, self.mo, self.sho)
            self.use_table(self._int8, np.int8, key)
        else:
            self.temps = {"a": I64, "b": I64, "tmp": I64}

    def _int8(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sa = mbqm_array((a - self.z1) << self.left, self.m1, self.sh1)
        sb = mbqm_array((b - self.z2) << self.left, self.m2, self.sh2)
        d = wrap32((sa - sb) * (sa - sb))
        return np.clip(mbqm_array(d, self.mo, self.sho) + self.zo, self.lo, self.hi)

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.table is not None:
            self.compute_table(ins, y, t)
        elif self.kind == "INT16":
            a, b, tmp = t["a"], t["b"], t["tmp"]
            np.copyto(a, ins[0], casting="unsafe")
            np.copyto(b, ins[1], casting="unsafe")
            mbqm(a, self.m1, self.sh1, tmp)
            mbqm(b, self.m2, self.sh2, tmp)
            a -= b
            a *= a
            wrap32(a)
            mbqm(a, self.mo, self.sho, tmp)
            np.clip(a, self.lo, self.hi, out=a)
            np.copyto(y, a, casting="unsafe")
        else:
            np.subtract(ins[0], ins[1], out=y)
            np.multiply(y, y, out=y)

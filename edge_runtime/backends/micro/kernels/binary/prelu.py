"""PRELU: ``x >= 0 ? x : alpha * x``, alpha broadcast to the input (TFLM: float32 up to rank 4).

float32 directly. Quantized (int8 input and alpha, or int16 input with int8 alpha):
the offset input is rescaled by ``s_in / s_out`` where it is >= 0, else the product
of offset input and offset alpha by ``s_in * s_alpha / s_out``; then the output
offset and the type's full range. int8 runs as a pair table, int16 directly.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.fixedpoint_binary import mbqm, mbqm_array
from edge_runtime.backends.micro.kernels.binary.common import (
    BOOL, I64, QRANGE, PairTableKernel, require_quantized,
)


class Prelu(PairTableKernel):
    """PRELU: float32; int8 with int8 alpha; int16 with int8 alpha."""

    max_version = 1
    inplace_inputs = (0,)

    def prepare(self) -> None:
        """Types and multipliers."""
        ctx = self.ctx
        x, alpha = self.ins
        if x.type_name not in ("FLOAT32", "INT8", "INT16"):
            raise ctx.fail(f"input tensor '{x.name}' has type {x.type_name}; supported: FLOAT32, INT8, INT16")
        want_alpha = "FLOAT32" if x.type_name == "FLOAT32" else "INT8"
        if alpha.type_name != want_alpha:
            raise ctx.fail(f"alpha tensor '{alpha.name}' has type {alpha.type_name}; with {x.type_name} input "
                           f"it must be {want_alpha}")
        if self.out.type_name != x.type_name:
            raise ctx.fail(f"output tensor '{self.out.name}' has type {self.out.type_name}; expected {x.type_name}")
        self.kind = x.type_name
        if self.kind == "FLOAT32" and len(self.shape) > 4:
            raise ctx.fail(f"float32 PRELU of rank {len(self.shape)} (TFLM's float kernel handles up to rank 4)")
        if self.kind == "FLOAT32":
            self.temps = {"mask": BOOL}
            return
        si, zi = require_quantized(ctx, x, "input")
        sa, za = require_quantized(ctx, alpha, "alpha")
        so, zo = require_quantized(ctx, self.out, "output")
        self.m1, self.s1 = quantize_multiplier(si / so)
        self.m2, self.s2 = quantize_multiplier(si * sa / so)
        self.zi, self.za, self.zo = zi, za, zo
        self.lo, self.hi = QRANGE[self.kind]
        if self.kind == "INT8":
            self.use_table(self._int8, np.int8, (zi, za, zo, self.m1, self.s1, self.m2, self.s2))
        else:
            self.temps = {"v": I64, "w": I64, "tmp": I64, "mask": BOOL}

    def _int8(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        v = x - self.zi
        pos = mbqm_array(v, self.m1, self.s1)
        neg = mbqm_array(v * (a - self.za), self.m2, self.s2)
        return np.clip(np.where(v >= 0, pos, neg) + self.zo, self.lo, self.hi)

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.table is not None:
            self.compute_table(ins, y, t)
        elif self.kind == "FLOAT32":
            mask = t["mask"]  # (element by element, so that the output may overwrite the input)
            np.greater_equal(ins[0], 0.0, out=mask)
            np.copyto(y, ins[0], where=mask)
            np.logical_not(mask, out=mask)
            np.multiply(ins[0], ins[1], out=y, where=mask)
        else:
            v, w, tmp, mask = t["v"], t["w"], t["tmp"], t["mask"]
            np.copyto(v, ins[0], casting="unsafe")
            v -= self.zi
            np.greater_equal(v, 0, out=mask)
            np.copyto(w, ins[1], casting="unsafe")
            w -= self.za
            w *= v
            mbqm(w, self.m2, self.s2, tmp)
            mbqm(v, self.m1, self.s1, tmp)
            np.copyto(w, v, where=mask)
            w += self.zo
            np.clip(w, self.lo, self.hi, out=w)
            np.copyto(y, w, casting="unsafe")

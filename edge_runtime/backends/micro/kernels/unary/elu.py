"""ELU: float32 (``x < 0 ? expm1f(x) : x``, glibc's ``expm1f`` as :mod:`edge_runtime.backends.micro.libm_expm1f`
computes it) and int8 (a table built in float32 as TFLM's Prepare does).

int8 table entry for ``q``: ``d = scale_in * (q - zp_in)`` (float32),
``t = d < 0 ? exp(d) - 1 : d``, ``round(t * (1 / scale_out)) + zp_out`` (round half
away from zero), clamped.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint_lut import round_half_away
from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine
from edge_runtime.backends.micro.libm_expm1f import ExpM1F


def _expf(x: np.ndarray) -> np.ndarray:
    """float32 exp, correctly rounded (through float64) as libm's expf."""
    return np.exp(x.astype(np.float64)).astype(np.float32)


class Elu(UnaryKernel):
    """ELU."""

    TYPES = ("FLOAT32", "INT8")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Build the int8 table; float32 needs a scratch copy."""
        if x.type_name == "FLOAT32":
            self.workspace = {"neg": (tuple(x.shape), np.dtype(np.float32)), "m": (tuple(x.shape), np.dtype(np.bool_))}
            self.expm1f = ExpM1F(int(np.prod(x.shape, dtype=np.int64)))
            return
        sx, zx = affine(self.ctx, x, "input")
        sy, zy = affine(self.ctx, y, "output")
        v = self.table_inputs()
        d = np.float32(sx) * (v - zx).astype(np.float32)
        t = np.where(d < 0, _expf(np.minimum(d, 0)) - np.float32(1.0), d).astype(np.float32)
        inv = np.float32(1.0) / np.float32(sy)
        r = round_half_away((t * inv).astype(np.float32).astype(np.float64))
        q = (r.astype(np.float32) + np.float32(zy)).astype(np.float64)
        q = np.trunc(q)
        self.set_table(np.clip(q, -128, 127))

    def run_float(self) -> None:
        """TFLM's ``x < 0 ? expm1f(x) : x`` (-0 and NaN pass through)."""
        neg, m = self.ws["neg"], self.ws["m"]
        self.expm1f(self.x, neg)
        np.less(self.x, np.float32(0.0), out=m)
        np.copyto(self.y, self.x)  # (a no-op in place)
        np.putmask(self.y, m, neg)

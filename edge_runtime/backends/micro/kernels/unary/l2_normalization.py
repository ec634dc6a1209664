"""L2_NORMALIZATION over the last axis: float32 and int8 (TFLM's integer algorithm).

float32: ``x / max(sqrt(sum(x**2)), 1e-6)`` per row, bit-exact with TFLM's float kernel: the
squares summed sequentially in float32 along the row (:class:`~edge_runtime.backends.micro.kernels.reduce.FloatReduction`),
float32 sqrt, ``max`` with float32 epsilon (NaN kept), float32 division.
int8: ``v = q - zp_in``; per row, ``acc = sum(v**2)`` and
GetInvSqrtQuantizedMultiplierExp(acc) gives (multiplier, shift); each output is
MultiplyByQuantizedMultiplier(v, multiplier, shift + 7) clamped to int8 (the result
is on the 1/128 scale whatever the output's parameters, as in TFLM). The per-row
multipliers are Python ints; the per-element steps run with ``out=`` on int64 rows.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint_lut import inv_sqrt_multiplier_exp
from edge_runtime.backends.micro.kernels.base import TensorInfo, activation_name
from edge_runtime.backends.micro.kernels.reduce import FloatReduction
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel, affine, option_scalar

OUTPUT_SHIFT = 7
EPSILON = 1e-6
EPS32 = np.float32(EPSILON)


class L2Normalization(UnaryKernel):
    """L2_NORMALIZATION (L2NormOptions{fused_activation_function}: NONE only, as TFLM)."""

    max_version = 2
    TYPES = ("FLOAT32", "INT8")

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Check rank and activation; size the row workspace."""
        act = int(option_scalar(self.ctx.op, 0, "b", 0))
        if activation_name(self.ctx, act) != "NONE":
            raise self.ctx.fail("L2_NORMALIZATION supports no fused activation")
        if not x.shape or len(x.shape) > 4:
            raise self.ctx.fail(f"input rank {len(x.shape)} is not supported (1 to 4)")
        self.depth = int(x.shape[-1])
        self.rows = x.num_elements // max(1, self.depth)
        rows, depth = (self.rows, self.depth), (self.rows, 1)
        if x.type_name == "FLOAT32":
            self.fsum = FloatReduction(rows, (1,), self.ctx.workspace_limit // 4)
            self.workspace = {"f": (rows, np.dtype(np.float32)), "s": (depth, np.dtype(np.float32)),
                              "buf": ((self.fsum.size,), np.dtype(np.float32))}
            return
        _, self.zero_point = affine(self.ctx, x, "input")
        self.workspace = {"e": (rows, np.dtype(np.int64)), "t": (rows, np.dtype(np.int64)),
                          "acc": (depth, np.dtype(np.int64)), "mult": (depth, np.dtype(np.int64)),
                          "left": (depth, np.dtype(np.int64)), "right": (depth, np.dtype(np.int64)),
                          "half": (depth, np.dtype(np.int64)), "hasr": (depth, np.dtype(np.int64))}

    def bind(self, inputs, outputs, scratch, ws) -> None:  # type: ignore[no-untyped-def]
        """Row views."""
        super().bind(inputs, outputs, scratch, ws)
        self.xr = self.x.reshape(self.rows, self.depth)
        self.yr = self.y.reshape(self.rows, self.depth)
        if self.x_info.type_name == "FLOAT32":
            self.fsum.bind(ws["f"], ws["s"], ws["buf"])

    def run_float(self) -> None:
        """Rows divided by their L2 norm (at least epsilon)."""
        if self.x_info.type_name == "INT8":
            self._run_int8()
            return
        f, s = self.ws["f"], self.ws["s"]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # inf and NaN as in C
            np.multiply(self.xr, self.xr, out=f)
            self.fsum.run()
            np.sqrt(s, out=s)
            np.maximum(s, EPS32, out=s)
            np.divide(self.xr, s, out=self.yr)

    def _run_int8(self) -> None:
        ws = self.ws
        e, t, acc = ws["e"], ws["t"], ws["acc"]
        mult, left, right, half, hasr = ws["mult"], ws["left"], ws["right"], ws["half"], ws["hasr"]
        np.copyto(e, self.xr)
        e -= self.zero_point
        np.multiply(e, e, out=t)
        np.add.reduce(t, axis=1, keepdims=True, out=acc)
        for r in range(self.rows):
            m, s = inv_sqrt_multiplier_exp(int(acc[r, 0]))
            s += OUTPUT_SHIFT
            mult[r, 0] = m
            left[r, 0] = 1 << max(s, 0)
            rs = max(-s, 0)
            right[r, 0] = rs
            half[r, 0] = (1 << (rs - 1)) if rs > 0 else 0
            hasr[r, 0] = 1 if rs > 0 else 0
        e *= left
        e *= mult
        e += 1 << 30
        e >>= 31
        np.right_shift(e, 63, out=t)
        t *= hasr
        e += t
        e += half
        np.right_shift(e, right, out=e)
        np.clip(e, -128, 127, out=e)
        np.copyto(self.yr, e, casting="unsafe")

    def run(self) -> None:
        """Normalize every row."""
        self.run_float()

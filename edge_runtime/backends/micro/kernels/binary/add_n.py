"""ADD_N: the sum of N >= 2 tensors of one shape (float32, int8).

float32 adds the inputs in order. int8 follows TFLM's reference: every input shares
one scale and zero point; each offset value is shifted left by 20 and halved
(multiplier 1/2), the halves are summed onto a start value that TFLM computes from the
input offset itself (its accumulator starts at the rescaled offset, not at 0), and the
sum is rescaled by ``2 * scale / (2**20 * output scale)``, offset and clamped.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fixedpoint import quantize_multiplier, wrap32
from edge_runtime.backends.micro.fixedpoint_binary import mbqm, mbqm_array
from edge_runtime.backends.micro.kernels.binary.common import I64, ElementwiseKernel, require_quantized

LEFT_SHIFT = 20


class AddN(ElementwiseKernel):
    """ADD_N: float32, int8."""

    max_version = 2
    n_inputs = None

    def prepare(self) -> None:
        """Types, equal shapes and (int8) equal quantization, multipliers."""
        ctx = self.ctx
        kind = self.require_types(("FLOAT32", "INT8"))
        self.kind = kind
        for t in self.ins:
            if tuple(t.shape) != tuple(self.ins[0].shape):
                raise ctx.fail(f"ADD_N inputs must have one shape; got {self.ins[0].shape} and {t.shape}")
        if kind == "FLOAT32":
            return
        s, z = require_quantized(ctx, self.ins[0], "first input")
        for t in self.ins[1:]:
            if require_quantized(ctx, t, "input") != (s, z):
                raise ctx.fail("ADD_N int8 inputs must share one scale and zero point")
        so, zo = require_quantized(ctx, self.out, "output")
        twice = 2.0 * s
        mi, si = quantize_multiplier(s / twice)
        real_out = twice / ((1 << LEFT_SHIFT) * so)
        if real_out >= 1.0:
            raise ctx.fail(f"the ADD_N output multiplier {real_out:g} is not below 1 (TFLM refuses it)")
        self.mo, self.so = quantize_multiplier(real_out)
        self.zo = zo
        values = np.arange(256, dtype=np.int64)
        values = np.where(values > 127, values - 256, values)  # indexed by the byte of an int8 value
        self.lut = mbqm_array((values - z) << LEFT_SHIFT, mi, si)
        self.start = np.int64(mbqm_array(np.array([(-z) << LEFT_SHIFT]), mi, si)[0])
        self.byte_inputs = tuple(range(len(self.ins)))
        self.temps = {"idx": I64, "val": I64, "acc": I64}

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.kind == "FLOAT32":
            np.add(ins[0], ins[1], out=y)
            for x in ins[2:]:
                np.add(y, x, out=y)
            return
        idx, val, acc = t["idx"], t["val"], t["acc"]
        acc.fill(self.start)
        for x in ins:
            np.copyto(idx, x, casting="unsafe")
            self.lut.take(idx, out=val, mode="clip")
            acc += val
        wrap32(acc)
        mbqm(acc, self.mo, self.so, val)
        acc += self.zo
        np.clip(acc, -128, 127, out=acc)
        np.copyto(y, acc, casting="unsafe")

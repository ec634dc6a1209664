"""CAST between float32, int8, int16, int32, uint32 and bool (the pairs TFLM's kernel accepts).

As tflite-micro computes them: integer -> integer wraps (two's complement);
integer -> float32 rounds to nearest; anything -> bool is ``x != 0``; bool -> x is
0/1; float32 -> integer truncates toward zero and saturates at the target's range
(NaN gives 0). 8/16-bit and bool inputs use a table of every input value; wider
inputs are copied to the workspace first, so the op may run in place.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel

CAST_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "UINT32", "BOOL")


def cast_values(values: np.ndarray, src: np.dtype, dst: np.dtype) -> np.ndarray:
    """TFLM's cast of an array of ``src`` values (int64 or float) to ``dst`` (new array)."""
    if dst == np.bool_:
        return values != 0
    if src == np.bool_:
        return (values != 0).astype(dst)
    if dst.kind == "f":
        return values.astype(src).astype(dst)
    if src.kind == "f":
        info = np.iinfo(dst)
        d = np.trunc(values.astype(np.float64))
        d = np.where(np.isnan(d), 0.0, np.clip(d, info.min, info.max))
        return d.astype(np.int64).astype(dst)
    return values.astype(np.int64).astype(dst)  # integer wrap


class Cast(UnaryKernel):
    """CAST."""

    max_version = 7
    TYPES = CAST_TYPES
    SAME_TYPE = False

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """Check the output type; build the table or the workspace."""
        if y.type_name not in CAST_TYPES:
            raise self.ctx.fail(f"output type {y.type_name} is not supported; supported: {', '.join(CAST_TYPES)}")
        self.src, self.dst = x.dtype, y.dtype
        if x.dtype.itemsize <= 2:
            self.set_table(cast_values(self.table_inputs(), x.dtype, y.dtype))
            return
        shape = tuple(x.shape)
        if x.type_name == "FLOAT32":
            self.workspace = {"d": (shape, np.dtype(np.float64)), "m": (shape, np.dtype(np.bool_))}
            if y.type_name != "BOOL":
                info = np.iinfo(y.dtype) if y.dtype.kind != "f" else None
                self.bounds = (float(info.min), float(info.max)) if info is not None else None
        else:
            self.workspace = {"i": (shape, np.dtype(np.int64))}

    def run_float(self) -> None:
        """Cast float32, int32 or uint32 inputs (through the workspace)."""
        if self.src.kind != "f":
            i = self.ws["i"]
            np.copyto(i, self.x)
            if self.dst == np.bool_:
                np.not_equal(i, 0, out=self.y)
            else:
                np.copyto(self.y, i, casting="unsafe")
            return
        d = self.ws["d"]
        np.copyto(d, self.x)
        if self.dst == np.bool_:
            np.not_equal(d, 0.0, out=self.y)
            return
        if self.dst.kind == "f":
            np.copyto(self.y, d, casting="unsafe")
            return
        m = self.ws["m"]
        np.isnan(d, out=m)
        np.copyto(d, 0.0, where=m)
        np.trunc(d, out=d)
        np.clip(d, self.bounds[0], self.bounds[1], out=d)
        np.copyto(self.y, d, casting="unsafe")

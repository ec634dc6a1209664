"""TOPK_V2: the ``k`` largest values along the last axis and their int32 indices, as LiteRT's ``topk_v2.cc``.

tflite-micro has no TOPK_V2; the reference is LiteRT. Inputs: data (float32, int8 or int32) and a
constant int32 ``k`` (one value, ``1 <= k <= depth``); outputs: values (the data's type, shape
``[..., k]``) and int32 indices. Values come out in descending order; equal values keep ascending
index order (LiteRT's ``TopContainer`` breaks ties by the lower index, as ONNX's TopK does). int8
values are copied, so the values output must keep the input's scale and zero point.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.layout.common import F32, I8, I32, const_ints, require_type
from edge_runtime.backends.micro.kernels.spatial.common import same_quantization

#: wide signed type per data type: negating it is exact, so a stable ascending sort is descending by value
WIDE = {F32: np.float64, I8: np.int64, I32: np.int64}


class TopKV2(Kernel):
    """TOPK_V2 (versions 1-2): data, constant k -> values, int32 indices along the last axis."""

    max_version = 2

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 2 or len(ctx.op.outputs) != 2:
            raise ctx.fail("TOPK_V2 takes 2 inputs (data, k) and gives 2 outputs (values, indices)")
        x = require_type(ctx, ctx.input(0), tuple(WIDE), "input")
        values = require_type(ctx, ctx.output(0), (x.type_name,), "values output")
        indices = require_type(ctx, ctx.output(1), (I32,), "indices output")
        k = const_ints(ctx, ctx.input(1), "k")
        if len(x.shape) < 1 or x.num_elements == 0:
            raise ctx.fail("input must have at least one dimension and no empty axis")
        depth = int(x.shape[-1])
        if k.size != 1 or not 1 <= int(k[0]) <= depth:
            raise ctx.fail(f"k {k.tolist()} must be one value in [1, {depth}] (the last axis' size)")
        self.k = int(k[0])
        expect = tuple(x.shape[:-1]) + (self.k,)
        for t, what in ((values, "values"), (indices, "indices")):
            if tuple(t.shape) != expect:
                raise ctx.fail(f"{what} output shape {tuple(t.shape)} is not {expect}")
        same_quantization(ctx, x, values)
        self.rows, self.depth = x.num_elements // depth, depth
        self.wide = WIDE[x.type_name]

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views as ``[rows, depth]`` and ``[rows, k]``."""
        self.x = inputs[0].reshape(self.rows, self.depth)
        self.values = outputs[0].reshape(self.rows, self.k)
        self.indices = outputs[1].reshape(self.rows, self.k)

    def run(self) -> None:
        """Stable ascending sort of the negated data: descending values, lower index first on ties."""
        order = np.argsort(-self.x.astype(self.wide), axis=-1, kind="stable")[:, :self.k]
        np.copyto(self.values, np.take_along_axis(self.x, order, axis=-1))
        np.copyto(self.indices, order, casting="unsafe")

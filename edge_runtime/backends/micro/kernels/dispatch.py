"""Registry entries that pick a kernel by the op's tensors: dense, sparse or 16x8.

- CONV_2D: the sparse 1x1 kernel for sparse weights, the 16x8 kernel for an int16 input,
  else the dense int8/float kernel;
- DEPTHWISE_CONV_2D: the 16x8 kernel for an int16 input, else the dense one;
- FULLY_CONNECTED: as CONV_2D.
"""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel, OpContext
from edge_runtime.backends.micro.kernels.conv import Conv2D, DepthwiseConv2D
from edge_runtime.backends.micro.kernels.fully_connected import FullyConnected
from edge_runtime.backends.micro.kernels.int16.conv_2d import Conv2D16x8
from edge_runtime.backends.micro.kernels.int16.fully_connected import FullyConnected16x8
from edge_runtime.backends.micro.kernels.sparse import SparseConv1x1, SparseFullyConnected, weights_sparse


def _int16_input(ctx: OpContext) -> bool:
    x = ctx.input(0)
    return x is not None and x.type_name == "INT16"


class FullyConnectedAny(Kernel):
    """FULLY_CONNECTED: sparse, 16x8 or dense."""

    max_version = max(FullyConnected.max_version, FullyConnected16x8.max_version)

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        if weights_sparse(ctx):
            return SparseFullyConnected(ctx)
        if _int16_input(ctx):
            return FullyConnected16x8(ctx)
        if ctx.op.opcode.version > FullyConnected.max_version:
            raise ctx.fail(f"version {ctx.op.opcode.version} is handled only for int16 inputs")
        return FullyConnected(ctx)


class Conv2DAny(Kernel):
    """CONV_2D: sparse 1x1, 16x8 or dense."""

    max_version = max(Conv2D.max_version, Conv2D16x8.max_version)

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        if weights_sparse(ctx):
            return SparseConv1x1(ctx)
        if _int16_input(ctx):
            return Conv2D16x8(ctx)
        if ctx.op.opcode.version > Conv2D.max_version:
            raise ctx.fail(f"version {ctx.op.opcode.version} is handled only for int16 inputs")
        return Conv2D(ctx)


class DepthwiseConv2DAny(Kernel):
    """DEPTHWISE_CONV_2D: 16x8 or dense."""

    max_version = max(DepthwiseConv2D.max_version, Conv2D16x8.max_version)

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        if _int16_input(ctx):
            return Conv2D16x8(ctx)
        if ctx.op.opcode.version > DepthwiseConv2D.max_version:
            raise ctx.fail(f"version {ctx.op.opcode.version} is handled only for int16 inputs")
        return DepthwiseConv2D(ctx)

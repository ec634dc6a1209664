"""Registry entries that pick a kernel by the op's tensors: dense, sparse or 16x8.

- CONV_2D: the sparse 1x1 kernel for sparse weights, the 16x8 kernel for an int16 input,
  else the dense int8/float kernel;
- DEPTHWISE_CONV_2D: the 16x8 kernel for an int16 input, else the dense one;
- FULLY_CONNECTED: as CONV_2D.

Weights or a bias that are not constant data (a model input, a subgraph argument, another op's
output) go to :class:`VariableWeights`, which reads them at every invoke as TFLM does; so do the
forms the dense kernels do not take (:func:`needs_general`): a grouped CONV_2D and a FULLY_CONNECTED
with per-tensor int8 weights of non-zero zero point.
"""
from __future__ import annotations

from typing import Optional

from edge_runtime.backends.micro.kernels.base import Kernel, OpContext
from edge_runtime.backends.micro.kernels.conv_float import Conv2DDense
from edge_runtime.backends.micro.kernels.depthwise_float import DepthwiseConv2DDense
from edge_runtime.backends.micro.kernels.fully_connected_float import FullyConnectedDense
from edge_runtime.backends.micro.kernels.int16.conv_2d import Conv2D16x8
from edge_runtime.backends.micro.kernels.int16.fully_connected import FullyConnected16x8
from edge_runtime.backends.micro.kernels.sparse import SparseConv1x1, SparseFullyConnected, weights_sparse
from edge_runtime.backends.micro.kernels.variable_weights import VariableWeights, needs_general, weights_variable


def _int16_input(ctx: OpContext) -> bool:
    x = ctx.input(0)
    return x is not None and x.type_name == "INT16"


def _dispatcher(name: str, dense: type[Kernel], sixteen: type[Kernel],
                sparse: Optional[type[Kernel]] = None) -> type[Kernel]:
    """A registry entry choosing ``sparse`` (sparse weights), ``sixteen`` (int16 input) or ``dense``."""

    def choose(cls: type, ctx: OpContext) -> Kernel:
        if sparse is not None and weights_sparse(ctx):
            return sparse(ctx)
        variable = weights_variable(ctx) or needs_general(ctx)
        if _int16_input(ctx):
            return VariableWeights(ctx) if variable else sixteen(ctx)
        if ctx.op.opcode.version > dense.max_version:
            raise ctx.fail(f"version {ctx.op.opcode.version} is handled only for int16 inputs")
        return VariableWeights(ctx) if variable else dense(ctx)

    kinds = "sparse, 16x8 or dense" if sparse is not None else "16x8 or dense"
    return type(name, (Kernel,), {"__doc__": f"{name[:-3]}: {kinds}.", "__new__": choose,
                                  "max_version": max(dense.max_version, sixteen.max_version),
                                  "__module__": __name__})


FullyConnectedAny = _dispatcher("FullyConnectedAny", FullyConnectedDense,  # type: ignore[arg-type]  # float32: exact
                                 FullyConnected16x8, SparseFullyConnected)
Conv2DAny = _dispatcher("Conv2DAny", Conv2DDense, Conv2D16x8, SparseConv1x1)  # type: ignore[arg-type]  # float32: exact
DepthwiseConv2DAny = _dispatcher("DepthwiseConv2DAny", DepthwiseConv2DDense,  # type: ignore[arg-type]  # float32: exact
                                  Conv2D16x8)

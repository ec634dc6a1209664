"""Kernel registry of the micro backend: op name -> kernel class.

The core ops live in the flat modules here; every other op family is a sub-package
(``unary/``, ``binary/``, ``layout/``, ``spatial/``, ``recurrent/``, ``control/``,
``custom/``) with one op per file and its own ``REGISTRY``, merged below. This
dict is the one index of what micro runs.
"""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.activations import Activation
from edge_runtime.backends.micro.kernels.base import Kernel, OpContext
from edge_runtime.backends.micro.kernels.dispatch import Conv2DAny, DepthwiseConv2DAny, FullyConnectedAny
from edge_runtime.backends.micro.kernels.elementwise import Binary
from edge_runtime.backends.micro.kernels.fully_connected import FullyConnected
from edge_runtime.backends.micro.kernels.pooling import Pool2D
from edge_runtime.backends.micro.kernels.quantize import Dequantize, Quantize
from edge_runtime.backends.micro.kernels.reduce import Mean
from edge_runtime.backends.micro.kernels.reshape import Reshape
from edge_runtime.backends.micro.kernels.shape_ops import Concatenation, Pad, StridedSlice, Transpose
from edge_runtime.backends.micro.kernels.softmax import Softmax

REGISTRY: dict[str, type[Kernel]] = {
    "CONV_2D": Conv2DAny,  # dense, sparse 1x1 or 16x8 (kernels/dispatch.py)
    "DEPTHWISE_CONV_2D": DepthwiseConv2DAny,  # dense or 16x8
    "FULLY_CONNECTED": FullyConnectedAny,  # dense, sparse or 16x8
    "ADD": Binary,
    "SUB": Binary,
    "MUL": Binary,
    "AVERAGE_POOL_2D": Pool2D,
    "MAX_POOL_2D": Pool2D,
    "RESHAPE": Reshape,
    "SQUEEZE": Reshape,
    "SOFTMAX": Softmax,
    "MEAN": Mean,
    "PAD": Pad,
    "CONCATENATION": Concatenation,
    "STRIDED_SLICE": StridedSlice,
    "TRANSPOSE": Transpose,
    "LOGISTIC": Activation,
    "TANH": Activation,
    "RELU": Activation,
    "RELU6": Activation,
    "QUANTIZE": Quantize,
    "DEQUANTIZE": Dequantize,
}


def _merge_families() -> None:
    from edge_runtime.backends.micro.kernels import binary, control, custom, layout, recurrent, spatial, unary

    for family in (unary, binary, layout, spatial, recurrent, control, custom):
        for name, cls in family.REGISTRY.items():
            if name in REGISTRY and REGISTRY[name] is not cls:
                raise RuntimeError(f"micro kernel registry: {name} is registered twice")
            REGISTRY[name] = cls


_merge_families()

__all__ = ["REGISTRY", "Kernel", "OpContext"]

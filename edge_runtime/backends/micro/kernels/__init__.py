"""Kernel registry of the micro backend: op name -> kernel class.

The core ops live in the flat modules here; every other op family is a sub-package
(``unary/``, ``binary/``, ``layout/``, ``spatial/``, ``recurrent/``, ``control/``,
``custom/``) with one op per file and its own ``REGISTRY``. :data:`REGISTRY` is the one
index of what micro runs: its names come from :data:`index.KERNEL_INDEX` (op -> module,
class), and a kernel's module is imported the first time its op is looked up, so opening a
model imports the kernels of its ops only (importing all ~140 kernel modules took ~110 ms).
:func:`eager_registry` imports every module and merges the families' registries, as the
index is generated and checked (``tests/test_micro_kernel_index.py``).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

from edge_runtime.backends.micro.kernels.base import Kernel, OpContext
from edge_runtime.backends.micro.kernels.index import KERNEL_INDEX
from edge_runtime.lazy_mapping import LazyMapping


def _load_kernel(name: str, where: tuple[str, str]) -> type[Kernel]:
    """The kernel class ``where = (module, qualname)`` indexes for op ``name``."""
    module, qualname = where
    return getattr(importlib.import_module(f"{__name__}.{module}"), qualname)


REGISTRY: Mapping[str, type[Kernel]] = LazyMapping(KERNEL_INDEX, _load_kernel)


def _core() -> dict[str, type[Kernel]]:
    from edge_runtime.backends.micro.kernels.activations import Activation
    from edge_runtime.backends.micro.kernels.dispatch import Conv2DAny, DepthwiseConv2DAny, FullyConnectedAny
    from edge_runtime.backends.micro.kernels.elementwise import Binary
    from edge_runtime.backends.micro.kernels.pooling import Pool2D
    from edge_runtime.backends.micro.kernels.quantize import Dequantize, Quantize
    from edge_runtime.backends.micro.kernels.reduce import Mean
    from edge_runtime.backends.micro.kernels.reshape import Reshape
    from edge_runtime.backends.micro.kernels.shape_ops import Concatenation, Pad, StridedSlice, Transpose
    from edge_runtime.backends.micro.kernels.softmax import Softmax

    return {
        "CONV_2D": Conv2DAny,  # dense, sparse 1x1 or 16x8 (kernels/dispatch.py)
        "DEPTHWISE_CONV_2D": DepthwiseConv2DAny,  # dense or 16x8
        "FULLY_CONNECTED": FullyConnectedAny,  # dense, sparse or 16x8
        "ADD": Binary, "SUB": Binary, "MUL": Binary,
        "AVERAGE_POOL_2D": Pool2D, "MAX_POOL_2D": Pool2D,
        "RESHAPE": Reshape, "SQUEEZE": Reshape,
        "SOFTMAX": Softmax,
        "MEAN": Mean,
        "PAD": Pad, "CONCATENATION": Concatenation, "STRIDED_SLICE": StridedSlice, "TRANSPOSE": Transpose,
        "LOGISTIC": Activation, "TANH": Activation, "RELU": Activation, "RELU6": Activation,
        "QUANTIZE": Quantize, "DEQUANTIZE": Dequantize,
    }


def eager_registry() -> dict[str, type[Kernel]]:
    """Every kernel, importing every module: the core ops merged with each family's ``REGISTRY``."""
    from edge_runtime.backends.micro.kernels import binary, control, custom, layout, recurrent, spatial, unary

    merged = _core()
    for family in (unary, binary, layout, spatial, recurrent, control, custom):
        for name, cls in family.REGISTRY.items():
            if name in merged and merged[name] is not cls:
                raise RuntimeError(f"micro kernel registry: {name} is registered twice")
            merged[name] = cls
    return merged


__all__ = ["REGISTRY", "Kernel", "OpContext", "eager_registry"]

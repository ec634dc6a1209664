"""ONNX op handlers, one module per op group, merged into one registry: ONNX op type -> handler.

A handler is ``handler(ctx, node, attrs)``: it reads its inputs through the
:class:`~converters.importers.onnx_ops.context.ImportContext` (which also knows every ONNX shape and
constant) and appends IR ops. Modules: ``conv`` (Conv, ConvTranspose), ``pool``, ``elementwise``
(arithmetic, activations, Gelu/HardSwish patterns), ``layout`` (reshape/transpose/concat/slice/...),
``reduce`` (reductions, Softmax), ``matmul`` (Gemm, MatMul), ``norm`` (Batch/Instance/LayerNorm),
``resize`` (every mode; linear/cubic maps through ``axis_matmul``), ``spectral`` (DFT, STFT, window ops,
MelWeightMatrix), ``recurrent`` (LSTM, GRU, RNN), ``castlike``, ``lppool``, ``control`` (Constant, Shape, If,
constant outputs), ``loop`` (a Loop/Scan left after unrolling: refused), ``lrn`` (LRN), ``hardmax``,
``reduce_prod``, ``mod``, ``scatter`` (Scatter, ScatterElements, ScatterND), ``grid_sample``,
``conv3d`` / ``pool3d`` (Conv, MaxPool, AveragePool: 3-D lowered to 2-D, other ranks passed to ``conv`` / ``pool``).
"""
from __future__ import annotations

from typing import Callable

from converters.importers.onnx_ops import (
    argmax,
    castlike,
    compare,
    control,
    conv,
    conv3d,
    elementwise,
    grid_sample,
    hardmax,
    layout,
    logsumexp,
    loop,
    lppool,
    lrn,
    matmul,
    mod,
    norm,
    pool,
    pool3d,
    recurrent,
    reduce,
    reduce_prod,
    resize,
    rounding,
    scan,
    scatter,
    spectral,
)

Handler = Callable[..., None]
REGISTRY: dict[str, Handler] = {}


def _merge() -> None:
    for module in (control, conv, pool, elementwise, layout, reduce, matmul, norm, resize, recurrent, argmax,
                   rounding, compare, scan, logsumexp, lrn, castlike, lppool, spectral,
                   grid_sample, hardmax, mod, reduce_prod, scatter, loop, conv3d, pool3d):
        for op_type, handler in module.REGISTRY.items():
            if op_type in REGISTRY:
                raise RuntimeError(f"ONNX importer registry: {op_type} is registered twice")
            REGISTRY[op_type] = handler


_merge()

__all__ = ["REGISTRY", "Handler"]

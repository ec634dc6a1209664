"""ONNX op handlers, one module per op group, behind one registry: ONNX op type -> handler.

A handler is ``handler(ctx, node, attrs)``: it reads its inputs through the
:class:`~converters.importers.onnx_ops.context.ImportContext` (which also knows every ONNX shape and
constant) and appends IR ops. Modules: ``conv`` (Conv and ConvTranspose in 1-D/2-D), ``pool``, ``elementwise``
(arithmetic, activations, Gelu/HardSwish patterns), ``layout`` (reshape/transpose/concat/slice/...),
``reduce`` (reductions, Softmax), ``matmul`` (Gemm, MatMul), ``einsum``, ``norm`` (Batch/Instance/LayerNorm),
``resize`` (every mode; linear/cubic maps through ``axis_matmul``), ``spectral`` (DFT, STFT, window ops,
MelWeightMatrix), ``recurrent`` (LSTM, GRU, RNN), ``castlike``, ``lppool``, ``control`` (Constant, Shape, If,
constant outputs), ``loop`` (a Loop/Scan left after unrolling: refused), ``lrn`` (LRN), ``hardmax``,
``reduce_prod``, ``mod``, ``scatter`` (Scatter, ScatterElements, ScatterND), ``grid_sample``,
``conv3d`` / ``pool3d`` (Conv, MaxPool, AveragePool: 3-D lowered to 2-D, other ranks passed to ``conv`` / ``pool``),
``conv_transpose3d`` (ConvTranspose: 3-D, dilated, output past the full output; the rest to ``conv``), ``col2im``,
``roi_align``, ``deform_conv``, ``max_unpool``, ``affine_grid``.

:data:`MODULE_OPS` is the registry's index: each handler module and the op types its own ``REGISTRY``
handles, one line per module. :data:`REGISTRY` answers ``in``, ``len`` and iteration from that index
alone, and imports a handler's module the first time one of its ops is looked up, so importing a model
imports the handlers of its ops only. **A new handler module gets one line in** :data:`MODULE_OPS`;
``tests/test_import_registry_index.py`` checks the index against every module's ``REGISTRY``
(:func:`eager_registry`).
"""
from __future__ import annotations

from collections.abc import Mapping

from converters.importers.lazy_registry import Handler, LazyRegistry, op_index
from converters.importers.lazy_registry import eager_registry as _eager

#: handler module (in this package) -> the ONNX op types in its ``REGISTRY``; one line per module
MODULE_OPS: dict[str, tuple[str, ...]] = {
    "control": ("Constant", "Shape", "Size", "If"),
    "conv": (),
    "conv_transpose3d": ("ConvTranspose",),
    "col2im": ("Col2Im",),
    "roi_align": ("RoiAlign",),
    "deform_conv": ("DeformConv",),
    "max_unpool": ("MaxUnpool",),
    "affine_grid": ("AffineGrid",),
    "conv3d": ("Conv",),
    "pool": ("GlobalAveragePool", "GlobalMaxPool"),
    "pool3d": ("MaxPool", "AveragePool"),
    "elementwise": ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Relu", "Sigmoid", "Exp", "Log",
                    "Sqrt", "Abs", "HardSwish", "Neg", "Reciprocal", "Gelu", "LeakyRelu", "Elu", "Softplus",
                    "Mish", "Erf", "Tanh", "HardSigmoid", "Clip", "PRelu", "Pow"),
    "layout": ("Identity", "Dropout", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat",
               "Slice", "Split", "Gather", "Pad", "Expand", "Tile", "DepthToSpace", "SpaceToDepth"),
    "reduce": ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceSumSquare", "ReduceL1", "ReduceL2",
               "Softmax", "LogSoftmax"),
    "matmul": ("Gemm", "MatMul"),
    "einsum": ("Einsum",),
    "norm": ("BatchNormalization", "LpNormalization", "InstanceNormalization", "LayerNormalization"),
    "resize": ("Resize", "Upsample"),
    "recurrent": ("LSTM", "GRU", "RNN"),
    "argmax": ("ArgMax", "ArgMin"),
    "topk": ("TopK",),
    "rounding": ("Floor", "Ceil", "Round", "Sin", "Cos", "Softsign", "Selu"),
    "compare": ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not", "Where",
                "ThresholdedRelu", "Sign", "Shrink"),
    "scan": ("CumSum", "GatherND", "GatherElements"),
    "logsumexp": ("ReduceLogSumExp", "ReduceLogSum"),
    "lrn": ("LRN",),
    "castlike": ("CastLike",),
    "lppool": ("LpPool", "GlobalLpPool"),
    "spectral": ("DFT", "STFT", "HannWindow", "HammingWindow", "BlackmanWindow", "MelWeightMatrix"),
    "grid_sample": ("GridSample",),
    "hardmax": ("Hardmax",),
    "mod": ("Mod",),
    "reduce_prod": ("ReduceProd",),
    "scatter": ("ScatterElements", "Scatter", "ScatterND"),
    "loop": ("Loop", "Scan"),
    "trig": ("Atan", "Asin", "Acos", "Tan"),
    "hyperbolic": ("Sinh", "Cosh", "Asinh", "Acosh", "Atanh"),
    "det": ("Det",),
    "reverse_sequence": ("ReverseSequence",),
    "one_hot": ("OneHot",),
    "cumprod": ("CumProd",),
    "tensor_scatter": ("TensorScatter",),
}


#: ONNX op type -> handler module (from :data:`MODULE_OPS`)
INDEX: dict[str, str] = op_index(MODULE_OPS, "ONNX importer")

REGISTRY: Mapping[str, Handler] = LazyRegistry(__name__, INDEX, "ONNX importer")


def eager_registry() -> dict[str, Handler]:
    """Every handler, importing every module of :data:`MODULE_OPS` and merging their ``REGISTRY`` dicts."""
    return _eager(__name__, MODULE_OPS, "ONNX importer")


__all__ = ["INDEX", "MODULE_OPS", "REGISTRY", "Handler", "LazyRegistry", "eager_registry"]

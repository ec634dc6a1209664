"""Float-TFLite op handlers, one module per op group, behind one registry: op name -> handler.

A handler is ``handler(ctx, op)`` with a :class:`~converters.importers.tflite_ops.context.TFLiteContext`
and an :class:`edge_runtime.formats.tflite.Operator`. Custom ops are keyed by their custom code;
the only one rewritten is MediaPipe's ``Convolution2DTransposeBias`` (a transposed convolution plus
bias, documented as such by MediaPipe), which becomes TRANSPOSE_CONV; ``TFLite_Detection_PostProcess`` is
kept as it is (``detection``).

:data:`MODULE_OPS` is the registry's index: each handler module and the op names its own ``REGISTRY``
handles, one line per module; :data:`REGISTRY` imports a handler's module the first time one of its ops is
looked up (:class:`~converters.importers.lazy_registry.LazyRegistry`). **A new handler module gets one line in**
:data:`MODULE_OPS`; ``tests/test_import_registry_index.py`` checks the index against every module's ``REGISTRY``.
"""
from __future__ import annotations

from collections.abc import Mapping

from converters.importers.lazy_registry import Handler, LazyRegistry, op_index
from converters.importers.lazy_registry import eager_registry as _eager

#: handler module (in this package) -> the op names in its ``REGISTRY``; one line per module
MODULE_OPS: dict[str, tuple[str, ...]] = {
    "compute": ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "Convolution2DTransposeBias",
                "AVERAGE_POOL_2D", "MAX_POOL_2D", "BATCH_MATMUL"),
    "elementwise": ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "RELU", "RELU6",
                    "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "EXP", "LOG", "SQRT", "RSQRT", "ABS", "NEG",
                    "SQUARE", "LEAKY_RELU", "GELU", "PRELU", "SOFTMAX", "LOG_SOFTMAX", "ADD_N", "L2_NORMALIZATION",
                    "L2_POOL_2D", "ELU"),
    "layout": ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PAD", "PADV2", "MIRROR_PAD",
               "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "GATHER", "MEAN", "SUM", "REDUCE_MAX", "RESIZE_BILINEAR",
               "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "PACK", "UNPACK", "REVERSE_V2",
               "REDUCE_MIN", "CAST"),
    "recurrent": ("UNIDIRECTIONAL_SEQUENCE_LSTM",),
    "argmax": ("ARG_MAX", "ARG_MIN"),
    "dilated": ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"),
    "detection": ("TFLite_Detection_PostProcess",),
    "rounding": ("FLOOR", "CEIL", "ROUND", "SIN", "COS"),
    "compare": ("EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
                "LOGICAL_NOT", "SELECT_V2", "SELECT"),
    "constants": ("SHAPE", "ZEROS_LIKE", "FILL", "BROADCAST_ARGS", "RANGE", "FLOOR_DIV", "FLOOR_MOD"),
    "scan": ("CUMSUM", "GATHER_ND"),
    "broadcast": ("BROADCAST_TO",),
    "powers": ("POW", "REDUCE_PROD"),
    "activations": ("RELU_0_TO_1", "SIGN", "LOCAL_RESPONSE_NORMALIZATION"),
    "indexing": ("TILE", "ONE_HOT", "EMBEDDING_LOOKUP", "DYNAMIC_UPDATE_SLICE", "REVERSE_SEQUENCE", "SCATTER_ND",
                 "MATRIX_DIAG", "MATRIX_SET_DIAG"),
    "segments": ("SEGMENT_SUM", "UNSORTED_SEGMENT_SUM", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_MIN",
                 "UNSORTED_SEGMENT_PROD"),
    "topk": ("TOPK_V2",),
    "rnn": ("UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_LSTM", "SVDF"),
}
#: op name -> handler module (from :data:`MODULE_OPS`)
INDEX: dict[str, str] = op_index(MODULE_OPS, "TFLite importer")
REGISTRY: Mapping[str, Handler] = LazyRegistry(__name__, INDEX, "TFLite importer")
#: custom ops (by custom code) that are rewritten to builtins
CUSTOM_REWRITES = ("Convolution2DTransposeBias",)


def eager_registry() -> dict[str, Handler]:
    """Every handler, importing every module of :data:`MODULE_OPS` and merging their ``REGISTRY`` dicts."""
    return _eager(__name__, MODULE_OPS, "TFLite importer")


__all__ = ["CUSTOM_REWRITES", "INDEX", "MODULE_OPS", "REGISTRY", "Handler", "eager_registry"]

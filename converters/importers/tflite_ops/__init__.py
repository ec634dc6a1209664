"""Float-TFLite op handlers, one module per op group, merged into one registry: op name -> handler.

A handler is ``handler(ctx, op)`` with a :class:`~converters.importers.tflite_ops.context.TFLiteContext`
and an :class:`edge_runtime.formats.tflite.Operator`. Custom ops are keyed by their custom code;
the only one rewritten is MediaPipe's ``Convolution2DTransposeBias`` (a transposed convolution plus
bias, documented as such by MediaPipe), which becomes TRANSPOSE_CONV; ``TFLite_Detection_PostProcess`` is
kept as it is (``detection``).
"""
from __future__ import annotations

from typing import Callable

from converters.importers.tflite_ops import (
    activations,
    argmax,
    broadcast,
    compare,
    compute,
    constants,
    detection,
    dilated,
    elementwise,
    indexing,
    layout,
    powers,
    recurrent,
    rnn,
    rounding,
    scan,
    segments,
)

Handler = Callable[..., None]
REGISTRY: dict[str, Handler] = {}
#: custom ops (by custom code) that are rewritten to builtins
CUSTOM_REWRITES = ("Convolution2DTransposeBias",)


def _merge() -> None:
    for module in (compute, elementwise, layout, recurrent, argmax, dilated, detection, rounding, compare,
                   constants, scan, broadcast, powers, activations, indexing, segments, rnn):
        for name, handler in module.REGISTRY.items():
            if name in REGISTRY:
                raise RuntimeError(f"TFLite importer registry: {name} is registered twice")
            REGISTRY[name] = handler


_merge()

__all__ = ["CUSTOM_REWRITES", "REGISTRY", "Handler"]

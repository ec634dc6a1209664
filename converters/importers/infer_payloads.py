"""Run ONNX shape inference without sending the weights' bytes through it.

``onnx.shape_inference.infer_shapes`` serialises the whole ``ModelProto`` to C++ and parses the result back,
weights included: on a 7.5 MB model that copying was most of the call's time. The inferred types and shapes do
not depend on the values of a large float tensor: ONNX's inference functions read a tensor's values only for
shape-like inputs (Reshape's shape, Resize's scales, Range's bounds, ...), whose float forms hold at most a few
values, one per axis, and its data propagation reads integer tensors only. So inference runs on a copy of the
model whose float initializers of more than :data:`MIN_BYTES` bytes have no values, and the inferred
model gets those initializers back: the model full inference gives, byte for byte
(``tests/test_convert_speed_fit_import.py``).
"""
from __future__ import annotations

from typing import Any

#: ONNX TensorProto float element types: FLOAT, FLOAT16, DOUBLE, BFLOAT16
FLOAT_TYPES = frozenset({1, 10, 11, 16})
#: float initializers holding more bytes of values than this are left out (1,024 float32 values: far more than
#: any shape-like input holds, one value per axis)
MIN_BYTES = 4096


#: the TensorProto fields that hold a float tensor's values
PAYLOAD_FIELDS = ("raw_data", "float_data", "double_data")


def _payload_bytes(t: Any) -> int:
    if t.HasField("raw_data"):
        return len(t.raw_data)
    return 4 * len(t.float_data) + 8 * len(t.double_data)


def large_float_initializers(model: Any) -> list[int]:
    """Positions in ``model.graph.initializer`` of the float tensors holding more than :data:`MIN_BYTES` bytes of
    values (``raw_data``, ``float_data`` or ``double_data``; nested subgraphs' initializers are not counted)."""
    return [i for i, t in enumerate(model.graph.initializer)
            if t.data_type in FLOAT_TYPES and _payload_bytes(t) > MIN_BYTES]


def infer_shapes_light(model: Any, **options: Any) -> Any:
    """``onnx.shape_inference.infer_shapes(model, **options)``, run on a copy without the large float payloads
    (see the module docstring): the same model full inference returns. ``model`` is not changed."""
    from onnx import ModelProto, shape_inference

    big = large_float_initializers(model)
    if not big:
        return shape_inference.infer_shapes(model, **options)
    light = ModelProto()
    light.CopyFrom(model)  # (one C-level copy: cheaper than taking the payloads out of ``model`` and back)
    for i in big:
        for f in PAYLOAD_FIELDS:
            light.graph.initializer[i].ClearField(f)
    inferred = shape_inference.infer_shapes(light, **options)
    src, dst = model.graph.initializer, inferred.graph.initializer
    if len(dst) != len(src) or any(dst[i].name != src[i].name for i in big):
        return shape_inference.infer_shapes(model, **options)  # (inference changed the initializers: the full way)
    for i in big:
        dst[i].CopyFrom(src[i])
    return inferred


__all__ = ["FLOAT_TYPES", "MIN_BYTES", "PAYLOAD_FIELDS", "infer_shapes_light", "large_float_initializers"]

"""A fully quantized .tflite behind a float interface, imported as the float model it approximates.

TFLite's full-integer conversion with float inputs and outputs (``inference_input_type=tf.float32``, the
default of ``TFLiteConverter`` with a representative dataset) writes a QUANTIZE after each float input, an int8
(or int16) body, and a DEQUANTIZE before each float output. MCU toolkits publish many models this way (Silicon
Labs' MLTK anomaly-detection autoencoder, for one). Such a file is re-quantizable: its int8 weights and int32
biases carry their scales, so they dequantize to the float weights they were rounded from, and every integer
activation of the body stands for the float value ``scale * (q - zero_point)``.

Here the body is read as float: each QUANTIZE (float -> integer, or integer -> integer) and each DEQUANTIZE of
an activation becomes an identity RESHAPE (which :func:`converters.ir.simplify` drops), the body's quantized
activations are taken as float tensors, and the constants are dequantized as for hybrid models
(:func:`~converters.importers.tflite_ops.context.const_value`). The converter then quantizes that float graph
for its own target (per-channel fully connected weights, int16 activations, ...). A model whose inputs are
themselves integers stays refused as already quantized (:func:`converters.importers.tflite.import_tflite`).
"""
from __future__ import annotations

from typing import Any

from converters.importers.tflite_ops.context import TFLiteContext
from edge_runtime.formats.tflite import SubGraph, TensorInfo

#: integer activation types a quantized body computes in
BODY_TYPES = ("INT8", "UINT8", "INT16")


def quantized_activation(t: TensorInfo) -> bool:
    """Whether ``t`` is an integer activation with a scale (a value of a quantized body, not an index)."""
    q = t.quantization
    return (t.data is None and t.type_name in BODY_TYPES and q is not None and q.scale.size > 0
            and bool((q.scale > 0).all()))


def has_quantized_body(sg: SubGraph) -> bool:
    """Whether a float input of ``sg`` enters an integer body: some QUANTIZE turns a float activation into a
    quantized one."""
    for op in sg.operators:
        if op.name != "QUANTIZE" or not op.inputs or op.inputs[0] < 0:
            continue
        src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
        if src.data is None and src.type_name == "FLOAT32" and quantized_activation(dst):
            return True
    return False


def is_body_boundary(sg: SubGraph, op: Any) -> bool:
    """Whether ``op`` only moves a value across or within the quantized body: a QUANTIZE of an activation
    (float -> integer, or a requantization), or a DEQUANTIZE of a quantized activation to float."""
    if op.name not in ("QUANTIZE", "DEQUANTIZE") or not op.inputs or op.inputs[0] < 0 or len(op.outputs) != 1:
        return False
    src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    if src.data is not None:
        return False
    if op.name == "QUANTIZE":
        return (src.type_name == "FLOAT32" or quantized_activation(src)) and quantized_activation(dst)
    return quantized_activation(src) and dst.type_name == "FLOAT32"


def import_boundary(ctx: TFLiteContext, op: Any) -> None:
    """The float form of a body boundary: the value itself (an identity RESHAPE)."""
    ctx.emit(op, "RESHAPE", [ctx.act_in(op, 0)], ctx.name(op.outputs[0]))

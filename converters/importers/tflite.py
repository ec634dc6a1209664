"""Import a float or hybrid .tflite model into the IR.

Float models map almost one to one (TFLite is already NHWC); each builtin goes to its handler in
:data:`converters.importers.tflite_ops.REGISTRY`. Hybrid models, such as
``kws_ref_model_float32.tflite`` (int8 weights, float activations), have their quantized constants
dequantized here, and ``DEQUANTIZE`` ops on constants (float16 or int8 weights) are folded to
float32; operators computing on constants only (integer shape arithmetic after SHAPE, constant masks) are
folded (:mod:`~converters.importers.tflite_ops.fold`); ``DENSIFY`` of sparse (pruned) constant weights is
decoded to dense ones (:mod:`edge_runtime.formats.tflite_fold`, shared with the micro backend). Fully quantized models
are refused: they are already int8. Custom ops are refused by
name and operator index, except the ones in
:data:`~converters.importers.tflite_ops.CUSTOM_REWRITES`.

Reads the file with :mod:`edge_runtime.formats.tflite`, the project's one parser, and runs the loaders'
structural check (:func:`edge_runtime.formats.tflite_check.check_tflite_model`) before anything else
reads it, so a corrupt or hostile file gets the same one-line refusal as at load time.
"""
from __future__ import annotations

import os

import numpy as np

from converters.importers.integer_inputs import check_integer_uses
from converters.importers.tflite_ops import CUSTOM_REWRITES, REGISTRY
from converters.importers.tflite_ops.constants import FOLDED
from converters.importers.tflite_ops.context import TFLiteContext, const_value
from converters.importers.tflite_ops.fold import fold_constant_op
from converters.importers.tflite_ops.segments import INDEX_OUTPUTS
from converters.ir import (
    RAW_OUTPUT_KINDS,
    Graph,
    fuse_activations,
    legalize,
    lower_for_micro,
    simplify,
)
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import check_tflite_model
from edge_runtime.formats.tflite_fold import fold_weight_decoders

SUPPORTED = tuple(sorted(k for k in REGISTRY if k not in CUSTOM_REWRITES)) + ("DEQUANTIZE",)
#: integer input types of a float model taken as indices (token ids, bytes) -> numpy dtype name
INTEGER_INPUTS = {"INT32": "int32", "INT64": "int64"}


def _checked_and_folded(model: TFLiteModel) -> TFLiteModel:
    """``model`` after the loaders' structural check (as ``edge_runtime.load`` runs it), with its weight
    decoders folded (ops keep their indices in the file, for messages)."""
    check_tflite_model(model)
    return fold_weight_decoders(model, renumber=False)


def import_tflite(path: "str | os.PathLike[str]") -> Graph:
    """Read a float/hybrid .tflite and return its :class:`Graph`; clear errors for anything unsupported."""
    p = os.fspath(path)
    model = _checked_and_folded(TFLiteModel.open(p))
    if len(model.subgraphs) != 1:
        raise UnsupportedModelError(f"{p}: models with {len(model.subgraphs)} subgraphs are not supported")
    sg = model.main
    int_inputs: dict[str, str] = {}
    for i in sg.inputs:
        t = sg.tensors[i]
        if t.type_name in INTEGER_INPUTS and any(sg.tensors[j].type_name == "FLOAT32" for j in sg.outputs):
            int_inputs[t.name] = INTEGER_INPUTS[t.type_name]  # token ids, bytes, indices into a table
            continue
        if t.type_name != "FLOAT32":
            raise UnsupportedModelError(
                f"{p}: input '{t.name}' is {t.type_name}; this model is already quantized. "
                "Give the float (or hybrid) model to the converter")
    ctx = TFLiteContext(p, sg)
    int_names = {ctx.name(i) for i in sg.inputs if sg.tensors[i].name in int_inputs}
    for op in sg.operators:
        kind = op.name
        if kind == "DEQUANTIZE":
            src = sg.tensors[op.inputs[0]]
            if src.data is None:
                raise ctx.err(op, "DEQUANTIZE of an activation is not supported (only of fp16/int8 weights)")
            ctx.tensors[ctx.name(op.outputs[0])].data = np.asarray(const_value(src), np.float32)
            continue
        if fold_constant_op(ctx, op):  # shape arithmetic, masks and selections of constants
            continue
        handler = REGISTRY.get(kind)
        if handler is None:
            what = "custom op" if op.opcode.builtin_code == 32 else "op"
            raise ctx.err(op, f"{what} '{kind}' is not supported; supported ops: {', '.join(SUPPORTED)}")
        int_reshape = kind in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS") and ctx.name(op.inputs[0]) in int_names
        if int_reshape:
            int_names.update(ctx.name(o) for o in op.outputs)
        for o in op.outputs:
            if (sg.tensors[o].type_name != "FLOAT32"
                    and kind not in RAW_OUTPUT_KINDS + FOLDED + INDEX_OUTPUTS  # indices, masks
                    and not int_reshape):
                raise ctx.err(op, f"output is {sg.tensors[o].type_name}; only float activations can be converted")
        try:
            handler(ctx, op)
        except UnsupportedModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed operator is one refusal line, never a traceback
            raise ctx.err(op, f"cannot import this operator ({type(exc).__name__}: {exc})") from None
    graph = Graph(name=os.path.splitext(os.path.basename(p))[0], tensors=ctx.tensors, ops=ctx.ops,
                  inputs=[ctx.name(i) for i in sg.inputs], outputs=[ctx.name(i) for i in sg.outputs],
                  input_layouts={ctx.name(i): "NHWC" for i in sg.inputs}, source_format="tflite",
                  input_dtypes={ctx.name(i): int_inputs[sg.tensors[i].name] for i in sg.inputs
                                if sg.tensors[i].name in int_inputs})
    graph = simplify(legalize(fuse_activations(lower_for_micro(graph))))
    if graph.input_dtypes:
        check_integer_uses(graph, p)
    return graph

"""Import a float or hybrid .tflite model into the IR.

Float models map almost one to one (TFLite is already NHWC); each builtin goes to its handler in
:data:`converters.importers.tflite_ops.REGISTRY`. Hybrid models, such as
``kws_ref_model_float32.tflite`` (int8 weights, float activations), have their quantized constants
dequantized here, and ``DEQUANTIZE`` ops on constants (float16 or int8 weights) are folded to
float32; operators computing on constants only (integer shape arithmetic after SHAPE, constant masks) are
folded (:mod:`~converters.importers.tflite_ops.fold`); ``DENSIFY`` of sparse (pruned) constant weights is
decoded to dense ones (:mod:`edge_runtime.formats.tflite_fold`, shared with the micro backend). Fully quantized models
with integer inputs are refused: they are already int8; an int8 body behind float inputs and outputs (QUANTIZE ...
DEQUANTIZE) is read as the float model it approximates (:mod:`~converters.importers.tflite_ops.quantized_body`).
IF operators are inlined: both branches and a SELECT_V2 (:mod:`~converters.importers.tflite_ops.inline_if`).
A file exported with a dynamic batch stores placeholder
shapes downstream of its run-time shape arithmetic: the importer takes the shapes LiteRT gives its tensors
at the stored input shape (:mod:`~converters.importers.tflite_ops.run_time_shapes`), and refuses a RESHAPE
whose sizes still disagree. Integer tensors (token ids, an ARG_MAX result) may be reshaped, sliced, gathered at
constant positions and joined with integer constants before a table lookup; other integer arithmetic is refused
(:mod:`~converters.importers.tflite_ops.integer_select`). RFFT2D and its complex results are written as real ops
(:mod:`~converters.importers.tflite_ops.spectral`); a fixed-range activation (LOGISTIC, SOFTMAX, TANH) joined
with a wider one is requantized first (:mod:`~converters.importers.fixed_joins`). A sigmoid written as
``1 / (1 + exp(z))`` becomes LOGISTIC (:mod:`~converters.importers.hand_sigmoid`). Custom ops are
refused by name and operator index, except the ones in
:data:`~converters.importers.tflite_ops.CUSTOM_REWRITES`.

Reads the file with :mod:`edge_runtime.formats.tflite`, the project's one parser, and runs the loaders'
structural check (:func:`edge_runtime.formats.tflite_check.check_tflite_model`) before anything else
reads it, so a corrupt or hostile file gets the same one-line refusal as at load time.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from converters.importers.integer_inputs import check_integer_uses
from converters.importers.tflite_ops import CUSTOM_REWRITES, REGISTRY
from converters.importers.tflite_ops.constants import FOLDED
from converters.importers.tflite_ops.context import TFLiteContext, const_value
from converters.importers.fixed_joins import requantize_fixed_joins
from converters.importers.hand_sigmoid import fuse_hand_sigmoids
from converters.importers.tflite_ops.fold import fold_constant_op
from converters.importers.tflite_ops.integer_select import selects_integers
from converters.importers.tflite_ops.quantized_body import (
    has_quantized_body,
    import_boundary,
    is_body_boundary,
    quantized_activation,
)
from converters.importers.tflite_ops.run_time_shapes import with_run_time_shapes
from converters.importers.tflite_ops.topk import INDEX_OUTPUTS
from converters.importers.tflite_ops.spectral import handle_complex, reads_complex
from converters.ir import (
    RAW_OUTPUT_KINDS,
    Graph,
    fuse_activations,
    legalize,
    lower_for_micro,
    simplify,
)
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel
from edge_runtime.formats.tflite_check import check_tflite_model
from edge_runtime.formats.tflite_fold import fold_weight_decoders

SUPPORTED = tuple(sorted([k for k in REGISTRY if k not in CUSTOM_REWRITES] + ["RFFT2D"])) + ("DEQUANTIZE",)
#: integer input types of a float model taken as indices (token ids, bytes) -> numpy dtype name
INTEGER_INPUTS = {"INT32": "int32", "INT64": "int64"}


def _checked_and_folded(model: TFLiteModel) -> TFLiteModel:
    """``model`` after the loaders' structural check (as ``edge_runtime.load`` runs it), with its weight
    decoders folded (ops keep their indices in the file, for messages)."""
    check_tflite_model(model)
    return fold_weight_decoders(model, renumber=False)


def _single_bool_reshape(sg: SubGraph, op: Operator) -> bool:
    """Whether ``op`` reshapes one BOOL value (an IF's condition) into another shape of one element."""
    if op.name not in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS") or not op.inputs or op.inputs[0] < 0:
        return False
    src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    return src.type_name == dst.type_name == "BOOL" and src.num_elements == dst.num_elements == 1


def _check_reshapes(ctx: TFLiteContext) -> None:
    """Refuse, naming the operator, an imported RESHAPE between shapes of different sizes: the stored
    placeholder shapes of a file exported with a dynamic input, which run-time shape arithmetic contradicts
    (word-activation-recognition's audio classifier slices 44032 samples into a tensor stored as [1, 1])."""
    for op in ctx.ops:
        if op.kind != "RESHAPE":
            continue
        src, dst = ctx.tensors[op.inputs[0]].shape, ctx.tensors[op.outputs[0]].shape
        n_src, n_dst = int(np.prod(src, dtype=np.int64)), int(np.prod(dst, dtype=np.int64))
        if n_src != n_dst:
            index, _, kind = op.name.partition(":")
            where = f"operator {index[2:]} ({kind})" if index.startswith("op") and kind else f"op '{op.name}'"
            raise UnsupportedModelError(f"{ctx.path}: {where}: its {n_src} values {list(src)} do not fit the stored "
                                        f"output shape {list(dst)} ({n_dst} values){ctx.dynamic_hint()}")


def import_tflite(path: "str | os.PathLike[str]", outputs: Optional[Sequence[str]] = None) -> Graph:
    """Read a float/hybrid .tflite and return its :class:`Graph`; clear errors for anything unsupported.
    ``outputs`` (``--outputs``): the tensors to keep as outputs, in order (:mod:`converters.importers.select_outputs`)."""
    p = os.fspath(path)
    model = _checked_and_folded(TFLiteModel.open(p))
    if len(model.subgraphs) != 1:
        from converters.importers.tflite_ops.inline_if import inline_ifs  # control flow: rare, imported then

        sg = inline_ifs(model, p)
    else:
        sg = with_run_time_shapes(p, model.main)
    if outputs is not None:
        from converters.importers.select_outputs import cut_tflite

        sg = cut_tflite(sg, outputs, p)
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
    ctx.int_names.update(ctx.name(i) for i in sg.inputs if sg.tensors[i].name in int_inputs)
    body = has_quantized_body(sg)  # float I/O around an int8 body: read as the float model it approximates
    for op in sg.operators:
        kind = op.name
        if body and is_body_boundary(sg, op):
            import_boundary(ctx, op)
            continue
        if kind == "DEQUANTIZE":
            src = sg.tensors[op.inputs[0]]
            if src.data is None:
                raise ctx.err(op, "DEQUANTIZE of an activation is not supported (only of fp16/int8 weights)")
            ctx.tensors[ctx.name(op.outputs[0])].data = np.asarray(const_value(src), np.float32)
            continue
        if fold_constant_op(ctx, op):  # shape arithmetic, masks and selections of constants
            continue
        if reads_complex(ctx, op):  # RFFT2D and what reads its complex result
            handle_complex(ctx, op)
            continue
        if _single_bool_reshape(sg, op) and op.outputs[0] not in ctx.names and op.outputs[0] not in sg.outputs:
            ctx.names[op.outputs[0]] = ctx.name(op.inputs[0])  # an IF condition reshaped: the same one value
            continue
        handler = REGISTRY.get(kind)
        if handler is None:
            what = "custom op" if op.opcode.builtin_code == 32 else "op"
            raise ctx.err(op, f"{what} '{kind}' is not supported; supported ops: {', '.join(SUPPORTED)}")
        int_select = selects_integers(ctx, op)  # token ids reshaped, sliced, joined: they stay int32
        for o in op.outputs:
            if (sg.tensors[o].type_name != "FLOAT32"
                    and kind not in RAW_OUTPUT_KINDS + FOLDED + INDEX_OUTPUTS  # indices, masks
                    and not int_select and not (body and quantized_activation(sg.tensors[o]))):
                raise ctx.err(op, f"output is {sg.tensors[o].type_name}; only float activations can be converted")
        try:
            handler(ctx, op)
        except UnsupportedModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed operator is one refusal line, never a traceback
            raise ctx.err(op, f"cannot import this operator ({type(exc).__name__}: {exc})") from None
    _check_reshapes(ctx)
    graph = Graph(name=os.path.splitext(os.path.basename(p))[0], tensors=ctx.tensors, ops=ctx.ops,
                  inputs=[ctx.name(i) for i in sg.inputs], outputs=[ctx.name(i) for i in sg.outputs],
                  input_layouts={ctx.name(i): "NHWC" for i in sg.inputs}, source_format="tflite",
                  input_dtypes={ctx.name(i): int_inputs[sg.tensors[i].name] for i in sg.inputs
                                if sg.tensors[i].name in int_inputs})
    graph = requantize_fixed_joins(simplify(legalize(fuse_activations(lower_for_micro(fuse_hand_sigmoids(graph))))))
    if graph.input_dtypes:
        check_integer_uses(graph, p)
    return graph

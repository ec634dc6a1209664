"""Import a float ONNX model into the NHWC IR.

:func:`import_onnx` takes a path or an in-memory ``ModelProto``. The prepare pass
(:mod:`converters.importers.prepare`: opset upgrade, static shapes with ``input_shapes``, constant
folding) runs first; then every node goes to its handler in
:data:`converters.importers.onnx_ops.REGISTRY` (one module per op group). Nodes whose inputs are
all constants are evaluated with ONNX's reference evaluator instead. Every 4-D tensor becomes NHWC
(inputs are recorded as ``NCHW`` so data can be given as the source model took it; a 4-D input the
model itself transposes from NHWC, as TensorFlow exports do, stays ``NHWC`` and that transpose
disappears); other ranks keep their ONNX layout. Back-to-back transposes are cancelled afterwards
(:func:`converters.ir.simplify`), and GELU is rewritten into ops TFLite Micro runs
(:func:`converters.ir.lower_for_micro`). A sigmoid/softmax/tanh output joined by a concatenation with
other tensors gets its own int8 parameters (:func:`requantize_fixed_inputs`).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from converters.importers.integer_inputs import check_integer_uses
from converters.importers.onnx_eval import evaluate_node
from converters.importers.onnx_ops import REGISTRY
from converters.importers.onnx_ops.context import ImportContext, nhwc
from converters.importers.onnx_ops.control import constant_output
from converters.ir import Graph, fuse_activations, legalize, lower_for_micro, simplify
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

SUPPORTED = tuple(sorted(REGISTRY))
#: ops that only appear in already-quantized models
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger", "DynamicQuantizeLinear")
InputShapes = Optional[dict[str, tuple[int, ...]]]
#: a non-float input with at most this many elements is taken for a setting (``--input-value`` is suggested)
SETTING_SIZE = 16
#: ONNX integer element types accepted as model inputs (token ids, bytes, indices) -> numpy dtype name
INTEGER_INPUTS = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 12: "uint32"}


def _prepare(model: Any, input_shapes: InputShapes, source: str, input_values: Any = None) -> Any:
    """The prepared ``ModelProto`` (path or proto in)."""
    from converters.importers.prepare import prepare_onnx, prepare_onnx_model

    if isinstance(model, (str, os.PathLike)):
        p = os.fspath(model)
        if not os.path.isfile(p):
            raise ModelFormatError(f"{p}: no such file")
        return prepare_onnx(p, input_shapes, input_values)
    return prepare_onnx_model(model, input_shapes, source=source, input_values=input_values)


def _fold(ctx: ImportContext, node: Any) -> None:
    """Evaluate a node whose inputs are all constants with ONNX's reference evaluator."""
    try:
        vals = evaluate_node(node, {i: ctx.consts[ctx.name(i)] for i in node.input if i}, ctx.opset)
    except Exception as exc:
        raise ctx.err(node, f"could not fold this constant computation ({type(exc).__name__}); "
                            "fold constants before exporting (do_constant_folding=True)") from None
    for o, v in zip(node.output, vals):
        if o:
            ctx.consts[o] = v


def dispatch(ctx: ImportContext, node: Any) -> None:
    """Import one ONNX node: fold it, hand it to its handler, or refuse it in one line."""
    from onnx import helper

    if node.domain not in ("", "ai.onnx"):
        raise ctx.unsupported(node, f"custom-domain op '{node.domain}.{node.op_type}'; "
                                    "export with standard ONNX ops only")
    real = [i for i in node.input if i]
    if node.op_type not in ("Constant", "If") and all(ctx.is_const(i) for i in real) and (
            real or node.op_type not in REGISTRY):
        _fold(ctx, node)
        return
    handler = REGISTRY.get(node.op_type)
    if node.op_type in QUANTIZED_OPS:
        raise ctx.unsupported(node, "this model is already quantized; give the converter the float model")
    if handler is None:
        raise ctx.unsupported(node, f"supported ops: {', '.join(SUPPORTED)}")
    empty = [(o, ctx.shapes[o]) for o in node.output if o and 0 in ctx.shapes.get(o, (1,))]
    if empty:
        raise ctx.err(node, f"output '{empty[0][0]}' has no elements (shape {empty[0][1]}); "
                            "zero-size tensors are not supported")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    try:
        handler(ctx, node, attrs)
    except (UnsupportedModelError, ModelFormatError):
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed node is one refusal line, never a traceback
        raise ctx.err(node, f"cannot import this node ({type(exc).__name__}: {exc}); "
                            "check the model with onnx.checker") from None


def import_onnx(model: "str | os.PathLike[str] | Any", input_shapes: InputShapes = None,
                name: Optional[str] = None, input_values: Optional[dict[str, np.ndarray]] = None) -> Graph:
    """Read a float ONNX model (path or ``ModelProto``) into the NHWC :class:`Graph`.

    ``input_shapes`` fixes dynamic input dimensions (``{"x": (1, 3, 224, 224)}``); a dynamic batch
    becomes 1 without it. ``input_values`` freezes inputs that are settings (``{"sr": 16000}``) or a
    streaming state started from zeros as constants (``--input-value``). Anything unsupported is one :class:`UnsupportedModelError` line naming the
    node and op.
    """
    from onnx import numpy_helper

    from converters.importers.prepare import static_shapes

    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else (name or model.graph.name or "model")
    proto = _prepare(model, input_shapes, source, input_values)
    g = proto.graph
    if any(vi.type.tensor_type.elem_type in INTEGER_INPUTS for vi in g.input):
        from converters.importers.one_hot import rewrite_one_hot_products

        rewrite_one_hot_products(proto)  # one-hot x matrix of integer data -> an embedding lookup
        _refuse_non_index_inputs(g, source)
    shapes = static_shapes(g)
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        consts[init.name] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    ctx = ImportContext(source, consts, shapes, dispatch)
    ctx.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=13)
    for node in g.node:
        for i in node.input:
            ctx.uses[i] = ctx.uses.get(i, 0) + 1
    for o in g.output:
        ctx.uses[o.name] = ctx.uses.get(o.name, 0) + 1
    real_inputs = [vi for vi in g.input if vi.name not in consts]
    int_inputs: dict[str, str] = {}
    nhwc_inputs = _nhwc_inputs(g, [vi.name for vi in real_inputs], shapes)
    for vi in real_inputs:
        if vi.name not in shapes:
            raise UnsupportedModelError(f"{source}: input '{vi.name}' has no static shape; "
                                        f"give one with --input-shape {vi.name}=1x3x224x224")
        if 0 in shapes[vi.name]:
            raise UnsupportedModelError(f"{source}: input '{vi.name}' has no elements (shape {shapes[vi.name]}); "
                                        "zero-size tensors are not supported")
        elem = vi.type.tensor_type.elem_type
        if elem in INTEGER_INPUTS:  # token ids, bytes, indices: int32 in the IR, never quantized
            int_inputs[vi.name] = INTEGER_INPUTS[elem]
        elif elem not in (1, 10, 11):  # FLOAT, FLOAT16, DOUBLE
            from onnx import TensorProto

            kind = TensorProto.DataType.Name(elem).lower()
            raise UnsupportedModelError(
                f"{source}: input '{vi.name}' is not a float or integer tensor ({kind}); only float and integer "
                f"(token ids, bytes, indices) inputs can be converted; if it is a setting (a flag), freeze it with "
                f"--input-value {vi.name}=VALUE")
        ctx.output(None, vi.name, shapes[vi.name] if vi.name in nhwc_inputs else nhwc(shapes[vi.name]))
    ctx.int_inputs = set(int_inputs)
    for node in g.node:
        if node.op_type == "Transpose" and node.input[0] in nhwc_inputs:
            ctx.alias[node.output[0]] = node.input[0]  # the NHWC input already is this NCHW tensor's IR form
            continue
        dispatch(ctx, node)
    outputs = []
    for o in g.output:
        key = ctx.name(o.name)
        if key in ctx.consts and key not in ctx.tensors:
            if all(ctx.name(p.name) in ctx.consts and ctx.name(p.name) not in ctx.tensors for p in g.output):
                raise UnsupportedModelError(f"{source}: every output is a constant; nothing to convert")
            outputs.append(constant_output(ctx, o.name))  # anchors, a fixed table: written by an op
            continue
        outputs.append(ctx.act(_OutputNode(o.name), o.name))
    graph = Graph(
        name=os.path.splitext(os.path.basename(source))[0] or "model", tensors=ctx.tensors, ops=ctx.ops,
        inputs=[vi.name for vi in real_inputs], outputs=outputs,
        input_layouts={vi.name: "NHWC" if vi.name in nhwc_inputs else "NCHW"
                       for vi in real_inputs if len(shapes[vi.name]) == 4},
        source_format="onnx", input_dtypes=int_inputs,
    )
    _copy_shared_outputs(graph)
    graph = simplify(legalize(fuse_activations(simplify(lower_for_micro(graph)))))
    requantize_fixed_inputs(graph)
    _restore_output_names(graph, [o.name for o in g.output])
    check_integer_uses(graph, source)
    return graph


#: int8 output parameters fixed by TFLite (:data:`converters.quantize.FIXED`)
_FIXED_OUTPUT = {"LOGISTIC": (1 / 256, -128), "SOFTMAX": (1 / 256, -128), "TANH": (1 / 128, 0),
                 "LOG_SOFTMAX": (16 / 256, 127)}
#: int8 kernels that move values without rescaling: their inputs and output share one set of parameters
_PASS_THROUGH = ("RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "GATHER")
_JOINING = ("CONCATENATION", "MAXIMUM", "MINIMUM")


def requantize_fixed_inputs(graph: Graph) -> None:
    """Give a fixed-range input of CONCATENATION/MAXIMUM/MINIMUM its own int8 parameters, in place.

    TFLite's int8 CONCATENATION (and MAXIMUM/MINIMUM) needs one scale for all inputs and the output, and
    LOGISTIC/SOFTMAX/TANH outputs have fixed ones (a sigmoid's is 1/256 over [0, 1]). Where such an
    output is joined with any other tensor (YOLO heads concatenate box coordinates in pixels with class
    sigmoids), the shared scale would become the sigmoid's and clip everything else to [0, 1]. An ADD of
    zero in between is the identity in float and requantizes in int8, as TensorFlow's converter does.
    """
    from converters.ir import Op, Tensor

    producers = graph.producers()

    def origin(name: str) -> Optional[str]:
        op = producers.get(name)
        while op is not None and op.kind in _PASS_THROUGH:
            op = producers.get(op.inputs[0])
        return None if op is None else op.kind

    for op in list(graph.ops):
        if op.kind not in _JOINING or len(op.inputs) < 2:
            continue
        kinds = [origin(i) if not graph.tensors[i].is_constant else None for i in op.inputs]
        params = {_FIXED_OUTPUT.get(k) for k in kinds}
        if len(params) == 1 or not any(k in _FIXED_OUTPUT for k in kinds):
            continue  # all inputs share one fixed range already, or none is fixed
        for k, (name, kind) in enumerate(zip(op.inputs, kinds)):
            if kind not in _FIXED_OUTPUT:
                continue
            zero, out = f"{name}/requantize_zero", f"{name}/requantized{k}"
            graph.tensors[zero] = Tensor(zero, (1,), np.zeros((1,), np.float32))
            graph.tensors[out] = Tensor(out, graph.tensors[name].shape)
            graph.ops.insert(graph.ops.index(op), Op("ADD", [name, zero], [out], {"act": "NONE"},
                                                     name=f"{op.name}/requantize{k}"))
            op.inputs[k] = out


#: ONNX ops an integer input may pass through on its way to a lookup (the values stay the same indices)
_INDEX_PASS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Cast")


def _first_non_index_use(g: Any, name: str) -> Optional[Any]:
    """The first ONNX node that reads integer input ``name`` (or a reshape/cast of it) other than as the
    indices of a Gather from a constant table; None when every use is such a lookup."""
    consts = {i.name for i in g.initializer}
    frontier, seen = [name], set()
    while frontier:
        t = frontier.pop()
        if t in seen:
            continue
        seen.add(t)
        for n in g.node:
            if t not in n.input:
                continue
            if n.op_type == "Gather" and list(n.input).index(t) == 1 and n.input[0] in consts:
                continue
            if n.op_type in _INDEX_PASS and n.input[0] == t and (n.op_type != "Cast" or any(
                    a.name == "to" and a.i in INTEGER_INPUTS for a in n.attribute)):
                frontier.extend(n.output)
                continue
            return n
    return None


def _refuse_non_index_inputs(g: Any, source: str) -> None:
    """One line for an integer input that is not only the indices of constant-table lookups: a small one is
    taken for a setting (``--input-value`` is suggested), a larger one names the op reading it."""
    consts = {i.name for i in g.initializer}
    for vi in g.input:
        if vi.name in consts or vi.type.tensor_type.elem_type not in INTEGER_INPUTS:
            continue
        node = _first_non_index_use(g, vi.name)
        if node is None:
            continue
        kind = INTEGER_INPUTS[vi.type.tensor_type.elem_type]
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if int(np.prod(dims, dtype=np.int64)) <= SETTING_SIZE:
            raise UnsupportedModelError(
                f"{source}: input '{vi.name}' is not a float tensor ({kind}); only float inputs and integer "
                f"indices into a table can be converted; if it is a setting (a sample rate, a flag), freeze it "
                f"with --input-value {vi.name}=VALUE")
        raise UnsupportedModelError(
            f"{source}: input '{vi.name}' is {kind} data of shape {'x'.join(map(str, dims))} read by node "
            f"'{node.name or node.output[0]}' ({node.op_type}); integer inputs (token ids, bytes, indices) can "
            f"only index a constant table (Gather/embedding, or OneHot followed by MatMul/Gemm); export the model "
            f"from its first float tensor otherwise")


def _restore_output_names(graph: Graph, names: list[str]) -> None:
    """Give each graph output the ONNX output's name where aliasing (Identity, folded Add) changed it."""
    for k, (cur, want) in enumerate(zip(graph.outputs, names)):
        if cur == want or want in graph.tensors or cur in graph.inputs:
            continue
        t = graph.tensors.pop(cur)
        t.name = want
        graph.tensors[want] = t
        for op in graph.ops:
            op.inputs = [want if i == cur else i for i in op.inputs]
            op.outputs = [want if o == cur else o for o in op.outputs]
        graph.outputs[k] = want


def _nhwc_inputs(g: Any, names: list[str], shapes: dict[str, tuple[int, ...]]) -> set[str]:
    """4-D inputs that are NHWC already (TensorFlow exports): read only by ``Transpose(perm=[0, 3, 1, 2])``."""
    from onnx import helper

    found = set()
    for name in names:
        readers = [n for n in g.node if name in n.input]
        if len(shapes.get(name, ())) == 4 and readers and all(
                n.op_type == "Transpose" and [int(p) for a in n.attribute if a.name == "perm"
                                              for p in helper.get_attribute_value(a)] == [0, 3, 1, 2]
                for n in readers):
            found.add(name)
    return found


class _OutputNode:
    """Stands in for a node in messages about graph outputs."""

    op_type = "graph output"

    def __init__(self, name: str) -> None:
        self.name = name
        self.output = [name]


def _copy_shared_outputs(graph: Graph) -> None:
    """Give every graph output its own tensor (two outputs may alias one IR tensor, or an input)."""
    seen: set[str] = set(graph.inputs)
    for k, o in enumerate(graph.outputs):
        if o in seen:
            from converters.ir import Op, Tensor

            dup = f"{o}/output{k}"
            graph.tensors[dup] = Tensor(dup, graph.tensors[o].shape)
            graph.ops.append(Op("RESHAPE", [o], [dup], {}, name=f"{o}/output{k}"))
            graph.outputs[k] = dup
        seen.add(graph.outputs[k])

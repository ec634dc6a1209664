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
other tensors gets its own int8 parameters (:func:`~converters.importers.fixed_joins.requantize_fixed_joins`).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from converters.importers.fixed_joins import requantize_fixed_joins
from converters.importers.integer_inputs import check_integer_uses
from converters.importers.onnx_ops import REGISTRY
from converters.importers.onnx_ops.context import ImportContext, nhwc
from converters.importers.onnx_ops.int_arith import check_integer_reads
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
    from converters.importers.onnx_eval import evaluate_node

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
                name: Optional[str] = None, input_values: Optional[dict[str, np.ndarray]] = None,
                outputs: Optional[Sequence[str]] = None) -> Graph:
    """Read a float ONNX model (path or ``ModelProto``) into the NHWC :class:`Graph`.

    ``input_shapes`` fixes dynamic input dimensions (``{"x": (1, 3, 224, 224)}``); a dynamic batch
    becomes 1 without it. ``input_values`` freezes inputs that are settings (``{"sr": 16000}``) or a
    streaming state started from zeros as constants (``--input-value``). Anything unsupported is one :class:`UnsupportedModelError` line naming the
    node and op. ``outputs`` (``--outputs``) names the outputs to keep, in order, or inner tensors to cut the
    prepared graph at (:mod:`converters.importers.select_outputs`).
    """
    from onnx import numpy_helper

    from converters.importers.prepare import static_shapes

    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else (name or model.graph.name or "model")
    proto = _prepare(model, input_shapes, source, input_values)
    if outputs is not None:
        from converters.importers.select_outputs import cut_onnx

        cut_onnx(proto, outputs, source)
    g = proto.graph
    if any(vi.type.tensor_type.elem_type in INTEGER_INPUTS for vi in g.input):
        from converters.importers.index_wrap import remove_index_wraps
        from converters.importers.one_hot import rewrite_one_hot_products

        rewrite_one_hot_products(proto)  # one-hot x matrix of integer data -> an embedding lookup
        remove_index_wraps(proto)  # tf2onnx's where(ids < 0, ids + N, ids) before a Gather of N rows
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
    requantize_fixed_joins(graph)
    _restore_output_names(graph, [o.name for o in g.output])
    check_integer_uses(graph, source)
    check_integer_reads(graph, source)
    return graph


#: ONNX ops an integer input may pass through on its way to a lookup (the values stay the same indices)
_INDEX_PASS = ("Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Cast")
#: ONNX ops that read run-time indices (input 1) into a constant table or run-time data (input 0)
_INDEX_LOOKUPS = ("Gather", "GatherND", "GatherElements")


def _integer_const(consts: dict[str, Any], name: str) -> bool:
    """True when ``name`` is an integer initializer (or an integer Constant node's output)."""
    t = consts.get(name)
    return t is not None and t.data_type in INTEGER_INPUTS


def _selects(n: Any, t: str, derived: dict[str, str], consts: dict[str, Any]) -> bool:
    """True when node ``n`` only selects or rearranges the integer values of ``t`` (a reshape, an integer cast, a
    Slice/Split with constant bounds, an Expand/Tile to a constant shape, a Gather at constant integer positions,
    a Concat with integer constants)."""
    if n.input[0] != t and n.op_type != "Concat":
        return False
    rest = [i for i in n.input[1:] if i]
    if n.op_type in _INDEX_PASS:
        return n.op_type != "Cast" or any(a.name == "to" and a.i in INTEGER_INPUTS for a in n.attribute)
    if n.op_type in ("Slice", "Split", "Expand", "Tile"):  # constant bounds, sizes, shape, repeats
        return all(i in consts for i in rest)
    if n.op_type == "Gather":
        return len(rest) == 1 and _integer_const(consts, rest[0])
    if n.op_type == "Concat":
        return all(i in derived or _integer_const(consts, i) for i in n.input if i)
    return False


def _integer_values(g: Any) -> dict[str, str]:
    """Every ONNX tensor holding integer values of an integer graph input -> that input (the first one of a
    Concat): the inputs and what :func:`_selects` selects from them, in node order."""
    consts = {i.name: i for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            val = next((a.t for a in n.attribute if a.name == "value" and a.HasField("t")), None)
            if val is not None:
                consts[n.output[0]] = val
    derived = {vi.name: vi.name for vi in g.input
               if vi.name not in consts and vi.type.tensor_type.elem_type in INTEGER_INPUTS}
    for n in g.node:
        read = [i for i in n.input if i in derived]
        if read and all(_selects(n, t, derived, consts) for t in read):
            derived.update({o: derived[read[0]] for o in n.output if o})
    return derived


def _first_non_index_use(g: Any, name: str) -> Optional[tuple[Any, str]]:
    """The first ONNX node that reads integer values of input ``name`` other than to select from them
    (:func:`_selects`) or as the indices of a lookup (Gather, GatherND, GatherElements) into a constant table or
    run-time data, with the tensor it reads; None when every use is one of those."""
    derived = _integer_values(g)
    for n in g.node:
        for k, t in enumerate(n.input):
            if derived.get(t) != name:
                continue
            if n.op_type in _INDEX_LOOKUPS and k == 1:  # positions in a constant table or in run-time data
                continue
            if all(o in derived for o in n.output if o):
                continue
            return n, t
    return None


def _refuse_non_index_inputs(g: Any, source: str) -> None:
    """One line for an integer input that is not only selected from and used as the indices of constant-table
    lookups: a small one is taken for a setting (``--input-value`` is suggested), a larger one names the op
    reading it (and the tensor, when that is selected from the input)."""
    consts = {i.name for i in g.initializer}
    for vi in g.input:
        if vi.name in consts or vi.type.tensor_type.elem_type not in INTEGER_INPUTS:
            continue
        found = _first_non_index_use(g, vi.name)
        if found is None:
            continue
        node, tensor = found
        kind = INTEGER_INPUTS[vi.type.tensor_type.elem_type]
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        via = "" if tensor == vi.name else f" (through '{tensor}', selected from it)"
        if int(np.prod(dims, dtype=np.int64)) <= SETTING_SIZE and not via:
            raise UnsupportedModelError(
                f"{source}: input '{vi.name}' is not a float tensor ({kind}) and is read by node "
                f"'{node.name or node.output[0]}' ({node.op_type}); only float inputs and integer indices into a "
                f"table can be converted; if it is a setting (a sample rate, a flag), freeze it with "
                f"--input-value {vi.name}=VALUE")
        raise UnsupportedModelError(
            f"{source}: input '{vi.name}' is {kind} data of shape {'x'.join(map(str, dims))} read{via} by node "
            f"'{node.name or node.output[0]}' ({node.op_type}); integer inputs (token ids, bytes, indices) can "
            f"only be selected from (Slice, Gather at constant positions, Reshape, Concat with integer constants) "
            f"and index a constant table or run-time data (Gather/embedding, GatherND/GatherElements, or OneHot "
            f"followed by MatMul/Gemm); integer arithmetic is not supported: export the model from its first float tensor")


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

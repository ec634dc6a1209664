"""Turn an already-quantized QDQ ONNX model back into the float model it was quantized from.

A QDQ model (onnxruntime ``quantize_static`` output, a vendor's int8 export) stores its weights as
integers behind ``DequantizeLinear`` and marks each activation with a ``QuantizeLinear`` ->
``DequantizeLinear`` pair. :func:`dequantize_qdq_model` rewrites it in place, before folding and shape
inference:

- ``DequantizeLinear`` of a constant (int4/int8/int16/int32 and unsigned forms; per tensor, per axis or
  blocked, opsets 10-22) becomes a float initializer ``(x - zero_point) * scale``, computed as onnxruntime
  does (integer subtraction, then one float multiply in the scale's dtype);
- ``QuantizeLinear`` of a constant followed by ``DequantizeLinear`` becomes the fake-quantized constant;
- a ``QuantizeLinear`` -> ``DequantizeLinear`` pair on an activation is removed: the float tensor flows on.
  Where the pair's range starts at exactly 0 (zero point at the type's minimum) a ``Relu`` is put back
  unless the tensor is already non-negative: onnxruntime's quantizer drops a Relu/Clip into such a pair,
  and a ResNet without them diverges. The pair's scale is not reused: the converter re-calibrates every
  activation range;
- the QOperator format (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, DynamicQuantizeLinear,
  onnxruntime's com.microsoft QLinear*/QGemm/DynamicQuantize* ops) and anything the rewrite cannot mean
  in float (an integer tensor feeding a non-DequantizeLinear node, a quantized graph input or output, a
  run-time DequantizeLinear not fed by a QuantizeLinear, float8) is refused in one line naming the node.

Only the top-level graph is rewritten; Q/DQ nodes left inside If/Loop bodies are refused by the importer.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from edge_runtime.errors import UnsupportedModelError

log = logging.getLogger("converters.importers.onnx")

_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")
#: Default-domain ops of the QOperator format (integer tensors between ops).
_QOPERATOR = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"})


#: Ops whose output is non-negative when their first input is (data movement, pooling).
_KEEPS_SIGN = frozenset({"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "MaxPool",
                         "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Slice", "Gather", "Split",
                         "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "ReduceMax", "ReduceMean", "Expand",
                         "Tile"})


def _is(node: Any, op: str) -> bool:
    return node.op_type == op and node.domain in _QDQ_DOMAINS


def _label(node: Any) -> str:
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    return f"ONNX node '{node.name or (node.output[0] if node.output else '?')}' ({op})"


def _qoperator(node: Any) -> bool:
    """True for a QOperator-format op: the default-domain list, or onnxruntime's quantized contrib ops."""
    if node.domain in ("", "ai.onnx"):
        return node.op_type in _QOPERATOR
    if node.domain != "com.microsoft" or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        return False
    t = node.op_type
    return "Quantize" in t or t.endswith("Integer") or re.match(r"^Q[A-Z]", t) is not None


def _attr(node: Any, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` nodes holding a plain ``value`` tensor, as arrays."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _elem_type(graph: Any, name: str) -> int:
    for t in graph.initializer:
        if t.name == name:
            return int(t.data_type)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for a in node.attribute:
                if a.name == "value":
                    return int(a.t.data_type)
    return 0


def _broadcast(p: np.ndarray, x_shape: tuple[int, ...], axis: int, block: int, what: str) -> np.ndarray:
    """``p`` (a scale or zero point) shaped to broadcast against ``x``: per tensor, per axis or blocked."""
    if p.size == 1 and (p.ndim == 0 or block == 0):
        return p.reshape(())
    if not 0 <= axis < len(x_shape):
        raise ValueError(f"axis {axis} is outside the input's rank {len(x_shape)}")
    if block > 0:
        if p.ndim != len(x_shape):
            raise ValueError(f"blocked {what} has rank {p.ndim}, the input rank {len(x_shape)}")
        return np.repeat(p, block, axis=axis)[tuple(slice(0, d) for d in x_shape)]
    if p.ndim != 1 or p.shape[0] != x_shape[axis]:
        raise ValueError(f"{what} of shape {list(p.shape)} matches neither a scalar nor axis {axis} "
                         f"(size {x_shape[axis]}) of the input {list(x_shape)}")
    shape = [1] * len(x_shape)
    shape[axis] = -1
    return p.reshape(shape)


def dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int = 1,
               block: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` of a constant: ``(x - zero) * scale`` in the scale's float dtype."""
    shape = tuple(x.shape)
    ax = axis + len(shape) if axis < 0 else axis
    s = _broadcast(np.asarray(scale), shape, ax, block, "scale")
    diff = x.astype(np.int64)
    if zero is not None:
        diff = diff - _broadcast(np.asarray(zero), shape, ax, block, "zero point").astype(np.int64)
    dtype = s.dtype if s.dtype in (np.float16, np.float32, np.float64) else np.float32
    return (diff.astype(dtype) * s.astype(dtype)).astype(dtype)


def quantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, qdtype: Any, axis: int = 1,
             block: int = 0) -> np.ndarray:
    """ONNX ``QuantizeLinear`` of a constant: round half to even, add the zero point, saturate."""
    shape = tuple(x.shape)
    ax = axis + len(shape) if axis < 0 else axis
    s = _broadcast(np.asarray(scale), shape, ax, block, "scale").astype(np.float32)
    z = (_broadcast(np.asarray(zero), shape, ax, block, "zero point").astype(np.int64)
         if zero is not None else np.int64(0))
    info = np.iinfo(qdtype)
    q = np.rint(x.astype(np.float32) / s).astype(np.int64) + z
    return np.clip(q, info.min, info.max).astype(qdtype)


def _clamps_at_zero(zero: np.ndarray | None) -> bool:
    """True when a QuantizeLinear's range starts at exactly 0 (zero point at the type's minimum, or absent =
    uint8 0): onnxruntime's quantizer drops a Relu (or a Clip at 0) before such a pair, so removing the pair
    must put the floor back."""
    if zero is None:
        return True
    z = np.asarray(zero)
    return z.dtype.kind in "iu" and bool(np.all(z == np.iinfo(z.dtype).min))


def _float8(elem: int) -> bool:
    from onnx import TensorProto

    names = ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1")
    return elem in {getattr(TensorProto, n) for n in names if hasattr(TensorProto, n)}


def dequantize_qdq_model(model: Any, source: str = "model") -> int:
    """Rewrite a QDQ ``model`` in place into its float form; returns the number of Q/DQ nodes removed.

    A model without QuantizeLinear/DequantizeLinear is left untouched (returns 0). Refuses the QOperator
    format and anything that cannot be read back as float in one ``UnsupportedModelError`` line.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    for node in g.node:
        if _qoperator(node):
            raise UnsupportedModelError(
                f"{source}: {_label(node)}: this model is already quantized in the QOperator format "
                f"(integer tensors between ops); export it in QDQ format or give the converter the float model")
    qs = [n for n in g.node if _is(n, "QuantizeLinear")]
    dqs = [n for n in g.node if _is(n, "DequantizeLinear")]
    if not qs and not dqs:
        return 0
    for node in qs + dqs:
        if len(node.input) < 2 or not node.input[0] or not node.input[1] or not node.output or not node.output[0]:
            raise UnsupportedModelError(f"{source}: {_label(node)}: needs an input, a scale and an output; "
                                        f"the model is malformed")
    consts = _constants(g)
    consumers: dict[str, list[Any]] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    graph_outputs = {o.name for o in g.output}
    graph_inputs = {i.name for i in g.input}

    def params(node: Any) -> tuple[np.ndarray, np.ndarray | None, int, int]:
        for i in node.input[1:3]:
            if i and i not in consts:
                raise UnsupportedModelError(
                    f"{source}: {_label(node)}: scale/zero point '{i}' is computed at run time; "
                    f"only constant quantization parameters can be read back as float")
        zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        return consts[node.input[1]], zero, _attr(node, "axis", 1), _attr(node, "block_size", 0)

    made_by = {q.output[0]: q for q in qs}
    producers = {o: nd for nd in g.node for o in nd.output}
    relus: dict[str, str] = {}  # Q input -> the Relu restoring its floor at 0

    def non_negative(name: str, depth: int) -> bool:
        """True when ``name`` cannot be negative: a Relu's output, seen through reshapes, pools and pairs."""
        if name in relus.values():
            return True
        p = producers.get(name)
        if p is None or depth > 64:
            return False
        if p.op_type in ("Relu", "Sigmoid", "Softmax", "Abs", "Exp"):
            return True
        if _is(p, "DequantizeLinear") and name in alias:
            return non_negative(alias[name], depth + 1)
        if p.op_type in _KEEPS_SIGN:
            return non_negative(p.input[0], depth + 1)
        if p.op_type in ("Concat", "Max"):
            return all(non_negative(i, depth + 1) for i in p.input if i)
        return False

    def floor_at_zero(q: Any, zero: np.ndarray | None) -> str:
        """The Q input through a Relu: the pair's range starts at 0, where the quantizer dropped a Relu."""
        src = q.input[0]
        if non_negative(src, 0):
            return src
        if src not in relus:
            relus[src] = f"{src}/relu_from_qdq"
            extra.append(helper.make_node("Relu", [src], [relus[src]], name=f"{q.name or src}/relu_from_qdq"))
        return relus[src]

    extra: list[Any] = []  # Relus put back (before the nodes that read them; order fixed below)
    alias: dict[str, str] = {}  # DQ output -> the float tensor that replaces it
    folded: dict[str, np.ndarray] = {}  # DQ output -> its constant float value
    removed: set[int] = set()
    pairs = weights = 0
    for q in qs:
        for i in q.output[1:]:
            if i:
                raise UnsupportedModelError(f"{source}: {_label(q)}: unexpected extra output '{i}'")
        out = q.output[0]
        users = consumers.get(out, [])
        if out in graph_outputs:
            raise UnsupportedModelError(
                f"{source}: {_label(q)}: its quantized output '{out}' is a graph output; the converter needs a "
                f"model with float outputs (end it with a DequantizeLinear, or give the float model)")
        bad = [u for u in users if not _is(u, "DequantizeLinear") or u.input[0] != out]
        if bad:
            raise UnsupportedModelError(
                f"{source}: {_label(q)}: its quantized output '{out}' feeds {_label(bad[0])} directly instead of "
                f"a DequantizeLinear; only QuantizeLinear -> DequantizeLinear pairs can be read back as float")
        removed.add(id(q))
    for dq in dqs:
        x = dq.input[0]
        out = dq.output[0]
        elem = _elem_type(g, x)
        if _float8(elem):
            raise UnsupportedModelError(f"{source}: {_label(dq)}: float8/float4 quantized tensors are not supported; "
                                        f"give the converter the float model")
        producer = made_by.get(x)
        try:
            if x in consts:
                s, z, axis, block = params(dq)
                folded[out] = dequantize(consts[x], s, z, axis, block)
                weights += 1
            elif producer is not None and producer.input[0] in consts:
                s, z, axis, block = params(producer)
                qv = quantize(consts[producer.input[0]], s, z, (z.dtype if z is not None else np.uint8), axis, block)
                s, z, axis, block = params(dq)
                folded[out] = dequantize(qv, s, z, axis, block)
                weights += 1
            elif producer is not None:
                _, zero, _, _ = params(producer)
                params(dq)  # constant parameters only: a run-time scale is not a QDQ model
                alias[out] = floor_at_zero(producer, zero) if _clamps_at_zero(zero) else producer.input[0]
                pairs += 1
            else:
                why = ("the graph input" if x in graph_inputs else "run-time tensor")
                raise UnsupportedModelError(
                    f"{source}: {_label(dq)}: dequantizes {why} '{x}', which no QuantizeLinear makes; the converter "
                    f"needs float inputs between ops (give the model a float input, or give the float model)")
        except (ValueError, TypeError, IndexError) as exc:  # a scale or zero point that fits no ONNX form
            raise UnsupportedModelError(f"{source}: {_label(dq)}: {exc}") from None
        removed.add(id(dq))

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    keep = []
    for node in g.node:  # each restored Relu goes where its Q was (its input is made before, its users after)
        if id(node) not in removed:
            keep.append(node)
        elif _is(node, "QuantizeLinear"):
            keep.extend(r for r in extra if r.input[0] == node.input[0] and r not in keep)
    for node in keep:
        node.input[:] = [resolve(i) if i else i for i in node.input]
    for name in graph_outputs:
        if name in alias:
            keep.append(helper.make_node("Identity", [resolve(name)], [name], name=f"{name}/qdq_removed"))
    new_inits = [numpy_helper.from_array(v, name) for name, v in folded.items()]
    del g.node[:]
    g.node.extend(keep)
    freed = {i for n in qs + dqs for i in n.input if i}
    used = {i for n in g.node for i in n.input} | graph_outputs | graph_inputs
    _drop_unused(g, freed - used)
    g.initializer.extend(new_inits)
    n_q = sum(1 for q in qs if id(q) in removed)
    if pairs:
        log.warning("ONNX model is already quantized (%d QuantizeLinear/DequantizeLinear pairs): converting from "
                    "its dequantized weights; activation ranges re-calibrated", pairs)
    else:
        log.info("ONNX model stores %d constants quantized (DequantizeLinear): converting from their dequantized "
                 "values", weights)
    return n_q + len(dqs)


def _drop_unused(g: Any, unused: set[str]) -> None:
    """Remove the initializers and Constant nodes named in ``unused`` (integer weights, scales, zero points)."""
    keep_init = [t for t in g.initializer if t.name not in unused]
    del g.initializer[:]
    g.initializer.extend(keep_init)
    keep = [n for n in g.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                                      and n.output and n.output[0] in unused)]
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)

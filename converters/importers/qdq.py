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
  and a ResNet without them diverges. The pair's (scale, zero point) is recorded (:class:`QdqParams`, when
  asked) so that the converter keeps it (:mod:`converters.qdq_source`); ``--recalibrate-qdq`` re-calibrates instead;
- onnxruntime's dynamic quantization (``quantize_dynamic``: DynamicQuantizeLinear -> MatMulInteger/ConvInteger
  -> Cast -> Mul, com.microsoft DynamicQuantizeLSTM, int8 embedding tables gathered before their
  DequantizeLinear) is read back as float ops on dequantized weights first (:func:`dequantize_dynamic_ops`);
- the rest of the QOperator format (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, DynamicQuantizeLinear,
  onnxruntime's com.microsoft QLinear*/QGemm/DynamicQuantize* ops) and anything the rewrite cannot mean
  in float (an integer tensor feeding a non-DequantizeLinear node, a quantized graph input or output, a
  run-time DequantizeLinear not fed by a QuantizeLinear, float8) is refused in one line naming the node.

Only the top-level graph is rewritten; Q/DQ nodes left inside If/Loop bodies are refused by the importer.

What the model fixes is read again for the converter by :func:`read_qdq_params` (tensor names as the rewrite
leaves them, which the IR keeps) and applied to the imported IR by :mod:`converters.qdq_source`.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Optional

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


def dequantize_qdq_model(model: Any, source: str = "model", record: "Optional[QdqParams]" = None) -> int:
    """Rewrite a QDQ ``model`` in place into its float form; returns the number of Q/DQ nodes removed.

    A model without QuantizeLinear/DequantizeLinear is left untouched (returns 0). Refuses the QOperator
    format and anything that cannot be read back as float in one ``UnsupportedModelError`` line.
    ``record``: filled with the activation pairs' and the constant weights' quantization parameters, by the
    float tensor names the rewrite leaves (:class:`QdqParams`).
    """
    from onnx import helper, numpy_helper

    g = model.graph
    dequantize_dynamic_ops(model, source, announce=record is None)
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
                if record is not None:
                    readers = [_label_name(u) for u in consumers.get(out, [])]
                    record.add_weight(out, consts[x], s, z, axis, block, readers)
            elif producer is not None and producer.input[0] in consts:
                s, z, axis, block = params(producer)
                qv = quantize(consts[producer.input[0]], s, z, (z.dtype if z is not None else np.uint8), axis, block)
                s, z, axis, block = params(dq)
                folded[out] = dequantize(qv, s, z, axis, block)
                weights += 1
            elif producer is not None:
                q_scale, zero, q_axis, _ = params(producer)
                params(dq)  # constant parameters only: a run-time scale is not a QDQ model
                alias[out] = floor_at_zero(producer, zero) if _clamps_at_zero(zero) else producer.input[0]
                pairs += 1
                if record is not None:
                    made = producers.get(producer.input[0])
                    label = _label_name(made) if made is not None else ""
                    record.add_pair(alias[out], q_scale, zero, label)
                    src = producer.input[0]
                    if alias[out] != src and src not in graph_outputs and all(
                            _is(u, "QuantizeLinear") for u in consumers.get(src, [])):  # a Relu put back: its
                        record.add_pair(src, q_scale, zero, label)  # input is quantized as the model's Q did it,
                        record.clamped[src] = alias[out]  # clamping at 0 (no other reader sees the clamp)
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
            if record is not None:  # the importer names the output's IR tensor after the graph output
                record.same_as(name, resolve(name))
    new_inits = [numpy_helper.from_array(v, name) for name, v in folded.items()]
    del g.node[:]
    g.node.extend(keep)
    freed = {i for n in qs + dqs for i in n.input if i}
    used = {i for n in g.node for i in n.input} | graph_outputs | graph_inputs
    _drop_unused(g, freed - used)
    g.initializer.extend(new_inits)
    n_q = sum(1 for q in qs if id(q) in removed)
    announce = record is None  # the converter's second reading (read_qdq_params): the import has said it
    if announce and pairs:
        log.info("ONNX model is already quantized (%d QuantizeLinear/DequantizeLinear pairs): read as its "
                 "dequantized float graph", pairs)
    elif announce:
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


# ---------------------------------------------------------------- dynamic quantization (quantize_dynamic)
#: ops that only move or pick elements of their first input: a per-tensor DequantizeLinear after them equals
#: them after it (an int8 embedding table gathered, then transposed, then dequantized)
_MOVES = frozenset({"Gather", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
#: DynamicQuantizeLSTM's inputs after X: W, R, B, sequence_lens, initial_h, initial_c, P, then the quantization
_LSTM_ARITY = 12


def _lstm_weight(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    """A DynamicQuantizeLSTM weight ``[dirs, in, 4H]`` (scale/zero point per direction ``[dirs]`` or per gate
    column ``[dirs, 4H]``) as the float ``[dirs, 4H, in]`` weight of an ONNX LSTM."""
    dirs, _, cols = q.shape

    def shaped(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p)
        if p.size == 1:
            return p.reshape(())
        if p.size == dirs:
            return p.reshape(dirs, 1, 1)
        if p.size == dirs * cols:
            return p.reshape(dirs, 1, cols)
        raise ValueError(f"scale/zero point of shape {list(p.shape)} fits neither [{dirs}] nor [{dirs}, {cols}]")

    diff = q.astype(np.int64) - (shaped(zero).astype(np.int64) if zero is not None else 0)
    return np.ascontiguousarray((diff.astype(np.float32) * shaped(scale).astype(np.float32)).transpose(0, 2, 1))


def dequantize_dynamic_ops(model: Any, source: str = "model", announce: bool = True) -> int:
    """Rewrite onnxruntime's dynamic quantization (``quantize_dynamic`` output) into float ops, in place;
    returns the number of quantized ops rewritten.

    - ``DynamicQuantizeLinear(X) -> MatMulInteger/ConvInteger(Xq, Wq, Xzp, Wzp) -> Cast(float) ->
      Mul(., Xscale * Wscale)`` becomes ``MatMul/Conv(X, W)`` with ``W = (Wq - Wzp) * Wscale`` (per tensor, or
      per output column / channel);
    - com.microsoft ``DynamicQuantizeLSTM`` becomes an ONNX ``LSTM`` with its weights dequantized and turned
      from ``[dirs, in, 4H]`` to ``[dirs, 4H, in]``;
    - a per-tensor ``DequantizeLinear`` of a quantized constant moved by Gather/Transpose/Reshape... (an int8
      embedding table, :data:`_MOVES`) becomes the same ops on the dequantized constant.

    What the dynamic quantization computed at run time (activation scales) is dropped: the converter calibrates
    its own. A node that does not match these patterns exactly is left as it is (and refused by name later).
    ``announce``: log the one line saying so (not on the converter's second reading, :func:`read_qdq_params`).
    """
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    consts = _constants(g)
    producers = {o: n for n in g.node for o in n.output if o}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    placed: dict[int, list[Any]] = {}  # id(node) -> the float nodes that take its place
    removed: set[int] = set()
    maybe_dead: list[Any] = []
    inits: dict[str, np.ndarray] = {}
    taken = set(producers) | set(consts) | {i.name for i in g.input}

    def fresh(want: str) -> str:
        name, k = want, 1
        while name in taken:
            name, k = f"{want}_{k}", k + 1
        taken.add(name)
        return name

    def only_user(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    def const_or_none(name: str) -> tuple[bool, np.ndarray | None]:
        if not name:
            return True, None
        return (name in consts), consts.get(name)

    def integer_op(n: Any) -> bool:
        ins = list(n.input) + [""] * (4 - len(n.input))
        d = producers.get(ins[0])
        if d is None or not _is(d, "DynamicQuantizeLinear") or d.output[0] != ins[0] or ins[2] not in ("", d.output[2]):
            return False
        ok, wzp = const_or_none(ins[3])
        if ins[1] not in consts or not ok:
            return False
        cast = only_user(n.output[0])
        if cast is None or not _is(cast, "Cast") or _attr(cast, "to", 0) != TensorProto.FLOAT:
            return False
        mul = only_user(cast.output[0])
        if mul is None or not _is(mul, "Mul") or len(mul.input) != 2:
            return False
        sm = producers.get(mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0])
        if sm is None or not _is(sm, "Mul") or d.output[1] not in sm.input:
            return False
        ws = sm.input[1] if sm.input[0] == d.output[1] else sm.input[0]
        if ws not in consts:
            return False
        wq = consts[ins[1]]
        axis = wq.ndim - 1 if n.op_type == "MatMulInteger" else 0
        try:
            w = dequantize(wq, consts[ws].astype(np.float32), wzp, axis=axis)
        except ValueError as exc:
            raise UnsupportedModelError(f"{source}: {_label(n)}: {exc}") from None
        wname = fresh(f"{ins[1]}_dequantized")
        inits[wname] = w.astype(np.float32)
        op = "MatMul" if n.op_type == "MatMulInteger" else "Conv"
        new = helper.make_node(op, [d.input[0], wname], [mul.output[0]], name=n.name or mul.output[0])
        if op == "Conv":
            new.attribute.extend(n.attribute)
        placed[id(n)] = [new]
        removed.update({id(cast), id(mul)})
        maybe_dead.extend([sm, d])
        return True

    def lstm(n: Any) -> bool:
        ins = list(n.input) + [""] * (_LSTM_ARITY - len(n.input))
        w, r, ws, wz, rs, rz = ins[1], ins[2], ins[8], ins[9], ins[10], ins[11]
        if any(x not in consts for x in (w, r, ws, rs)) or not const_or_none(wz)[0] or not const_or_none(rz)[0]:
            return False
        try:
            wf = _lstm_weight(consts[w], consts[ws], consts.get(wz) if wz else None)
            rf = _lstm_weight(consts[r], consts[rs], consts.get(rz) if rz else None)
        except ValueError as exc:
            raise UnsupportedModelError(f"{source}: {_label(n)}: {exc}") from None
        wn, rn = fresh(f"{w}_dequantized"), fresh(f"{r}_dequantized")
        inits[wn], inits[rn] = wf, rf
        lstm_ins = [ins[0], wn, rn] + ins[3:8]
        while lstm_ins and not lstm_ins[-1]:
            lstm_ins.pop()
        new = helper.make_node("LSTM", lstm_ins, list(n.output), name=n.name or n.output[0])
        new.attribute.extend(n.attribute)
        placed[id(n)] = [new]
        return True

    def float_of(name: str, s: np.ndarray, z: np.ndarray | None, out: str, chain: list[Any]) -> bool:
        """Emit into ``chain`` the float ops making ``out`` = DequantizeLinear(``name``) per tensor."""
        if name in consts:
            fname = fresh(f"{name}_dequantized")
            inits[fname] = dequantize(consts[name], s, z).astype(np.float32)
            chain.append(helper.make_node("Identity", [fname], [out], name=fresh(f"{out}/dequantized")))
            return True
        p = producers.get(name)
        if p is None or p.op_type not in _MOVES or p.domain not in ("", "ai.onnx") or p.output[0] != name:
            return False
        if p.input[0] in consts:
            src = fresh(f"{p.input[0]}_dequantized")
            inits[src] = dequantize(consts[p.input[0]], s, z).astype(np.float32)
        else:
            src = fresh(f"{p.input[0]}_float")
            if not float_of(p.input[0], s, z, src, chain):
                return False
        new = helper.make_node(p.op_type, [src] + list(p.input[1:]), [out], name=fresh(f"{p.name or out}/float"))
        new.attribute.extend(p.attribute)
        chain.append(new)
        maybe_dead.append(p)
        return True

    def moved_dq(n: Any) -> bool:
        if len(n.input) < 2 or n.input[0] in consts or n.input[1] not in consts or _attr(n, "block_size", 0):
            return False
        p = producers.get(n.input[0])
        if p is None or p.op_type not in _MOVES:
            return False
        ok, zero = const_or_none(n.input[2] if len(n.input) > 2 else "")
        scale = consts[n.input[1]]
        if not ok or scale.size != 1 or (zero is not None and zero.size != 1):
            return False
        chain: list[Any] = []
        if not float_of(n.input[0], scale.reshape(()), None if zero is None else zero.reshape(()), n.output[0], chain):
            return False
        placed[id(n)] = chain
        return True

    done = 0
    for n in list(g.node):
        if n.domain in ("", "ai.onnx") and n.op_type in ("MatMulInteger", "ConvInteger"):
            done += integer_op(n)
        elif n.domain == "com.microsoft" and n.op_type == "DynamicQuantizeLSTM":
            done += lstm(n)
        elif _is(n, "DequantizeLinear") and n.domain in ("", "ai.onnx"):
            done += moved_dq(n)
    if not done:
        return 0
    nodes = []
    for n in g.node:
        if id(n) in placed:
            nodes.extend(placed[id(n)])
        elif id(n) not in removed:
            nodes.append(n)
    outputs = {o.name for o in g.output}
    dead_ids = {id(n) for n in maybe_dead}
    while True:  # drop the integer ops left without readers (quantizers, scale products, integer movements)
        used = {i for n in nodes for i in n.input} | outputs
        keep = [n for n in nodes if id(n) not in dead_ids or any(o in used for o in n.output if o)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    freed = {i for n in g.node for i in n.input if i}
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    used = {i for n in g.node for i in n.input} | outputs
    _drop_unused(g, (freed & set(consts)) - used)
    if announce:
        log.warning("ONNX model is dynamically quantized (%d quantized ops): converting from its dequantized "
                    "weights; activation ranges calibrated", done)
    return done


# ---------------------------------------------------------------- what a QDQ model fixes (kept by the converter)
#: integer types of a QuantizeLinear's output (its zero point's) -> (bits, shift to the signed zero point)
_PAIR_TYPES = {"int8": (8, 0), "uint8": (8, -128), "int16": (16, 0), "uint16": (16, -32768)}


def _label_name(node: Any) -> str:
    """The name the ONNX importer gives the IR op made from ``node`` (its name, else its first output)."""
    return node.name or (node.output[0] if node.output else "")


@dataclass
class QdqWeight:
    """One constant behind a ``DequantizeLinear``: its integer values and parameters, as the model stores them."""

    name: str
    values: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    axis: int
    block: int
    readers: list[str]


@dataclass
class QdqParams:
    """What a QDQ model fixes, by the float tensor names its rewrite leaves (the IR's names).

    ``activations``: tensor -> ``(scale, zero point, bits)`` of its QuantizeLinear -> DequantizeLinear pair (the
    zero point shifted to the signed type: uint8 128 is int8 0); ``skipped``: tensor -> why a pair is not kept
    (per-axis, another type, two pairs that disagree); ``weights``: the dequantized constants.
    """

    activations: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    weights: list[QdqWeight] = field(default_factory=list)
    #: other names of a paired tensor (a graph output behind an Identity) -> the tensor
    aliases: dict[str, str] = field(default_factory=dict)
    #: paired tensor -> the label of the ONNX node making it (the IR op's name)
    made_by: dict[str, str] = field(default_factory=dict)
    #: the input of a Relu put back (:func:`dequantize_qdq_model`) -> its output: the pair's parameters on both,
    #: as the model's QuantizeLinear clamps at 0 where the quantizer dropped the Relu
    clamped: dict[str, str] = field(default_factory=dict)

    @property
    def pairs(self) -> int:
        """How many activations the model's pairs fix (each tensor once)."""
        return len(set(self.activations) | set(self.skipped)) - len(self.aliases) - len(self.clamped)

    def add_pair(self, tensor: str, scale: np.ndarray, zero: Optional[np.ndarray], made_by: str = "") -> None:
        """Record the pair fixing ``tensor`` (no zero point: uint8 0), made by the ONNX node labelled ``made_by``."""
        if made_by:
            self.made_by[tensor] = made_by
        bits, shift = _PAIR_TYPES.get(str(np.asarray(zero).dtype) if zero is not None else "uint8", (0, 0))
        s = np.asarray(scale)
        if not bits:
            self.skipped[tensor] = "not an int8/uint8/int16/uint16 pair"
            return
        if s.size != 1 or (zero is not None and np.asarray(zero).size != 1):
            self.skipped[tensor] = "per-axis activation parameters"
            return
        zp = (int(np.asarray(zero).reshape(())) if zero is not None else 0) + shift
        got = (float(np.float32(s.reshape(()))), zp, bits)
        if not got[0] > 0 or not np.isfinite(got[0]):
            self.skipped[tensor] = "scale is not a positive number"
            return
        if self.activations.get(tensor, got) != got:
            self.skipped[tensor] = "two QuantizeLinear pairs with different parameters"
            del self.activations[tensor]
            return
        if tensor not in self.skipped:
            self.activations[tensor] = got

    def same_as(self, name: str, source: str) -> None:
        """``name`` is ``source`` under another name (a graph output after an Identity): same parameters."""
        self.aliases[name] = source
        if source in self.activations:
            self.activations[name] = self.activations[source]
        elif source in self.skipped:
            self.skipped[name] = self.skipped[source]

    def add_weight(self, name: str, values: np.ndarray, scale: np.ndarray, zero: Optional[np.ndarray], axis: int,
                   block: int, readers: list[str]) -> None:
        """Record the constant ``name`` (the DequantizeLinear output) read by the ONNX nodes ``readers``."""
        self.weights.append(QdqWeight(name, np.asarray(values), np.asarray(scale, np.float32).reshape(-1),
                                      None if zero is None else np.asarray(zero).reshape(-1), axis, block, readers))


def read_qdq_params(path: "str | Any") -> Optional[QdqParams]:
    """The parameters the QDQ ONNX model at ``path`` fixes (:class:`QdqParams`); None for a model without
    QuantizeLinear/DequantizeLinear or a file that is not ONNX. Loads the model again (its external data from
    its own folder, as the importer does) and runs the same rewrite on that copy."""
    import os

    import onnx

    from converters.importers.prepare import load_external_data

    p = os.fspath(path)
    if not _mentions(p, b"QuantizeLinear"):  # a float model: no second parse of a large file
        return None
    try:
        model = onnx.load(p, load_external_data=False)
    except Exception:  # not ONNX: the importer has already said so, or it is a TFLite model
        return None
    if not any(_is(n, "QuantizeLinear") or _is(n, "DequantizeLinear") for n in model.graph.node):
        return None
    load_external_data(model, p)
    if len(model.functions):
        from converters.importers.expand_functions import inline_local_functions

        model = inline_local_functions(model, p)
    record = QdqParams()
    dequantize_qdq_model(model, p, record)
    return record


def _mentions(path: str, word: bytes) -> bool:
    """True when the file at ``path`` contains ``word`` (an op type every QDQ model names), read through mmap."""
    import mmap

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(word) >= 0
    except (OSError, ValueError):  # unreadable or empty: let onnx.load say what it is
        return True

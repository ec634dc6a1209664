"""Remove tf2onnx's negative-index wrap in front of an embedding Gather (ONNX level).

TensorFlow/Keras embeddings write ``where(ids < 0, ids + N, ids)`` before ``GatherV2(table[N], ...)``; tf2onnx
exports it either as ``Where(Less(x, 0), Add(ids, N), ids)`` or, for integer data, as
``Add(Mul(Cast(c), Add(ids, N)), Mul(ids, Cast(Not(c))))`` with ``c = Less(x, 0)``, where ``x`` is ``ids`` or
``Cast(ids)`` (to float). ONNX Gather wraps indices in ``[-N, 0)`` exactly the same way, and both fail outside
``[-N, N)``, so when the wrapped tensor feeds only the indices of Gathers whose gathered axis has ``N`` rows the
Gathers may read ``ids`` directly: the model computes the same thing without integer arithmetic. Any other form
(another constant, another table size, another use) is left alone and refused by the importer's integer check.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

_INT_CASTS = (6, 7)  # INT32, INT64: a bool condition as 0/1
_SIGN_CASTS = (1, 6, 7, 10, 11, 16)  # FLOAT, INT32, INT64, FLOAT16, DOUBLE, BFLOAT16: keep the sign of an id


def _consts(g: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant node values of graph ``g``, as arrays."""
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            val = next((a.t for a in n.attribute if a.name == "value" and a.HasField("t")), None)
            if val is not None:
                out[n.output[0]] = numpy_helper.to_array(val)
    return out


def _cast_to(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "to"), 0)


class _Matcher:
    """Pattern matching over one graph: producers, constants and the ranks of known tensors."""

    def __init__(self, g: Any, ranks: dict[str, int]) -> None:
        self.consts = _consts(g)
        self.producers = {o: n for n in g.node for o in n.output}
        self.ranks = ranks

    def _scalar(self, name: str, ids: str) -> Optional[np.ndarray]:
        """The constant ``name`` when it holds one value whose broadcast keeps the shape of ``ids``."""
        v = self.consts.get(name)
        if v is None or v.size != 1 or (v.ndim and v.ndim > self.ranks.get(ids, 0)):
            return None
        return v

    def _is(self, name: str, op: str) -> Optional[Any]:
        n = self.producers.get(name)
        return n if n is not None and n.op_type == op else None

    def negative(self, cond: str, ids: str) -> Optional[list[Any]]:
        """Nodes computing ``ids < 0`` into ``cond`` (``Less(x, 0)`` or ``Greater(0, x)``, ``x`` = ``ids`` or a
        sign-keeping Cast of it)."""
        n = self.producers.get(cond)
        if n is None or n.op_type not in ("Less", "Greater") or len(n.input) != 2:
            return None
        x, zero = n.input if n.op_type == "Less" else n.input[::-1]
        z = self._scalar(zero, ids)
        if z is None or z.reshape(-1)[0] != 0:
            return None
        if x == ids:
            return [n]
        cast = self._is(x, "Cast")
        if cast is not None and cast.input[0] == ids and _cast_to(cast) in _SIGN_CASTS:
            return [n, cast]
        return None

    def plus_rows(self, name: str, ids: str) -> Optional[tuple[int, Any]]:
        """(N, node) when ``name`` is ``Add(ids, N)`` (either order) with a positive integer constant N."""
        n = self._is(name, "Add")
        if n is None or len(n.input) != 2 or ids not in n.input:
            return None
        other = n.input[1] if n.input[0] == ids else n.input[0]
        v = self._scalar(other, ids)
        if v is None or v.dtype.kind not in "iu" or int(v.reshape(-1)[0]) <= 0:
            return None
        return int(v.reshape(-1)[0]), n

    def wrap(self, node: Any) -> Optional[tuple[str, int, list[Any]]]:
        """(ids, N, the wrap's nodes) when ``node`` ends a negative-index wrap of ``ids`` by N."""
        if node.op_type == "Where" and len(node.input) == 3:
            cond, plus, ids = node.input
            found = self.plus_rows(plus, ids)
            neg = self.negative(cond, ids)
            if found is None or neg is None:
                return None
            return ids, found[0], [node, found[1]] + neg
        if node.op_type != "Add" or len(node.input) != 2:
            return None
        muls = [self._is(i, "Mul") for i in node.input]
        if any(m is None or len(m.input) != 2 for m in muls):
            return None
        for taken, kept in (muls, muls[::-1]):
            got = self._select_mul_add(taken, kept)
            if got is not None:
                return got[0], got[1], [node, taken, kept] + got[2]
        return None

    def _select_mul_add(self, taken: Any, kept: Any) -> Optional[tuple[str, int, list[Any]]]:
        """``taken = Cast(c) * (ids + N)`` and ``kept = ids * Cast(Not(c))`` with ``c = ids < 0``."""
        for c_out, plus in (taken.input, taken.input[::-1]):
            cast_c = self._is(c_out, "Cast")
            if cast_c is None or _cast_to(cast_c) not in _INT_CASTS:
                continue
            cond = cast_c.input[0]
            for ids, nc_out in (kept.input, kept.input[::-1]):
                cast_nc = self._is(nc_out, "Cast")
                not_c = self._is(cast_nc.input[0], "Not") if cast_nc is not None else None
                if not_c is None or _cast_to(cast_nc) not in _INT_CASTS or not_c.input[0] != cond:
                    continue
                found = self.plus_rows(plus, ids)
                neg = self.negative(cond, ids)
                if found is not None and neg is not None:
                    return ids, found[0], [cast_c, cast_nc, not_c, found[1]] + neg
        return None


def _gather_rows(node: Any, consts: dict[str, np.ndarray]) -> Optional[int]:
    """Rows of the gathered axis of a Gather from a constant table; None for anything else."""
    if node.op_type != "Gather" or node.input[0] not in consts:
        return None
    table = consts[node.input[0]]
    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 0)
    if not -table.ndim <= axis < table.ndim:
        return None
    return int(table.shape[axis])


def remove_index_wraps(model: Any) -> int:
    """Point every Gather that reads a tf2onnx negative-index wrap of ids by its table's row count straight at
    the ids, and drop the wrap's nodes, in place (``model`` is a prepared ``ModelProto``); return how many
    wraps were removed."""
    done = 0
    while _remove_one(model):
        done += 1
    return done


def _remove_one(model: Any) -> bool:
    """Remove the first removable wrap; False when there is none."""
    from converters.importers.prepare import static_shapes

    g = model.graph
    ranks = {k: len(v) for k, v in static_shapes(g).items()}
    match = _Matcher(g, ranks)
    readers: dict[str, list[tuple[Any, int]]] = {}
    for n in g.node:
        for k, i in enumerate(n.input):
            readers.setdefault(i, []).append((n, k))
    outputs = {o.name for o in g.output}
    for node in g.node:
        found = match.wrap(node)
        if found is None:
            continue
        ids, rows, nodes = found
        out = node.output[0]
        uses = readers.get(out, [])
        if not uses or out in outputs or any(k != 1 or _gather_rows(r, match.consts) != rows for r, k in uses):
            continue
        inside = {id(n) for n in nodes}
        inner = {o for n in nodes for o in n.output} - {out}
        if any(o in outputs or any(id(r) not in inside for r, _ in readers.get(o, [])) for o in inner):
            continue  # a part of the wrap feeds something else: keep it (the importer decides)
        for r, _ in uses:
            r.input[1] = ids
        kept = [n for n in g.node if id(n) not in inside]
        copies = [type(n)() for n in kept]
        for c, n in zip(copies, kept):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)
        gone = inner | {out}
        vis = [vi for vi in g.value_info if vi.name not in gone]
        del g.value_info[:]
        g.value_info.extend(vis)
        return True
    return False


__all__ = ["remove_index_wraps"]

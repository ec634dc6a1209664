"""Rewrite one-hot encodings multiplied by a constant matrix into an embedding lookup (ONNX level).

``MatMul(one_hot(i, depth), W)`` picks row ``i`` of ``W``: it is exactly ``Gather(W, i)``, with no
``[..., depth]`` float tensor in between (which int8 would also have to hold). Two encodings are
recognised, each optionally followed by a Cast to float:

- ``OneHot(indices, depth, values=[off, on], axis=-1)``: the product is
  ``Gather((on - off) * W + off * W.sum(0), indices)``;
- ``Equal(x, k)`` where ``k`` is a constant ``0, 1, ..., depth - 1`` along the last axis and ``x`` an
  activation whose last axis has size 1 (magika, jax2tf's ``one_hot``): off 0, on 1, indices ``x``
  without its last axis.

The product may be a ``MatMul`` with a constant 2-D ``W`` or a ``Gemm`` (``transA=0``, constant ``B``;
``alpha``, ``transB`` and a bias ``C`` are folded in); between the encoding and the product there may be
Casts and Reshapes that keep the encoded axis last (onnxslim turns a 3-D MatMul into Reshape, Gemm, Reshape). Rewritten only where the encoding feeds nothing
else. The rewrite differs from the source model for indices outside ``[0, depth)`` (the encoding is then
a zero row, the lookup an error); calibration data with such indices is refused
(:mod:`converters.calibration_data`). A OneHot that feeds anything else is converted as it is
(:mod:`converters.importers.onnx_ops.one_hot`: comparisons and a SELECT_V2).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _encoding(node: Any, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
              ) -> Optional[tuple[str, int, float, float]]:
    """(indices tensor, depth, off, on) when ``node`` is a one-hot encoding."""
    if node.op_type == "OneHot":
        if len(node.input) < 3 or node.input[0] in consts or any(i not in consts for i in node.input[1:3]):
            return None
        rank = len(shapes.get(node.input[0], ())) if node.input[0] in shapes else None
        axis = int(_attr(node, "axis", -1))
        if rank is None or axis not in (-1, rank):
            return None
        depth = int(np.asarray(consts[node.input[1]]).reshape(-1)[0])
        values = np.asarray(consts[node.input[2]], np.float64).reshape(-1)
        if values.size != 2 or depth <= 0:
            return None
        return node.input[0], depth, float(values[0]), float(values[1])
    if node.op_type == "Equal" and len(node.input) == 2:
        a, b = node.input
        if (a in consts) == (b in consts):
            return None
        x, k = (b, a) if a in consts else (a, b)
        kv = np.asarray(consts[k])
        out = shapes.get(node.output[0])
        xs = shapes.get(x)
        if out is None or xs is None or kv.dtype.kind not in "iu" or len(xs) != len(out) or xs[-1] != 1:
            return None
        depth = out[-1]
        if tuple(xs[:-1]) != tuple(out[:-1]) or kv.size != depth or kv.shape[-1:] != (depth,):
            return None
        if not np.array_equal(kv.reshape(-1), np.arange(depth)):
            return None
        return x, depth, 0.0, 1.0
    return None


def rewrite_one_hot_products(model: Any) -> int:
    """Replace every one-hot-times-constant product in ``model`` (a prepared ``ModelProto``) by a Gather of
    the matrix rows, in place; return how many were rewritten."""
    done = 0
    while _rewrite_one(model):
        done += 1
    return done


def _rewrite_one(model: Any) -> bool:
    """Rewrite the first one-hot product found; False when there is none."""
    from onnx import TensorProto, helper, numpy_helper

    from converters.importers.prepare import static_shapes

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = static_shapes(g)
    nodes = list(g.node)
    producers = {o: n for n in nodes for o in n.output}
    position = {o: k for k, n in enumerate(nodes) for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    single = lambda t: readers.get(t, 0) == 1 and t not in outputs  # noqa: E731
    for at, node in enumerate(nodes):
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2 or node.input[1] not in consts:
            continue
        a = node.input[0]
        want = shapes.get(a)
        prod = producers.get(a)
        chain = []
        while prod is not None and single(a) and len(chain) < 3 and (
                (prod.op_type == "Cast" and int(_attr(prod, "to", 0)) in _FLOAT_TYPES)
                or (prod.op_type == "Reshape" and want and shapes.get(prod.input[0], (None,))[-1:] == want[-1:])):
            chain.append(prod)  # a cast to float, or a reshape that keeps the encoded axis last (onnxslim's Gemm)
            a = prod.input[0]
            prod = producers.get(a)
        if prod is None or not single(a) or not want:
            continue
        enc = _encoding(prod, consts, shapes)
        if enc is None:
            continue
        idx, depth, off, on = enc
        reshape_to: Optional[tuple[int, ...]] = tuple(want[:-1])  # the product's rows, one index each
        if shapes.get(idx) == reshape_to:
            reshape_to = None
        w = np.asarray(consts[node.input[1]], np.float64)
        bias = None
        if node.op_type == "Gemm":
            if int(_attr(node, "transA", 0)):
                continue
            w = w.T if int(_attr(node, "transB", 0)) else w
            w = w * float(_attr(node, "alpha", 1.0))
            if len(node.input) > 2 and node.input[2]:
                if node.input[2] not in consts:
                    continue
                bias = np.asarray(consts[node.input[2]], np.float64) * float(_attr(node, "beta", 1.0))
        if w.ndim != 2 or w.shape[0] != depth:
            continue
        table = ((on - off) * w + off * w.sum(axis=0, keepdims=True)).astype(np.float32)
        base = node.name or node.output[0]
        new_nodes = []
        if reshape_to is not None:
            shape_name, squeezed = f"{base}/one_hot_index_shape", f"{base}/one_hot_index"
            g.initializer.append(numpy_helper.from_array(np.array(reshape_to, np.int64), shape_name))
            new_nodes.append(helper.make_node("Reshape", [idx, shape_name], [squeezed], name=f"{base}/one_hot_index"))
            elem = next((vi.type.tensor_type.elem_type for vi in list(g.input) + list(g.value_info) if vi.name == idx),
                        TensorProto.INT64)
            g.value_info.append(helper.make_tensor_value_info(squeezed, elem, list(reshape_to)))
            idx = squeezed
        table_name = f"{base}/embedding_table"
        g.initializer.append(numpy_helper.from_array(table, table_name))
        out = node.output[0]
        looked = out if bias is None else f"{base}/embedding"
        new_nodes.append(helper.make_node("Gather", [table_name, idx], [looked], name=f"{base}/embedding", axis=0))
        if bias is not None:
            bias_name = f"{base}/embedding_bias"
            g.initializer.append(numpy_helper.from_array(bias.astype(np.float32), bias_name))
            new_nodes.append(helper.make_node("Add", [looked, bias_name], [out], name=f"{base}/embedding_bias"))
            if out in shapes:
                g.value_info.append(helper.make_tensor_value_info(looked, TensorProto.FLOAT, list(shapes[out])))
        drop = {at, position[prod.output[0]]} | {position[c.output[0]] for c in chain}
        rebuilt = []
        for k, n in enumerate(nodes):
            if k == at:
                rebuilt.extend(new_nodes)
            if k not in drop:
                rebuilt.append(n)
        copies = [type(n)() for n in rebuilt]
        for c, n in zip(copies, rebuilt):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)
        return True
    return False

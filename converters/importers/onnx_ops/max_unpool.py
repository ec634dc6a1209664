"""MaxUnpool with constant indices: a constant GATHER from the input plus one zero.

Every output element is either the input element whose (flattened, ONNX-layout) index names it, or zero.
With the indices known, that is a GATHER of the input flattened in IR order, with one zero appended (PAD),
at constant positions (the zero's for the elements no index names; where two indices name the same
element the later one wins, as in the reference). Exact: GATHER and PAD keep the input's int8 parameters.
Indices computed at run time (a MaxPool's second output) are refused. With an ``output_shape`` input the
indices name elements of that shape's flattening, as in onnxruntime and PyTorch's ``max_unpool2d`` (the onnx
package's reference scatters into the shape kernel_shape/strides/pads imply and pads it to ``output_shape``;
onnx issue 2726 calls the op ambiguous there). ONNX shape inference leaves the output of a constant
``output_shape`` unknown: :func:`constant_output_shapes` gives it that shape.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext, nhwc


def constant_output_shapes(model: Any) -> bool:
    """Give each top-level MaxUnpool whose ``output_shape`` is an initializer of positive sizes, one per
    axis of X, an output of that shape (value_info), in place; True when one was added."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    known = {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
    added = False
    for node in g.node:
        if node.op_type != "MaxUnpool" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        dims = numpy_helper.to_array(inits[node.input[2]]).reshape(-1)
        x = known.get(node.input[0])
        out = known.get(node.output[0])
        rank = len(x.type.tensor_type.shape.dim) if x is not None and x.type.tensor_type.HasField("shape") else -1
        if len(dims) != rank or not np.all(dims > 0):
            continue  # left unknown: the static-shape check names the node
        if out is not None and out.type.tensor_type.HasField("shape") and all(
                d.HasField("dim_value") for d in out.type.tensor_type.shape.dim):
            continue
        elem = x.type.tensor_type.elem_type
        vi = helper.make_tensor_value_info(node.output[0], elem, [int(d) for d in dims])
        if out is not None:
            out.CopyFrom(vi)
        else:
            g.value_info.append(vi)
        added = True
    return added


def max_unpool(ctx: ImportContext, node: Any, a: dict) -> None:
    """MaxUnpool(X, I constant[, output_shape]) -> GATHER over X and a zero."""
    if not ctx.is_const(node.input[1]):
        raise ctx.err(node, "indices must be constant (indices computed at run time are not supported)")
    x_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    idx = np.asarray(ctx.const(node, node.input[1])).astype(np.int64)
    if idx.shape != x_shape:
        raise ctx.err(node, f"indices shape {idx.shape} differs from X's {x_shape}")
    y_shape = tuple(int(v) for v in ctx.src_shape(node, node.output[0]))
    total = int(np.prod(y_shape))
    if len(y_shape) != len(x_shape) or y_shape[:2] != x_shape[:2]:
        raise ctx.err(node, f"output shape {y_shape} does not match X {x_shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= total):
        raise ctx.err(node, f"an index lies outside the output's {total} elements")
    size = int(np.prod(x_shape))
    # position of every ONNX-order X element in the IR-order flattening of X
    ir_pos = np.arange(size).reshape(nhwc(x_shape))
    if len(x_shape) == 4:
        ir_pos = ir_pos.transpose(0, 3, 1, 2)
    source = np.full(total, size, np.int64)  # size: the appended zero
    source[idx.reshape(-1)] = ir_pos.reshape(-1)
    source = source.reshape(y_shape)
    if len(y_shape) == 4:
        source = source.transpose(0, 2, 3, 1)  # IR (NHWC) order of the output
    out = node.output[0]
    x = ctx.act(node, node.input[0])
    flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/flat", (size,)), {}, node, shape=(size,))
    padded = ctx.emit("PAD", [flat], ctx.tmp(f"{out}/with_zero", (size + 1,)), {"pads": ((0, 1),)}, node,
                      shape=(size + 1,))
    picked = ctx.emit("GATHER", [padded, ctx.add_const(f"{out}/sources", source.reshape(-1), np.int32)],
                      ctx.tmp(f"{out}/unpooled", (total,)), {"axis": 0}, node, shape=(total,))
    ctx.emit("RESHAPE", [picked], out, {}, node, shape=nhwc(y_shape))


REGISTRY = {"MaxUnpool": max_unpool}

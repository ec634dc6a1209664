"""Layers added to the C generator: BATCH_MATMUL (``batch_matmul.c``) and TRANSPOSE_CONV
(``transpose_conv.c``), int8. The multipliers, shifts, zero points and clamps are micro's own
(checked against its prepared kernel), so the C computes what micro computes."""
from __future__ import annotations

import numpy as np

from converters.codegen.cop import COp, c_struct, c_values
from converters.codegen.outstage import out_stage
from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.backends.micro.kernels.base import qparams, scales32
from edge_runtime.backends.micro.kernels.conv import per_channel_multipliers
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel

MAX_BATCH_DIMS = 3


def _fail(op: Operator, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {op.name} (op {op.index}): {why}")


def _same_requant(op: Operator, rq: object, m: np.ndarray, s: np.ndarray) -> None:
    """Require micro's Requantizer to hold the (multiplier, shift) pairs ``m``, ``s``."""
    m, s = np.asarray(m, np.int64).reshape(-1), np.asarray(s, np.int64).reshape(-1)
    factor = m << np.maximum(s, 0)
    shift = 31 + np.maximum(-s, 0)
    if not (np.array_equal(np.broadcast_to(factor, rq.factor.shape), rq.factor)  # type: ignore[attr-defined]
            and np.array_equal(np.broadcast_to(shift, rq.shift.shape), rq.shift)):  # type: ignore[attr-defined]
        raise _fail(op, "internal mismatch of the output multipliers with micro")


def batch_matmul_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """BATCH_MATMUL, int8 (adj_x / adj_y, broadcast batch dims)."""
    sg = model.main
    k = REGISTRY[op.name](OpContext(model, sg, op))
    if k.kind != "INT8":
        raise _fail(op, "the C generator runs int8 BATCH_MATMUL only")
    a, b, y = (sg.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    (sa, za), (sb, zb), (sy, zy) = qparams(a), qparams(b), qparams(y)
    mult, shift = quantize_multiplier(float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(sy)))
    _same_requant(op, k.requant, np.array([mult]), np.array([shift]))
    ash, bsh, out = k.ash, k.bsh, k.out_shape
    batch = out[:-2]
    if len(batch) > MAX_BATCH_DIMS:
        raise _fail(op, f"{len(batch)} batch dimensions; the C kernel walks at most {MAX_BATCH_DIMS}")
    rows, cols = out[-2], out[-1]
    depth = ash[-2] if k.adj_x else ash[-1]
    if depth * 255 * 255 << max(shift, 0) >= 1 << 31:
        raise _fail(op, f"a sum of {depth} products scaled by 2**{max(shift, 0)} may overflow the C kernel's int32")

    def batch_strides(shape: tuple[int, ...]) -> list[int]:
        mat = shape[-1] * shape[-2]
        st, acc = [0] * len(batch), mat
        for d in range(len(batch) - 1, -1, -1):
            st[d] = 0 if shape[d] == 1 and batch[d] != 1 else acc
            acc *= shape[d]
        return st

    # element (row i, depth j) of the lhs and (depth j, column l) of the rhs, adjoints included
    a_row, a_depth = (1, ash[-1]) if k.adj_x else (ash[-1], 1)
    b_depth, b_col = (1, bsh[-1]) if k.adj_y else (bsh[-1], 1)
    pad = MAX_BATCH_DIMS - len(batch)

    def arr(v: list[int], fill: int) -> str:
        return "{ " + c_values("int32_t", list(v) + [fill] * pad, c) + " }"

    c = COp(op.index, op.name, struct="er_batch_matmul_params")
    c.params = c_struct(c, [
        ("batch_dims", None, arr(list(batch), 1)), ("a_batch_strides", None, arr(batch_strides(ash), 0)),
        ("b_batch_strides", None, arr(batch_strides(bsh), 0)), ("rows", "int32_t", rows),
        ("cols", "int32_t", cols), ("depth", "int32_t", depth), ("a_row_stride", "int32_t", a_row),
        ("a_depth_stride", "int32_t", a_depth), ("b_depth_stride", "int32_t", b_depth),
        ("b_col_stride", "int32_t", b_col), ("mult", "int32_t", mult), ("a_offset", "int16_t", -za),
        ("b_offset", "int16_t", -zb), ("batch_rank", "int8_t", len(batch)), ("shift", "int8_t", shift),
        ("out_offset", "int8_t", zy), ("act_min", "int8_t", int(k.requant.act_min)),
        ("act_max", "int8_t", int(k.requant.act_max))])
    c.call = lambda p, i, o: f"er_batch_matmul_s8(&{p}, {i[0]}, {i[1]}, {o});"
    return c


def transpose_conv_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """TRANSPOSE_CONV, int8 with constant per-channel int8 weights and optional int32 bias."""
    sg = model.main
    if any(i >= 0 and sg.tensors[i].data is None for i in list(op.inputs[1:2]) + list(op.inputs[3:4])):
        raise _fail(op, "the C generator needs constant weights and bias")
    ctx = OpContext(model, sg, op)
    k = REGISTRY[op.name](ctx)
    if getattr(k, "kind", None) != "INT8" or not hasattr(k, "requant"):
        raise _fail(op, "the C generator runs int8 TRANSPOSE_CONV with constant weights and bias only")
    x, w, y = sg.tensors[op.inputs[2]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
    sx, zx = qparams(x)
    sy, zy = qparams(y)
    m, s = per_channel_multipliers(ctx, sx, scales32(w), sy, k.cout)
    _same_requant(op, k.requant, m, s)
    bias = None
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        bias = sg.tensors[op.inputs[3]].array().astype(np.int64).reshape(-1)
    c = COp(op.index, op.name, struct="er_transpose_conv_params")
    stage = out_stage(c, m, s, bias, zy, int(k.requant.act_min), int(k.requant.act_max),
                      scales=(sx, np.asarray(scales32(w), np.float32).reshape(-1), sy))
    wname = c.array("w", "int8_t", np.ascontiguousarray(w.array()).reshape(-1))
    c.params = c_struct(c, [
        ("out", None, stage), ("weights", None, wname), ("batches", "int16_t", k.n), ("in_h", "int16_t", k.h),
        ("in_w", "int16_t", k.w), ("in_c", "int16_t", k.cin), ("out_h", "int16_t", k.ho),
        ("out_w", "int16_t", k.wo), ("out_c", "int16_t", k.cout), ("in_offset", "int16_t", -zx),
        ("k_h", "uint8_t", k.kh), ("k_w", "uint8_t", k.kw), ("stride_h", "uint8_t", k.sh),
        ("stride_w", "uint8_t", k.sw), ("pad_t", "uint8_t", k.pt), ("pad_l", "uint8_t", k.pl)])
    c.call = lambda p, i, o: f"er_transpose_conv_s8(&{p}, {i[0]}, {o});"
    return c


__all__ = ["batch_matmul_op", "transpose_conv_op"]

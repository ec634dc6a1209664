"""Arithmetic ops added to the C generator: MEAN and SUM (``reduce.c``), MAXIMUM and MINIMUM
(``maximum.c``, ``minimum.c``), PRELU (``prelu.c``) and RESIZE_BILINEAR (``resize_bilinear.c``), int8.
Their constants come from micro's kernel preparation and are checked against it, so the C computes
what micro computes."""
from __future__ import annotations

import numpy as np

from converters.codegen.cop import CONST_KINDS, COp, c_struct, c_values
from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.backends.micro.kernels.base import qparams
from edge_runtime.backends.micro.kernels.spatial.common import resize_options
from edge_runtime.backends.micro.kernels.spatial.resize_bilinear import int_coords
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel

MAX_RANK = 6


def _fail(op: Operator, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {op.name} (op {op.index}): {why}")


def bcast_strides(shape: tuple[int, ...], t_shape: tuple[int, ...]) -> list[int]:
    """Element strides of a tensor of ``t_shape`` broadcast to ``shape`` (0 along broadcast axes)."""
    rank = len(shape)
    full = (1,) * (rank - len(t_shape)) + tuple(t_shape)
    st, acc = [0] * rank, 1
    for d in range(rank - 1, -1, -1):
        st[d] = 0 if full[d] == 1 and shape[d] != 1 else acc
        acc *= full[d]
    return st


def bcast_block(c: COp, shape: tuple[int, ...], a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> str:
    """``&op<N>_bc``, an ``er_bcast`` constant for inputs of ``a_shape`` and ``b_shape`` broadcast to
    ``shape`` (at most rank 6)."""
    rank = len(shape)
    if rank > MAX_RANK:
        raise _fail_c(c, "broadcasting beyond rank 6 is not supported by the C generator")

    def arr(v: list[int]) -> str:
        return "{ " + c_values("int32_t", v + [0] * (MAX_RANK - len(v)), c) + " }"

    name = f"op{c.index}_bc"
    c.consts[name] = (CONST_KINDS["bc"], f"static const er_bcast {name} = " + c_struct(c, [
        ("rank", "int32_t", rank), ("dims", None, arr(list(shape))),
        ("a_strides", None, arr(bcast_strides(shape, a_shape))),
        ("b_strides", None, arr(bcast_strides(shape, b_shape)))]) + ";\n")
    return f"&{name}"


def _fail_c(c: COp, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {c.name} (op {c.index}): {why}")


def _binary_params(model: TFLiteModel, op: Operator, c: COp, fields: list[tuple[str, str, int]]) -> None:
    """The ``er_add_params`` of a two-input int8 op: broadcasting, element count and ``fields``."""
    sg = model.main
    a, b, y = (sg.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    shape = tuple(int(s) for s in y.shape) or (1,)
    same = tuple(a.shape) == tuple(y.shape) and tuple(b.shape) == tuple(y.shape)
    bc = "0" if same else bcast_block(c, shape, tuple(a.shape), tuple(b.shape))
    c.struct = "er_add_params"
    c.params = c_struct(c, [("bcast", None, bc), ("count", "int32_t", int(np.prod(shape)))]
                        + [(n, t, v) for n, t, v in fields])


def minmax_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """MAXIMUM / MINIMUM, int8: the larger (smaller) raw value, as micro and TFLM compare them."""
    REGISTRY[op.name](OpContext(model, model.main, op))  # micro's checks (types, shapes)
    c = COp(op.index, op.name)
    _binary_params(model, op, c, [])
    fn = "er_maximum_s8" if op.name == "MAXIMUM" else "er_minimum_s8"
    c.call = lambda p, i, o: f"{fn}(&{p}, {i[0]}, {i[1]}, {o});"
    return c


def mbqm_c(x: np.ndarray, m: int, s: int) -> np.ndarray:
    """``er_mbqm`` of ``er_fixedpoint.h`` on an int64 array of int32 values (int32 wrap of the left
    shift, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT)."""
    left, right = max(s, 0), max(-s, 0)
    v = ((np.asarray(x, np.int64) << left) + (1 << 31)) % (1 << 32) - (1 << 31)
    ab = v * np.int64(m)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    t = ab + nudge
    hi = np.where(t >= 0, t >> 31, -((-t) >> 31))
    if right == 0:
        return hi
    mask = (1 << right) - 1
    rem = hi & mask
    threshold = (mask >> 1) + (hi < 0)
    return (hi >> right) + (rem > threshold)


def prelu_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """PRELU, int8 input and alpha (alpha broadcast to the input)."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    if getattr(k, "kind", None) != "INT8":
        raise _fail(op, "the C generator runs int8 PRELU only")
    # every (input, alpha) pair through the C arithmetic against micro's own int8 function
    x = np.arange(-128, 128, dtype=np.int64)[:, None]
    a = np.arange(-128, 128, dtype=np.int64)[None, :]
    v = np.broadcast_to(x - k.zi, (256, 256))
    c_out = np.where(v >= 0, mbqm_c(v, k.m1, k.s1), mbqm_c(v * (a - k.za), k.m2, k.s2))
    c_out = np.clip(c_out + k.zo, k.lo, k.hi)
    if not np.array_equal(c_out, k._int8(np.broadcast_to(x, (256, 256)), np.broadcast_to(a, (256, 256)))):
        raise _fail(op, "the C kernel's 32-bit arithmetic would differ from micro's for these scales")
    c = COp(op.index, op.name)
    _binary_params(model, op, c, [
        ("a_mult", "int32_t", k.m1), ("b_mult", "int32_t", k.m2), ("a_offset", "int16_t", -k.zi),
        ("b_offset", "int16_t", -k.za), ("a_shift", "int8_t", k.s1), ("b_shift", "int8_t", k.s2),
        ("out_offset", "int8_t", k.zo), ("act_min", "int8_t", k.lo), ("act_max", "int8_t", k.hi)])
    c.call = lambda p, i, o: f"er_prelu_s8(&{p}, {i[0]}, {i[1]}, {o});"
    return c


def reduce_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """MEAN / SUM over constant axes, int8."""
    sg = model.main
    k = REGISTRY[op.name](OpContext(model, sg, op))
    x_t, y_t = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    if not getattr(k, "quantized", False) or x_t.type_name != "INT8":
        raise _fail(op, "the C generator runs int8 MEAN and SUM only")
    shape = tuple(int(s) for s in x_t.shape)
    if len(shape) > MAX_RANK:
        raise _fail(op, f"rank {len(shape)}; the C kernel walks at most {MAX_RANK} dimensions")
    sx, zx = qparams(x_t)
    sy, zy = qparams(y_t)
    count = int(k.count)
    mult, shift = quantize_multiplier(float(np.float32(sx)) / float(np.float32(sy)))
    if k.is_mean:
        sh = min(count.bit_length() - 1, 32, 31 + shift)
        mult = int((mult << sh) // count) if sh >= 0 else int((mult >> -sh) // count)
        shift -= sh
    rq = k.requant
    left, right = max(shift, 0), max(-shift, 0)
    if (int(rq.factor[0]), int(rq.shift[0])) != (mult << left, 31 + right):
        raise _fail(op, "internal mismatch of the output multiplier with micro")
    if 255 * count << left >= 1 << 31:
        raise _fail(op, f"a sum of {count} elements scaled by 2**{left} overflows the C kernel's int32")
    strides = [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape))]
    kept = [(shape[d], strides[d]) for d in range(len(shape)) if d not in k.axes and shape[d] != 1]
    red = [(shape[d], strides[d]) for d in k.axes if shape[d] != 1]

    def arr(v: list[int], pad: int) -> str:
        return "{ " + c_values("int32_t", v + [pad] * (MAX_RANK - len(v)), c) + " }"

    c = COp(op.index, op.name, struct="er_reduce_params")
    c.params = c_struct(c, [
        ("kept_dims", None, arr([d for d, _ in kept], 1)), ("kept_strides", None, arr([s for _, s in kept], 0)),
        ("red_dims", None, arr([d for d, _ in red], 1)), ("red_strides", None, arr([s for _, s in red], 0)),
        ("mult", "int32_t", mult), ("zp_count", "int32_t", zx * count), ("kept_rank", "int8_t", len(kept)),
        ("red_rank", "int8_t", len(red)), ("shift", "int8_t", shift), ("out_offset", "int8_t", zy),
        ("act_min", "int8_t", int(rq.act_min)), ("act_max", "int8_t", int(rq.act_max))])
    c.call = lambda p, i, o: f"er_reduce_s8(&{p}, {i[0]}, {o});"
    return c




def resize_bilinear_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """RESIZE_BILINEAR, int8: micro's integer source coordinates and fractions as two tables."""
    sg = model.main
    k = REGISTRY[op.name](OpContext(model, sg, op))
    if not k.quantized:
        raise _fail(op, "the C generator runs int8 RESIZE_BILINEAR only")
    x_t, y_t = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    n, h, w, ch = (int(s) for s in x_t.shape)
    oh, ow = int(y_t.shape[1]), int(y_t.shape[2])
    o = resize_options(op)
    c = COp(op.index, op.name, struct="er_resize_bilinear_params")
    names = []
    for tag, (size, in_size) in (("r", (oh, h)), ("c", (ow, w))):
        lo, hi, frac = int_coords(size, in_size, o["align_corners"], o["half_pixel_centers"])
        name = f"op{op.index}_ix{tag}"
        c.consts[name] = (CONST_KINDS["ix"], f"static const int16_t {name}[{3 * size}] = {{\n    "
                                             f"{c_values('int16_t', np.stack([lo, hi, frac], 1), c)}\n}};\n")
        names.append(name)
    c.params = c_struct(c, [("rows", None, names[0]), ("cols", None, names[1]), ("batches", "int16_t", n),
                            ("in_h", "int16_t", h), ("in_w", "int16_t", w), ("channels", "int16_t", ch),
                            ("out_h", "int16_t", oh), ("out_w", "int16_t", ow)])
    c.call = lambda p, i, o_: f"er_resize_bilinear_s8(&{p}, {i[0]}, {o_});"
    return c


__all__ = ["bcast_block", "bcast_strides", "mbqm_c", "minmax_op", "prelu_op", "reduce_op", "resize_bilinear_op"]

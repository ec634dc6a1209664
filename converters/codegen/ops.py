"""Per-op C for the generator: each supported int8 op becomes a ``const`` parameter block and one
kernel call. The parameters come from the micro backend's own kernel preparation (multipliers,
shifts, padding, activation ranges), so the C computes what micro computes, bit for bit."""
from __future__ import annotations

from typing import Callable

import numpy as np

from converters.codegen.arith import bcast_strides, minmax_op, prelu_op, reduce_op, resize_bilinear_op
from converters.codegen.cop import C_RANGES, CONST_KINDS, SHAPE_INDEX, COp, c_array, c_struct, c_values
from converters.codegen.layers import batch_matmul_op, transpose_conv_op
from converters.codegen.movement import MOVEMENT_INPUTS, movement_inputs, movement_op
from converters.codegen.outstage import dead_channels, out_stage
from converters.codegen.variables import VARIABLE_DATA_INPUTS, VARIABLE_OPS, variable_op
from edge_runtime.backends.micro.fixedpoint import (
    calculate_input_radius,
    quantize_multiplier,
    quantize_multiplier_greater_than_one,
)
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.backends.micro.kernels.base import qparams, scales32
from edge_runtime.backends.micro.kernels.variable_weights import grouped_conv, offset_weights
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel

#: op name -> kernel source file (without .c); RESHAPE-like and resource-variable ops need none.
KERNEL_FILES = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv", "FULLY_CONNECTED": "fully_connected",
                "AVERAGE_POOL_2D": "average_pool", "MAX_POOL_2D": "max_pool", "ADD": "add", "SUB": "sub", "MUL": "mul",
                "SOFTMAX": "softmax", **{name: "lookup" for name in (
                    "RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "LEAKY_RELU", "HARD_SWISH", "ABS", "NEG",
                    "ELU")},
                "RESHAPE": None, "SQUEEZE": None, "EXPAND_DIMS": None,
                **{name: "gather" for name in MOVEMENT_INPUTS}, "MEAN": "reduce", "SUM": "reduce",
                "MAXIMUM": "maximum", "MINIMUM": "minimum", "PRELU": "prelu", "BATCH_MATMUL": "batch_matmul",
                "TRANSPOSE_CONV": "transpose_conv", "RESIZE_BILINEAR": "resize_bilinear",
                **{name: None for name in VARIABLE_OPS}}
#: kernel source -> the header declaring its parameter block and entry point, beyond er_kernels.h
#: (included by model.c and copied only when the kernel is used)
KERNEL_HEADER = {"gather": "er_gather.h", "reduce": "er_reduce.h", "maximum": "er_minmax.h",
                 "minimum": "er_minmax.h", "prelu": "er_minmax.h", "batch_matmul": "er_batch_matmul.h",
                 "transpose_conv": "er_transpose_conv.h", "resize_bilinear": "er_resize_bilinear.h"}
SUPPORTED = tuple(sorted(KERNEL_FILES))
#: int8 -> int8 elementwise ops computed as a 256-entry table (``lookup.c``)
LOOKUP = tuple(sorted(n for n, f in KERNEL_FILES.items() if f == "lookup"))
#: elementwise ops with two int8 inputs (broadcasting), sharing ``er_add_params``
BINARY = ("ADD", "SUB", "MUL")
#: other ops with two int8 activation inputs (broadcasting, ``er_add_params``)
BINARY_LIKE = ("MAXIMUM", "MINIMUM", "PRELU")
#: ops whose output is their input's bytes (aliased by the plan, else one memcpy)
ALIAS_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
#: ops whose C kernel can overwrite its dying input through the in-place ring (``er_in``/``er_out``)
RING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def unsupported(op: Operator) -> UnsupportedModelError:
    """The one-line error for an op the C generator lacks."""
    return UnsupportedModelError(f"op {op.name} (op {op.index}) is not supported by the C generator yet; "
                                 f"supported: {', '.join(SUPPORTED)}")


def check_op(model: TFLiteModel, op: Operator) -> None:
    """Raise for ops, types or layouts the C kernels do not handle."""
    if op.name not in KERNEL_FILES:
        raise unsupported(op)
    sg = model.main
    outputs = [o for o in op.outputs if sg.tensors[o].type_name != "RESOURCE"]
    for i in [op.inputs[p] for p in data_inputs(op)] + outputs:
        t = sg.tensors[i]
        if t.type_name == "UINT8" and op.name == "QUANTIZE" and i in op.outputs and i in sg.outputs:
            continue  # requantized to the model's uint8 output by a table (lookup.c)
        if t.type_name != "INT8":
            raise UnsupportedModelError(f"op {op.name} (op {op.index}): tensor '{t.name}' is {t.type_name}; the C "
                                        "generator supports int8 activations only")
    if op.name in MOVEMENT_INPUTS:
        for p, i in enumerate(op.inputs):
            if i >= 0 and p not in data_inputs(op) and sg.tensors[i].data is None:
                raise UnsupportedModelError(f"op {op.name} (op {op.index}): input {p} must be a constant "
                                            "tensor for the C generator")
    if op.name in BINARY and sg.tensors[op.inputs[1]].type_name != "INT8":
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): the second input must be int8")
    for i in op.inputs[1:]:
        if i >= 0 and sg.tensors[i].sparse:
            raise UnsupportedModelError(f"op {op.name} (op {op.index}): sparse weights are not supported by the "
                                        "C generator yet")
    ctx = OpContext(model, sg, op)
    if grouped_conv(ctx):
        x, w = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): grouped convolutions (filter depth {w.shape[3]}, "
                                    f"input depth {x.shape[3]}) are not supported by the C generator yet")
    if offset_weights(ctx):
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): int8 weights with a non-zero zero point are "
                                    "not supported by the C generator yet")


_struct = c_struct


def _layer_scales(model: TFLiteModel, op: Operator, w: object) -> "tuple[float, np.ndarray, float]":
    """(input scale, float32 weight scales, output scale) of a layer, for ``out_stage(scales=...)``."""
    sg = model.main
    (sx, _), (sy, _) = qparams(sg.tensors[op.inputs[0]]), qparams(sg.tensors[op.outputs[0]])
    return sx, np.asarray(scales32(w), np.float32).reshape(-1), sy


def conv_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """CONV_2D / DEPTHWISE_CONV_2D."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    m, s, out_zp, lo, hi = k.requant_args
    c = COp(op.index, op.name, struct="er_conv_params")
    dw = op.name == "DEPTHWISE_CONV_2D"
    filt = np.ascontiguousarray(k.w_tensor.array())
    dead = dead_channels(filt, 3 if dw else 0)
    rows = "0"
    if not dw and dead.sum() * filt[0].size > 2 * filt.shape[0]:  # all-zero filters cost more than an index
        rows = c.array("rows", "int16_t", np.where(dead, -1, np.cumsum(~dead) - 1))
        filt = filt[~dead]
    w = c.array("w", "int8_t", filt.reshape(-1))
    c.weights = (w, filt.reshape(1, -1) if dw else filt.reshape(filt.shape[0], -1), not dw, k.n * k.ho * k.wo)
    bias = None if k.bias_tensor is None else k.bias_tensor.array().astype(np.int64).reshape(-1)
    stage = out_stage(c, m, s, bias, out_zp, lo, hi, dead, _layer_scales(model, op, k.w_tensor))
    c.shape = _struct(c, [
        ("rows", None, rows), ("ring_n", "er_ring_t", ring if direction > 0 else -ring),
        ("batches", "er_dim_t", k.n), ("in_h", "er_dim_t", k.h), ("in_w", "er_dim_t", k.w_in),
        ("in_c", "er_dim_t", k.cin), ("out_h", "er_dim_t", k.ho), ("out_w", "er_dim_t", k.wo),
        ("out_c", "er_dim_t", k.cout), ("group", "er_dim_t", k.mult if dw else k.cin),
        ("k_h", "uint8_t", k.kh), ("k_w", "uint8_t", k.kw),
        ("stride_h", "uint8_t", k.sh), ("stride_w", "uint8_t", k.sw), ("dil_h", "uint8_t", k.dh),
        ("dil_w", "uint8_t", k.dw), ("pad_t", "uint8_t", k.pt), ("pad_l", "uint8_t", k.pl)])
    c.params = _struct(c, [("out", None, stage), ("weights", None, w), ("in_zp", "int8_t", k.in_zp),
                           ("shape", None, SHAPE_INDEX)])
    fn = "er_depthwise_conv_s8" if dw else "er_conv_s8"
    c.call = lambda p, i, o: f"{fn}(&{p}, {i[0]}, {o}, {'ring' if ring else '0'});"
    return c


def fc_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """FULLY_CONNECTED."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    m, s, out_zp, lo, hi = k.requant_args
    c = COp(op.index, op.name, struct="er_fc_params")
    filt = np.ascontiguousarray(k.ctx.input(1).array())
    w = c.array("w", "int8_t", filt.reshape(-1))
    c.weights = (w, filt.reshape(k.units, -1), True, k.rows_total)
    b = k.ctx.input(2)
    bias = None if b is None else b.array().astype(np.int64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, np.int64).reshape(-1), (k.units,)) if np.size(m) == 1 else m
    s = np.broadcast_to(np.asarray(s, np.int64).reshape(-1), (k.units,)) if np.size(s) == 1 else s
    stage = out_stage(c, m, s, bias, out_zp, lo, hi, dead_channels(filt.reshape(k.units, -1), 0),
                      _layer_scales(model, op, k.ctx.input(1)))
    c.params = _struct(c, [
        ("out", None, stage), ("weights", None, w), ("ring_n", "er_ring_t", ring), ("accum", "er_dim_t", k.k),
        ("batches", "er_dim_t", k.rows_total), ("units", "er_dim_t", k.units), ("in_zp", "int8_t", k.in_zp),
        ("ring_dir", "int8_t", direction)])
    c.call = lambda p, i, o: f"er_fully_connected_s8(&{p}, {i[0]}, {o}, {'ring' if ring else '0'});"
    return c


def pool_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """AVERAGE_POOL_2D / MAX_POOL_2D."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    c = COp(op.index, op.name, struct="er_pool_params")
    c.params = _struct(c, [
        ("batches", "er_dim_t", k.n), ("in_h", "er_dim_t", k.h), ("in_w", "er_dim_t", k.w),
        ("channels", "er_dim_t", k.c), ("out_h", "er_dim_t", k.ho), ("out_w", "er_dim_t", k.wo),
        ("k_h", "uint8_t", k.kh), ("k_w", "uint8_t", k.kw), ("stride_h", "uint8_t", k.sh),
        ("stride_w", "uint8_t", k.sw), ("pad_t", "uint8_t", k.pt), ("pad_l", "uint8_t", k.pl),
        ("act_min", "int8_t", k.lo), ("act_max", "int8_t", k.hi)])
    fn = "er_max_pool_s8" if k.is_max else "er_average_pool_s8"
    c.call = lambda p, i, o: f"{fn}(&{p}, {i[0]}, {o});"
    return c


def add_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """ADD, SUB and MUL (int8, with broadcasting up to rank 6)."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    sg = model.main
    a, b, y = (sg.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    (sa, za), (sb, zb), (so, zo) = qparams(a), qparams(b), qparams(y)
    if op.name == "MUL":
        (m1, s1), (m2, s2), left = (0, 0), (0, 0), 0
        mo, so_ = quantize_multiplier(float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(so)))
    else:
        r1, r2, r_out = k._add_sub_reals(sa, sb, so)
        (m1, s1), (m2, s2), (mo, so_) = quantize_multiplier(r1), quantize_multiplier(r2), quantize_multiplier(r_out)
        left = k.left_shift
    if (int(k.ro.factor[0]), int(k.ro.shift[0])) != _requant_key(mo, so_):
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): internal mismatch of the output multiplier")
    lo, hi = int(k.ro.act_min), int(k.ro.act_max)
    shape = tuple(y.shape) or (1,)
    rank = len(shape)

    def strides(t_shape: tuple[int, ...]) -> list[int]:
        return bcast_strides(shape, t_shape)

    def arr(v: list[int]) -> str:
        return "{ " + c_values("int32_t", v + [0] * (6 - len(v)), c) + " }"

    c = COp(op.index, op.name, struct="er_add_params")
    bcast = "0"
    if not k.same:
        if rank > 6:
            raise UnsupportedModelError(f"op {op.name} (op {op.index}): broadcasting beyond rank 6 is not "
                                        "supported by the C generator")
        bcast = f"&op{op.index}_bc"
        c.consts[bcast[1:]] = (CONST_KINDS["bc"], f"static const er_bcast {bcast[1:]} = " + _struct(c, [
            ("rank", "int32_t", rank), ("dims", None, arr(list(shape))), ("a_strides", None, arr(strides(a.shape))),
            ("b_strides", None, arr(strides(b.shape)))]) + ";\n")
    c.params = _struct(c, [
        ("bcast", None, bcast), ("count", "int32_t", int(np.prod(shape))), ("a_mult", "int32_t", m1),
        ("b_mult", "int32_t", m2), ("out_mult", "int32_t", mo), ("a_offset", "int16_t", -za),
        ("b_offset", "int16_t", -zb), ("left_shift", "int8_t", left), ("a_shift", "int8_t", s1),
        ("b_shift", "int8_t", s2), ("out_shift", "int8_t", so_), ("out_offset", "int8_t", zo),
        ("act_min", "int8_t", lo), ("act_max", "int8_t", hi)])
    fn = {"ADD": "er_add_s8", "SUB": "er_sub_s8", "MUL": "er_mul_s8"}[op.name]
    c.call = lambda p, i, o: f"{fn}(&{p}, {i[0]}, {i[1]}, {o});"
    return c


def _requant_key(m: int, s: int) -> tuple[int, int]:
    """(factor, shift) as micro's Requantizer stores a (multiplier, shift) pair."""
    return m << max(s, 0), 31 + max(-s, 0)


def softmax_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """SOFTMAX (int8 in and out)."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    sx, _ = qparams(model.main.tensors[op.inputs[0]])
    real = min(float(k.beta) * float(np.float32(sx)) * float(1 << 26), float((1 << 31) - 1))
    mult, left = quantize_multiplier_greater_than_one(real)
    diff_min = -calculate_input_radius(5, left)
    if diff_min != k.diff_min:
        raise UnsupportedModelError(f"op SOFTMAX (op {op.index}): internal mismatch of diff_min with micro")
    c = COp(op.index, op.name, struct="er_softmax_params")
    c.params = _struct(c, [("beta_mult", "int32_t", mult), ("diff_min", "int32_t", diff_min),
                           ("rows", "er_dim_t", k.rows), ("depth", "er_dim_t", k.depth),
                           ("beta_left_shift", "int8_t", left)])
    c.call = lambda p, i, o: f"er_softmax_s8(&{p}, {i[0]}, {o});"
    return c


def lookup_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """An int8 elementwise op as a table: micro's kernel for this op run on all 256 input values."""
    sg = model.main
    x_t, y_t = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
    if len(op.inputs) != 1 or tuple(x_t.shape) != tuple(y_t.shape):
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): the C generator handles it as an "
                                    "elementwise op with one input of the output's shape")
    k = REGISTRY[op.name](OpContext(model, sg, op))
    x, y = np.zeros(x_t.shape, np.int8), np.zeros(y_t.shape, y_t.dtype)
    ws = {name: np.zeros(shape, dt) for name, (shape, dt) in k.workspace.items()}
    k.bind([x], [y], None, ws)
    values = np.arange(-128, 128, dtype=np.int8)
    table = np.empty(256, y_t.dtype)  # (a uint8 output's table holds its bytes)
    n = max(1, x.size)
    for start in range(0, 256, n):
        chunk = values[start:start + n]
        x.reshape(-1)[:] = chunk[0]
        x.reshape(-1)[:chunk.size] = chunk
        k.run()
        table[start:start + chunk.size] = y.reshape(-1)[:chunk.size]
    c = COp(op.index, op.name)
    lut = c.array("lut", "int8_t", table.view(np.int8))
    count = int(y_t.num_elements)
    c.call = lambda p, i, o: f"er_lookup_s8({lut}, {i[0]}, {o}, {count});"
    return c


def reshape_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """RESHAPE / SQUEEZE / EXPAND_DIMS: nothing when the plan aliases the buffers, else one memcpy."""
    n = model.main.tensors[op.outputs[0]].nbytes
    c = COp(op.index, op.name)
    c.call = lambda p, i, o: ("/* aliased: nothing to do */" if i[0] == o else f"memcpy({o}, {i[0]}, {n});")
    return c


BUILDERS: dict[str, Callable[[TFLiteModel, Operator, int, int], COp]] = {
    "CONV_2D": conv_op, "DEPTHWISE_CONV_2D": conv_op, "FULLY_CONNECTED": fc_op, "AVERAGE_POOL_2D": pool_op,
    "MAX_POOL_2D": pool_op, "ADD": add_op, "SUB": add_op, "MUL": add_op, "SOFTMAX": softmax_op,
    "RESHAPE": reshape_op, "SQUEEZE": reshape_op, "EXPAND_DIMS": reshape_op, **{name: lookup_op for name in LOOKUP},
    **{name: movement_op for name in MOVEMENT_INPUTS}, "MEAN": reduce_op, "SUM": reduce_op, "MAXIMUM": minmax_op,
    "MINIMUM": minmax_op, "PRELU": prelu_op, "BATCH_MATMUL": batch_matmul_op, "TRANSPOSE_CONV": transpose_conv_op,
    "RESIZE_BILINEAR": resize_bilinear_op, **{name: variable_op for name in VARIABLE_OPS}}


def build_op(model: TFLiteModel, op: Operator, ring: int = 0, direction: int = 1) -> COp:
    """The C of ``op``; ``ring``: bytes of its in-place ring (0 when it has its own output buffer),
    ``direction``: +1 forward, -1 backward over the output bytes (see :mod:`converters.codegen.memory`)."""
    check_op(model, op)
    return BUILDERS[op.name](model, op, ring, direction)


def data_input_count(op: Operator) -> int:
    """How many leading inputs of ``op`` are activations the kernel call receives (ops whose
    activations are not the leading inputs: see :func:`data_inputs`)."""
    return 2 if op.name in BINARY or op.name in BINARY_LIKE or op.name == "BATCH_MATMUL" else 1


def data_inputs(op: Operator) -> list[int]:
    """Positions in ``op.inputs`` of the tensors the kernel call receives, in call order."""
    if op.name in MOVEMENT_INPUTS:
        return movement_inputs(op)
    if op.name == "TRANSPOSE_CONV":
        return [2]
    if op.name in VARIABLE_DATA_INPUTS:
        return VARIABLE_DATA_INPUTS[op.name]
    return list(range(min(data_input_count(op), len(op.inputs))))


def constant_weight_bytes(model: TFLiteModel) -> int:
    """Bytes of the constant tensors the kernels read (int8 weights and constant operands, int32
    biases), as the .tflite stores them; RESHAPE/SQUEEZE shape tensors are not counted (the C needs
    none). The generated C may store them smaller (bit-packed biases, no all-zero bias)."""
    sg = model.main
    used = set()
    for op in sg.operators:
        if op.name in ALIAS_OPS:
            continue
        # index operands (paddings, axes, begin/end, ...) become the C's own tables, not weights
        positions = data_inputs(op) if op.name in MOVEMENT_INPUTS or op.name in ("MEAN", "SUM") + VARIABLE_OPS \
            else range(1, len(op.inputs)) if op.name == "TRANSPOSE_CONV" else range(len(op.inputs))
        used |= {op.inputs[p] for p in positions if op.inputs[p] >= 0}
    return int(sum(sg.tensors[i].nbytes for i in used if sg.tensors[i].data is not None))


__all__ = [
    "CONST_KINDS",
    "ALIAS_OPS",
    "C_RANGES",
    "KERNEL_FILES",
    "KERNEL_HEADER",
    "RING_OPS",
    "SUPPORTED",
    "COp",
    "build_op",
    "c_array",
    "c_values",
    "check_op",
    "constant_weight_bytes",
    "data_input_count",
    "data_inputs",
    "dead_channels",
    "out_stage",
    "unsupported",
]

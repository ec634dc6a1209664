"""Per-op C for the generator: each supported int8 op becomes a ``const`` parameter block and one
kernel call. The parameters come from the micro backend's own kernel preparation (multipliers,
shifts, padding, activation ranges), so the C computes what micro computes, bit for bit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge_runtime.backends.micro.fixedpoint import (
    calculate_input_radius,
    quantize_multiplier,
    quantize_multiplier_greater_than_one,
)
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.backends.micro.kernels.base import qparams
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel

#: op name -> kernel source file (without .c); RESHAPE needs none.
KERNEL_FILES = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv", "FULLY_CONNECTED": "fully_connected",
                "AVERAGE_POOL_2D": "average_pool", "MAX_POOL_2D": "max_pool", "ADD": "add", "SUB": "sub", "MUL": "mul",
                "SOFTMAX": "softmax", **{name: "lookup" for name in (
                    "RELU", "RELU6", "LOGISTIC", "TANH", "QUANTIZE", "LEAKY_RELU", "HARD_SWISH", "ABS", "NEG",
                    "ELU")},
                "RESHAPE": None, "SQUEEZE": None}
SUPPORTED = tuple(sorted(KERNEL_FILES))
#: int8 -> int8 elementwise ops computed as a 256-entry table (``lookup.c``)
LOOKUP = tuple(sorted(n for n, f in KERNEL_FILES.items() if f == "lookup"))
#: elementwise ops with two int8 inputs (broadcasting), sharing ``er_add_params``
BINARY = ("ADD", "SUB", "MUL")
#: ops whose C kernel can overwrite its dying input through the in-place ring (``er_in``/``er_out``)
RING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class COp:
    """The C of one op: constant arrays (name -> (C type, values)), its parameter block and its call."""

    index: int
    name: str
    arrays: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    params: str = ""
    struct: str = ""
    call: Callable[[str, list[str], str], str] = lambda p, i, o: ""


def unsupported(op: Operator) -> UnsupportedModelError:
    """The one-line error for an op the C generator lacks."""
    return UnsupportedModelError(f"op {op.name} (op {op.index}) is not supported by the C generator yet; "
                                 f"supported: {', '.join(SUPPORTED)}")


def check_op(model: TFLiteModel, op: Operator) -> None:
    """Raise for ops, types or layouts the C kernels do not handle."""
    if op.name not in KERNEL_FILES:
        raise unsupported(op)
    sg = model.main
    for i in list(op.inputs[:1]) + list(op.outputs):
        t = sg.tensors[i]
        if t.type_name != "INT8":
            raise UnsupportedModelError(f"op {op.name} (op {op.index}): tensor '{t.name}' is {t.type_name}; the C "
                                        "generator supports int8 activations only")
    if op.name in BINARY and sg.tensors[op.inputs[1]].type_name != "INT8":
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): the second input must be int8")
    for i in op.inputs[1:]:
        if i >= 0 and sg.tensors[i].sparse:
            raise UnsupportedModelError(f"op {op.name} (op {op.index}): sparse weights are not supported by the "
                                        "C generator yet")


def _struct(fields: list[tuple[str, object]]) -> str:
    body = ", ".join(f".{k} = {v}" for k, v in fields)
    return f"{{ {body} }}"


def conv_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """CONV_2D / DEPTHWISE_CONV_2D."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    m, s, out_zp, lo, hi = k.requant_args
    c = COp(op.index, op.name, struct="er_conv_params")
    w = np.ascontiguousarray(k.w_tensor.array()).astype(np.int8)
    c.arrays[f"op{op.index}_w"] = ("int8_t", w.reshape(-1))
    c.arrays[f"op{op.index}_m"] = ("int32_t", np.asarray(m, np.int64))
    c.arrays[f"op{op.index}_s"] = ("int8_t", np.asarray(s, np.int64))
    bias = "0"
    if k.bias_tensor is not None:
        c.arrays[f"op{op.index}_b"] = ("int32_t", k.bias_tensor.array().astype(np.int64).reshape(-1))
        bias = f"op{op.index}_b"
    dw = op.name == "DEPTHWISE_CONV_2D"
    c.params = _struct([
        ("batches", k.n), ("in_h", k.h), ("in_w", k.w_in), ("in_c", k.cin), ("out_h", k.ho), ("out_w", k.wo),
        ("out_c", k.cout), ("k_h", k.kh), ("k_w", k.kw), ("stride_h", k.sh), ("stride_w", k.sw),
        ("dil_h", k.dh), ("dil_w", k.dw), ("pad_t", k.pt), ("pad_l", k.pl), ("filter_in_c", k.cin),
        ("depth_mult", k.mult if dw else 1), ("in_offset", -k.in_zp), ("out_offset", out_zp),
        ("act_min", lo), ("act_max", hi), ("weights", f"op{op.index}_w"), ("bias", bias),
        ("mult", f"op{op.index}_m"), ("shift", f"op{op.index}_s"), ("ring_n", ring), ("ring_dir", direction)])
    fn = "er_depthwise_conv_s8" if dw else "er_conv_s8"
    c.call = lambda p, i, o: f"{fn}(&{p}, {i[0]}, {o}, {'ring' if ring else '0'});"
    return c


def fc_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """FULLY_CONNECTED."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    m, s, out_zp, lo, hi = k.requant_args
    c = COp(op.index, op.name, struct="er_fc_params")
    w = k.ctx.input(1)
    c.arrays[f"op{op.index}_w"] = ("int8_t", np.ascontiguousarray(w.array()).astype(np.int8).reshape(-1))
    m, s = np.asarray(m, np.int64), np.asarray(s, np.int64)
    per_channel = int(not (np.all(m == m[0]) and np.all(s == s[0])))
    mm, ss = (m, s) if per_channel else (m[:1], s[:1])
    c.arrays[f"op{op.index}_m"] = ("int32_t", mm)
    c.arrays[f"op{op.index}_s"] = ("int8_t", ss)
    bias = "0"
    b = k.ctx.input(2)
    if b is not None:
        c.arrays[f"op{op.index}_b"] = ("int32_t", b.array().astype(np.int64).reshape(-1))
        bias = f"op{op.index}_b"
    c.params = _struct([
        ("batches", k.rows_total), ("accum", k.k), ("units", k.units), ("in_offset", -k.in_zp),
        ("filter_offset", 0), ("out_offset", out_zp), ("act_min", lo), ("act_max", hi),
        ("weights", f"op{op.index}_w"), ("bias", bias), ("mult", f"op{op.index}_m"), ("shift", f"op{op.index}_s"),
        ("per_channel", per_channel), ("ring_n", ring), ("ring_dir", direction)])
    c.call = lambda p, i, o: f"er_fully_connected_s8(&{p}, {i[0]}, {o}, {'ring' if ring else '0'});"
    return c


def pool_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """AVERAGE_POOL_2D / MAX_POOL_2D."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    c = COp(op.index, op.name, struct="er_pool_params")
    c.params = _struct([
        ("batches", k.n), ("in_h", k.h), ("in_w", k.w), ("channels", k.c), ("out_h", k.ho), ("out_w", k.wo),
        ("k_h", k.kh), ("k_w", k.kw), ("stride_h", k.sh), ("stride_w", k.sw), ("pad_t", k.pt), ("pad_l", k.pl),
        ("act_min", int(k.lo)), ("act_max", int(k.hi))])
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
        full = (1,) * (rank - len(t_shape)) + tuple(t_shape)
        st, acc = [0] * rank, 1
        for d in range(rank - 1, -1, -1):
            st[d] = 0 if full[d] == 1 and shape[d] != 1 else acc
            acc *= full[d]
        return st

    def arr(v: list[int]) -> str:
        return "{" + ", ".join(str(x) for x in v + [0] * (6 - len(v))) + "}"

    c = COp(op.index, op.name, struct="er_add_params")
    c.params = _struct([
        ("count", int(np.prod(shape))), ("rank", rank), ("dims", arr(list(shape))),
        ("a_strides", arr(strides(a.shape))), ("b_strides", arr(strides(b.shape))), ("broadcast", int(not k.same)),
        ("a_offset", -za), ("b_offset", -zb), ("left_shift", left), ("a_mult", m1), ("a_shift", s1),
        ("b_mult", m2), ("b_shift", s2), ("out_mult", mo), ("out_shift", so_), ("out_offset", zo),
        ("act_min", lo), ("act_max", hi)])
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
    c.params = _struct([("rows", k.rows), ("depth", k.depth), ("beta_mult", mult),
                                             ("beta_left_shift", left), ("diff_min", diff_min)])
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
    x, y = np.zeros(x_t.shape, np.int8), np.zeros(y_t.shape, np.int8)
    ws = {name: np.zeros(shape, dt) for name, (shape, dt) in k.workspace.items()}
    k.bind([x], [y], None, ws)
    values = np.arange(-128, 128, dtype=np.int8)
    table = np.empty(256, np.int8)
    n = max(1, x.size)
    for start in range(0, 256, n):
        chunk = values[start:start + n]
        x.reshape(-1)[:] = chunk[0]
        x.reshape(-1)[:chunk.size] = chunk
        k.run()
        table[start:start + chunk.size] = y.reshape(-1)[:chunk.size]
    c = COp(op.index, op.name)
    c.arrays[f"op{op.index}_lut"] = ("int8_t", table)
    count = int(y_t.num_elements)
    c.call = lambda p, i, o: f"er_lookup_s8(op{op.index}_lut, {i[0]}, {o}, {count});"
    return c


def reshape_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """RESHAPE / SQUEEZE: nothing when the plan aliases the buffers, else one memcpy."""
    n = model.main.tensors[op.outputs[0]].nbytes
    c = COp(op.index, op.name)
    c.call = lambda p, i, o: ("/* aliased: nothing to do */" if i[0] == o else f"memcpy({o}, {i[0]}, {n});")
    return c


BUILDERS: dict[str, Callable[[TFLiteModel, Operator, int, int], COp]] = {
    "CONV_2D": conv_op, "DEPTHWISE_CONV_2D": conv_op, "FULLY_CONNECTED": fc_op, "AVERAGE_POOL_2D": pool_op,
    "MAX_POOL_2D": pool_op, "ADD": add_op, "SUB": add_op, "MUL": add_op, "SOFTMAX": softmax_op,
    "RESHAPE": reshape_op, "SQUEEZE": reshape_op, **{name: lookup_op for name in LOOKUP}}


def build_op(model: TFLiteModel, op: Operator, ring: int = 0, direction: int = 1) -> COp:
    """The C of ``op``; ``ring``: bytes of its in-place ring (0 when it has its own output buffer),
    ``direction``: +1 forward, -1 backward over the output bytes (see :mod:`converters.codegen.memory`)."""
    check_op(model, op)
    return BUILDERS[op.name](model, op, ring, direction)


def data_input_count(op: Operator) -> int:
    """How many leading inputs of ``op`` are activations the kernel call receives."""
    return 2 if op.name in BINARY else 1


def constant_weight_bytes(model: TFLiteModel) -> int:
    """Bytes of the model's constant tensors (what the generated C stores in flash)."""
    return int(sum(t.nbytes for t in model.main.tensors if t.data is not None))


__all__ = [
    "KERNEL_FILES",
    "RING_OPS",
    "SUPPORTED",
    "COp",
    "build_op",
    "check_op",
    "constant_weight_bytes",
    "data_input_count",
    "unsupported",
]

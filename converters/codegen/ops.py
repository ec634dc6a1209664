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
    rounding_divide_by_pot_scalar,
    srdhm_scalar,
)
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.backends.micro.kernels.base import qparams
from edge_runtime.backends.micro.kernels.variable_weights import grouped_conv, offset_weights
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


#: integer C field types of the parameter blocks -> (min, max)
C_RANGES = {"int8_t": (-128, 127), "uint8_t": (0, 255), "int16_t": (-32768, 32767), "uint16_t": (0, 65535),
            "int32_t": (-(1 << 31), (1 << 31) - 1), "uint32_t": (0, (1 << 32) - 1)}
#: what each kind of generated constant holds, by the suffix of its C name (``op<N>_<suffix>``)
CONST_KINDS = {"w": "weights", "b": "biases", "rq": "requantization", "p": "parameters", "bc": "parameters",
               "lut": "tables", "rows": "row index"}


@dataclass
class COp:
    """The C of one op: its constant definitions (C name -> (kind, C text)), its parameter block
    (C type and initializer) and its call."""

    index: int
    name: str
    consts: dict[str, tuple[str, str]] = field(default_factory=dict)
    params: str = ""
    struct: str = ""
    call: Callable[[str, list[str], str], str] = lambda p, i, o: ""

    def array(self, suffix: str, ctype: str, values: np.ndarray) -> str:
        """Add ``static const ctype op<N>_<suffix>[]`` holding ``values``; return its C name."""
        name = f"op{self.index}_{suffix}"
        self.consts[name] = (CONST_KINDS[suffix], c_array(name, ctype, values, self))
        return name


def c_values(ctype: str, values: np.ndarray, owner: "COp | Operator | str") -> str:
    """``values`` as a C initializer list body, refused with one line when they overflow ``ctype``
    (``owner``: the op, or a description, named in that line)."""
    v = np.asarray(values, np.int64).reshape(-1)
    lo, hi = C_RANGES[ctype]
    if v.size and (v.min() < lo or v.max() > hi):
        where = owner if isinstance(owner, str) else f"op {owner.name} (op {owner.index})"
        raise UnsupportedModelError(f"{where}: a constant overflows the C generator's "
                                    f"{ctype} ({int(v.min())}..{int(v.max())})")
    items = [str(int(x)) for x in v] or ["0"]
    return ",\n    ".join(", ".join(items[i:i + 24]) for i in range(0, len(items), 24))


def c_array(name: str, ctype: str, values: np.ndarray, owner: "COp | Operator | str") -> str:
    """A ``static const`` C array holding ``values`` (kept in flash)."""
    n = max(1, int(np.asarray(values).size))
    return f"static const {ctype} {name}[{n}] = {{\n    {c_values(ctype, values, owner)}\n}};\n"


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
    ctx = OpContext(model, sg, op)
    if grouped_conv(ctx):
        x, w = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): grouped convolutions (filter depth {w.shape[3]}, "
                                    f"input depth {x.shape[3]}) are not supported by the C generator yet")
    if offset_weights(ctx):
        raise UnsupportedModelError(f"op {op.name} (op {op.index}): int8 weights with a non-zero zero point are "
                                    "not supported by the C generator yet")


def _struct(op: "COp | Operator", fields: list[tuple[str, "str | None", object]]) -> str:
    """A C designated initializer; each integer field is checked against its C type (``None``: a
    pointer or nested initializer, written as is)."""
    body = []
    for name, ctype, value in fields:
        if ctype is not None:
            lo, hi = C_RANGES[ctype]
            if not lo <= int(value) <= hi:
                raise UnsupportedModelError(f"op {op.name} (op {op.index}): {name} = {int(value)} does not fit "
                                            f"the C generator's {ctype} field")
            value = int(value)
        body.append(f".{name} = {value}")
    return "{ " + ", ".join(body) + " }"


def _mbqm(x: int, m: int, s: int) -> int:
    """MultiplyByQuantizedMultiplier on one int32, as ``er_mbqm`` computes it."""
    v = (x << max(s, 0)) & 0xFFFFFFFF
    return rounding_divide_by_pot_scalar(srdhm_scalar(v - (1 << 32) if v >= 1 << 31 else v, m), max(-s, 0))


def dead_channels(w: np.ndarray, axis: int) -> np.ndarray:
    """Output channels whose filter is all zero (the accumulator is then the bias alone)."""
    w = np.moveaxis(np.asarray(w), axis, 0)
    return np.all(w.reshape(w.shape[0], -1) == 0, axis=1)


def _revive(m: np.ndarray, s: np.ndarray, bias: "np.ndarray | None", dead: np.ndarray, zp: int, lo: int,
            hi: int) -> tuple[np.ndarray, np.ndarray, "np.ndarray | None"]:
    """Give channels with an all-zero filter the live channels' largest multiplier and largest
    shift, with a bias that yields the same constant output (checked with the kernels'
    arithmetic); a channel for which no int16 bias does keeps its own values. Their
    output never depends on the input, so any such triple is exact, and the op's multipliers then
    usually pack into one uint32 per channel and its biases into int16."""
    live = ~dead
    if not dead.any() or not live.any():
        return m, s, bias
    m, s = m.copy(), s.copy()
    b = np.zeros(m.size, np.int64) if bias is None else bias.astype(np.int64).copy()
    ref_m, ref_s = int(m[live].max()), int(s[live].max())
    for ch in np.flatnonzero(dead):
        target = min(max(_mbqm(int(b[ch]), int(m[ch]), int(s[ch])) + zp, lo), hi)
        guess = int(round((target - zp) * 2.0 ** (31 - ref_s) / ref_m))
        for cand in [0] + [guess + d for d in range(-2, 3)]:
            if abs(cand) <= 32767 and min(max(_mbqm(cand, ref_m, ref_s) + zp, lo), hi) == target:
                m[ch], s[ch], b[ch] = ref_m, ref_s, cand
                break
    return m, s, (None if bias is None and not b.any() else b)


def out_stage(c: COp, m: np.ndarray, s: np.ndarray, bias: "np.ndarray | None", out_zp: int, lo: int,
              hi: int, dead: "np.ndarray | None" = None) -> str:
    """The ``er_out_stage`` initializer of a layer with per-channel multipliers ``m`` and shifts ``s``:
    biases as int16 when they fit (none when all zero), requantization in the smallest layout of
    ``er_kernels.h`` (one pair; multiplier and shift offset packed in a uint32; or split).
    ``dead``: channels with an all-zero filter (see :func:`_revive`)."""
    m, s = np.asarray(m, np.int64).reshape(-1), np.asarray(s, np.int64).reshape(-1)
    if dead is not None:
        m, s, bias = _revive(m, s, bias, dead, out_zp, lo, hi)
    bias_ptr, bias_bytes = "0", 0
    if bias is not None and np.any(bias != 0):
        wide = bool(np.abs(bias).max() > 32767)
        bias_ptr = c.array("b", "int32_t" if wide else "int16_t", bias)
        bias_bytes = 4 if wide else 2
    rq_ptr, kind, mult, shift = "0", "ER_RQ_ONE", int(m[0]), int(s[0])
    if not (np.all(m == m[0]) and np.all(s == s[0])):
        if np.all((m >= 1 << 30) & (m < 1 << 31)) and s.max() - s.min() <= 3:
            kind, mult, shift = "ER_RQ_PACKED", 0, int(s.max())
            rq_ptr = c.array("rq", "uint32_t", (m - (1 << 30)) | ((s.max() - s) << 30))
        else:
            kind, mult, shift = "ER_RQ_SPLIT", 0, 0
            rq_ptr = f"op{c.index}_rq"
            c.consts[rq_ptr] = (CONST_KINDS["rq"], (
                f"static const struct {{ int32_t m[{m.size}]; int8_t s[{s.size}]; }} {rq_ptr} = {{\n"
                f"    {{ {c_values('int32_t', m, c)} }},\n    {{ {c_values('int8_t', s, c)} }}\n}};\n"))
            rq_ptr = f"&{rq_ptr}"
    return _struct(c, [("bias", None, bias_ptr), ("rq", None, rq_ptr), ("mult", "int32_t", mult),
                       ("channels", "int16_t", m.size), ("shift", "int8_t", shift), ("rq_kind", None, kind),
                       ("bias_bytes", "uint8_t", bias_bytes), ("out_offset", "int8_t", out_zp),
                       ("act_min", "int8_t", lo), ("act_max", "int8_t", hi)])


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
    bias = None if k.bias_tensor is None else k.bias_tensor.array().astype(np.int64).reshape(-1)
    stage = out_stage(c, m, s, bias, out_zp, lo, hi, dead)
    c.params = _struct(c, [
        ("out", None, stage), ("weights", None, w), ("rows", None, rows), ("ring_n", "int32_t", ring),
        ("batches", "int16_t", k.n), ("in_h", "int16_t", k.h), ("in_w", "int16_t", k.w_in),
        ("in_c", "int16_t", k.cin), ("out_h", "int16_t", k.ho), ("out_w", "int16_t", k.wo),
        ("out_c", "int16_t", k.cout), ("group", "int16_t", k.mult if dw else k.cin),
        ("in_offset", "int16_t", -k.in_zp), ("k_h", "uint8_t", k.kh), ("k_w", "uint8_t", k.kw),
        ("stride_h", "uint8_t", k.sh), ("stride_w", "uint8_t", k.sw), ("dil_h", "uint8_t", k.dh),
        ("dil_w", "uint8_t", k.dw), ("pad_t", "uint8_t", k.pt), ("pad_l", "uint8_t", k.pl),
        ("ring_dir", "int8_t", direction)])
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
    b = k.ctx.input(2)
    bias = None if b is None else b.array().astype(np.int64).reshape(-1)
    m = np.broadcast_to(np.asarray(m, np.int64).reshape(-1), (k.units,)) if np.size(m) == 1 else m
    s = np.broadcast_to(np.asarray(s, np.int64).reshape(-1), (k.units,)) if np.size(s) == 1 else s
    stage = out_stage(c, m, s, bias, out_zp, lo, hi, dead_channels(filt.reshape(k.units, -1), 0))
    c.params = _struct(c, [
        ("out", None, stage), ("weights", None, w), ("ring_n", "int32_t", ring), ("accum", "int32_t", k.k),
        ("batches", "int16_t", k.rows_total), ("units", "int16_t", k.units), ("in_offset", "int16_t", -k.in_zp),
        ("ring_dir", "int8_t", direction)])
    c.call = lambda p, i, o: f"er_fully_connected_s8(&{p}, {i[0]}, {o}, {'ring' if ring else '0'});"
    return c


def pool_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """AVERAGE_POOL_2D / MAX_POOL_2D."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    c = COp(op.index, op.name, struct="er_pool_params")
    c.params = _struct(c, [
        ("batches", "int16_t", k.n), ("in_h", "int16_t", k.h), ("in_w", "int16_t", k.w),
        ("channels", "int16_t", k.c), ("out_h", "int16_t", k.ho), ("out_w", "int16_t", k.wo),
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
        full = (1,) * (rank - len(t_shape)) + tuple(t_shape)
        st, acc = [0] * rank, 1
        for d in range(rank - 1, -1, -1):
            st[d] = 0 if full[d] == 1 and shape[d] != 1 else acc
            acc *= full[d]
        return st

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
                           ("rows", "int16_t", k.rows), ("depth", "int16_t", k.depth),
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
    lut = c.array("lut", "int8_t", table)
    count = int(y_t.num_elements)
    c.call = lambda p, i, o: f"er_lookup_s8({lut}, {i[0]}, {o}, {count});"
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
    """Bytes of the constant tensors the kernels read (int8 weights and constant operands, int32
    biases), as the .tflite stores them; RESHAPE/SQUEEZE shape tensors are not counted (the C needs
    none). The generated C may store them smaller (int16 biases, no all-zero bias)."""
    sg = model.main
    used = {i for op in sg.operators if op.name not in ("RESHAPE", "SQUEEZE") for i in op.inputs if i >= 0}
    return int(sum(sg.tensors[i].nbytes for i in used if sg.tensors[i].data is not None))


__all__ = [
    "CONST_KINDS",
    "C_RANGES",
    "KERNEL_FILES",
    "RING_OPS",
    "SUPPORTED",
    "COp",
    "build_op",
    "c_array",
    "c_values",
    "check_op",
    "constant_weight_bytes",
    "data_input_count",
    "dead_channels",
    "out_stage",
    "unsupported",
]

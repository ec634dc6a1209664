"""Data-movement ops as C (``gather.c``): PAD, PADV2, MIRROR_PAD, CONCATENATION, PACK, STRIDED_SLICE,
SLICE, SPLIT, SPLIT_V, UNPACK, TRANSPOSE, GATHER (constant indices), RESIZE_NEAREST_NEIGHBOR,
REVERSE_V2, BROADCAST_TO, DEPTH_TO_SPACE, SPACE_TO_DEPTH.

Each output element of these ops is a copy of one input element or a constant. Rather than
re-deriving every op's index rules (masks, negative strides, ``half_pixel_centers`` rounding), the
generator reads them off micro's own kernel: it runs the kernel on inputs whose elements hold the
bytes of their own flat index (and once more with those bytes flipped), so every output element
names its source, or shows itself a constant by not changing. That map is then written as a
*separable* one: source = base + sum over output dims d of ``tab_d[i_d]`` (a stride where
``tab_d`` is affine), over a box of the output (the rest is the fill value, or is left to another
call: each input of a CONCATENATION is one call). A map that is not of that form, or a kernel
that changes values, is refused in one line; a final run on random data checks the map against
micro's output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from converters.codegen.cop import COp, c_struct, c_values
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import Operator, TFLiteModel

#: ops copied by ``gather.c``, with the positions of their activation inputs (None: all inputs)
MOVEMENT_INPUTS: dict[str, Optional[tuple[int, ...]]] = {
    "PAD": (0,), "PADV2": (0,), "MIRROR_PAD": (0,), "CONCATENATION": None, "PACK": None,
    "STRIDED_SLICE": (0,), "SLICE": (0,), "SPLIT": (1,), "SPLIT_V": (0,), "UNPACK": (0,),
    "TRANSPOSE": (0,), "GATHER": (0,), "RESIZE_NEAREST_NEIGHBOR": (0,), "REVERSE_V2": (0,),
    "BROADCAST_TO": (0,), "DEPTH_TO_SPACE": (0,), "SPACE_TO_DEPTH": (0,),
}
MAX_RANK = 6
_FLIP = 0x55


def movement_inputs(op: Operator) -> list[int]:
    """Positions in ``op.inputs`` of the tensors a data-movement op copies from."""
    pos = MOVEMENT_INPUTS[op.name]
    return list(range(len(op.inputs))) if pos is None else [p for p in pos if p < len(op.inputs)]


def _fail(op: Operator, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {op.name} (op {op.index}): {why}")


class _MicroRun:
    """micro's kernel for one op, bound to numpy buffers it can be run on repeatedly."""

    def __init__(self, model: TFLiteModel, op: Operator) -> None:
        sg = model.main
        k = REGISTRY[op.name](OpContext(model, sg, op))
        self.ins: list[Optional[np.ndarray]] = []
        for i in op.inputs:
            if i < 0:
                self.ins.append(None)
                continue
            t = sg.tensors[i]
            self.ins.append(np.array(t.array()).reshape(t.shape) if t.data is not None
                            else np.zeros(t.shape, t.dtype))
        self.outs = [np.zeros(sg.tensors[i].shape, sg.tensors[i].dtype) for i in op.outputs]
        ws = {name: np.zeros(shape, dt) for name, (shape, dt) in k.workspace.items()}
        k.bind(self.ins, self.outs, None, ws)
        self.kernel = k

    def run(self, values: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Outputs (copies) for input positions set to ``values`` (the others keep theirs)."""
        for pos, v in values.items():
            buf = self.ins[pos]
            assert buf is not None
            buf.reshape(-1)[:] = v.reshape(-1)
        self.kernel.run()
        return [o.copy() for o in self.outs]


def source_maps(model: TFLiteModel, op: Operator, pos: int) -> list[np.ndarray]:
    """Per output of ``op``: the flat index in input ``pos`` that each element copies (int64, the
    output's shape), -1 where the element does not come from that input."""
    sg = model.main
    x = sg.tensors[op.inputs[pos]]
    n = max(1, int(x.num_elements))
    run = _MicroRun(model, op)
    others = {p: np.full(sg.tensors[op.inputs[p]].shape, 7, np.int8)
              for p in movement_inputs(op) if p != pos and sg.tensors[op.inputs[p]].data is None}
    idx = np.arange(n, dtype=np.int64)
    digits = max(1, (int(n - 1).bit_length() + 7) // 8)
    maps = [np.zeros(sg.tensors[o].shape, np.int64) for o in op.outputs]
    moved = [np.ones(sg.tensors[o].shape, bool) for o in op.outputs]
    for d in range(digits):
        byte = ((idx >> (8 * d)) & 0xFF).astype(np.uint8)
        a = run.run({pos: byte.view(np.int8), **others})
        b = run.run({pos: (byte ^ _FLIP).view(np.int8), **others})
        for j, (ya, yb) in enumerate(zip(a, b)):
            if ya.dtype != np.int8:
                raise _fail(op, f"output {j} is {ya.dtype}; the C generator copies int8 tensors only")
            changed = ya != yb
            if np.any(changed & ((ya.view(np.uint8) ^ _FLIP) != yb.view(np.uint8))):
                raise _fail(op, "micro's kernel changes the values it moves; the C generator copies them as "
                                "they are")
            if d == 0:
                moved[j] = changed
            elif np.any(changed != moved[j]):
                raise _fail(op, "inconsistent element sources")
            maps[j] += ya.view(np.uint8).astype(np.int64) << (8 * d)
    for j in range(len(maps)):
        maps[j][~moved[j]] = -1
        if np.any(maps[j] >= n):
            raise _fail(op, "inconsistent element sources")
    return maps


@dataclass
class Separable:
    """source(i) = base + sum_d tab[d][i_d] for i inside the box ``lo <= i < hi`` of the output."""

    shape: tuple[int, ...]
    lo: list[int]
    hi: list[int]
    base: int
    tabs: list[np.ndarray]


def separate(m: np.ndarray) -> Optional[Separable]:
    """``m`` (source index per output element, -1: not from this input) as a separable map over
    a box, or None when it is not one (or no element comes from this input)."""
    shape = tuple(int(s) for s in m.shape) or (1,)
    m = m.reshape(shape)
    valid = m >= 0
    if not valid.any():
        return None
    lo, hi = [], []
    for d in range(len(shape)):
        other = tuple(a for a in range(len(shape)) if a != d)
        rows = np.flatnonzero(valid.any(axis=other) if other else valid)
        lo.append(int(rows[0]))
        hi.append(int(rows[-1]) + 1)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = m[box]
    if not np.all(sub >= 0) or int(valid.sum()) != sub.size:
        return None
    base = int(sub.reshape(-1)[0])
    tabs, total = [], np.full(sub.shape, base, np.int64)
    for d in range(len(shape)):
        idx = [0] * len(shape)
        idx[d] = slice(None)
        t = sub[tuple(idx)].astype(np.int64) - base
        tabs.append(t)
        view = [1] * len(shape)
        view[d] = t.size
        total = total + t.reshape(view)
    if not np.array_equal(total, sub):
        return None
    return Separable(shape, lo, hi, base, tabs)


def _collapse(shape: tuple[int, ...], sep: Separable) -> tuple[list[int], list[int], list[int], list[int],
                                                                 list[Optional[np.ndarray]]]:
    """Merge adjacent output dims that stay contiguous in both the output box and the source,
    drop size-1 dims: (dims of the box, output strides, box origin, affine strides, tables)."""
    full = list(shape)
    out_strides = [int(np.prod(full[d + 1:], dtype=np.int64)) for d in range(len(full))]
    dims, ostr, origin, sstr, tabs = [], [], [], [], []
    for d in range(len(full)):
        n = sep.hi[d] - sep.lo[d]
        t = sep.tabs[d]
        stride = int(t[1] - t[0]) if n > 1 else 0
        affine = n == 1 or np.array_equal(t, stride * np.arange(n))
        if n == 1:
            origin.append(sep.lo[d])
            continue
        dims.append(n)
        ostr.append(out_strides[d])
        origin.append(sep.lo[d])
        sstr.append(stride if affine else 0)
        tabs.append(None if affine else t)
    # merge dim k into k-1 when both are affine and contiguous in output and source
    k = len(dims) - 1
    while k > 0:
        if (tabs[k] is None and tabs[k - 1] is None and ostr[k - 1] == ostr[k] * dims[k]
                and sstr[k - 1] == sstr[k] * dims[k]):
            dims[k - 1] *= dims[k]
            ostr[k - 1], sstr[k - 1] = ostr[k], sstr[k]
            del dims[k], ostr[k], sstr[k], tabs[k]
        k -= 1
    return dims, ostr, origin, sstr, tabs


def _gather_block(c: COp, tag: str, sep: Separable, shape: tuple[int, ...], fill: Optional[int]) -> str:
    """The ``er_gather_params`` constant ``op<N>_p<tag>`` for one separable map; return its C name."""
    dims, ostr, origin, sstr, tabs = _collapse(shape, sep)
    if len(dims) > MAX_RANK:
        raise _fail_c(c, f"the copy needs {len(dims)} dimensions; the C kernel walks at most {MAX_RANK}")
    out_base = int(sum(o * s for o, s in zip(origin, [int(np.prod(shape[d + 1:], dtype=np.int64))
                                                      for d in range(len(shape))])))
    tab_names = []
    for j, t in enumerate(tabs):
        if t is None:
            tab_names.append("0")
        else:
            name = f"op{c.index}_g{tag}_{j}"
            c.consts[name] = ("parameters", f"static const int32_t {name}[{t.size}] = {{\n    "
                                            f"{c_values('int32_t', t, c)}\n}};\n")
            tab_names.append(name)
    pad = MAX_RANK - len(dims)

    def arr(v: list[object]) -> str:
        return "{ " + ", ".join(str(x) for x in v) + " }"

    name = f"op{c.index}_p{tag}"
    body = c_struct(c, [
        ("tab", None, arr(tab_names + ["0"] * pad)),
        ("dims", None, "{ " + c_values("int32_t", dims + [1] * pad, c) + " }"),
        ("out_strides", None, "{ " + c_values("int32_t", ostr + [0] * pad, c) + " }"),
        ("src_strides", None, "{ " + c_values("int32_t", sstr + [0] * pad, c) + " }"),
        ("rank", "int32_t", len(dims)), ("src_base", "int32_t", sep.base), ("out_base", "int32_t", out_base),
        ("out_count", "int32_t", int(np.prod(shape, dtype=np.int64))),
        ("fill", "int8_t", 0 if fill is None else fill), ("has_fill", "int8_t", 0 if fill is None else 1)])
    c.consts[name] = ("parameters", f"static const er_gather_params {name} = {body};\n")
    return name


def _fail_c(c: COp, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"op {c.name} (op {c.index}): {why}")


def _check(model: TFLiteModel, op: Operator, plans: list[list[tuple[int, np.ndarray]]],
           fills: list[Optional[int]]) -> None:
    """Run micro's kernel on random data and require the maps to reproduce every output."""
    sg = model.main
    rng = np.random.default_rng(op.index)
    run = _MicroRun(model, op)
    data = {p: rng.integers(-128, 128, size=sg.tensors[op.inputs[p]].shape, dtype=np.int8)
            for p in movement_inputs(op) if sg.tensors[op.inputs[p]].data is None}
    got = run.run(data)
    for j, y in enumerate(got):
        want = np.full(y.shape, 0 if fills[j] is None else fills[j], np.int8)
        for pos, m in plans[j]:
            src = data.get(pos)
            if src is None:
                src = np.asarray(sg.tensors[op.inputs[pos]].array()).reshape(-1).view(np.int8)
            sel = m >= 0
            want[sel] = np.asarray(src).reshape(-1)[m[sel]]
        if not np.array_equal(want, y):
            raise _fail(op, "the derived copy does not reproduce micro's output")


def movement_op(model: TFLiteModel, op: Operator, ring: int, direction: int) -> COp:
    """A data-movement op as ``er_gather_s8`` calls: per output, one per input it copies from."""
    try:
        return _movement_op(model, op)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:  # a kernel that cannot be probed
        raise _fail(op, f"its element map could not be read off micro's kernel ({type(exc).__name__}: {exc})") \
            from None


def _movement_op(model: TFLiteModel, op: Operator) -> COp:
    sg = model.main
    c = COp(op.index, op.name)
    positions = movement_inputs(op)
    per_out: list[list[tuple[int, np.ndarray]]] = [[] for _ in op.outputs]
    for pos in positions:
        for j, m in enumerate(source_maps(model, op, pos)):
            if np.any(m >= 0):
                per_out[j].append((pos, m))
    fills: list[Optional[int]] = []
    calls_per_out: list[list[tuple[int, str]]] = []
    probe = _MicroRun(model, op)
    zero = probe.run({p: np.zeros(sg.tensors[op.inputs[p]].shape, np.int8) for p in positions
                      if sg.tensors[op.inputs[p]].data is None})
    for j, o in enumerate(op.outputs):
        covered = np.zeros(sg.tensors[o].shape, bool)
        for _pos, m in per_out[j]:
            if np.any(covered & (m >= 0)):
                raise _fail(op, "two inputs write one output element")
            covered |= m >= 0
        fill = None
        if not covered.all():
            vals = np.unique(zero[j][~covered])
            if vals.size != 1:
                raise _fail(op, "the elements not copied from an input hold more than one constant")
            fill = int(vals[0])
        fills.append(fill)
        shape = tuple(int(s) for s in sg.tensors[o].shape) or (1,)
        calls = []
        for k, (pos, m) in enumerate(per_out[j]):
            sep = separate(m)
            if sep is None:
                raise _fail(op, "its element map is not separable by dimension; the C generator's copy "
                                "kernel cannot express it")
            tag = f"{j}_{k}" if len(op.outputs) > 1 or len(per_out[j]) > 1 else ""
            calls.append((positions.index(pos), _gather_block(c, tag, sep, shape, fill if k == 0 else None)))
        if not calls:  # nothing copied: the output is the fill value
            raise _fail(op, "no output element comes from an input")
        calls_per_out.append(calls)
    _check(model, op, per_out, fills)
    # a fill must precede every copy into that output: the first call carries it
    c.call_all = lambda p, ins, outs: " ".join(
        f"er_gather_s8(&{name}, {ins[k]}, {outs[j]});"
        for j, calls in enumerate(calls_per_out) for k, name in calls)
    return c


__all__ = ["MOVEMENT_INPUTS", "Separable", "movement_inputs", "movement_op", "separate", "source_maps"]

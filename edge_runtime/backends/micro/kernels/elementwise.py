"""ADD, SUB and MUL with broadcasting: int8, int16 (TFLM's integer reference arithmetic), int32, float32.

int8 ADD/SUB (``add_common``/``sub_common``): each input is offset by its zero
point, shifted left by 20, rescaled by its own multiplier (in [0, 1)), summed,
rescaled by the output multiplier, offset and clamped. int8 MUL multiplies the
offset inputs and rescales once. Since each input holds one of 256 values, that
integer computation is run once at prepare time on all 65,536 input pairs (a
64 KiB int8 table, counted in ``cache_bytes``); at run time the op builds the pair
index ``(a & 0xFF) << 8 | (b & 0xFF)`` in uint16, widens it to int64 (what
``np.take`` indexes with, without a copy) in workspace buffers the size of the
output (chunked when both inputs have the output's shape) and gathers from the
table, so the op can write over an input that dies here.

int16 ADD/SUB use a left shift of 15 and are computed directly, chunk by
chunk, in int64 workspace buffers (MUL int16 needs zero points of 0, as TFLM). int32
ops wrap like C int32 arithmetic; TFLM's int32 ADD ignores the fused activation, SUB
and MUL apply it. TFLM broadcasts correctly up to rank 6; broadcasting beyond is refused.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.backends.micro.fixedpoint import CLIP, Requantizer, quantize_multiplier, wrap32
from edge_runtime.backends.micro.fixedpoint_binary import mbqm
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, activation_name, float_activation_range, qparams,
    quantized_activation_range, require_type,
)
from edge_runtime.backends.micro.kernels.binary.common import block_size, chunk_slices

I64 = np.dtype(np.int64)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Highest rank at which tflite-micro's broadcasting gives correct results.
MAX_BROADCAST_RANK = 6



def _scalar_requant(real: float, zp: int = 0, lo: int = -(1 << 40), hi: int = 1 << 40) -> Requantizer:
    m, s = quantize_multiplier(real)
    return Requantizer(np.array([m]), np.array([s]), zp, lo, hi)


class Binary(Kernel):
    """ADD / SUB / MUL."""

    inplace_ok = True
    max_version = 7

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.kind = ctx.op.name
        o = opt.activation_only(ctx.op)
        a = require_type(ctx, ctx.input(0), ("INT8", "INT16", "INT32", "FLOAT32"), "first input")
        b = require_type(ctx, ctx.input(1), (a.type_name,), "second input")
        y = require_type(ctx, ctx.output(0), (a.type_name,), "output")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ctx.fail(f"input shapes {a.shape} and {b.shape} do not broadcast") from None
        if tuple(shape) != tuple(y.shape):
            raise ctx.fail(f"output shape {y.shape} is not the broadcast shape {shape}")
        self.shape = tuple(y.shape)
        self.same = tuple(a.shape) == tuple(b.shape) == self.shape
        if tuple(a.shape) != tuple(b.shape) and len(self.shape) > MAX_BROADCAST_RANK:
            raise ctx.fail(f"broadcasting at rank {len(self.shape)} (TFLM handles up to rank {MAX_BROADCAST_RANK})")
        self.type_name = a.type_name
        self.quantized = a.type_name == "INT8"
        n = y.num_elements
        if a.type_name == "INT16":
            self._prepare_int16(ctx, a, b, y, o["activation"])
        elif a.type_name == "INT32":
            for t in (a, b, y):
                if t.quantization is not None and t.quantization.scale.size:
                    raise ctx.fail(f"int32 {self.kind} needs unquantized tensors; '{t.name}' is quantized")
            name = activation_name(ctx, o["activation"])
            ranges = {"NONE": (INT32_MIN, INT32_MAX), "RELU": (0, INT32_MAX), "RELU6": (0, 6),
                      "RELU_N1_TO_1": (-1, 1)}
            self.int_act = None if self.kind == "ADD" or name == "NONE" else ranges[name]
        elif self.quantized:
            sa, za = qparams(a)
            sb, zb = qparams(b)
            so, zo = qparams(y)
            lo, hi = quantized_activation_range(ctx, o["activation"], so, zo)
            self.za, self.zb = np.int64(-za), np.int64(-zb)
            if self.kind in ("ADD", "SUB"):
                self.left_shift = 20
                r1, r2, r_out = self._add_sub_reals(sa, sb, so)
                self.ra = _scalar_requant(r1)
                self.rb = _scalar_requant(r2)
                self.ro = _scalar_requant(r_out, zo, lo, hi)
            else:
                real = float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(so))
                self.ro = _scalar_requant(real, zo, lo, hi)
            chunk = n if not self.same else max(1, min(n, 16384))
            self.chunk = chunk
            wshape = (chunk,) if self.same else self.shape
            self.workspace = {"a": (wshape, I64), "b": (wshape, I64), "tmp": (wshape, I64)}
            grid = np.arange(256 * 256)
            a_all = ((grid >> 8) & 0xFF).astype(np.uint8).view(np.int8)
            b_all = (grid & 0xFF).astype(np.uint8).view(np.int8)
            table = np.empty(grid.size, np.int8)
            self._integer_op(a_all, b_all, table, np.empty(grid.size, I64), np.empty(grid.size, I64),
                             np.empty(grid.size, I64))
            table.flags.writeable = False
            self.table = table
        else:
            self.act = float_activation_range(ctx, o["activation"])

    def _add_sub_reals(self, sa: float, sb: float, so: float) -> tuple[float, float, float]:
        """(input 1, input 2, output) real multipliers of quantized ADD/SUB (double arithmetic on the
        float32 scales; the tflite-micro build we check computes SUB's the same way as ADD's)."""
        f32 = np.float32
        twice_max = 2.0 * float(max(f32(sa), f32(sb)))
        return (float(f32(sa)) / twice_max, float(f32(sb)) / twice_max,
                twice_max / ((1 << self.left_shift) * float(f32(so))))

    def _prepare_int16(self, ctx: OpContext, a, b, y, activation: int) -> None:  # type: ignore[no-untyped-def]
        """Multipliers and chunked workspace of the int16 path."""
        sa, za = qparams(a)
        sb, zb = qparams(b)
        so, zo = qparams(y)
        if not (sa > 0 and sb > 0 and so > 0):
            raise ctx.fail("int16 tensors need quantization scales")
        if self.kind == "MUL" and (za, zb, zo) != (0, 0, 0):
            raise ctx.fail("int16 MUL needs zero points of 0")
        self.lo16, self.hi16 = quantized_activation_range(ctx, activation, so, zo, np.dtype(np.int16))
        self.za16, self.zb16, self.zo16 = za, zb, zo
        if self.kind == "MUL":
            self.mo16 = quantize_multiplier(float(np.float32(sa)) * float(np.float32(sb)) / float(np.float32(so)))
        else:
            self.left_shift = 15
            r1, r2, r_out = self._add_sub_reals(sa, sb, so)
            self.m1_16, self.m2_16 = quantize_multiplier(r1), quantize_multiplier(r2)
            self.mo16 = quantize_multiplier(r_out)
        n = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        per = 3 * I64.itemsize
        self.slices16 = chunk_slices(self.shape, max(1, min(n, ctx.workspace_limit // per)))
        size = max([block_size(self.shape, sl) for sl in self.slices16] + [1])
        self.workspace = {"a": ((size,), I64), "b": ((size,), I64), "tmp": ((size,), I64)}

    def _int16_chunk(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, ta: np.ndarray, tb: np.ndarray,
                     tmp: np.ndarray) -> None:
        """TFLM's int16 ADD/SUB/MUL on one chunk."""
        np.copyto(ta, a, casting="unsafe")
        np.copyto(tb, b, casting="unsafe")
        ta -= self.za16
        tb -= self.zb16
        if self.kind == "MUL":
            ta *= tb
        else:
            ta <<= self.left_shift
            tb <<= self.left_shift
            mbqm(ta, self.m1_16[0], self.m1_16[1], tmp)
            mbqm(tb, self.m2_16[0], self.m2_16[1], tmp)
            if self.kind == "ADD":
                ta += tb
            else:
                ta -= tb
            wrap32(ta)
        mbqm(ta, self.mo16[0], self.mo16[1], tmp)
        ta += self.zo16
        np.clip(ta, self.lo16, self.hi16, out=ta)
        np.copyto(y, ta, casting="unsafe")

    def _integer_op(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, ta: np.ndarray, tb: np.ndarray,
                    tmp: np.ndarray) -> None:
        """TFLM's int8 arithmetic on int8 ``a``, ``b`` (output shape) into ``y``, in int64 buffers."""
        np.copyto(ta, a, casting="unsafe")
        np.copyto(tb, b, casting="unsafe")
        ta += self.za
        tb += self.zb
        if self.kind == "MUL":
            ta *= tb
        else:
            ta <<= self.left_shift
            tb <<= self.left_shift
            self.ra.scale(ta, tmp)
            self.rb.scale(tb, tmp)
            if self.kind == "ADD":
                ta += tb
            else:
                ta -= tb
        self.ro.apply(ta, tmp, y)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the int8 result table (int8 ops)."""
        return int(self.table.nbytes) if self.quantized else 0

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Broadcast views of the inputs; chunk views when shapes are equal."""
        a, b, y = inputs[0], inputs[1], outputs[0]
        for t in (a, b):
            if np.shares_memory(t, y) and not (t.__array_interface__["data"][0] == y.__array_interface__["data"][0]
                                              and t.shape == y.shape):
                raise self.ctx.fail("the arena plan overlaps an input and the output in a way that is not in place")
        if self.type_name == "INT16":
            ab, bb = np.broadcast_to(a, self.shape), np.broadcast_to(b, self.shape)
            self.steps16 = []
            for sl in self.slices16:
                yv = y[sl]
                k = yv.size
                self.steps16.append((ab[sl], bb[sl], yv, ws["a"][:k].reshape(yv.shape),
                                     ws["b"][:k].reshape(yv.shape), ws["tmp"][:k].reshape(yv.shape)))
            return
        if not self.quantized:
            self.a, self.b, self.y = np.broadcast_to(a, self.shape), np.broadcast_to(b, self.shape), y
            return
        if self.same:
            af, bf, yf = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8), y.reshape(-1)
            n = yf.size
            self.steps = []
            for s in range(0, n, self.chunk):
                e = min(n, s + self.chunk)
                k = e - s
                self.steps.append((af[s:e], bf[s:e], yf[s:e], ws["a"][:k],
                                   ws["b"].reshape(-1).view(np.uint16)[:k], ws["tmp"][:k]))
            if fast.available() and af.flags.c_contiguous and bf.flags.c_contiguous and yf.flags.c_contiguous:
                from functools import partial

                from edge_runtime.backends.micro.fast.elementwise import binary_table

                args = (af, bf, self.table, yf)
                self.run = partial(fast.jit_prepare(binary_table, *args), *args)  # type: ignore[method-assign]
                self.path = "numba"  # (the compiled path: one gather from the table)
        else:
            n = int(np.prod(self.shape, dtype=np.int64))
            self.steps = [(np.broadcast_to(a.view(np.uint8), self.shape), np.broadcast_to(b.view(np.uint8), self.shape),
                           y, ws["a"], ws["b"].reshape(-1).view(np.uint16)[:n].reshape(self.shape), ws["tmp"])]
            if fast.available() and all(t.flags.c_contiguous for t in (a, b, y)):
                from edge_runtime.backends.micro.fast.broadcast import bound_binary

                call = bound_binary(a, b, self.table, y, self.shape)  # (None: > 4-D pattern, the numpy path)
                if call is not None:
                    self.run = call  # type: ignore[method-assign]
                    self.path = "numba"  # (the compiled path: lookups in the table over the broadcast)

    def run(self) -> None:
        """Compute the op."""
        if self.type_name == "INT16":
            for step in self.steps16:
                self._int16_chunk(*step)
            return
        if not self.quantized:
            if self.kind == "ADD":
                np.add(self.a, self.b, out=self.y)
            elif self.kind == "SUB":
                np.subtract(self.a, self.b, out=self.y)
            else:
                np.multiply(self.a, self.b, out=self.y)
            act = self.int_act if self.type_name == "INT32" else self.act
            if act is not None:
                CLIP(self.y, act[0], act[1], out=self.y)
            return
        take, copyto, eight = self.table.take, np.copyto, np.uint16(8)  # (the method: np.take's wrapper costs)
        for a, b, y, idx, pair, _tmp in self.steps:  # a, b: the inputs' bytes (uint8 views)
            copyto(pair, a, casting="unsafe")
            np.left_shift(pair, eight, out=pair)
            np.bitwise_or(pair, b, out=pair)
            copyto(idx, pair, casting="unsafe")
            take(idx, out=y, mode="clip")

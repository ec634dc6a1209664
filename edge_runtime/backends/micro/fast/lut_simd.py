"""256-entry int8 table lookups 64 bytes at a time with AVX512-VBMI (``vpermi2b``), where the CPU has it.

A scalar lookup loop runs at about one byte per cycle (LLVM does not vectorise byte gathers). With
VBMI, ``vpermi2b`` looks 64 indices up in a 128-byte table at once: two of them (table halves 0-127
and 128-255, selected by each index's low seven bits) and a blend on the index's top bit give 64
lookups in four instructions, 7x faster on a 600 KB tensor. Used for the ops whose int8 result is a
function of one input value: RELU/RELU6/LOGISTIC/TANH (their table) and ADD/SUB/MUL with a
one-element operand (the row or column of the op's 256x256 result table for that value, gathered
per call: 256 reads). The results are the table's entries, so they are exact by construction.

:func:`available` is true when the host CPU (as numba compiles for it) has AVX512-VBMI and
``NUMBA_CPU_NAME`` does not ask for another CPU (whose code must not contain the instruction);
otherwise the scalar kernels (:mod:`lut`, :mod:`broadcast`) run.
"""
from __future__ import annotations

import os

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from edge_runtime.backends.micro.fast.jit import kernel

_V = ir.VectorType(ir.IntType(8), 64)
_AVAILABLE: list[bool] = []


def available() -> bool:
    """True when the compiled kernels may use AVX512-VBMI (host CPU, no ``NUMBA_CPU_NAME`` override)."""
    if not _AVAILABLE:
        ok = False
        if os.environ.get("NUMBA_CPU_NAME", "host") == "host":
            try:
                import llvmlite.binding as llvm

                ok = "+avx512vbmi" in llvm.get_host_cpu_features().flatten().split(",")
            except Exception:  # noqa: BLE001  # (no feature query: the scalar kernels)
                ok = False
        _AVAILABLE.append(ok)
    return _AVAILABLE[0]


@intrinsic
def _lut64(typingctx, lut, x, y, n):  # type: ignore[no-untyped-def]
    """``y[i] = lut[x[i]]`` for ``i < n - n % 64`` (``lut`` 256 int8, ``x`` uint8, ``y`` int8; contiguous)."""
    sig = types.void(lut, x, y, n)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        lut_a, x_a, y_a, n_v = args
        i8p = ir.IntType(8).as_pointer()
        vp = _V.as_pointer()
        ptr = [builder.bitcast(context.make_array(t)(context, builder, a).data, i8p)
               for t, a in zip(signature.args[:3], (lut_a, x_a, y_a))]
        tables = [builder.load(builder.bitcast(builder.gep(ptr[0], [ir.Constant(ir.IntType(64), 64 * k)]), vp),
                               align=1) for k in range(4)]
        perm = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V, [_V, _V, _V]),
                                              "llvm.x86.avx512.vpermi2var.qi.512")
        with cgutils.for_range(builder, builder.udiv(n_v, ir.Constant(n_v.type, 64))) as loop:
            off = builder.mul(loop.index, ir.Constant(loop.index.type, 64))
            v = builder.load(builder.bitcast(builder.gep(ptr[1], [off]), vp), align=1)
            low = builder.call(perm, [tables[0], v, tables[1]])  # entries 0-127 (index bits 0-6)
            high = builder.call(perm, [tables[2], v, tables[3]])  # entries 128-255
            top = builder.icmp_signed("<", v, ir.Constant(_V, None))  # index >= 128
            builder.store(builder.select(top, high, low), builder.bitcast(builder.gep(ptr[2], [off]), vp), align=1)
        return context.get_dummy_value()

    return sig, codegen


@kernel
def lut8_simd(xu, lut, y):  # type: ignore[no-untyped-def]
    """``y[i] = lut[xu[i]]`` (flat, contiguous; ``lut`` (256,) int8 by uint8 index): may run in place
    (each 64-byte block is loaded before it is stored)."""
    n = y.shape[0]
    _lut64(lut, xu, y, n)
    for i in range(n - n % 64, n):
        y[i] = lut[xu[i]]


@kernel
def binary_scalar_simd(a, b, table, lut, y, scalar_first):  # type: ignore[no-untyped-def]
    """ADD/SUB/MUL with a one-element operand: ``y[i] = table[a[i] << 8 | b[0]]`` (``scalar_first`` 0) or
    ``table[a[0] << 8 | b[i]]`` (1); ``a``, ``b`` the inputs' bytes as flat uint8, ``lut`` (256,) int8
    workspace for that operand's row or column of the table."""
    if scalar_first == 0:
        bv = np.intp(b[0])
        for v in range(256):
            lut[v] = table[(v << 8) | bv]
        src = a
    else:
        av = np.intp(a[0]) << 8
        for v in range(256):
            lut[v] = table[av | v]
        src = b
    n = y.shape[0]
    _lut64(lut, src, y, n)
    for i in range(n - n % 64, n):
        y[i] = lut[src[i]]

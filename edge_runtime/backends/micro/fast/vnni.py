"""An int8 dot-product tile for x86 CPUs with AVX-512 VNNI (``vpdpbusd``), as a numba intrinsic.

``vpdpbusd`` multiplies 4 adjacent unsigned bytes by 4 signed bytes per int32 lane and adds the
four products (each fits int16: 255 * -128 >= -2**15) to the lane without saturation: 64
multiply-adds per instruction. LLVM's vectoriser does not produce it from numba loops (it widens
to int16 or int32 multiplies), so :func:`dot_tile` emits it directly (LLVM IR through
``numba.extending.intrinsic``), with the accumulators kept in registers across the whole sum.

:func:`dot_tile` computes ``TILE`` rows of 16 int32 sums (:func:`dot_tile_short`: ``SHORT`` rows):
for row ``r`` and lane ``c``

    out[o0 + r * ldo + c] = init[c0 + c] + sum over taps t, groups g, bytes j < 4 of
        a[a0 + r * lda + toff[t] + 4 * g + j] * b[b0 + ((t * groups + g) * 16 + c) * 4 + j]

with ``a`` unsigned bytes (the int8 input plus 128) and ``b`` the int8 weights packed per group of
four input channels. :func:`supported` tells whether the host (and numba's target) has the
instruction; callers fall back to their other kernels otherwise.
"""
from __future__ import annotations

import functools
from typing import Any

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

#: Rows (output positions) per tile: independent accumulators hiding vpdpbusd's latency.
TILE = 8
#: Rows of the short tile ending a run of positions.
SHORT = 4
#: Int32 lanes (output channels) per tile.
LANES = 16

_V16 = ir.VectorType(ir.IntType(32), LANES)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


@functools.lru_cache(maxsize=1)
def supported() -> bool:
    """True when numba compiles for this host CPU and it has AVX-512 VNNI (and AVX-512 F/BW); asked once."""
    try:
        import llvmlite.binding as ll
        from numba.core import config

        if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES not in (None, ""):
            return False  # (a portable target set by the user: the instruction may be missing)
        feats = ll.get_host_cpu_features()
        return bool(feats.get("avx512vnni") and feats.get("avx512f") and feats.get("avx512bw"))
    except Exception:  # noqa: BLE001  # (no LLVM host information: take the portable kernels)
        return False


def _data(context: Any, builder: ir.IRBuilder, aty: types.Array, value: Any) -> Any:
    return cgutils.create_struct_proxy(aty)(context, builder, value=value).data


def _tile_intrinsic(rows: int) -> Any:
    """The intrinsic for tiles of ``rows`` output positions (``rows`` independent accumulators)."""

    def tile(typingctx, a, a0, lda, toff, groups, b, b0, init, c0, out, o0, ldo):  # type: ignore[no-untyped-def]
        ok = (isinstance(a, types.Array) and a.dtype == types.uint8 and isinstance(b, types.Array)
              and b.dtype == types.int8 and isinstance(toff, types.Array) and toff.dtype == types.int64
              and isinstance(init, types.Array) and init.dtype == types.int32 and isinstance(out, types.Array)
              and out.dtype == types.int32
              and all(v == types.int64 for v in (a0, lda, groups, b0, c0, o0, ldo)))
        if not ok:
            return None
        sig = types.void(a, a0, lda, toff, groups, b, b0, init, c0, out, o0, ldo)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            ta, _, _, tt, _, tb, _, ti, _, to, _, _ = signature.args
            va, va0, vlda, vtoff, vgroups, vb, vb0, vinit, vc0, vout, vo0, vldo = args
            pa = _data(context, builder, ta, va)
            pt = _data(context, builder, tt, vtoff)
            pb = _data(context, builder, tb, vb)
            pi = _data(context, builder, ti, vinit)
            po = _data(context, builder, to, vout)
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16, _V16, _V16]),
                                                "llvm.x86.avx512.vpdpbusd.512")
            vptr = _V16.as_pointer()
            i32p = _I32.as_pointer()
            four = ir.Constant(_I64, 4)
            sixty_four = ir.Constant(_I64, 64)
            start = builder.load(cgutils.pointer_add(builder, pi, builder.mul(vc0, four), vptr), align=4)
            # (entry-block allocas: LLVM promotes them to registers across the loops)
            accs = [cgutils.alloca_once(builder, _V16, name=f"acc{r}") for r in range(rows)]
            for acc in accs:
                builder.store(start, acc)
            ntaps = cgutils.unpack_tuple(builder, cgutils.create_struct_proxy(tt)(context, builder, value=vtoff).shape,
                                         1)[0]
            with cgutils.for_range(builder, ntaps) as tloop:
                t = tloop.index
                abase = builder.add(va0, builder.load(builder.gep(pt, [t]), align=8))
                bt = builder.add(vb0, builder.mul(builder.mul(t, vgroups), sixty_four))
                with cgutils.for_range(builder, vgroups) as gloop:
                    g = gloop.index
                    bvec = builder.load(cgutils.pointer_add(builder, pb, builder.add(bt, builder.mul(g, sixty_four)),
                                                            vptr), align=1)
                    ag = builder.add(abase, builder.mul(g, four))
                    for r, acc in enumerate(accs):
                        off = builder.add(ag, builder.mul(vlda, ir.Constant(_I64, r)))
                        word = builder.load(cgutils.pointer_add(builder, pa, off, i32p), align=1)
                        lane0 = builder.insert_element(ir.Constant(_V16, ir.Undefined), word, ir.Constant(_I32, 0))
                        splat = builder.shuffle_vector(lane0, ir.Constant(_V16, ir.Undefined),
                                                       ir.Constant(_V16, [0] * LANES))
                        builder.store(builder.call(dp, [builder.load(acc), splat, bvec]), acc)
            for r, acc in enumerate(accs):
                off = builder.mul(builder.add(vo0, builder.mul(vldo, ir.Constant(_I64, r))), four)
                builder.store(builder.load(acc), cgutils.pointer_add(builder, po, off, vptr), align=4)
            return context.get_dummy_value()

        return sig, codegen

    tile.__name__ = f"dot_tile{rows}"
    tile.__doc__ = (f"{rows} x 16 int32 sums of unsigned-by-signed byte products (see the module docstring). "
                    "``a`` uint8, ``toff`` int64 (ntaps,), ``b`` int8, ``init`` and ``out`` int32 arrays, the rest "
                    "int64 element offsets/strides. No bounds checks: the caller sizes the arrays.")
    return intrinsic(tile)


#: ``TILE`` x 16 sums (see the module docstring).
dot_tile = _tile_intrinsic(TILE)
#: ``SHORT`` x 16 sums: the last positions of a run when at most ``SHORT`` remain.
dot_tile_short = _tile_intrinsic(SHORT)

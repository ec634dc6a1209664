"""Compiled int8 table lookups: ``y[i] = lut[x[i]]`` for elementwise ops whose int8 result depends on the
input value alone (RELU, RELU6, LOGISTIC, TANH, and the table-driven unary kernels: HARD_SWISH, ELU, ...).

The numpy kernels build their 256-entry tables at prepare time with TFLM's integer arithmetic on every
input value, so the lookup is exact by construction; this loop replaces the index widening (one int64
pass) and ``np.take`` with one pass. Element ``i`` is read before it is written: the op may run in place.
"""
from __future__ import annotations

from typing import Any, Callable

from edge_runtime.backends.micro.fast.jit import kernel


@kernel
def lut8(xu, lut, y):  # type: ignore[no-untyped-def]
    """``y[i] = lut[xu[i]]``: ``xu`` the input's bytes as flat uint8, ``lut`` (256,) int8 by uint8 index."""
    for i in range(y.shape[0]):
        y[i] = lut[xu[i]]


def bound_lut8(xu: Any, lut: Any, y: Any) -> Callable[[], None]:
    """The compiled lookup bound to these arrays: 64 bytes at a time where the CPU has AVX512-VBMI
    (:mod:`lut_simd`), else :func:`lut8`."""
    from functools import partial

    from edge_runtime.backends.micro.fast import jit_prepare, lut_simd

    args = (xu, lut, y)
    if lut_simd.available():
        try:
            return partial(jit_prepare(lut_simd.lut8_simd, *args), *args)
        except Exception:  # noqa: BLE001  # (an LLVM that cannot emit the instruction: the scalar loop)
            pass
    return partial(jit_prepare(lut8, *args), *args)

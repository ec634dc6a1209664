"""SIN: sin(x) (float32; TFLM's kernel takes float32 only), as glibc's ``sinf`` computes it."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.unary.common import LibmKernel
from edge_runtime.backends.micro.libm_sincosf import SinF


class Sin(LibmKernel):
    """SIN on float32: tflite-micro calls ``std::sin`` per value, the C library's ``sinf``
    (:mod:`edge_runtime.backends.micro.libm_sincosf` gives glibc's bit for bit)."""

    max_version = 1
    FUNCTION = SinF

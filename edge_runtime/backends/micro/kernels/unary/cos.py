"""COS: cos(x) (float32; TFLM's kernel takes float32 only), as glibc's ``cosf`` computes it."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.unary.common import LibmKernel
from edge_runtime.backends.micro.libm_sincosf import CosF


class Cos(LibmKernel):
    """COS on float32: tflite-micro calls ``std::cos`` per value, the C library's ``cosf``
    (:mod:`edge_runtime.backends.micro.libm_sincosf` gives glibc's bit for bit)."""

    max_version = 1
    FUNCTION = CosF

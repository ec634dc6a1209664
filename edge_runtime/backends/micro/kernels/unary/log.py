"""LOG: log(x) (float32; TFLM's kernel takes float32 only), as glibc's ``logf`` computes it."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.unary.common import LibmKernel
from edge_runtime.backends.micro.libm_logf import LogF


class Log(LibmKernel):
    """LOG on float32: tflite-micro calls ``std::log`` per value, the C library's ``logf``
    (:mod:`edge_runtime.backends.micro.libm_logf` gives glibc's bit for bit)."""

    max_version = 2
    FUNCTION = LogF

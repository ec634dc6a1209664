"""EXP: exp(x) (float32; TFLM's kernel takes float32 only), as glibc's ``expf`` computes it."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel
from edge_runtime.backends.micro.libm_expf import ExpF


class Exp(UnaryKernel):
    """EXP on float32: tflite-micro calls ``std::exp`` per value, which is the C library's ``expf``
    (:mod:`edge_runtime.backends.micro.libm_expf` gives glibc's bit for bit)."""

    max_version = 2
    TYPES = ("FLOAT32",)

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """The exponential's buffers for this shape."""
        self.expf = ExpF(int(np.prod(x.shape, dtype=np.int64)))

    def run_float(self) -> None:
        """``y = expf(x)``."""
        self.expf(self.x, self.y)

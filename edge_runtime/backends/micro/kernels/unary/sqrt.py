"""SQRT: sqrt(x) (float32; TFLM's kernel takes float32 only)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.unary.common import FloatUfuncKernel


class Sqrt(FloatUfuncKernel):
    """SQRT on float32."""

    max_version = 1
    UFUNC = np.sqrt

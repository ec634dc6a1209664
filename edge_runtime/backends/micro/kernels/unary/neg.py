"""NEG: -x (float32; TFLM's kernel takes float32 only)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.unary.common import FloatUfuncKernel


class Neg(FloatUfuncKernel):
    """NEG on float32."""

    max_version = 2
    UFUNC = np.negative

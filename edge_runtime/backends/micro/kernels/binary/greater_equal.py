"""GREATER_EQUAL: elementwise ``greater_equal`` with broadcasting, bool output (TFLM's comparison kernel)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ComparisonKernel


class GreaterEqual(ComparisonKernel):
    """GREATER_EQUAL (see ComparisonKernel for the int8 rescaling)."""

    ufunc = np.greater_equal

"""NOT_EQUAL: elementwise ``not_equal`` with broadcasting, bool output (TFLM's comparison kernel)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ComparisonKernel


class NotEqual(ComparisonKernel):
    """NOT_EQUAL (see ComparisonKernel for the int8 rescaling)."""

    ufunc = np.not_equal
    types = ("BOOL", "FLOAT32", "INT32", "INT64", "INT8")

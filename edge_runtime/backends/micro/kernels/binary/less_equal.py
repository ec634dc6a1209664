"""LESS_EQUAL: elementwise ``less_equal`` with broadcasting, bool output (TFLM's comparison kernel)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ComparisonKernel


class LessEqual(ComparisonKernel):
    """LESS_EQUAL (see ComparisonKernel for the int8 rescaling)."""

    ufunc = np.less_equal

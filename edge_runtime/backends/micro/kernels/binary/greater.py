"""GREATER: elementwise ``greater`` with broadcasting, bool output (TFLM's comparison kernel)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ComparisonKernel


class Greater(ComparisonKernel):
    """GREATER (see ComparisonKernel for the int8 rescaling)."""

    ufunc = np.greater

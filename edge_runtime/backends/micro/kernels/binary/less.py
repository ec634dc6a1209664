"""LESS: elementwise ``less`` with broadcasting, bool output (TFLM's comparison kernel)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import ComparisonKernel


class Less(ComparisonKernel):
    """LESS (see ComparisonKernel for the int8 rescaling)."""

    ufunc = np.less

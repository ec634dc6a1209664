"""MINIMUM: elementwise ``minimum`` with broadcasting."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import MinMaxKernel


class Minimum(MinMaxKernel):
    """MINIMUM (see MinMaxKernel)."""

    ufunc = np.minimum
    nan_ignoring = np.fmin

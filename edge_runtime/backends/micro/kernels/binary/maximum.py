"""MAXIMUM: elementwise ``maximum`` with broadcasting."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import MinMaxKernel


class Maximum(MinMaxKernel):
    """MAXIMUM (see MinMaxKernel)."""

    ufunc = np.maximum
    nan_ignoring = np.fmax

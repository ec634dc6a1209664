"""LOGICAL_OR: elementwise ``logical_or`` with broadcasting."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import LogicalKernel


class LogicalOr(LogicalKernel):
    """LOGICAL_OR (see LogicalKernel)."""

    ufunc = np.logical_or

"""LOGICAL_AND: elementwise ``logical_and`` with broadcasting."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.binary.common import LogicalKernel


class LogicalAnd(LogicalKernel):
    """LOGICAL_AND (see LogicalKernel)."""

    ufunc = np.logical_and

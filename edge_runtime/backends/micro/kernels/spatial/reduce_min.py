"""REDUCE_MIN over constant axes: float32 and int8 (equal input and output quantization)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.spatial.reduce_max import ReduceMax


class ReduceMin(ReduceMax):
    """REDUCE_MIN: REDUCE_MAX with the minimum."""

    ufunc = np.minimum

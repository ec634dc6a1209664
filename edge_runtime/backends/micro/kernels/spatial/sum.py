"""SUM over constant axes: float32, int8 and int16 (TFLite's ``QuantizedMeanOrSum`` with
``compute_sum``: sum, minus zero point times count, 32-bit MultiplyByQuantizedMultiplier by
``s_in / s_out``, output zero point, clamp). It is MEAN's kernel without the division."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.reduce import Mean


class Sum(Mean):
    """SUM."""

    max_version = 2
    is_mean = False

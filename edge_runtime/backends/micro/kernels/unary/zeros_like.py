"""ZEROS_LIKE: an all-zero output of the input's shape and type (float32, int8, int32, int64)."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.unary.common import UnaryKernel


class ZerosLike(UnaryKernel):
    """ZEROS_LIKE."""

    TYPES = ("FLOAT32", "INT8", "INT32", "INT64")

    def run_float(self) -> None:
        """Fill with zeros."""
        self.y.fill(0)

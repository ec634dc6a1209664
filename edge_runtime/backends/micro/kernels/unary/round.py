"""ROUND: round half to even, as TFLM's RoundToNearest (float32; TFLM's kernel takes float32 only).

TFLM rounds ``floor(x)``, plus 1 when the fraction is above one half (or exactly one half with an
odd floor): the same value as ``np.rint`` but a negative input that rounds to zero gives +0 there
(``-1 + 1``), while -0 itself stays -0. A bool workspace remembers which inputs were negative
(taken before the output is written, so the op may run in place).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import TensorInfo
from edge_runtime.backends.micro.kernels.unary.common import FloatUfuncKernel


class Round(FloatUfuncKernel):
    """ROUND on float32."""

    max_version = 1
    UFUNC = np.rint

    def prepare(self, x: TensorInfo, y: TensorInfo) -> None:
        """A bool workspace for the sign of the inputs."""
        self.workspace["neg"] = (tuple(x.shape), np.dtype(np.bool_))

    def run_float(self) -> None:
        """``rint``, then -0 from negative inputs becomes +0 (adding 0.0 changes nothing else)."""
        neg = self.ws["neg"]
        np.less(self.x, 0.0, out=neg)
        np.rint(self.x, out=self.y)
        np.add(self.y, 0.0, out=self.y, where=neg)

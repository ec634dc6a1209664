"""ARG_MIN along one constant axis (see arg_max.py)."""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.spatial.arg_max import ArgMax


class ArgMin(ArgMax):
    """ARG_MIN."""

    find = staticmethod(np.argmin)

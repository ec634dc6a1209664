"""Binary elementwise ops (arithmetic, comparisons, logic, selection): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel

REGISTRY: dict[str, type[Kernel]] = {}

"""Control flow and resource variables (CALL_ONCE, IF, WHILE, VAR_HANDLE, READ/ASSIGN_VARIABLE): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel

REGISTRY: dict[str, type[Kernel]] = {}

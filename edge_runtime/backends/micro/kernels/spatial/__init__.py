"""Spatial and reduction ops (resize, transpose conv, space/depth, batch matmul, reductions): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel

REGISTRY: dict[str, type[Kernel]] = {}

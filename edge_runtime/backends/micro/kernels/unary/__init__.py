"""Unary elementwise ops (math, activations, casts, normalizations): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel

REGISTRY: dict[str, type[Kernel]] = {}

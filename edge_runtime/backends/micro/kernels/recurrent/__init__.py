"""Recurrent ops (UNIDIRECTIONAL_SEQUENCE_LSTM, SVDF): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel

REGISTRY: dict[str, type[Kernel]] = {}

"""Recurrent ops (UNIDIRECTIONAL_SEQUENCE_LSTM, SVDF): op name -> kernel class."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import Kernel
from edge_runtime.backends.micro.kernels.recurrent.svdf import Svdf
from edge_runtime.backends.micro.kernels.recurrent.unidirectional_sequence_lstm import UnidirectionalSequenceLstm

REGISTRY: dict[str, type[Kernel]] = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": UnidirectionalSequenceLstm,
    "SVDF": Svdf,
}

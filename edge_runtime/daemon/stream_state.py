"""One model state per source stream, for stateful models (variables, resource variables, CALL_ONCE).

A streaming model keeps state between invocations (its audio history, an LSTM's cell). When
two devices feed one daemon, each must see its own history: interleaving their frames through
one interpreter would mix them. :class:`StreamModels` keeps one model instance per stream
(link), opened on the stream's first sample and kept in least-recently-used order, bounded by
``max_streams``; a stream beyond the bound takes the slot of the one idle longest, which then
starts from a fresh state if it comes back. Stateless models skip all this and share one model.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable

from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.model import Model

#: Ops whose state lives in resource variables or runs once per interpreter.
STATE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"})


def is_stateful(path: str) -> bool:
    """True when a .tflite model keeps state between invocations (variable tensors or resource variables)."""
    if not str(path).endswith(".tflite"):
        return False
    try:
        m = TFLiteModel.open(str(path))
    except Exception:  # noqa: BLE001 - the loader has already checked the file; be conservative
        return False
    for sg in m.subgraphs:
        if any(t.is_variable for t in sg.tensors) or any(op.name in STATE_OPS for op in sg.operators):
            return True
    return False


#: Streams kept per source link: a device that reconnects gets a new link before its old one is reaped.
STREAMS_PER_LINK = 2


def max_streams(cfg: Any) -> int:
    """How many per-stream model instances a daemon with config ``cfg`` may hold at once."""
    links = cfg.source.max_connections if cfg.source.type == "tcp" else 1
    return STREAMS_PER_LINK * int(links)


class StreamModels:
    """Model instances by stream name, least recently used first out, at most ``max_streams``."""

    def __init__(self, open_model: Callable[[], Model], max_streams: int) -> None:
        self._open = open_model
        self.max_streams = max(1, int(max_streams))
        self._models: "collections.OrderedDict[str, Model]" = collections.OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0
        self.evicted = 0

    def model_for(self, stream: str) -> Model:
        """The stream's own model (opened on first use)."""
        with self._lock:
            m = self._models.get(stream)
            if m is not None:
                self._models.move_to_end(stream)
                return m
            if len(self._models) >= self.max_streams:
                _, old = self._models.popitem(last=False)
                old.close()
                self.evicted += 1
        m = self._open()
        self.opened += 1
        with self._lock:
            self._models[stream] = m
        return m

    def __len__(self) -> int:
        return len(self._models)

    def close_all(self) -> None:
        """Close every stream's model (on reload or shutdown); streams start fresh afterwards."""
        with self._lock:
            models, self._models = list(self._models.values()), collections.OrderedDict()
        for m in models:
            m.close()

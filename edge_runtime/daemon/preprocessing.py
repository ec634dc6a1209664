"""Run a [STREAM] preprocessing chain on frame payloads, one stream state per link.

Audio and sensor chains are streams: each DATA payload is a chunk of samples
(``pipeline.payload_dtype``, little-endian; sensor chunks are ``(n, channels)``), and a
chunk may complete zero or more model inputs. Image chains take one encoded image
(PNG/JPEG bytes) per sample. At most ``max_links`` stream states are kept (least
recently used first out).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from edge_runtime.model import TensorSpec

_DTYPES = {"int16": "<i2", "float32": "<f4", "uint8": "u1", "int8": "i1"}


class LinkPreprocessor:
    """Payload bytes of one link -> the model inputs they complete (copies, safe to queue)."""

    def __init__(self, cfg: Any, input_spec: TensorSpec, payload_dtype: str, max_links: int = 64) -> None:
        from edge_runtime.preprocess.config import build_preprocessor

        self.cfg = cfg
        self.spec = input_spec
        self.shape = tuple(1 if d < 0 else d for d in input_spec.shape)
        self.kind = cfg.kind
        self.dtype = np.dtype(_DTYPES[payload_dtype])
        self._build = lambda: build_preprocessor(cfg, input_spec=input_spec)
        self._streams: "OrderedDict[str, Any]" = OrderedDict()
        self.max_links = max_links
        self._image = self._build() if self.kind in ("image", "categorical") else None
        if self.kind == "sensor":
            self.channels = int(cfg.sensor.channels)

    def _stream(self, link: str) -> Any:
        st = self._streams.get(link)
        if st is None:
            if len(self._streams) >= self.max_links:
                self._streams.popitem(last=False)
            st = self._streams[link] = self._build()
        else:
            self._streams.move_to_end(link)
        return st

    def reset(self, link: str) -> None:
        """Forget a link's stream state (it reconnected)."""
        self._streams.pop(link, None)

    def __call__(self, link: str, payload: bytes) -> list[np.ndarray]:
        """Inputs completed by this payload (possibly none)."""
        if self._image is not None:
            return [np.array(self._image(payload)).reshape(self.shape)]
        chunk = np.frombuffer(payload, dtype=self.dtype)
        if self.kind == "sensor":
            chunk = chunk.reshape(-1, self.channels)
        st = self._stream(link)
        n = st.push(chunk)
        return [st.windows[i].reshape(self.shape).copy() for i in range(n)]

"""The streaming contract shared by the audio and sensor preprocessors.

A stream is built once from a config; every buffer it will ever use is allocated then.
``push(chunk)`` takes any number of new samples (1 up to ``max_chunk``), advances the
fixed ring state and returns how many model-input windows became ready. Those windows are
``stream.windows[:n]``, each already shaped, typed and quantized as the model's input
tensor, and ``stream.window_end[:n]`` gives the stream sample index where each one ends.
Both stay valid until the next ``push``/``flush``. Output never depends on how the input
was split into chunks.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from edge_runtime.errors import InputError


class Stream:
    """Base class: fixed output batch plus chunk validation."""

    #: windows[:n] after push() returned n; shape (capacity, *input_shape)
    windows: np.ndarray
    #: sample index (exclusive) where each ready window ends; int64 (capacity,)
    window_end: np.ndarray

    def __init__(self, input_shape: tuple[int, ...], dtype: np.dtype, max_chunk: int, capacity: int) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        self.max_chunk = int(max_chunk)
        self.capacity = int(capacity)
        self.windows = np.zeros((self.capacity, *self.input_shape), dtype=dtype)
        self.window_end = np.zeros(self.capacity, dtype=np.int64)
        self._n_ready = 0

    def push(self, chunk: np.ndarray) -> int:
        """Consume ``chunk``; return how many windows are ready in ``windows[:n]``."""
        raise NotImplementedError

    def flush(self) -> int:
        """End of input: emit what the config says a partial tail produces (default: nothing)."""
        self._n_ready = 0
        return 0

    def reset(self) -> None:
        """Forget all state, as if newly built (buffers are kept)."""
        raise NotImplementedError

    def ready(self) -> np.ndarray:
        """The windows made ready by the last push/flush (a view)."""
        return self.windows[: self._n_ready]

    def _check_chunk(self, chunk: object, ndim: int, what: str) -> np.ndarray:
        if not isinstance(chunk, np.ndarray):
            raise InputError(f"{what} chunk must be a numpy array, got {type(chunk).__name__}")
        if chunk.dtype.kind not in "iuf":
            raise InputError(f"{what} chunk must hold integer or float samples, got dtype {chunk.dtype}")
        if chunk.ndim != ndim:
            raise InputError(f"{what} chunk must have {ndim} dimension(s), got shape {chunk.shape}")
        if chunk.shape[0] > self.max_chunk:
            raise InputError(
                f"{what} chunk of {chunk.shape[0]} samples exceeds max_chunk={self.max_chunk} set in the config; "
                "split it or raise max_chunk"
            )
        return chunk


def iter_windows(stream: Stream, signal: np.ndarray, flush: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Feed a whole recording through ``stream`` in ``max_chunk`` pieces; yield (window_end, window view).

    A host/CLI convenience: each yielded window is a view that the next step overwrites.
    """
    step = stream.max_chunk
    for start in range(0, len(signal), step):
        n = stream.push(signal[start:start + step])
        for i in range(n):
            yield int(stream.window_end[i]), stream.windows[i]
    if flush:
        n = stream.flush()
        for i in range(n):
            yield int(stream.window_end[i]), stream.windows[i]

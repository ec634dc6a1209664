"""Stream a recording through a preprocessor and a model, invoking once per ready window.

Used by ``edge-runtime stream`` and the end-to-end tests; the daemon can drive the same
objects chunk by chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from edge_runtime.errors import ConfigError
from edge_runtime.preprocess.base import Stream


@dataclass
class StreamResult:
    """Per-invocation outputs and window end times, plus the events a policy fired."""

    outputs: np.ndarray                      # (n_invocations, *output_shape), model dtype
    window_end: np.ndarray                   # (n_invocations,) sample index where each input ends
    sample_rate: int
    events: list[int] = field(default_factory=list)  # invocation indices where the policy fired

    @property
    def times(self) -> np.ndarray:
        """Window end times in seconds."""
        return self.window_end / float(self.sample_rate)


def check_compatible(stream: Stream, model: Any) -> None:
    """Raise ConfigError unless the stream writes exactly the model's first input."""
    if len(model.inputs) != 1:
        raise ConfigError(f"streaming needs a single-input model; this one has {len(model.inputs)} inputs")
    spec = model.inputs[0]
    if tuple(spec.shape) != stream.input_shape or np.dtype(spec.dtype) != stream.windows.dtype:
        raise ConfigError(
            f"the preprocessor writes {stream.windows.dtype}{list(stream.input_shape)} but the model's input "
            f"'{spec.name}' is {np.dtype(spec.dtype).name}{list(spec.shape)}"
        )


def run_stream(stream: Stream, model: Any, signal: np.ndarray, sample_rate: int, chunk: int = 512,
               policy: Optional[Callable[[np.ndarray, float], bool]] = None,
               progress: Optional[Callable[[int], None]] = None) -> StreamResult:
    """Push ``signal`` in ``chunk``-sample pieces; run the model on every ready window."""
    check_compatible(stream, model)
    if not 0 < chunk <= stream.max_chunk:
        raise ConfigError(f"chunk must be between 1 and max_chunk={stream.max_chunk} samples, got {chunk}")
    outs: list[np.ndarray] = []
    ends: list[int] = []
    events: list[int] = []

    def consume(n: int) -> None:
        for i in range(n):
            y = model.run(stream.windows[i])[0]
            end = int(stream.window_end[i])
            if policy is not None and policy(y, end / sample_rate):
                events.append(len(outs))
            outs.append(np.array(y, copy=True))
            ends.append(end)

    for start in range(0, len(signal), chunk):
        consume(stream.push(signal[start:start + chunk]))
        if progress is not None:
            progress(min(chunk, len(signal) - start))
    consume(stream.flush())
    spec = model.outputs[0]
    arr = np.stack(outs) if outs else np.zeros((0, *spec.shape), dtype=spec.dtype)
    return StreamResult(arr, np.asarray(ends, dtype=np.int64), sample_rate, events)

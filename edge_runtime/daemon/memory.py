"""Start-up memory check: what the daemon will need against the profile's inference RAM budget.

The estimate adds the model's activation arena (the static plan for .tflite models,
``info['arena_bytes']`` when the backend reports one) and, for micro, its host-side
workspace and the weight caches its kernels build at load time; the model file
(memory-mapped, counted because its pages become resident); for a stateful model, one
more instance (arena, workspace, caches) per stream it may keep
(:func:`~edge_runtime.daemon.stream_state.max_streams`); the request and result queues
at full depth, the batch buffers, the framing buffers of every link and the MQTT offline
buffer. The Python interpreter and the backend library themselves are not counted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edge_runtime.daemon.stream_state import is_stateful, max_streams
from edge_runtime.errors import BudgetExceededError

#: Bytes a TCP connection receives at a time (the socket transport's receive size) and its stream reader's
#: limit (the reader pauses the socket once it holds twice this), so unread data per connection stays under
#: 3 x READ_CHUNK of host memory.
READ_CHUNK = 16 << 10
from edge_runtime.model import Model

#: bookkeeping per queued request/result (Python objects), a measured upper bound
PER_ITEM_OVERHEAD = 600


@dataclass
class MemoryEstimate:
    """Bytes per item of the estimate, and the batch size the budget allows."""

    items: dict[str, int]
    budget: Optional[int]
    max_batch: int

    @property
    def total(self) -> int:
        """Sum of all items."""
        return sum(self.items.values())

    def describe(self) -> str:
        """One line: each item and the total against the budget."""
        parts = ", ".join(f"{k} {v:,}" for k, v in self.items.items())
        b = f" of a {self.budget:,}-byte budget" if self.budget else ""
        return f"{self.total:,} bytes{b} ({parts})"


def arena_bytes(model: Model) -> int:
    """The model's activation arena in bytes (0 when unknown)."""
    v = model.info.get("arena_bytes")
    if isinstance(v, int):
        return v
    if str(model.path).endswith(".tflite"):
        try:
            from edge_runtime.arena.op_memory import conservative_op_memory
            from edge_runtime.arena.plan import plan_arena
            from edge_runtime.formats.tflite import TFLiteModel

            # another backend's arena: every tensor its own buffer, no kernel traits (and no need to
            # import micro's ~120 kernel modules into a daemon that does not run them)
            return int(plan_arena(TFLiteModel.open(model.path), in_place=False,
                                  op_memory=conservative_op_memory).arena_bytes)
        except Exception:  # noqa: BLE001 - planning is an estimate; fall back to the I/O tensors
            pass
    return sum(_nbytes(s) for s in model.inputs + model.outputs)


def instance_extra_bytes(model: Model) -> int:
    """Host memory a model instance holds besides its arena: micro's workspace and weight caches (0 elsewhere)."""
    return sum(v for k in ("workspace_bytes", "cache_bytes") if isinstance(v := model.info.get(k), int))


def _nbytes(spec: Any) -> int:
    shape = [1 if d < 0 else d for d in spec.shape]  # a dynamic batch axis: one sample
    return int(np.prod(shape)) * np.dtype(spec.dtype).itemsize


def estimate(model: Model, cfg: Any, budget: Optional[int]) -> MemoryEstimate:
    """Estimate the daemon's memory for ``cfg`` and cap the batch size to fit ``budget``."""
    p = cfg.pipeline
    in_b = sum(_nbytes(s) for s in model.inputs)
    out_b = sum(_nbytes(s) for s in model.outputs)
    links = cfg.source.max_connections if cfg.source.type == "tcp" else 1
    # a link holds at most one unfinished encoded frame and one sample being reassembled, and all
    # links together at most max_buffered_bytes (TCP); plus each connection's socket reader (its buffer
    # pauses the socket past twice its limit) and the chunk being decoded
    frame_b = 2 * (p.max_frame_bytes + p.max_frame_bytes // 254 + 64)
    framing_b = min(links * frame_b, p.max_buffered_bytes) if cfg.source.type == "tcp" else frame_b
    framing_b += links * 3 * READ_CHUNK
    mqtt = sum(s.offline_buffer * (out_b * 5 + 300) for s in cfg.sinks if s.type == "mqtt")
    items = {
        "arena": arena_bytes(model),
        "model file": os.path.getsize(model.path) if os.path.exists(model.path) else 0,
        "request queue": p.queue_size * (in_b + PER_ITEM_OVERHEAD),
        "result queue": p.result_queue_size * (out_b + PER_ITEM_OVERHEAD),
        "framing": framing_b,
        "mqtt buffer": mqtt,
    }
    extra = instance_extra_bytes(model)
    if extra:
        items["workspace and weight caches"] = extra
    if is_stateful(model.path):
        items["stream models"] = max_streams(cfg) * (items["arena"] + extra)
    per_sample = in_b + out_b + PER_ITEM_OVERHEAD
    max_batch = p.max_batch_size
    if budget:
        room = budget - sum(items.values())
        if model.backend in ("litert", "tflite"):
            per_sample_total = 2 * per_sample + items["arena"]  # buffers and the batched interpreter's arena
        else:
            per_sample_total = 2 * per_sample
        max_batch = max(1, min(max_batch, room // per_sample_total if room > 0 else 1))
    items["batch buffers"] = 2 * max_batch * per_sample
    if max_batch > 1 and model.backend in ("litert", "tflite"):
        items["batched interpreter"] = items["arena"] * max_batch
    return MemoryEstimate(items, budget, int(max_batch))


def _advice(item: str) -> str:
    if item == "stream models":
        return ("a stateful model keeps one instance per stream; lower source.max_connections "
                "(each connection may hold a stream), or use a smaller model")
    return "lower pipeline.queue_size, pipeline.result_queue_size or an MQTT offline_buffer, or use a smaller model"


def check_budget(model: Model, cfg: Any, budget: Optional[int]) -> MemoryEstimate:
    """Raise :class:`BudgetExceededError` when the estimate is over ``budget``."""
    est = estimate(model, cfg, budget)
    if budget and est.total > budget:
        big = max(est.items, key=lambda k: est.items[k])
        raise BudgetExceededError(
            f"the daemon needs {est.describe()}; over budget by {est.total - budget:,} bytes. "
            f"The largest item is the {big}: " + _advice(big)
        )
    return est

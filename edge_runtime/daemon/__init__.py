"""``edge-runtime serve``: the on-device inference daemon.

Modules: ``config`` (pydantic config), ``framing`` (COBS frames with CRC-32),
``link`` (one device connection), ``sources``, ``pipeline`` (queues, batching,
worker thread), ``postprocess``, ``sinks``, ``metrics`` (Prometheus text),
``sdnotify`` (systemd), ``model_slot`` (hot reload), ``memory`` (budget check).
"""
from __future__ import annotations

from edge_runtime.daemon.config import DaemonConfig, load_config

__all__ = ["DaemonConfig", "load_config"]

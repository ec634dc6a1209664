"""The harness's one error type, part of edge-runtime's error hierarchy."""
from __future__ import annotations

from edge_runtime.errors import EdgeRuntimeError


class QemuHarnessError(EdgeRuntimeError):
    """Building or running an emulated ARM root failed (missing tool, download, bad argument)."""

"""Compiled (numba) kernels for micro's hot int8 loops: an optional fast path.

The core kernels (``kernels/conv.py``, ``kernels/fully_connected.py``,
``kernels/pooling.py``) take this path at prepare/bind time when :func:`available`
is true and the op fits (int8, C-contiguous NHWC views, sums that stay exact);
otherwise the numpy path runs, unchanged. Every compiled kernel reproduces
TFLite Micro bit for bit: integer (or exactly representable) accumulation, then
MultiplyByQuantizedMultiplier per output channel (the fused form of
:class:`~edge_runtime.backends.micro.fixedpoint.Requantizer`), zero point, clamp.

- The compiled path is opt-in: ``open_model(..., fast=True)`` (a daemon config's
  ``model.options.fast: true``) or ``EDGE_RUNTIME_MICRO_FAST=1``. Loading numba and LLVM
  costs about 1 s of start-up and 150 MB of RSS, which a one-shot command or a small board's
  RAM budget should not pay by surprise; a long-running process with RAM to spare gains
  1.4-2.3x. ``EDGE_RUNTIME_MICRO_FAST=0`` forces the numpy path whatever the option says.
- Kernels are compiled with ``cache=True``: the first use on a machine compiles and
  writes numba's on-disk cache; later processes load it. :func:`compile_seconds`
  reports the time spent (compiling or loading) in this process.

What each op runs on the compiled path (``Model.info["kernel_paths"]`` says "numba"):

- CONV_2D: numpy's band and im2col, the float BLAS product (exact, see ``exact_dtype``),
  then the compiled requantization tail (whole output rows when there are < 32 channels);
- DEPTHWISE_CONV_2D: the taps and the tail in one compiled call (>= 16 channels; below,
  numpy's row-wise taps, which were faster there, with the compiled tail);
- FULLY_CONNECTED: compiled dot products and tail, one call per op;
- AVERAGE_POOL_2D / MAX_POOL_2D: one compiled loop.

Bound calls use the compiled overload's entry point (no type dispatch per call).
numba caches compiled code next to these modules (``__pycache__``), or in its user cache
directory when that is read-only (``NUMBA_CACHE_DIR`` overrides).

Modules: ``requant`` (the shared output stage), ``conv`` (CONV_2D tail, DEPTHWISE_CONV_2D),
``fully_connected``, ``pooling``; ``jit`` wraps numba's decorator.
"""
from __future__ import annotations

import os
import time
from typing import Any, Optional

_NUMBA: Optional[bool] = None
#: Seconds the first ``import numba`` took in this process (0.0 before it, or without numba).
IMPORT_SECONDS = [0.0]


def _numba_importable() -> bool:
    global _NUMBA
    if _NUMBA is None:
        t0 = time.perf_counter()
        try:
            import numba  # noqa: F401
            _NUMBA = True
        except Exception:  # noqa: BLE001  # ImportError, or a numba that fails to load its LLVM
            _NUMBA = False
        IMPORT_SECONDS[0] = time.perf_counter() - t0
    return _NUMBA


#: The ``fast`` option of the model being prepared (set by ``open_model`` around preparation).
REQUESTED: list[Optional[bool]] = [None]


def enabled_by_env() -> bool:
    """The compiled path is wanted: ``EDGE_RUNTIME_MICRO_FAST`` is 1/true/yes/on, or the model asked for it
    (and the variable does not say 0/false/no/off)."""
    value = os.environ.get("EDGE_RUNTIME_MICRO_FAST", "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    return value in ("1", "true", "yes", "on") or bool(REQUESTED[0])


def available() -> bool:
    """True when numba imports and the environment does not force the numpy path."""
    return enabled_by_env() and _numba_importable()


def compile_seconds() -> float:
    """Seconds this process spent compiling or loading the compiled kernels (0.0 if none were used)."""
    if not _NUMBA:
        return 0.0
    from edge_runtime.backends.micro.fast import jit

    return jit.COMPILE_SECONDS[0]


def import_seconds() -> float:
    """Seconds this process spent importing numba (0.0 if it was never tried)."""
    return IMPORT_SECONDS[0]


def jit_prepare(dispatcher: Any, *args: Any) -> Any:
    """Compile (or load from numba's disk cache) ``dispatcher`` for these arguments; returns it."""
    from edge_runtime.backends.micro.fast import jit

    return jit.prepare(dispatcher, *args)


__all__ = ["available", "enabled_by_env", "compile_seconds", "import_seconds", "jit_prepare"]

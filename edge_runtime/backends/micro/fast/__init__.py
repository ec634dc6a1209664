"""Compiled (numba) kernels for micro's hot int8 loops: an optional fast path.

The core kernels (``kernels/conv.py``, ``kernels/fully_connected.py``, ``kernels/pooling.py``,
``kernels/softmax.py``, ``kernels/elementwise.py``) take this path at prepare/bind time when
:func:`available` is true and the op fits (int8, C-contiguous NHWC views, sums that stay exact);
otherwise the numpy path runs, unchanged. Every compiled kernel reproduces TFLite Micro bit for
bit: integer (or exactly representable) accumulation, then MultiplyByQuantizedMultiplier per
output channel (:mod:`requant`: the fused integer form of
:class:`~edge_runtime.backends.micro.fixedpoint.Requantizer`, or the float form of
:class:`~edge_runtime.backends.micro.fixedpoint.FloatRequantizer` where that is provably exact),
zero point, clamp.

- The compiled path is opt-in: ``open_model(..., fast=True)`` (a daemon config's
  ``model.options.fast: true``) or ``EDGE_RUNTIME_MICRO_FAST=1``. Loading numba and LLVM
  costs about 1 s of start-up and 150 MB of RSS, which a one-shot command or a small board's
  RAM budget should not pay by surprise; a long-running process with RAM to spare gains
  4-7x over the numpy path on the MLPerf Tiny int8 models on an x86 host with AVX-512 VNNI, 2-4x
  without it (``python -m benchmarks.micro_vs_litert``).
  ``EDGE_RUNTIME_MICRO_FAST=0`` forces the numpy path whatever the option says.
- Kernels are compiled with ``cache=True``: the first use on a machine compiles and
  writes numba's on-disk cache; later processes load it. :func:`compile_seconds`
  reports the time spent (compiling or loading) in this process (``Model.info["fast"]``).

What each op runs on the compiled path (``Model.info["kernel_paths"]`` says "numba"), one
compiled call per op unless said otherwise:

- CONV_2D on x86 hosts with AVX-512 VNNI (``conv_vnni``, ``vnni``): an int8 implicit GEMM from a
  private padded copy of the input (bytes + 128), ``vpdpbusd`` tiles of 8 output positions x 16 output
  channels summing int32 (started at -128 * sum(w), so the sums are TFLM's), the output stage per
  segment of positions; sums longer than ``conv_vnni.MAX_TERMS`` and other hosts take the next item.
- CONV_2D otherwise (with SciPy installed: numba's ``np.dot`` uses its BLAS bindings): per chunk of
  output rows, the im2col rows straight from the int8 input (with y-stride 1 only the kw taps of
  each input row, and kh shorter products summed), the float BLAS product (exact, see
  ``exact_dtype``) and the output stage (along whole output rows when there are < 32 channels).
  Without SciPy: numpy's band, im2col and product, then the compiled output stage;
- DEPTHWISE_CONV_2D: read straight from the int8 input (taps in the padding read the input zero
  point), int32 sums: one pass over the whole image per tap for one-column kernels
  (``depthwise_columns``), one pass per output row and pair of taps for x-stride 1 and
  multiplier 1 (``depthwise_rows``; with 32+ channels per output pixel against untiled weights
  and constants, ``depthwise_wide``), else per output pixel (``depthwise_direct``);
- FULLY_CONNECTED: int32 dot products of int16-widened values (``pmaddwd``) and the output stage;
  with 8+ rows one exact float32 BLAS product (``fully_connected_gemm``); float32 x float32: each
  output summed in depth order, one float32 rounding per product and per sum, no fused multiply-add
  (tflite-micro's order; ``fully_connected_float``);
- CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV, float32 x float32: tflite-micro's loops (filter row, column,
  input channel; TRANSPOSE_CONV: input row, column, channel), one float32 rounding per product and per sum,
  vectorized across output channels (and blocks of 4 output columns) only (``conv_float``,
  ``transpose_conv_float``);
- AVERAGE_POOL_2D (channels innermost, int32 sums) / MAX_POOL_2D;
- SOFTMAX (int8 -> int8): TFLM's fixed-point algorithm (``softmax``);
- ADD / SUB / MUL (int8): one gather from the op's 256x256 result table, equal shapes
  (``elementwise``) or broadcasting over a collapsed 4-D iteration space (``broadcast``);
- MEAN / SUM over axes (1, 2) (int8, global average pooling): int32 sums, one requantization
  (``reduce``); float32 over any run of adjacent axes: TFLM's sequential float32 sums, the
  numpy path's additions in the same order (``reduce.sum_f32``);
- TRANSPOSE_CONV (int8): one exact float32 BLAS product per chunk of input rows, taps added into
  an int32 canvas, per-channel output stage; without SciPy (or past 514 input channels) direct
  int32 sums (``transpose_conv``);
- BATCH_MATMUL (int8): int32 sums along output rows, adjoints and broadcast batches (``batch_matmul``);
- RELU / RELU6 / LOGISTIC / TANH (int8): one pass of lookups in the op's 256-entry table (``lut``).

Ops that run in place and would overwrite input rows they still need copy their input to a
private buffer inside the same call (``cache_bytes`` counts it). Loops index flat arrays with
unsigned offsets (numba's negative-index handling of signed ones keeps loops from
vectorising) and run along long contiguous runs (loop set-up dominates short ones).

Bound calls use the compiled overload's entry point (no type dispatch per call).
numba caches compiled code next to these modules (``__pycache__``), or in its user cache
directory when that is read-only (``NUMBA_CACHE_DIR`` overrides).

Modules: ``requant`` (the shared output stage), ``conv`` (CONV_2D, DEPTHWISE_CONV_2D), ``conv_vnni`` and
``vnni`` (CONV_2D with ``vpdpbusd``),
``depthwise_wide``, ``fully_connected``, ``fully_connected_gemm``, ``fully_connected_float``, ``pooling``, ``softmax``,
``elementwise``, ``broadcast``, ``reduce``, ``transpose_conv``, ``conv_float``, ``transpose_conv_float``,
``batch_matmul``, ``lut``; ``jit`` wraps
numba's decorator.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

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


def blas_available() -> bool:
    """True when compiled kernels may call BLAS (numba's ``np.dot`` needs SciPy's BLAS bindings)."""
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def compile_seconds() -> float:
    """Seconds this process spent compiling or loading the compiled kernels (0.0 if none were used)."""
    if not _NUMBA:
        return 0.0
    from edge_runtime.backends.micro.fast import jit

    return jit.COMPILE_SECONDS[0]


def import_seconds() -> float:
    """Seconds this process spent importing numba (0.0 if it was never tried)."""
    return IMPORT_SECONDS[0]


def int8_lut_runner(x: Any, y: Any, lut: Any) -> Optional[Callable[[], None]]:
    """The compiled ``y = lut[x]`` for an int8 -> int8 table op (its ``run``), or None when the arrays
    do not fit (other dtypes, non-contiguous views) or the compiled path is off."""
    import numpy as np

    if not (x.dtype == np.int8 and y.dtype == np.int8 and x.flags.c_contiguous and y.flags.c_contiguous
            and available()):
        return None
    from edge_runtime.backends.micro.fast.lut import bound_lut8

    return bound_lut8(x.view(np.uint8).reshape(-1), lut, y.reshape(-1))


def jit_prepare(dispatcher: Any, *args: Any) -> Any:
    """Compile (or load from numba's disk cache) ``dispatcher`` for these arguments; returns it."""
    from edge_runtime.backends.micro.fast import jit

    return jit.prepare(dispatcher, *args)


__all__ = ["available", "blas_available", "enabled_by_env", "compile_seconds", "import_seconds", "int8_lut_runner",
           "jit_prepare"]

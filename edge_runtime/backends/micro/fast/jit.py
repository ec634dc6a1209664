"""numba's ``njit`` with the project's settings, and the time spent compiling/loading kernels."""
from __future__ import annotations

import time
from typing import Any, Callable

import numba

#: Seconds spent making kernels ready in this process (compiling, or loading numba's disk cache).
COMPILE_SECONDS = [0.0]


def kernel(fn: Callable[..., Any]) -> Any:
    """Compile ``fn`` lazily for the argument types it meets, cached on disk, without bounds checks."""
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


def inline(fn: Callable[..., Any]) -> Any:
    """A helper inlined (at numba IR level) into the kernels that call it."""
    return numba.njit(inline="always", boundscheck=False)(fn)


def prepare(dispatcher: Any, *args: Any) -> Any:
    """Compile (or load from the disk cache) ``dispatcher`` for these arguments' types, without running it.

    Returns the compiled overload's entry point (callable with arguments of exactly these
    types, skipping the dispatcher's type matching on every call), else the dispatcher; the
    time spent is added to :data:`COMPILE_SECONDS`."""
    sig = tuple(numba.typeof(a) for a in args)
    if sig not in dispatcher.overloads:
        t0 = time.perf_counter()
        dispatcher.compile(sig)
        COMPILE_SECONDS[0] += time.perf_counter() - t0
    entry = getattr(dispatcher.overloads.get(sig), "entry_point", None)
    return entry if callable(entry) else dispatcher

"""Steady-state allocation measurement for the tests (tracemalloc), shielded from other threads.

tracemalloc counts the allocations of every Python thread in the process, so a thread left behind
by an earlier test (a progress bar's monitor, a server loop) that wakes during a measurement adds
its own bytes to it. :func:`traced_allocations` first waits for other Python threads to end and
fails, naming them, if one is still alive: a leaked thread is then reported as such instead of as
an allocation by the code under test.
"""
from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from typing import Any, Callable

#: how long to wait for threads of earlier tests to finish before measuring
THREAD_WAIT_S = 5.0


def wait_for_other_threads(timeout: float = THREAD_WAIT_S) -> None:
    """Return once this is the only Python thread; fail naming the others if they outlive ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        others = [t for t in threading.enumerate() if t is not threading.current_thread()]
        if not others:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("threads still running would be counted in the allocation measurement: "
                                 + ", ".join(f"{t.name}{' (daemon)' if t.daemon else ''}" for t in others))
        others[0].join(min(left, 0.1))


def traced_allocations(step: Callable[[], Any], n: int, *, warmup: int = 0, traced_warmup: int = 0,
                       gc_off: bool = False) -> tuple[int, int]:
    """(growth, peak above the start) in bytes of traced memory over ``n`` calls of ``step``.

    ``warmup`` calls run before tracing starts (after a full garbage collection) and ``traced_warmup``
    under tracing before the start mark (numpy fills small caches once, under tracing). ``gc_off`` keeps the cycle collector from
    freeing earlier garbage inside the measurement.
    """
    if warmup:  # a full collection empties Python's free lists, which the untraced warm-up then refills
        gc.collect()
    wait_for_other_threads()
    for _ in range(warmup):
        step()
    if gc_off:
        gc.disable()
    tracemalloc.start()
    try:
        for _ in range(traced_warmup):
            step()
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(n):
            step()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if gc_off:
            gc.enable()
    return end - start, peak - start

"""The allocation probe the steady-state tests share (tests/alloc_probe.py) sees allocations and names stray threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from alloc_probe import traced_allocations, wait_for_other_threads


def test_a_stray_thread_is_named_instead_of_counted() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="left-behind", daemon=True)
    t.start()
    try:
        with pytest.raises(AssertionError, match="left-behind"):
            wait_for_other_threads(timeout=0.2)
    finally:
        stop.set()
        t.join()
    wait_for_other_threads(timeout=1.0)  # gone now


def test_growth_and_peak_are_measured() -> None:
    kept: list[np.ndarray] = []
    grown, peak = traced_allocations(lambda: kept.append(np.ones(1000)), 10, warmup=2)
    assert grown >= 10 * 8000 and peak >= grown
    grown, peak = traced_allocations(lambda: np.ones(100_000).sum(), 5, warmup=2)
    assert grown < 4096 and peak >= 800_000

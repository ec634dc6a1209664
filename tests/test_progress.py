"""Progress bars (edge_runtime/progress.py): shown when asked, hidden otherwise, and no thread left behind.

tqdm's own bars start a monitor thread that lives for the rest of the process; it woke during other tests'
steady-state allocation measurements (tracemalloc counts every thread) and failed them.
"""
from __future__ import annotations

import io
import sys
import threading

import pytest

from edge_runtime import progress


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_a_shown_bar_counts_and_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    before = _threads()
    bar = progress.progress_bar(5, "work", show=True, unit="file")
    assert bar is not None
    for _ in range(5):
        bar.update(1)
    bar.close()
    assert bar.n == 5 and "work" in err.getvalue()
    assert list(progress.track(range(3), "loop", show=True)) == [0, 1, 2]
    with progress.progress(2, "ctx", show=True) as ctx:
        ctx.update(2)
    assert _threads() == before, _threads() - before


def test_a_hidden_bar_is_none_or_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert progress.progress_bar(5, "x", show=False) is None
    assert progress.progress_bar(5, "x") is None  # stderr is not a terminal
    items = [1, 2]
    assert progress.track(items, "x", show=False) is items
    with progress.progress(2, "x", show=False) as bar:
        bar.update(2)
        assert isinstance(bar, progress.NoBar)
    assert err.getvalue() == ""


def test_without_tqdm_bars_are_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_bar_class", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    assert progress.progress_bar(3, "x", show=True) is None
    assert list(progress.track(iter([4, 5]), "x", show=True)) == [4, 5]

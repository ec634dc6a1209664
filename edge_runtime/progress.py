"""Progress bars on stderr for long work (tqdm, an optional dependency), without a background thread.

tqdm starts a monitor thread (``tqdm.monitor_interval``, 10 s) the first time a bar is shown and
leaves it running for the rest of the process. A library or a device-side command should not leave
threads behind it: this module's bars come from a tqdm subclass with the monitor off (a bar then
refreshes when it is updated, which every loop here does often). Without tqdm installed, or when
the bar is not wanted, callers get ``None`` (:func:`progress_bar`) or a bar that shows nothing
(:func:`progress`).
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any, ContextManager, Iterable, Optional, TypeVar

T = TypeVar("T")

_bar_class: Any = None


class NoBar:
    """Stands in for a bar that is not shown (tqdm is then never imported)."""

    def update(self, n: int = 1) -> None:
        """Nothing to show."""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


def _tqdm_without_monitor() -> Any:
    """tqdm's bar class with its monitor thread off (made once; ``None`` without tqdm)."""
    global _bar_class
    if _bar_class is None:
        try:
            from tqdm import tqdm
        except ImportError:
            return None

        class _Bar(tqdm):  # type: ignore[misc, valid-type]
            monitor_interval = 0  # tqdm reads it from the class: no monitor thread for these bars

        _bar_class = _Bar
    return _bar_class


def progress_bar(total: Optional[int], desc: Optional[str] = None, *, show: Optional[bool] = None,
                 unit: str = "it", unit_scale: bool = False, leave: bool = False) -> Any:
    """A bar on stderr, or ``None`` when it is not shown.

    ``show=None`` shows it only when stderr is a terminal; ``True`` forces it, ``False`` hides it.
    ``None`` also when tqdm is not installed.
    """
    if not (sys.stderr.isatty() if show is None else show):
        return None
    cls = _tqdm_without_monitor()
    if cls is None:
        return None
    return cls(total=total, desc=desc, unit=unit, unit_scale=unit_scale, leave=leave, file=sys.stderr)


def progress(total: Optional[int], desc: Optional[str] = None, *, show: Optional[bool] = None,
             unit: str = "it", leave: bool = False) -> ContextManager[Any]:
    """:func:`progress_bar` as a context manager that always yields a bar (a :class:`NoBar` when hidden)."""
    bar = progress_bar(total, desc, show=show, unit=unit, leave=leave)
    return nullcontext(NoBar()) if bar is None else bar


def track(items: Iterable[T], desc: Optional[str] = None, *, total: Optional[int] = None, show: Optional[bool] = None,
          unit: str = "it", leave: bool = False) -> Iterable[T]:
    """``items``, counted on a bar as they are taken (``items`` itself when the bar is not shown)."""
    if not (sys.stderr.isatty() if show is None else show):
        return items
    cls = _tqdm_without_monitor()
    if cls is None:
        return items
    return cls(items, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr)

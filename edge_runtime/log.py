"""Loggers that import :mod:`logging` only when a message is actually emitted.

``logging`` (with the ``threading``, ``traceback`` and ``string`` it pulls in) costs about
0.9 MiB of RSS and a few milliseconds, and a plain ``edge-runtime run`` never logs. Modules
on that path get their logger here::

    from edge_runtime import log as logging   # or: from edge_runtime.log import getLogger
    log = logging.getLogger("edge_runtime")
    log.warning("accelerator unavailable, running on the CPU: %s", why)

A :class:`Logger` decides whether a level is enabled without importing ``logging`` while
nothing has imported it yet: with a configuration deferred by :func:`configure` it uses that
configuration's level; with none, ``logging``'s defaults (the root logger at WARNING), so a
library user sees exactly what a ``logging.getLogger`` logger would give. Once ``logging`` is
imported (by anyone), every call goes to the real logger of the same name. No import hook is
involved: the deferred configuration is applied by the first message sent through this module,
or by :func:`configure_if_imported`.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Optional

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

#: The deferred configuration, ``(prog, verbose)``, until the first message applies it.
_pending: list[tuple[str, bool]] = []


def _basic_config(prog: str, verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=f"{prog}: %(message)s",
                        stream=sys.stderr)


def configure(prog: str, verbose: bool, lazy: bool = False) -> None:
    """Send log records to stderr as ``prog: message``: INFO and up, DEBUG with ``verbose``.

    ``lazy``: when ``logging`` has not been imported yet, do not import it now; the first message
    sent through a :class:`Logger` applies this configuration. Only for code whose every log call
    goes through this module (a record sent straight to ``logging`` before that would be unformatted).
    """
    _pending.clear()
    if lazy and "logging" not in sys.modules:
        _pending.append((prog, verbose))
    else:
        _basic_config(prog, verbose)


def configure_if_imported() -> None:
    """Apply a deferred configuration now if some library has imported ``logging`` meanwhile, so that
    records it sends straight to ``logging`` are formatted as ours are."""
    if _pending and "logging" in sys.modules:
        _logging_module()


def _logging_module() -> ModuleType:
    """``logging``, imported now if needed, with a deferred configuration applied first."""
    import logging

    if _pending:
        _basic_config(*_pending.pop())
    return logging


class Logger:
    """A stand-in for ``logging.getLogger(name)`` that imports ``logging`` on the first enabled message."""

    __slots__ = ("name",)

    def __init__(self, name: Optional[str]) -> None:
        self.name = name

    def isEnabledFor(self, level: int) -> bool:
        """As :meth:`logging.Logger.isEnabledFor`, answered without importing ``logging`` when it is not loaded."""
        if _pending:
            if "logging" not in sys.modules:
                return level >= (DEBUG if _pending[-1][1] else INFO)
            configure_if_imported()
        logging = sys.modules.get("logging")
        if logging is None:
            return level >= WARNING  # logging's default: the root logger's level, and its last-resort handler's
        return logging.getLogger(self.name).isEnabledFor(level)

    def _emit(self, level: int, msg: object, args: tuple, kwargs: dict[str, Any]) -> None:
        if self.isEnabledFor(level):
            # the record names the caller of the public method, not this module (two frames up)
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
            _logging_module().getLogger(self.name).log(level, msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit ``msg % args`` at ``level`` (imports and configures ``logging`` first when needed)."""
        self._emit(level, msg, args, kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit at DEBUG."""
        self._emit(DEBUG, msg, args, kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit at INFO."""
        self._emit(INFO, msg, args, kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit at WARNING."""
        self._emit(WARNING, msg, args, kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit at ERROR."""
        self._emit(ERROR, msg, args, kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        """Emit at ERROR with the current exception's traceback."""
        self._emit(ERROR, msg, args, {**kwargs, "exc_info": exc_info})

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """Emit at CRITICAL."""
        self._emit(CRITICAL, msg, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        """Anything else (handlers, setLevel, ...) is the real logger's."""
        return getattr(_logging_module().getLogger(self.name), attr)

    def __repr__(self) -> str:
        return f"<edge_runtime.log.Logger {self.name}>"


def getLogger(name: Optional[str] = None) -> Logger:
    """A :class:`Logger` for ``name`` (the root logger when ``None``), as ``logging.getLogger`` names them."""
    return Logger(name)

"""End a finished command-line process without tearing the interpreter down.

When a command has done its work, a normal exit still runs CPython's finalization: every module is
torn down and the native libraries' destructors run (ONNX Runtime's environment, onnx's and LiteRT's
extensions), which measured 50-60 ms at the end of an ``edge-convert convert`` here — 5 % of
converting a 1.9M-parameter CNN, a quarter of the digits CNN's whole run. Nothing in that teardown
concerns the user: files are written and closed by then. So the console entry points leave with
:func:`exit_process`, as some other Python tools do: the ``atexit`` handlers still run (logging's flush,
temporary-file finalizers, a coverage tool's data), standard streams are flushed, then ``os._exit``.

It falls back to a normal ``sys.exit`` while another thread is alive (a background write must not be
cut short), under a profiler or tracer (``python -m cProfile``, a debugger: they report after the
program returns) and when ``EDGE_RUNTIME_DEBUG`` is set.
"""
from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``: ``atexit`` handlers, flushed streams, then no interpreter teardown (see the module)."""
    threading = sys.modules.get("threading")  # (not imported: no thread was started through it)
    if (os.environ.get("EDGE_RUNTIME_DEBUG") or (threading is not None and threading.active_count() > 1)
            or sys.getprofile() is not None or sys.gettrace() is not None):
        sys.exit(code)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:  # another Python implementation: keep the normal exit
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say there
            pass
    os._exit(code)

"""Run a native library's first load and invoke of a model in a child process, so a crash there is a refusal.

The structural checks (formats/tflite_check.py) refuse what is known to crash LiteRT, but no
check of a format this rich can be complete. So the first time a model is opened with a
native backend, :func:`first_run_survives` builds an interpreter, allocates its tensors and
invokes it once on zeros in a child process. If the child dies by a signal (or hangs), the
parent refuses the model with one clear error instead of crashing itself.

The child is a fork when the process has a single thread (fast: no re-import), else a fresh
interpreter (fork is unsafe with threads). A model that survived is remembered by its SHA-256
and the library's version in a small cache directory (``$EDGE_RUNTIME_CACHE_DIR``, else
``$XDG_CACHE_HOME/edge-runtime`` or ``~/.cache/edge-runtime``), so later loads pay nothing;
with no writable cache, every load is checked. ``EDGE_RUNTIME_NATIVE_GUARD=0`` turns it off.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from edge_runtime.errors import is_out_of_memory

TIMEOUT_S = 60.0
_OOM_EXIT = 86  #: the forked child's exit status when the native library ran out of memory

_CHILD = r"""
import sys
import numpy as np
module, path, resolver = sys.argv[1:4]
mod = __import__(module, fromlist=["Interpreter"])
kw = {"model_path": path, "num_threads": 1}
rt = getattr(getattr(mod, "OpResolverType", None), resolver, None)
if rt is not None:
    kw["experimental_op_resolver_type"] = rt
try:
    it = mod.Interpreter(**kw)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
except Exception:
    pass
"""


def _cache_dir() -> Optional[Path]:
    base = os.environ.get("EDGE_RUNTIME_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    home = Path(xdg) if xdg else Path.home() / ".cache"
    return home / "edge-runtime"


def _stamp(path: str, library: str) -> Optional[Path]:
    d = _cache_dir()
    if d is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return d / "native-verified" / f"{h.hexdigest()[:32]}-{library}"


def _run_forked(run: Callable[[], None]) -> Optional[str]:
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = 0
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            run()
        except BaseException as exc:  # noqa: BLE001 - a Python error is the parent's to report, not a crash
            code = _OOM_EXIT if is_out_of_memory(exc) else 0
        os._exit(code)
    end = time.monotonic() + TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"a test run did not finish within {TIMEOUT_S:.0f} s"
        time.sleep(0.002)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"it crashes the native library (signal {signal.Signals(sig).name} in a test run)"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _OOM_EXIT:
        return ("the native library runs out of memory preparing it (a test run): its tensors ask for more "
                "than this process may allocate (corrupt shapes, or a model too large for the limit)")
    return None


def _run_spawned(module: str, path: str, resolver: str) -> Optional[str]:
    try:
        r = subprocess.run([sys.executable, "-c", _CHILD, module, path, resolver], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"a test run did not finish within {TIMEOUT_S:.0f} s"
    if r.returncode < 0:
        return f"it crashes the native library (signal {signal.Signals(-r.returncode).name} in a test run)"
    return None


def first_run_survives(path: str, library: str, module: str, resolver: str,
                       run_in_child: Callable[[], None]) -> Optional[str]:
    """None when the model is safe to open in this process; else the reason it is not.

    ``run_in_child`` builds the interpreter, allocates and invokes (used in a forked child);
    ``module``/``resolver`` describe the same for a spawned one.
    """
    if os.environ.get("EDGE_RUNTIME_NATIVE_GUARD", "1") == "0" or not hasattr(os, "fork"):
        return None
    try:
        stamp = _stamp(path, library)
    except OSError:
        stamp = None
    if stamp is not None and stamp.exists():
        return None
    if threading.active_count() == 1:
        why = _run_forked(run_in_child)
    else:
        why = _run_spawned(module, path, resolver)
    if why is None and stamp is not None:
        try:
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
        except OSError:
            pass
    return why

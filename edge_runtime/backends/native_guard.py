"""Run a native library's first load and invoke of a model in a child process, so a crash there is a refusal.

The structural checks (formats/tflite_check.py) refuse what is known to crash LiteRT, but no
check of a format this rich can be complete. So the first time a model is opened with a
native backend, :func:`first_run_survives` builds an interpreter, allocates its tensors and
invokes it once on zeros in a child process. If the child dies by a signal (or hangs), the
parent refuses the model with one clear error instead of crashing itself.

If the child's library raises instead (a model it cannot prepare), the parent refuses the model
with that message rather than repeating the native call in its own process. The child is a fork when the process has a single thread (fast: no re-import), else a fresh
interpreter (fork is unsafe with threads). A model that survived is remembered by a 128-bit
BLAKE2b digest of its bytes and the library's version in a small cache directory
(``$EDGE_RUNTIME_CACHE_DIR``, else ``$XDG_CACHE_HOME/edge-runtime`` or ``~/.cache/edge-runtime``),
so later loads pay one hash of the (already mapped) file and one ``stat``; with no writable
cache, every load is checked. ``EDGE_RUNTIME_NATIVE_GUARD=0`` turns it off.

The cache lookup is on every start-up path, so it imports nothing heavy: CPython's own BLAKE2
module, not :mod:`hashlib` (which loads OpenSSL's libcrypto, ~3.5 MiB of RSS); ``subprocess``,
``threading`` and ``signal`` only when a test run is needed; plain ``os.path`` strings, not pathlib.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, Union

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
except Exception as exc:
    low = str(exc).lower()
    sys.stdout.write(" ".join(str(exc).split())[:2000] or type(exc).__name__)
    sys.stdout.flush()
    oom = isinstance(exc, MemoryError) or "bad_alloc" in low or "out of memory" in low or "cannot allocate" in low
    sys.exit(86 if oom else 87)
try:
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
except Exception:
    sys.exit(88)
"""


def _cache_dir() -> Optional[str]:
    base = os.environ.get("EDGE_RUNTIME_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME")
    home = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(home, "edge-runtime")


def _hasher() -> "Callable[[], object]":
    """A 128-bit BLAKE2b constructor that does not load OpenSSL; hashlib's SHA-256 where it is missing."""
    try:
        from _blake2 import blake2b  # CPython's built-in BLAKE2 (hashlib would load libcrypto too)

        return lambda: blake2b(digest_size=16)
    except ImportError:
        import hashlib

        return hashlib.sha256


def _digest(path: str, data: "Optional[Union[bytes, memoryview]]") -> str:
    """Hex digest (32 characters) of the model's bytes: ``data`` when given (the mapped file), else read."""
    h = _hasher()()
    if data is not None:
        h.update(data)  # type: ignore[attr-defined]
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)  # type: ignore[attr-defined]
    return h.hexdigest()[:32]  # type: ignore[attr-defined]


def _stamp(path: str, library: str, data: "Optional[Union[bytes, memoryview]]" = None) -> Optional[str]:
    d = _cache_dir()
    if d is None:
        return None
    return os.path.join(d, "native-verified", f"{_digest(path, data)}-{library}")


#: Exit statuses of a test run: the model ran; preparing it raised (the message follows on the pipe); the
#: invoke on zeros raised (a model may legitimately refuse such an input: not a reason to refuse it).
_OK_EXIT, _RAISED_EXIT, _INVOKE_RAISED_EXIT = 0, 87, 88


class InvokeFailed(Exception):
    """Raised by a test run's invoke step: the model prepared, but running it on zeros raised."""
_MAX_MESSAGE = 2000


def _verdict(status_ok: bool, signalled: Optional[int], code: int, message: str) -> Optional[str]:
    """The reason to refuse the model, or None when its test run completed."""
    if signalled is not None:
        import signal

        return f"it crashes the native library (signal {signal.Signals(signalled).name} in a test run)"
    if code == _OOM_EXIT:
        return ("the native library runs out of memory preparing it (a test run): its tensors ask for more "
                "than this process may allocate (corrupt shapes, or a model too large for the limit)")
    if code == _RAISED_EXIT:
        return f"the native library cannot prepare or run it ({message.strip() or 'no message'})"
    if code == _INVOKE_RAISED_EXIT:
        return None
    if code != _OK_EXIT or not status_ok:
        return f"a test run ended with status {code}"
    return None


_LAST_CODE = [0]


def _run_forked(run: Callable[[], None]) -> Optional[str]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into the caller's code
        code = _OK_EXIT
        os.close(read_fd)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            run()
        except InvokeFailed:
            code = _INVOKE_RAISED_EXIT
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which never loads the model then
            code = _OOM_EXIT if is_out_of_memory(exc) else _RAISED_EXIT
            text = " ".join(str(exc).split())[:_MAX_MESSAGE] or type(exc).__name__
            try:
                os.write(write_fd, text.encode("utf-8", "replace"))
            except OSError:
                pass
        os._exit(code)
    os.close(write_fd)
    end = time.monotonic() + TIMEOUT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            import signal

            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_fd)
            return f"a test run did not finish within {TIMEOUT_S:.0f} s"
        time.sleep(0.002)
    with os.fdopen(read_fd, "rb") as f:
        message = f.read(_MAX_MESSAGE).decode("utf-8", "replace")
    signalled = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    _LAST_CODE[0] = code
    return _verdict(True, signalled, code, message)


def _run_spawned(module: str, path: str, resolver: str) -> Optional[str]:
    import subprocess

    try:
        r = subprocess.run([sys.executable, "-c", _CHILD, module, path, resolver], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"a test run did not finish within {TIMEOUT_S:.0f} s"
    message = r.stdout.decode("utf-8", "replace")[:_MAX_MESSAGE]
    _LAST_CODE[0] = r.returncode
    return _verdict(True, -r.returncode if r.returncode < 0 else None, max(r.returncode, 0), message)


def first_run_survives(path: str, library: str, module: str, resolver: str,
                       run_in_child: Callable[[], None],
                       data: "Optional[Union[bytes, memoryview]]" = None) -> Optional[str]:
    """None when the model is safe to open in this process; else the reason it is not.

    ``run_in_child`` builds the interpreter, allocates and invokes (used in a forked child);
    ``module``/``resolver`` describe the same for a spawned one. ``data``: the file's bytes when
    the caller has them mapped already (so the file is not read a second time for the cache key).
    """
    if os.environ.get("EDGE_RUNTIME_NATIVE_GUARD", "1") == "0" or not hasattr(os, "fork"):
        return None
    try:
        stamp = _stamp(path, library, data)
    except OSError:
        stamp = None
    if stamp is not None and os.path.exists(stamp):
        return None
    import threading

    if threading.active_count() == 1:
        why = _run_forked(run_in_child)
    else:
        why = _run_spawned(module, path, resolver)
    if why is None and stamp is not None and _LAST_CODE[0] == _OK_EXIT:  # only a complete run is remembered
        try:
            os.makedirs(os.path.dirname(stamp), exist_ok=True)
            os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError:
            pass
    return why

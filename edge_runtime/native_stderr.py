"""Keep native libraries' informational chatter off the user's stderr, without hiding their errors.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to file descriptor 2
every time an interpreter is built. That line breaks the promise that a failing command prints
one line. :func:`quiet_native_info` redirects descriptor 2 into an anonymous in-memory file
(``memfd_create`` where the OS has it, else a temporary file) while the native call runs, then
writes back every line except the known informational ones, so a native warning or error is
still seen. ``tempfile`` (and the ``shutil``/``random`` it pulls in) is imported only on the
fallback path: this runs on every model load, start-up included.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

#: Lines (prefixes) that carry no information for the user.
INFO_PREFIXES = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                 b"INFO: Initialized TensorFlow Lite runtime.")
#: How much captured output is read back (a native library writing more is still not blocked).
MAX_CAPTURED = 1 << 20


def _capture_fd() -> int:
    """A fresh read/write descriptor for the captured output."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        try:
            return memfd("edge-runtime-stderr", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:  # e.g. a seccomp policy refusing memfd_create: use a temporary file
            pass
    import tempfile

    fd, path = tempfile.mkstemp(prefix="edge-runtime-stderr-")
    os.unlink(path)
    return fd


@contextmanager
def quiet_native_info() -> Iterator[None]:
    """Run the block with native stderr captured; re-emit all but the informational lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded, closed): nothing to filter
        yield
        return
    cap = _capture_fd()
    try:
        os.dup2(cap, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.lseek(cap, 0, os.SEEK_SET)
            data = os.read(cap, MAX_CAPTURED)
            kept = [ln for ln in data.splitlines(keepends=True) if not ln.startswith(INFO_PREFIXES)]
            if kept:
                os.write(2, b"".join(kept))
    finally:
        os.close(cap)

"""Keep native libraries' informational chatter off the user's stderr, without hiding their errors.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to file descriptor 2
every time an interpreter is built. That line breaks the promise that a failing command prints
one line. :func:`quiet_native_info` redirects descriptor 2 into a temporary file while the
native call runs, then writes back every line except the known informational ones, so a
native warning or error is still seen.
"""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

#: Lines (prefixes) that carry no information for the user.
INFO_PREFIXES = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                 b"INFO: Initialized TensorFlow Lite runtime.")


@contextmanager
def quiet_native_info() -> Iterator[None]:
    """Run the block with native stderr captured; re-emit all but the informational lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded, closed): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read(1 << 20).splitlines(keepends=True) if not ln.startswith(INFO_PREFIXES)]
            if kept:
                os.write(2, b"".join(kept))

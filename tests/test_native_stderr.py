"""Native stderr filtering: LiteRT's informational lines are dropped, everything else still reaches the user."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import os, sys
from edge_runtime import native_stderr as ns
if sys.argv[1] == "fallback":
    def refuse(*a, **k):
        raise OSError("memfd_create refused")
    os.memfd_create = refuse
with ns.quiet_native_info():
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    os.write(2, b"WARNING: a real native warning\n")
    os.write(2, b"INFO: Initialized TensorFlow Lite runtime.\n")
    os.write(2, b"E tail without newline")
print("tempfile" in sys.modules, len(os.listdir("/proc/self/fd")))
"""


@pytest.mark.parametrize("mode", ["memfd", "fallback"])
def test_info_lines_dropped_and_others_kept(mode):
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "WARNING: a real native warning\nE tail without newline"
    imported_tempfile = r.stdout.split()[0] == "True"
    assert imported_tempfile == (mode == "fallback")


def test_no_descriptor_leak_over_many_loads():
    """Each capture closes its descriptor: 200 captures leave the descriptor count unchanged."""
    code = ("import os\nfrom edge_runtime.native_stderr import quiet_native_info\n"
            "n0 = len(os.listdir('/proc/self/fd'))\n"
            "for _ in range(200):\n    with quiet_native_info():\n        os.write(2, b'INFO: Initialized TensorFlow Lite runtime.\\n')\n"
            "print(len(os.listdir('/proc/self/fd')) - n0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "0" and r.stderr == "", (r.stdout, r.stderr)

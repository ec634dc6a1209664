"""tflite-runtime for the host reference run, kept apart from the venv.

tflite-runtime 2.14 needs numpy<2 and the venv has numpy 2, so the host's x86-64
tflite-runtime wheel and a numpy 1.x go into their own folder in the cache, put
first on ``PYTHONPATH`` for the host run of :mod:`firmware_sim.qemu.guest_kws`.
"""
from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from firmware_sim.qemu.errors import QemuHarnessError
from firmware_sim.qemu.recipe import cache_root

#: Same tflite-runtime as the ARM roots; numpy 1.26 is the last 1.x with cp311 x86-64 wheels.
REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy==1.26.4")


def ensure_host_tflite() -> Path:
    """The folder holding the host's tflite-runtime and numpy 1.x (installed on first use)."""
    key = hashlib.sha256(" ".join(REQUIREMENTS).encode()).hexdigest()[:12]
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"host-tflite-{key}"
    with open(cache / "host-tflite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").is_file():
            return target
        work = cache / ".host-tflite-build"
        shutil.rmtree(work, ignore_errors=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:",
             "--target", str(work), "--cache-dir", str(cache / "pip"), *REQUIREMENTS],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise QemuHarnessError(f"installing the host's tflite-runtime failed: {proc.stderr.strip()[-500:]}")
        (work / ".complete").write_text(" ".join(REQUIREMENTS))
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        for old in cache.glob("host-tflite-*"):
            if old.is_dir() and old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

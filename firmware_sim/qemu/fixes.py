"""What Debian's maintainer scripts would have done to an unpacked root, done from the host.

- ``libblas.so.3`` / ``liblapack.so.3`` links (normally made by update-alternatives);
- absolute symlinks rewritten as relative ones, so they resolve inside the root;
- an empty ``etc/ld.so.cache`` so the guest's loader never reads the host's x86 cache;
- ``.pyc`` files compiled by the host's Python 3.11 (same bytecode magic as Debian's 3.11);
- an ARM-format ``proc/cpuinfo``: QEMU's ``-L`` serves it to the guest, and onnxruntime
  and LiteRT crash on import when they parse the host's x86 one;
- ``usr/bin/python3.11-qemu``, a host shell script that starts the guest Python under
  QEMU. The guest's ``sys.executable`` names it, so a guest that starts
  ``sys.executable`` in a subprocess works without binfmt_misc (the host kernel runs
  the script's ``#!/bin/sh`` natively).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from firmware_sim.qemu.errors import QemuHarnessError
from firmware_sim.qemu.recipe import ArchRecipe

TRIPLETS = {"arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf"}

# A Cortex-A53 quad core, as on the Raspberry Pi Zero 2 W and Pi 3 (the board the
# memory budget comes from), in each kernel's /proc/cpuinfo layout.
_CPU_AARCH64 = (
    "processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
    "CPU revision\t: 4\n\n"
)
_CPU_ARMV7 = (
    "processor\t: {i}\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nBogoMIPS\t: 38.40\n"
    "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n"
    "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
    "CPU revision\t: 4\n\n"
)
_CPU_TRAILER = "Hardware\t: BCM2835\nRevision\t: 902120\nModel\t\t: Raspberry Pi Zero 2 W Rev 1.0\n"


def cpuinfo_text(arch: ArchRecipe, cores: int = 4) -> str:
    """An ARM ``/proc/cpuinfo`` for ``arch``."""
    block = _CPU_AARCH64 if arch.machine == "aarch64" else _CPU_ARMV7
    return "".join(block.format(i=i) for i in range(cores)) + _CPU_TRAILER


def link_blas_lapack(root: Path, arch: ArchRecipe) -> None:
    """Make ``libblas.so.3`` and ``liblapack.so.3`` point at the reference implementations."""
    libdir = root / "usr" / "lib" / TRIPLETS[arch.name]
    for name, sub in (("libblas.so.3", "blas"), ("liblapack.so.3", "lapack")):
        target = libdir / sub / name
        if not target.exists():
            raise QemuHarnessError(f"{target.relative_to(root)} is missing from the unpacked packages")
        link = libdir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"{sub}/{name}")


def relativize_symlinks(root: Path) -> int:
    """Rewrite every absolute symlink under ``root`` as a relative one; return how many."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                continue
            target = os.readlink(p)
            if not target.startswith("/"):
                continue
            rel = os.path.relpath(root / target.lstrip("/"), start=p.parent)
            p.unlink()
            p.symlink_to(rel)
            count += 1
    return count


def write_system_files(root: Path, arch: ArchRecipe) -> None:
    """Empty ``etc/ld.so.cache``, ARM ``proc/cpuinfo``, and ``tmp``."""
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "ld.so.cache").write_bytes(b"")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo_text(arch))


LAUNCHER = "usr/bin/python3.11-qemu"

_LAUNCHER_TEXT = """#!/bin/sh
# Made by firmware_sim.qemu: run this root's python3.11 under {qemu} (no binfmt needed).
r=$(cd "$(dirname "$0")/../.." && pwd)
exec {qemu} -0 "$0" -L "$r" "$r/usr/bin/python3.11" "$@"
"""


def write_launcher(root: Path, arch: ArchRecipe) -> Path:
    """Write the guest-Python launcher script (host shell, finds qemu on PATH)."""
    path = root / LAUNCHER
    path.write_text(_LAUNCHER_TEXT.format(qemu=arch.qemu))
    path.chmod(0o755)
    return path


def host_python311() -> str:
    """A host Python 3.11 (same .pyc magic number as Debian bookworm's 3.11)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise QemuHarnessError("a host python3.11 is needed to precompile the root's .pyc files")
    return found


def precompile(root: Path, log: Path) -> None:
    """Compile every .py in the root's Python folders with the host 3.11, as the guest will see them."""
    dirs = [root / d for d in ("usr/lib/python3.11", "usr/lib/python3/dist-packages",
                               "usr/local/lib/python3.11/dist-packages")]
    dirs = [str(d) for d in dirs if d.is_dir()]
    cmd = [host_python311(), "-m", "compileall", "-q", "-j", "2", "-s", str(root), "-p", "/", *dirs]
    with open(log, "ab") as f:
        # Exit status is ignored on purpose: a few test files in the stdlib (lib2to3 data) are
        # not valid Python 3 and always fail to compile. The check below is what matters.
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    probe = root / "usr/lib/python3/dist-packages/numpy/__pycache__/__init__.cpython-311.pyc"
    if not probe.is_file():
        raise QemuHarnessError(f"precompiling the root's Python files failed; see {log}")


def apply_all(root: Path, arch: ArchRecipe, log: Path) -> None:
    """Every fix, in order (bytecode last, after wheels are in)."""
    link_blas_lapack(root, arch)
    relativize_symlinks(root)
    write_system_files(root, arch)
    write_launcher(root, arch)
    precompile(root, log)

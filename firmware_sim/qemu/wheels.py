"""Install pinned wheels for a foreign architecture into a root, with the host's pip.

pip is told the target (``--platform`` for every manylinux glibc level, because it
does not expand them; ``--python-version 3.11``, ``--implementation cp``) and installs
with ``--no-deps``, so it never replaces Debian's numpy 1.24 with numpy 2.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from firmware_sim.qemu.errors import QemuHarnessError
from firmware_sim.qemu.recipe import MANYLINUX_GLIBC_MINORS, PURE_WHEELS, ArchRecipe

SITE = Path("usr/local/lib/python3.11/dist-packages")


def platform_args(arch: ArchRecipe) -> list[str]:
    """``--platform`` options naming every manylinux tag the Debian bookworm root satisfies."""
    out: list[str] = []
    for minor in MANYLINUX_GLIBC_MINORS:
        out += ["--platform", f"manylinux_2_{minor}_{arch.wheel_platform}"]
    out += ["--platform", f"manylinux2014_{arch.wheel_platform}", "--platform", f"linux_{arch.wheel_platform}"]
    return out


def install_wheels(root: Path, arch: ArchRecipe, wheel_cache: Path, log: Path) -> list[str]:
    """Install :data:`PURE_WHEELS` and the arch's binary wheels into ``root``; return the requirements."""
    reqs = [*PURE_WHEELS, *arch.binary_wheels]
    target = root / SITE
    target.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
        "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
        "--abi", "abi3", "--abi", "none", *platform_args(arch), "--target", str(target),
        "--cache-dir", str(wheel_cache), *reqs,
    ]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise QemuHarnessError(f"installing the {arch.name} wheels failed (exit {proc.returncode}); see {log}")
    return reqs

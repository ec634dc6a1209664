"""Build (or reuse) the emulated root of one architecture in the cache.

A root lives in ``<cache>/<arch>-<recipe key>/`` and is complete once its
``.complete`` stamp exists; builds happen in a temporary folder renamed at the end,
under a file lock, so concurrent test runs never see half a root. Older roots of the
same architecture are removed, so the cache holds one root per architecture.
"""
from __future__ import annotations

import fcntl
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_sim.qemu import debroot, fixes, wheels
from firmware_sim.qemu.recipe import ArchRecipe, cache_root, recipe_key

STAMP = ".complete"


@dataclass(frozen=True)
class Root:
    """A built root: where it is and how long its build took (0 when reused)."""

    arch: ArchRecipe
    path: Path
    build_seconds: float
    reused: bool

    @property
    def python(self) -> Path:
        """The guest interpreter, as a host path."""
        return self.path / "usr" / "bin" / "python3.11"

    @property
    def launcher(self) -> Path:
        """The host script that starts the guest interpreter (the guest's ``sys.executable``)."""
        return self.path / fixes.LAUNCHER


def root_path(arch: ArchRecipe) -> Path:
    """Where the root of ``arch`` for the current recipe lives."""
    return cache_root() / f"{arch.name}-{recipe_key(arch)}"


def is_built(arch: ArchRecipe) -> bool:
    """True when the current recipe's root is complete in the cache."""
    return (root_path(arch) / STAMP).is_file()


def ensure_root(arch: ArchRecipe, rebuild: bool = False, log=print) -> Root:
    """Return the root of ``arch``, building it first when missing or when ``rebuild``."""
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    final = root_path(arch)
    with open(cache / f"{arch.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / STAMP).is_file() and not rebuild:
            meta = json.loads((final / STAMP).read_text())
            return Root(arch, final, float(meta.get("build_seconds", 0.0)), reused=True)
        t0 = time.monotonic()
        work = cache / f".{arch.name}-build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        logfile = cache / f"{arch.name}-build.log"
        logfile.write_text("")
        tree = work / "root"
        log(f"qemu: building the {arch.name} root in {final} (log: {logfile})")
        debs = debroot.download_debs(arch, work / "apt", logfile)
        log(f"qemu: {arch.name}: unpacking {len(debs)} Debian packages")
        debroot.extract_debs(debs, tree, logfile)
        log(f"qemu: {arch.name}: installing wheels")
        reqs = wheels.install_wheels(tree, arch, cache / "pip", logfile)
        log(f"qemu: {arch.name}: fixing up the root and precompiling .pyc files")
        fixes.apply_all(tree, arch, logfile)
        seconds = time.monotonic() - t0
        (tree / STAMP).write_text(json.dumps({
            "arch": arch.name, "key": recipe_key(arch), "debs": [d.name for d in debs],
            "wheels": reqs, "build_seconds": round(seconds, 1),
        }, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        tree.rename(final)
        shutil.rmtree(work, ignore_errors=True)
        for old in cache.glob(f"{arch.name}-*"):
            if old.is_dir() and old != final:
                shutil.rmtree(old, ignore_errors=True)
        log(f"qemu: {arch.name} root ready in {seconds:.0f} s")
        return Root(arch, final, seconds, reused=False)

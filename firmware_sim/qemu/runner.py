"""Run the guest Python of a root under qemu-user-static, and pytest selections in it.

``qemu-<arch>-static -L ROOT ROOT/usr/bin/python3.11 ...`` needs no binfmt
registration. Paths missing from ROOT fall through to the host, so the guest sees
the repository and ``../shared`` at their host paths. The guest's ``sys.executable`` is
the root's launcher script, so guest code may start ``sys.executable`` in a subprocess
although binfmt_misc is not registered.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from edge_runtime.reference_data import shared_dir
from firmware_sim.qemu.build import Root
from firmware_sim.qemu.errors import QemuHarnessError

REPO = Path(__file__).resolve().parents[2]
#: Host variables passed to the guest; everything else (venv, PYTHONHOME, ...) is dropped.
_PASS_ENV = ("CI", "HOME", "TERM", "EDGE_RUNTIME_DEBUG", "TZ")


def qemu_binary(root: Root) -> str:
    """Absolute path of the arch's qemu-user-static, or a clear error naming the package."""
    found = shutil.which(root.arch.qemu)
    if not found:
        raise QemuHarnessError(
            f"{root.arch.qemu} is not installed; install the Debian package qemu-user-static"
        )
    return found


def guest_env(root: Root, extra: Optional[dict[str, str]] = None, cpu: Optional[str] = None) -> dict[str, str]:
    """The guest's environment: C.UTF-8 locale, the repository on PYTHONPATH, no bytecode writes.

    ``QEMU_CPU`` selects the emulated CPU (the recipe's, or ``cpu``); QEMU processes the
    launcher starts inherit it.
    """
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update({
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",  # host PATH: the launcher runs sh and qemu natively
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "QEMU_CPU": cpu or root.arch.qemu_cpu,
        "EDGE_RUNTIME_EMULATED": root.arch.name,  # tests that need host-only extras (numba) skip here
    })
    shared = shared_dir()
    if shared is not None:
        env["EDGE_RUNTIME_SHARED"] = str(shared)
    env.update(extra or {})
    return env


def guest_command(root: Root, argv: Sequence[str]) -> list[str]:
    """The host command line that runs ``python3.11 argv...`` inside ``root``."""
    return [qemu_binary(root), "-0", str(root.launcher), "-L", str(root.path), str(root.python), *argv]


def run_python(root: Root, argv: Sequence[str], capture: bool = False, timeout: Optional[float] = None,
               env: Optional[dict[str, str]] = None, cpu: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run the guest Python with ``argv`` from the repository folder."""
    try:
        return subprocess.run(guest_command(root, argv), cwd=REPO, env=guest_env(root, env, cpu), timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, text=True)
    except subprocess.TimeoutExpired as exc:
        raise QemuHarnessError(f"the emulated {root.arch.name} run took longer than {timeout:.0f} s") from exc


@dataclass(frozen=True)
class PytestResult:
    """Outcome of one emulated pytest run (counts read from its JUnit XML report)."""

    arch: str
    returncode: int
    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    output: str

    @property
    def ok(self) -> bool:
        """True when pytest exited 0 (everything collected passed or skipped)."""
        return self.returncode == 0


def _counts(xml_path: Path) -> tuple[int, int, int, int]:
    if not xml_path.is_file() or xml_path.stat().st_size == 0:
        return 0, 0, 0, 0
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tot = [0, 0, 0, 0]
    for s in suites:
        for i, k in enumerate(("tests", "failures", "errors", "skipped")):
            tot[i] += int(s.get(k, 0))
    return tot[0], tot[1], tot[2], tot[3]


def run_pytest(root: Root, pytest_args: Sequence[str], capture: bool = True,
               timeout: Optional[float] = None, cpu: Optional[str] = None) -> PytestResult:
    """Run ``pytest pytest_args`` in the guest; return exit code and pass/fail/skip counts."""
    with tempfile.TemporaryDirectory(prefix="edge-qemu-") as tmp:
        xml = Path(tmp) / "junit.xml"
        # Its own basetemp: the guest's pytest must not share /tmp/pytest-of-USER with the
        # host pytest that may be running it.
        argv = ["-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={xml}", f"--basetemp={tmp}/basetemp",
                "-o", "junit_family=xunit2", *pytest_args]
        proc = run_python(root, argv, capture=capture, timeout=timeout, cpu=cpu)
        tests, failed, errors, skipped = _counts(xml)
    out = (proc.stdout or "") + (proc.stderr or "") if capture else ""
    return PytestResult(root.arch.name, proc.returncode, tests, tests - failed - errors - skipped,
                        failed, errors, skipped, out)

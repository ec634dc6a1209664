"""edge-runtime on emulated ARM: Debian bookworm roots run under qemu-user-static.

The roots (arm64, armhf) are built on first use by :mod:`firmware_sim.qemu` (apt
download + dpkg-deb, pinned wheels; under a minute) and cached outside the repository.
References: the emulated pytest selections carry their own (golden data, LiteRT,
numpy); the KWS checks compare with the same run on the x86-64 host, bit for bit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from firmware_sim.qemu import fixes, selection
from firmware_sim.qemu.build import Root, ensure_root
from firmware_sim.qemu.debroot import KEYRING
from firmware_sim.qemu.kws import compare_kws
from firmware_sim.qemu.recipe import ARCHES, get_arch, recipe_key
from firmware_sim.qemu.runner import REPO, run_pytest, run_python

pytestmark = pytest.mark.qemu

CI = os.environ.get("CI", "").lower() == "true"
KWS_N = 100
EXPECTED_MACHINE = {"arm64": ("aarch64", 8), "armhf": ("armv7l", 4)}


def _need_tools(arch: str) -> None:
    missing = [t for t in (ARCHES[arch].qemu, "apt-get", "dpkg-deb") if shutil.which(t) is None]
    if not KEYRING.is_file():
        missing.append(str(KEYRING))
    if missing:
        msg = (f"{', '.join(missing)} not installed "
               "(Debian packages qemu-user-static, apt, dpkg, debian-archive-keyring)")
        if CI:
            pytest.fail(f"{msg}, and CI=true: scripts/setup.sh must install them")
        pytest.skip(msg)


def _report(capsys: pytest.CaptureFixture, request: pytest.FixtureRequest, line: str) -> None:
    """Show a result line on the terminal (past output capture) and record it in the JUnit report."""
    request.node.user_properties.append(("result", line))
    with capsys.disabled():
        print(f"\n{line}", flush=True)


_ROOTS: dict[str, Root] = {}


def _root_for(arch: str) -> Root:
    """The emulated root of ``arch``, built once per session (then reused from the on-disk cache)."""
    if arch not in _ROOTS:
        _need_tools(arch)
        _ROOTS[arch] = ensure_root(get_arch(arch), log=lambda m: None)
    return _ROOTS[arch]


@pytest.fixture(scope="session", params=sorted(ARCHES))
def root(request: pytest.FixtureRequest) -> Root:
    """The emulated root of each architecture."""
    return _root_for(request.param)


#: Every (architecture, backend) pair that has a library on that architecture.
ARCH_BACKENDS = [(a, b) for a in sorted(ARCHES) for b in ("micro", "litert", "tflite", "onnx")
                 if b in ARCHES[a].backends]


# -- host-side pieces of the harness (no emulation) ------------------------------------
def test_recipe_key_follows_the_recipe():
    arm64 = get_arch("arm64")
    assert recipe_key(arm64) == recipe_key(get_arch("arm64"))
    bumped = replace(arm64, binary_wheels=arm64.binary_wheels[:-1] + ("tqdm==4.0.0",))
    assert recipe_key(bumped) != recipe_key(arm64)
    assert recipe_key(arm64) != recipe_key(get_arch("armhf"))
    with pytest.raises(ValueError, match="choose one of arm64, armhf"):
        get_arch("sparc")


def test_absolute_symlinks_become_relative(tmp_path):
    (tmp_path / "usr/lib/x").mkdir(parents=True)
    (tmp_path / "usr/lib/x/libz.so.1.2").write_bytes(b"z")
    (tmp_path / "etc").mkdir()
    (tmp_path / "usr/lib/x/libz.so.1").symlink_to("/usr/lib/x/libz.so.1.2")
    (tmp_path / "etc/alt").symlink_to("/usr/lib/x")
    (tmp_path / "usr/lib/x/keep").symlink_to("libz.so.1.2")
    assert fixes.relativize_symlinks(tmp_path) == 2
    assert os.readlink(tmp_path / "usr/lib/x/libz.so.1") == "libz.so.1.2"
    assert os.readlink(tmp_path / "etc/alt") == "../usr/lib/x"
    assert os.readlink(tmp_path / "usr/lib/x/keep") == "libz.so.1.2"
    assert (tmp_path / "etc/alt/libz.so.1").read_bytes() == b"z"


@pytest.mark.parametrize("arch,impl,archnum", [("arm64", "0x41", "8"), ("armhf", "0x41", "7")])
def test_cpuinfo_is_in_the_arm_kernel_format(arch, impl, archnum):
    blocks = [b for b in fixes.cpuinfo_text(get_arch(arch)).split("\n\n") if b.startswith("processor")]
    assert len(blocks) == 4
    fields = dict(line.split(":", 1) for line in blocks[0].splitlines())
    assert fields["CPU implementer\t"].strip() == impl
    assert fields["CPU architecture"].strip() == archnum


def test_cli_errors_are_one_clear_line():
    py = [sys.executable, "-m", "firmware_sim.qemu"]
    r = subprocess.run(py + ["kws", "--arch", "sparc"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "invalid choice: 'sparc'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(py + ["kws", "--arch", "arm64", "--backend", "tensorrt"], capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 2 and "invalid choice: 'tensorrt'" in r.stderr
    r = subprocess.run(py + ["kws", "--arch", "armhf", "--backend", "onnx"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip() == (
        "qemu: error: backend 'onnx' has no library in the armhf root (available: micro, tflite)")
    r = subprocess.run(py + ["kws", "--arch", "armhf", "--backend", "litert"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip() == (
        "qemu: error: backend 'litert' has no library in the armhf root (available: micro, tflite)")


# -- under emulation --------------------------------------------------------------------
PROBE = r"""
import json, platform, struct, subprocess, sys, importlib
import numpy, pydantic, yaml
mods = {}
for name in ("tflite_runtime.interpreter", "ai_edge_litert.interpreter", "onnxruntime"):
    try:
        importlib.import_module(name); mods[name] = True
    except ImportError:
        mods[name] = False
child = subprocess.run([sys.executable, "-c", "import platform; print(platform.machine())"],
                       capture_output=True, text=True)
print(json.dumps({"machine": platform.machine(), "pointer": struct.calcsize("P"),
    "python": platform.python_version(), "numpy": numpy.__version__, "pydantic": pydantic.VERSION,
    "cpuinfo": open("/proc/cpuinfo").read(), "mods": mods, "child": child.stdout.strip()}))
"""


def test_root_is_the_target_platform(root: Root, request: pytest.FixtureRequest, capsys):
    r = run_python(root, ["-c", PROBE], capture=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    machine, pointer = EXPECTED_MACHINE[root.arch.name]
    assert (info["machine"], info["pointer"]) == (machine, pointer)
    assert info["python"].startswith("3.11.") and info["numpy"] == "1.24.2"  # Debian bookworm's
    assert info["pydantic"].startswith("2.")
    assert "CPU implementer" in info["cpuinfo"] and "vendor_id" not in info["cpuinfo"]
    assert info["child"] == machine  # a guest subprocess of sys.executable runs (no binfmt)
    expect = {"tflite_runtime.interpreter": True,
              "ai_edge_litert.interpreter": root.arch.name == "arm64",
              "onnxruntime": root.arch.name == "arm64"}
    assert info["mods"] == expect
    how = f"built in {root.build_seconds:.0f} s" if not root.reused else f"cached; built in {root.build_seconds:.0f} s"
    _report(capsys, request, f"qemu {root.arch.name} root: {root.path} ({how})")


def test_emulated_selection_passes(root: Root, request: pytest.FixtureRequest, capsys):
    args = selection.pytest_args(root.arch.name)
    assert args, f"none of the {root.arch.name} selection's test files exist: {selection.FILES[root.arch.name]}"
    res = run_pytest(root, args, timeout=900)
    _report(capsys, request, f"qemu {root.arch.name}: {res.passed} passed, {res.failed} failed, "
                     f"{res.errors} errors, {res.skipped} skipped of {res.tests} "
                     f"({', '.join(selection.test_files(root.arch.name))})")
    assert res.ok, res.output[-6000:]
    assert res.failed == 0 and res.errors == 0 and res.passed > 0


@pytest.mark.parametrize("arch,backend", ARCH_BACKENDS)
def test_kws_outputs_equal_the_host_run(arch: str, backend: str, request: pytest.FixtureRequest, capsys, shared):
    root = _root_for(arch)
    summary = compare_kws(root, backend=backend, n=KWS_N)
    _report(capsys, request, "qemu kws: " + json.dumps(summary))
    assert summary["n"] == KWS_N and summary["machine"] == EXPECTED_MACHINE[root.arch.name][0]
    assert summary["equal"], f"{summary['outputs_differing']} of {KWS_N} outputs differ from the host run"

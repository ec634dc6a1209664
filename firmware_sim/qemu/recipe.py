"""What goes into each emulated root: Debian packages, pinned wheels, the QEMU binary.

Everything that decides the content of a root lives here, and :func:`recipe_key`
hashes it, so changing any of it makes the next build start afresh.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Bumped by hand when the build or fix-up code changes in a way the lists below do not show.
BUILD_REVISION = 4

DEBIAN_SUITE = "bookworm"
#: Suites fetched; a failure to fetch the security index is tolerated (main + updates suffice).
DEBIAN_SUITES = ("bookworm", "bookworm-updates", "bookworm-security")

#: Debian packages installed in both roots (their dependencies are resolved by apt).
DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3-numpy",
    "python3-yaml", "libc6", "libstdc++6", "libgcc-s1", "libblas3", "liblapack3", "libgfortran5",
    "libexpat1", "zlib1g", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0",
)

#: Pure-Python wheels for both roots: pydantic (v2) for edge_runtime; pytest, and the
#: flatbuffers + tflite schema packages the tests use to build small models, hypothesis.
#: Versions follow the host venv so the emulated run tests the same library code.
PURE_WHEELS = (
    "pydantic==2.14.4", "annotated-types==0.8.0", "typing-extensions==4.16.0",
    "typing-inspection==0.4.5", "pytest==9.2.0", "pluggy==1.7.0", "iniconfig==2.3.1",
    "packaging==26.4", "pygments==2.21.0", "flatbuffers==25.12.19", "tflite==2.18.0",
    "hypothesis==6.170.17", "sortedcontainers==2.4.0",
)


@dataclass(frozen=True)
class ArchRecipe:
    """One emulated architecture: names, QEMU binary and the binary wheels it gets."""

    name: str                 # our name: arm64 | armhf
    debian_arch: str          # APT::Architecture
    machine: str              # platform.machine() inside the guest
    wheel_platform: str       # manylinux platform suffix: aarch64 | armv7l
    qemu: str                 # qemu-user-static binary
    binfmt: str               # name of the binfmt_misc entry (/usr/lib/binfmt.d/<binfmt>.conf)
    #: CPU model QEMU emulates. Not QEMU's default "max": with it, LiteRT's XNNPACK picks
    #: kernels (newer ISA extensions) that give wrong int8 results under qemu 7.2.
    qemu_cpu: str
    binary_wheels: tuple[str, ...] = field(default_factory=tuple)
    #: Backends whose libraries are in the root (the micro backend needs only numpy).
    backends: tuple[str, ...] = ("micro",)


ARCHES: dict[str, ArchRecipe] = {
    "arm64": ArchRecipe(
        name="arm64", debian_arch="arm64", machine="aarch64", wheel_platform="aarch64",
        qemu="qemu-aarch64-static", binfmt="qemu-aarch64",
        qemu_cpu="cortex-a53",  # Pi Zero 2 W, Pi 3
        binary_wheels=(
            "onnxruntime==1.32.0", "ai-edge-litert==2.3.0", "tflite-runtime==2.14.0",
            "pydantic-core==2.50.5", "ml-dtypes==0.5.4", "protobuf==7.36.2",
            "backports.strenum==1.2.8", "tqdm==4.70.1",
            "onnx==1.23.2",  # tests build ONNX models with it (host-side package; tests only)
        ),
        backends=("micro", "litert", "tflite", "onnx"),
    ),
    "armhf": ArchRecipe(
        name="armhf", debian_arch="armhf", machine="armv7l", wheel_platform="armv7l",
        qemu="qemu-arm-static", binfmt="qemu-arm",
        qemu_cpu="cortex-a7",  # armv7-A with NEON and VFPv4, as Debian armhf targets
        binary_wheels=("tflite-runtime==2.14.0", "pydantic-core==2.50.5"),
        backends=("micro", "tflite"),
    ),
}

#: glibc versions pip is told the target supports; pip does not expand manylinux tags itself.
MANYLINUX_GLIBC_MINORS = range(17, 37)


def get_arch(name: str) -> ArchRecipe:
    """The recipe for ``name`` (``arm64`` or ``armhf``); ValueError names the choices otherwise."""
    try:
        return ARCHES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHES)}") from None


def recipe_key(arch: ArchRecipe) -> str:
    """A short hash of everything that determines the root's content."""
    blob = json.dumps(
        {
            "rev": BUILD_REVISION,
            "suites": DEBIAN_SUITES,
            "debs": DEBIAN_PACKAGES,
            "pure": PURE_WHEELS,
            "arch": asdict(arch),
            "glibc": list(MANYLINUX_GLIBC_MINORS),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """``$EDGE_RUNTIME_QEMU_CACHE`` or ``~/.cache/edge-runtime/qemu`` (outside the repository)."""
    import os

    env = os.environ.get("EDGE_RUNTIME_QEMU_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edge-runtime" / "qemu"

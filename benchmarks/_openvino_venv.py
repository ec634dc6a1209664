"""Build (or reuse) a separate venv holding ``onnxruntime-openvino`` instead of ``onnxruntime``.

The two wheels both install the module ``onnxruntime``, so they cannot share the
project's ``.venv``. Like firmware_sim's QEMU roots, the venv is built once under a
cache folder (``<repo>/.cache/openvino-venv``; ``EDGE_RUNTIME_OPENVINO_VENV``
overrides), in a temporary folder renamed at the end under a file lock, and is
complete once its stamp names the current recipe. This repository is not installed
into it: callers put the repository on ``PYTHONPATH`` (see :func:`child_env`).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What the venv holds; any change here changes the recipe key and rebuilds it.
REQUIREMENTS = ("onnxruntime-openvino==1.24.1", "numpy", "pydantic>=2", "PyYAML")
STAMP = ".complete"


class OpenVinoVenvError(RuntimeError):
    """The venv could not be built (no network, no wheel for this platform, ...)."""


def recipe_key() -> str:
    """A short hash of the requirements and the interpreter's version."""
    text = json.dumps([REQUIREMENTS, list(sys.version_info[:2])])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def venv_dir() -> Path:
    """Where the venv lives."""
    env = os.environ.get("EDGE_RUNTIME_OPENVINO_VENV")
    return Path(env) if env else REPO / ".cache" / "openvino-venv"


def venv_python(root: Path) -> Path:
    """The venv's interpreter."""
    return root / "bin" / "python"


def child_env() -> dict[str, str]:
    """The environment for running this repository's code with the venv's interpreter."""
    path = os.pathsep.join([str(REPO), *(p for p in [os.environ.get("PYTHONPATH", "")] if p)])
    return {**os.environ, "PYTHONPATH": path, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _is_current(root: Path) -> bool:
    try:
        return json.loads((root / STAMP).read_text()).get("key") == recipe_key() and venv_python(root).exists()
    except (OSError, ValueError):
        return False


def ensure_venv(log=print) -> Path:
    """Return the venv's interpreter, building the venv first when missing or stale."""
    root = venv_dir()
    if _is_current(root):
        return venv_python(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_current(root):
            return venv_python(root)
        work = root.parent / f".{root.name}-build"
        logfile = root.parent / f"{root.name}-build.log"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.monotonic()
        log(f"openvino venv: building {root} (log: {logfile})")
        with open(logfile, "w") as f:
            _run([sys.executable, "-m", "venv", str(work)], f, "creating the venv")
            _run([str(venv_python(work)), "-m", "pip", "install", "--no-input", "--timeout", "30",
                  "--retries", "2", *REQUIREMENTS], f,
                 f"pip install {' '.join(REQUIREMENTS)}")
            probe = "import onnxruntime as o; print(o.__version__, *o.get_available_providers())"
            out = subprocess.run([str(venv_python(work)), "-c", probe], check=False, capture_output=True, text=True)
            f.write(out.stdout + out.stderr)
        if out.returncode != 0 or "OpenVINOExecutionProvider" not in out.stdout.split():
            raise OpenVinoVenvError(f"the new venv's onnxruntime has no OpenVINOExecutionProvider: "
                                    f"{(out.stdout + out.stderr).strip()[:300]}")
        seconds = time.monotonic() - t0
        (work / STAMP).write_text(json.dumps({"key": recipe_key(), "requirements": REQUIREMENTS,
                                              "onnxruntime": out.stdout.split(), "build_seconds": round(seconds, 1)}))
        shutil.rmtree(root, ignore_errors=True)
        # pip wrote absolute paths of the build folder into scripts; only bin/python is used, and it is a symlink
        work.rename(root)
        log(f"openvino venv: ready in {seconds:.0f} s")
        return venv_python(root)


def _run(cmd: list[str], logf, what: str) -> None:
    logf.write("\n$ " + " ".join(cmd) + "\n")
    logf.flush()
    proc = subprocess.run(cmd, check=False, stdout=logf, stderr=subprocess.STDOUT,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if proc.returncode != 0:
        raise OpenVinoVenvError(f"{what} failed (exit {proc.returncode}); see {logf.name}")

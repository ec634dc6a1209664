"""Compare the KWS model's outputs under emulation with the same run on the host.

Both runs use :mod:`firmware_sim.qemu.guest_kws`; the host run is the reference.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from firmware_sim.qemu.build import Root
from firmware_sim.qemu.errors import QemuHarnessError
from firmware_sim.qemu.runner import REPO, run_python

GUEST_MODULE = "firmware_sim.qemu.guest_kws"


def _load(path: Path, who: str, proc: subprocess.CompletedProcess) -> dict[str, np.ndarray]:
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-15:])
        raise QemuHarnessError(f"the {who} KWS run failed (exit {proc.returncode}):\n{tail}")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def host_env(backend: str) -> Optional[dict[str, str]]:
    """Environment of the host reference run: for ``tflite``, tflite-runtime 2.14 and numpy 1.x
    from their own folder (:mod:`firmware_sim.qemu.host_tflite`) when the venv lacks them."""
    if backend != "tflite" or importlib.util.find_spec("tflite_runtime") is not None:
        return None
    from firmware_sim.qemu.host_tflite import ensure_host_tflite

    extra = [str(ensure_host_tflite()), str(REPO)]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(extra + ([old] if old else []))}


def kws_onnx(out_dir: Path) -> str:
    """Convert the float KWS model to int8 QDQ ONNX (calibrated on the first 100 kws01 inputs); return its path."""
    from converters.pipeline import convert_model
    from edge_runtime.backends.micro import open_model
    from edge_runtime.reference_data import load_kws01, mlperf_model

    x, _, _ = load_kws01(100)
    with open_model(str(mlperf_model("kws_ref_model.tflite"))) as ref:
        calib = ref.inputs[0].dequantize(x)
    result = convert_model(str(mlperf_model("kws_ref_model_float32.tflite")), "rpi-zero-2w", calib, out_dir,
                           formats=("onnx",))
    onnx_path = getattr(result, "onnx_path", None) or str(next(out_dir.glob("*_int8.onnx")))
    return str(onnx_path)


def compare_kws(root: Root, backend: str = "micro", n: int = 100, timeout: float = 1200,
                cpu: Optional[str] = None, op_resolver: str = "default") -> dict[str, Any]:
    """Run KWS on the first ``n`` kws01 inputs on the host and in ``root``; summarize."""
    if n < 1:
        raise QemuHarnessError(f"--n must be at least 1, got {n}")
    args = ["-m", GUEST_MODULE, "--n", str(n), "--op-resolver", op_resolver]
    with tempfile.TemporaryDirectory(prefix="edge-qemu-kws-") as tmp:
        if backend == "onnx":  # the KWS model as our converter's int8 QDQ ONNX, made here on the host
            args += ["--model", kws_onnx(Path(tmp))]
        host_out, guest_out = Path(tmp) / "host.npz", Path(tmp) / "guest.npz"
        host = subprocess.run([sys.executable, *args, "--backend", backend, "--out", str(host_out)], cwd=REPO,
                              env=host_env(backend),
                              capture_output=True, text=True, timeout=timeout)
        h = _load(host_out, "host", host)
        guest = run_python(root, [*args, "--backend", backend, "--out", str(guest_out)], capture=True, timeout=timeout, cpu=cpu)
        g = _load(guest_out, f"emulated {root.arch.name}", guest)
    same_shape = h["outputs"].shape == g["outputs"].shape
    rows_differ = int(np.any(h["outputs"] != g["outputs"], axis=1).sum()) if same_shape else n
    return {
        "arch": root.arch.name,
        "machine": str(g["machine"]),
        "cpu": cpu or root.arch.qemu_cpu,
        "backend": backend,
        "op_resolver": op_resolver,
        "n": int(g["outputs"].shape[0]),
        "equal": bool(np.array_equal(h["outputs"], g["outputs"])),
        "outputs_differing": rows_differ,
        "reference": f"host {str(h['machine'])} run, same backend (numpy {str(h['numpy'])})",
        "median_latency_ms": round(float(np.median(g["latencies"])) * 1e3, 3),
        "host_median_latency_ms": round(float(np.median(h["latencies"])) * 1e3, 3),
        "guest_numpy": str(g["numpy"]),
    }

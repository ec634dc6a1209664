"""Run the MLPerf Tiny KWS model on the first N kws01 inputs and save outputs and latencies.

The same script runs on the host and inside an emulated root, so both runs go
through identical code: ``python -m firmware_sim.qemu.guest_kws --backend B --n N --out F.npz``.
It imports only numpy and edge_runtime (device side).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

import edge_runtime
from edge_runtime.reference_data import load_kws01, mlperf_model

DEFAULT_MODEL = "kws_ref_model.tflite"


def run_kws(backend: str, n: int, model: str = DEFAULT_MODEL,
            op_resolver: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """Outputs (int8, ``(n, 12)``) and per-inference latencies in seconds.

    ``op_resolver`` applies to the LiteRT/tflite backends (``"reference"``: reference kernels).
    """
    x, _, _ = load_kws01(n)
    options = {} if backend in ("micro", "onnx") or op_resolver == "default" else {"op_resolver": op_resolver}
    path = model if model.endswith(".onnx") else str(mlperf_model(model))
    m = edge_runtime.load(path, backend=backend, **options)
    if path.endswith(".onnx"):
        # a converted ONNX model has its own input quantization: the int8 features, as reals, requantized
        with edge_runtime.load(str(mlperf_model(DEFAULT_MODEL)), backend="micro") as ref:
            real = ref.inputs[0].dequantize(x)
        x = m.inputs[0].quantize(real.reshape((len(x),) + tuple(m.inputs[0].shape)))
    out_spec = m.outputs[0]
    outputs = np.empty((len(x), int(np.prod(out_spec.shape))), dtype=out_spec.dtype)
    lat = np.empty(len(x), dtype=np.float64)
    try:
        for i in range(len(x)):
            t0 = time.perf_counter()
            y = m.run(x[i])[0]
            lat[i] = time.perf_counter() - t0
            outputs[i] = y.reshape(-1)
    finally:
        m.close()
    return outputs, lat


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: run and write ``--out`` (npz with outputs, latencies, machine)."""
    p = argparse.ArgumentParser(prog="python -m firmware_sim.qemu.guest_kws", description=__doc__)
    p.add_argument("--backend", default="micro")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--op-resolver", default="default", choices=["default", "reference"])
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        outputs, lat = run_kws(a.backend, a.n, a.model, a.op_resolver)
    except edge_runtime.EdgeRuntimeError as exc:
        print(f"guest_kws: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:  # the shared reference data is absent
        print(f"guest_kws: error: {exc}", file=sys.stderr)
        return 1
    np.savez(a.out, outputs=outputs, latencies=lat, machine=np.array(platform.machine()),
             numpy=np.array(np.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())

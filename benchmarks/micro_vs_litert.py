"""Latency of the micro backend next to LiteRT on the MLPerf Tiny models (issue 3, "Speed").

``python -m benchmarks.micro_vs_litert [--runs N] [--models NAME ...]``

Both run in this process, one thread each (LiteRT ``num_threads=1``; OpenBLAS is
limited to one thread before numpy loads), interleaved run by run on the same
input, so machine load affects both alike. Each timed step sets the input and
invokes (micro: ``Interpreter.set_input`` + ``invoke``; LiteRT: ``set_tensor`` +
``invoke``). The table shows medians, the ratio micro / LiteRT, and the fastest
run of each (less sensitive to a loaded machine, since a micro inference is long
enough to be preempted more often).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "str_ww_ref_model",
          "kws_ref_model_float32", "vww_96_float", "pretrainedResnet", "ad01_fp32"]


def bench(name: str, runs: int) -> tuple[float, float, float, float, int]:
    """(micro median ms, LiteRT median ms, micro min ms, LiteRT min ms, micro arena bytes) for one model."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.backends.micro import open_model
    from edge_runtime.reference_data import mlperf_model

    path = str(mlperf_model(f"{name}.tflite"))
    micro = open_model(path)
    mi = micro.interpreter
    lite = Interpreter(model_path=path, num_threads=1)
    lite.allocate_tensors()
    li = lite.get_input_details()[0]["index"]
    spec = micro.inputs[0]
    rng = np.random.default_rng(0)
    if spec.dtype == np.int8:
        x = rng.integers(-128, 128, size=spec.shape).astype(np.int8)
    else:
        x = rng.uniform(0, 1, size=spec.shape).astype(np.float32)

    def run_micro() -> None:
        mi.set_input(0, x)
        mi.invoke()

    def run_lite() -> None:
        lite.set_tensor(li, x)
        lite.invoke()

    for _ in range(5):
        run_micro()
        run_lite()
    tm, tl = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_micro()
        t1 = time.perf_counter()
        run_lite()
        t2 = time.perf_counter()
        tm.append(t1 - t0)
        tl.append(t2 - t1)
    return (float(np.median(tm) * 1e3), float(np.median(tl) * 1e3), float(np.min(tm) * 1e3),
            float(np.min(tl) * 1e3), micro.info["arena_bytes"])


def main(argv: list[str]) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.micro_vs_litert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per model (default 200)")
    ap.add_argument("--models", nargs="*", default=MODELS, help="MLPerf Tiny model names (default: all)")
    args = ap.parse_args(argv)
    try:
        from edge_runtime.reference_data import models_dir

        models_dir()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    print(f"{'model':24s} {'micro ms':>9s} {'LiteRT ms':>10s} {'ratio':>7s}   {'min micro':>9s} {'min LiteRT':>10s} "
          f"{'ratio':>7s} {'arena B':>8s}")
    for name in args.models:
        m, lt, mmin, lmin, arena = bench(name, args.runs)
        print(f"{name:24s} {m:9.3f} {lt:10.3f} {m / lt:6.1f}x   "
              f"{mmin:9.3f} {lmin:10.3f} {mmin / lmin:6.1f}x {arena:8d}", flush=True)
    print("median (and fastest) latency per inference over the runs, 1 thread each, same process, same input; "
          "ratio = micro / LiteRT; arena = micro's planned arena (in-place on)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Latency of the micro backend next to LiteRT on the MLPerf Tiny models (issue 3, "Speed").

``python -m benchmarks.micro_vs_litert [--runs N] [--models NAME ...] [--baseline REV]``

micro runs on both of its kernel paths, side by side: the compiled int8 kernels
(numba, ``edge-runtime[fast]``; column "numba") and the numpy-only path (column
"numpy", forced with ``EDGE_RUNTIME_MICRO_FAST=0`` while that model loads). Without
numba the "numba" column repeats the numpy path (the table says so).

Both run in this process, one thread each (LiteRT ``num_threads=1``; OpenBLAS is
limited to one thread before numpy loads), interleaved run by run on the same
input (the order rotating every round), so machine load affects both alike. Each timed step sets the input and
invokes (micro: ``Interpreter.set_input`` + ``invoke``; LiteRT: ``set_tensor`` +
``invoke``). The table shows medians, the ratio micro / LiteRT, and the fastest
run of each (less sensitive to a loaded machine, since a micro inference is long
enough to be preempted more often).

``--baseline REV`` also times the micro backend as it was at git revision REV (its
``edge_runtime/backends/micro`` files, read with ``git show`` into a temporary
package), interleaved with the other two on the same input, and prints a
before/after table: both ratios and the speed-up, measured side by side in one run.
The baseline must produce the same outputs on the benchmark input (int8 models bit
for bit, float models within 1e-5 of the largest output).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Optional  # noqa: E402

import numpy as np  # noqa: E402

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "str_ww_ref_model",
          "kws_ref_model_float32", "vww_96_float", "pretrainedResnet", "ad01_fp32"]


PACKAGE = "edge_runtime/backends/micro"


def load_baseline(rev: str, workdir: Path) -> Any:
    """The micro package as of git revision ``rev``, importable as ``_micro_baseline`` (its ``open_model``)."""
    root = Path(__file__).resolve().parent.parent
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, PACKAGE], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    if not names:
        raise SystemExit(f"no {PACKAGE} files at revision {rev}")
    pkg = workdir / "_micro_baseline"
    for name in names:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=root, check=True, capture_output=True,
                              text=True).stdout
        dest = pkg / Path(name).relative_to(PACKAGE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text.replace("edge_runtime.backends.micro", "_micro_baseline"))
    sys.path.insert(0, str(workdir))
    return importlib.import_module("_micro_baseline")


def _timed(fns: list[Callable[[], None]], runs: int) -> list[list[float]]:
    """Run the functions interleaved ``runs`` times (after 5 warm-up rounds); seconds per call.

    The order rotates every round, so that no variant always runs right after the same other
    one (which evicts its caches)."""
    for _ in range(5):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    n = len(fns)
    for i in range(runs):
        for j in range(n):
            k = (i + j) % n
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def bench(name: str, runs: int, baseline: Optional[Any] = None) -> dict[str, float]:
    """Median and fastest ms of micro, LiteRT (and the baseline micro) on one model, plus micro's arena."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.backends.micro import open_model
    from edge_runtime.reference_data import mlperf_model

    path = str(mlperf_model(f"{name}.tflite"))
    micro = open_model(path, fast=True)  # the compiled path is opt-in (numba's load cost)
    mi = micro.interpreter
    old = os.environ.get("EDGE_RUNTIME_MICRO_FAST")
    os.environ["EDGE_RUNTIME_MICRO_FAST"] = "0"
    try:
        numpy_only = open_model(path)
    finally:
        if old is None:
            del os.environ["EDGE_RUNTIME_MICRO_FAST"]
        else:
            os.environ["EDGE_RUNTIME_MICRO_FAST"] = old
    ni = numpy_only.interpreter
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

    def run_numpy() -> None:
        ni.set_input(0, x)
        ni.invoke()

    run_micro()
    run_numpy()
    for a, b in zip(mi.output_views, ni.output_views):
        if a.dtype.kind in "iu" and not np.array_equal(a, b):
            raise SystemExit(f"{name}: the numba and numpy paths give different outputs")
    fns = [run_micro, run_lite, run_numpy]
    if baseline is not None:
        bi = baseline.open_model(path).interpreter

        def run_base() -> None:
            bi.set_input(0, x)
            bi.invoke()

        run_micro()
        run_base()
        for a, b in zip(mi.output_views, bi.output_views):
            # int8: bit for bit; float: the summation order may differ (within 1e-5 of the largest output)
            same = (np.array_equal(a, b) if a.dtype.kind in "iu"
                    else float(np.max(np.abs(a - b))) <= 1e-5 * max(float(np.max(np.abs(b))), 1e-30))
            if not same:
                raise SystemExit(f"{name}: the baseline's outputs differ from the current micro backend's")
        fns.append(run_base)
    times = _timed(fns, runs)
    keys = ["micro", "lite", "numpy", "base"]
    out = {"arena": float(micro.info["arena_bytes"]), "cache": float(micro.info.get("cache_bytes", 0)),
           "compiled_ops": float(sum(p["path"] == "numba" for p in micro.info.get("kernel_paths", []))),
           "compile_s": float(micro.info.get("fast", {}).get("compile_s", 0.0))}
    for key, ts in zip(keys, times):
        out[key] = float(np.median(ts) * 1e3)
        out[key + "_min"] = float(np.min(ts) * 1e3)
    return out


def main(argv: list[str]) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.micro_vs_litert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per model (default 200)")
    ap.add_argument("--models", nargs="*", default=MODELS, help="MLPerf Tiny model names (default: all)")
    ap.add_argument("--baseline", metavar="REV", default=None,
                    help="also time the micro backend as of this git revision (e.g. HEAD) and print before/after")
    args = ap.parse_args(argv)
    try:
        from edge_runtime.reference_data import models_dir

        models_dir()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    if args.baseline is not None:
        with tempfile.TemporaryDirectory() as tmp:
            return _before_after(args, load_baseline(args.baseline, Path(tmp)))
    from edge_runtime.backends.micro import fast

    fast.REQUESTED[0] = True
    available = fast.available()
    fast.REQUESTED[0] = None
    if not available:
        print("numba is not available (pip install 'edge-runtime[fast]'): the numba column runs the numpy path")
    print(f"{'model':24s} {'numba ms':>9s} {'numpy ms':>9s} {'LiteRT ms':>10s} {'numba':>7s} {'numpy':>7s}   "
          f"{'min numba':>9s} {'min numpy':>9s} {'min LiteRT':>10s} {'numba':>7s} {'numpy':>7s} {'ops':>4s} "
          f"{'arena B':>8s} {'cache B':>9s} {'compile s':>9s}")
    for name in args.models:
        r = bench(name, args.runs)
        print(f"{name:24s} {r['micro']:9.3f} {r['numpy']:9.3f} {r['lite']:10.3f} {r['micro'] / r['lite']:6.1f}x "
              f"{r['numpy'] / r['lite']:6.1f}x   {r['micro_min']:9.3f} {r['numpy_min']:9.3f} {r['lite_min']:10.3f} "
              f"{r['micro_min'] / r['lite_min']:6.1f}x {r['numpy_min'] / r['lite_min']:6.1f}x "
              f"{int(r['compiled_ops']):4d} {int(r['arena']):8d} {int(r['cache']):9d} {r['compile_s']:9.3f}",
              flush=True)
    print("median (and fastest) latency per inference over the runs, 1 thread each, same process, same input, "
          "the three interleaved run by run; numba = micro with its compiled int8 kernels, numpy = micro's numpy-only "
          "path; the ratio columns are micro / LiteRT; ops = ops on the compiled path; arena = micro's planned arena "
          "(in-place on); cache = the numba model's weights widened and constants built once at load (host memory); "
          "compile s = seconds that load spent compiling the kernels or loading them from numba's on-disk cache "
          "(Model.info['fast']['compile_s'])")
    return 0


def _before_after(args: argparse.Namespace, baseline: Any) -> int:
    print(f"{'model':24s} {'before ms':>9s} {'numba ms':>9s} {'numpy ms':>9s} {'LiteRT ms':>10s} {'before':>7s} "
          f"{'numba':>7s} {'numpy':>7s} {'up numba':>8s} {'up numpy':>8s}")
    for name in args.models:
        r = bench(name, args.runs, baseline)
        print(f"{name:24s} {r['base']:9.3f} {r['micro']:9.3f} {r['numpy']:9.3f} {r['lite']:10.3f} "
              f"{r['base'] / r['lite']:6.1f}x {r['micro'] / r['lite']:6.1f}x {r['numpy'] / r['lite']:6.1f}x "
              f"{r['base'] / r['micro']:7.2f}x {r['base'] / r['numpy']:7.2f}x", flush=True)
    print(f"before = micro backend at {args.baseline}; numba / numpy = the working tree's two kernel paths; median "
          "latency per inference, 1 thread each, interleaved in one process on the same input; the ratio columns are "
          "to LiteRT; up = before / after (speed-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

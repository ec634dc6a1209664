"""Latency of the micro backend next to LiteRT on the MLPerf Tiny models (issue 3, "Speed").

``python -m benchmarks.micro_vs_litert [--runs N] [--models NAME ...] [--baseline REV | --baseline-dir DIR]``

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
``--baseline-dir DIR`` does the same with a saved copy of ``edge_runtime/backends/micro`` (e.g.
``cp -r edge_runtime/backends/micro /tmp/micro_before`` before an edit). The baseline must produce the
same outputs on the benchmark input (int8 models bit for bit, float models within 1e-5 of the largest
output).

``--real`` adds models nobody on the project shaped: three PaddleOCR models from the pinned
PyPI wheel ``rapidocr-onnxruntime==1.4.4`` (text detector, text recogniser, angle
classifier; fetched once by ``benchmarks/_pypi_models.py``), converted once with
``edge-convert convert MODEL --profile rpi4-4gb --calib CALIB.npy --input-shape x=1x3xHxW``
(random-uniform calibration, fine for timing) into ``<pypi cache>/converted/``. Their table
adds the top ops by time on the compiled path (each kernel's ``run`` timed on its own over
``--profile-runs`` inferences; share of the summed op time). ``--models`` with no names skips
the MLPerf Tiny rows; ``--json`` prints every row as one JSON object per line instead. With ``--baseline REV`` the real
models join the before/after table (``EDGE_RUNTIME_MICRO_FAST=1`` makes "before" REV's compiled path).

examples:
  python -m benchmarks.micro_vs_litert --runs 300
  python -m benchmarks.micro_vs_litert --models --real --runs 100
  python -m benchmarks.micro_vs_litert --models kws_ref_model --real --json
  EDGE_RUNTIME_MICRO_FAST=1 python -m benchmarks.micro_vs_litert --baseline HEAD --models --real --runs 50
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
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


def load_baseline_dir(src: Path, workdir: Path) -> Any:
    """The micro package copied from the directory ``src`` (a saved copy of ``edge_runtime/backends/micro``),
    importable as ``_micro_baseline`` (its ``open_model``): a before/after comparison without git."""
    files = sorted(p for p in src.rglob("*.py") if "__pycache__" not in p.parts)
    if not (src / "__init__.py").is_file() or not files:
        raise SystemExit(f"{src} is not a copy of {PACKAGE} (no __init__.py)")
    pkg = workdir / "_micro_baseline"
    for f in files:
        dest = pkg / f.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.read_text().replace("edge_runtime.backends.micro", "_micro_baseline"))
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


def bench(name: str, runs: int, baseline: Optional[Any] = None, path: Optional[str] = None,
          profile_runs: int = 0) -> dict[str, Any]:
    """Median and fastest ms of micro, LiteRT (and the baseline micro) on one model (an MLPerf Tiny
    model by name, or the .tflite at ``path``), plus micro's arena; with ``profile_runs`` the compiled
    path's time per op kind (:func:`op_profile`)."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.backends.micro import open_model
    from edge_runtime.reference_data import mlperf_model

    if path is None:
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
    out["ops"] = float(len(micro.info.get("kernel_paths", [])))
    if profile_runs:
        out["profile"] = op_profile(mi, x, profile_runs)
    return out


def op_profile(interp: Any, x: np.ndarray, rounds: int) -> list[tuple[str, float, int]]:
    """(op name and path, ms per inference, op count) per kind of op, most time first: each bound
    kernel's ``run`` timed on its own, in graph order, over ``rounds`` inferences on input ``x``."""
    kernels = [k for k in interp.kernels if not getattr(k, "aliased", False)]
    spent = [0.0] * len(kernels)
    for _ in range(rounds):
        interp.set_input(0, x)
        for i, k in enumerate(kernels):
            t0 = time.perf_counter()
            k.run()
            spent[i] += time.perf_counter() - t0
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for k, t in zip(kernels, spent):
        key = f"{k.ctx.op.name}/{getattr(k, 'path', 'numpy')}"
        total[key] += t * 1e3 / rounds
        count[key] += 1
    return sorted(((key, v, count[key]) for key, v in total.items()), key=lambda r: -r[1])


@dataclass(frozen=True)
class RealModel:
    """A published float model converted once with edge-convert for the ``--real`` rows."""

    label: str
    package: str
    version: str
    member: str
    input_shape: tuple[int, ...]  # NCHW, as the ONNX model takes it
    input_name: str = "x"


REAL_MODELS = [
    RealModel("ppocr_v4_det", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
              (1, 3, 320, 320)),
    RealModel("ppocr_v4_rec", "rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
              (1, 3, 48, 320)),
    RealModel("ppocr_mobile_v2_cls", "rapidocr-onnxruntime", "1.4.4",
              "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192)),
]


def _converter_version() -> str:
    """A short hash of the converter's sources: a cached conversion is redone when the converter changes."""
    import hashlib

    root = Path(__file__).resolve().parent.parent / "converters"
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:10]


def converted(model: RealModel) -> Path:
    """The int8 .tflite of ``model``: fetched from its wheel and converted with edge-convert on first use
    (``--profile rpi4-4gb``, 8 random-uniform calibration samples), then kept in the cache folder (keyed by
    the converter's source hash)."""
    from benchmarks._pypi_models import FetchError, PypiModel, cache_dir, fetch

    shape = "x".join(str(d) for d in model.input_shape)
    folder = cache_dir() / "converted" / f"{model.label}-{shape}-{_converter_version()}"
    try:
        src = fetch(PypiModel(model.package, model.version, model.member))
    except (FetchError, OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"{model.label}: cannot fetch {model.package}=={model.version}: {exc}") from None
    target = folder / f"{src.stem}_int8.tflite"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    calib = folder / "calib.npy"
    np.save(calib, np.random.default_rng(0).uniform(0, 1, size=(8, *model.input_shape[1:])).astype(np.float32))
    cmd = [sys.executable, "-m", "converters.cli", "convert", str(src), "--profile", "rpi4-4gb", "--calib", str(calib),
           "--input-shape", f"{model.input_name}={shape}", "--format", "tflite", "-o", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode not in (0, 3) or not target.exists():
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{model.label}: edge-convert failed ({done.returncode}): {last}")
    return target


def _top_ops(profile: list[tuple[str, float, int]], n: int = 4) -> str:
    """The ``n`` kinds of op taking most time, as shares of the summed op time."""
    total = sum(v for _, v, _ in profile) or 1.0
    return ", ".join(f"{key} x{c} {100 * v / total:.0f}%" for key, v, c in profile[:n])


def real_rows(args: argparse.Namespace) -> int:
    """Time the real models and print their table (or JSON lines)."""
    if not args.json:
        print(f"{'real model':20s} {'input':>14s} {'numba ms':>9s} {'numpy ms':>9s} {'LiteRT ms':>10s} {'numba':>7s} "
              f"{'numpy':>7s}   {'min numba':>9s} {'min LiteRT':>10s} {'numba':>7s} {'ops':>7s}  top ops on the "
              "compiled path (op/path xcount share)")
    for model in REAL_MODELS:
        path = converted(model)
        r = bench(model.label, args.runs, path=str(path), profile_runs=args.profile_runs)
        if args.json:
            print(json.dumps({"model": model.label, "input": list(model.input_shape), "path": str(path), **r}),
                  flush=True)
            continue
        shape = "x".join(str(d) for d in model.input_shape)
        print(f"{model.label:20s} {shape:>14s} {r['micro']:9.3f} {r['numpy']:9.3f} {r['lite']:10.3f} "
              f"{r['micro'] / r['lite']:6.1f}x {r['numpy'] / r['lite']:6.1f}x   {r['micro_min']:9.3f} "
              f"{r['lite_min']:10.3f} {r['micro_min'] / r['lite_min']:6.1f}x {int(r['compiled_ops']):3d}/"
              f"{int(r['ops']):<3d}  {_top_ops(r['profile'])}", flush=True)
    if not args.json:
        print("PaddleOCR models from rapidocr-onnxruntime==1.4.4, converted by edge-convert (rpi4-4gb, random "
              "calibration); columns as above; ops = ops on the compiled path / all ops; top ops = share of the summed "
              f"per-op time on the compiled path over {args.profile_runs} inferences")
    return 0


def main(argv: list[str]) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.micro_vs_litert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per model (default 200)")
    ap.add_argument("--models", nargs="*", default=MODELS, help="MLPerf Tiny model names (default: all)")
    ap.add_argument("--baseline", metavar="REV", default=None,
                    help="also time the micro backend as of this git revision (e.g. HEAD) and print before/after")
    ap.add_argument("--baseline-dir", metavar="DIR", default=None,
                    help="as --baseline, with the micro package copied from DIR (a saved copy of "
                         f"{PACKAGE}) instead of a git revision")
    ap.add_argument("--real", action="store_true",
                    help="also time real PaddleOCR models (fetched from PyPI and converted once; see above)")
    ap.add_argument("--profile-runs", type=int, default=20,
                    help="inferences of the per-op profile of the --real models (default 20)")
    ap.add_argument("--json", action="store_true", help="print the --real rows as JSON lines (for scripts)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.profile_runs < 1:
        ap.error("--runs and --profile-runs must be at least 1")
    if args.baseline is not None and args.baseline_dir is not None:
        ap.error("--baseline and --baseline-dir exclude each other")
    if not args.models and args.baseline is None and args.baseline_dir is None:
        return real_rows(args) if args.real else 0
    try:
        from edge_runtime.reference_data import models_dir

        models_dir()
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return real_rows(args) if args.real else 0
    if args.baseline is not None or args.baseline_dir is not None:
        with tempfile.TemporaryDirectory() as tmp:
            if args.baseline_dir is not None:
                args.baseline = args.baseline_dir
                return _before_after(args, load_baseline_dir(Path(args.baseline_dir), Path(tmp)))
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
    return real_rows(args) if args.real else 0


def _before_after(args: argparse.Namespace, baseline: Any) -> int:
    print(f"{'model':24s} {'before ms':>9s} {'numba ms':>9s} {'numpy ms':>9s} {'LiteRT ms':>10s} {'before':>7s} "
          f"{'numba':>7s} {'numpy':>7s} {'up numba':>8s} {'up numpy':>8s}")
    jobs: list[tuple[str, Optional[str]]] = [(name, None) for name in args.models]
    if args.real:
        jobs += [(model.label, str(converted(model))) for model in REAL_MODELS]
    for name, path in jobs:
        r = bench(name, args.runs, baseline, path=path)
        print(f"{name:24s} {r['base']:9.3f} {r['micro']:9.3f} {r['numpy']:9.3f} {r['lite']:10.3f} "
              f"{r['base'] / r['lite']:6.1f}x {r['micro'] / r['lite']:6.1f}x {r['numpy'] / r['lite']:6.1f}x "
              f"{r['base'] / r['micro']:7.2f}x {r['base'] / r['numpy']:7.2f}x", flush=True)
    print(f"before = micro backend at {args.baseline} (its compiled path when EDGE_RUNTIME_MICRO_FAST=1 is set, "
          "else its numpy path); numba / numpy = the working tree's two kernel paths; median "
          "latency per inference, 1 thread each, interleaved in one process on the same input; the ratio columns are "
          "to LiteRT; up = before / after (speed-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

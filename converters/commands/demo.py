"""``edge-convert demo``: the whole job on the shipped digits model, in a few seconds."""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NAME = "demo"
HELP = "convert, plan and run the shipped digits CNN on a device profile; print predictions, latency, memory"
DESCRIPTION = """\
A first look at edge-runtime with nothing to download. The demo:

  1. converts the shipped float ONNX digits classifier (a small CNN trained on scikit-learn's
     8x8 digits, see tests/fixtures/digits/train_digits_cnn.py) to int8 TFLite and ONNX,
     calibrating on 64 shipped training images;
  2. sizes it against the device profile and plans its activation arena;
  3. loads the int8 .tflite with edge-runtime (the micro backend when available, else LiteRT)
     and classifies 40 shipped held-out images, printing predictions against labels, accuracy,
     per-inference latency and memory.

examples:
  edge-convert demo
  edge-convert demo --profile stm32h743 --backend litert -o demo-out/
"""

DATA = Path(__file__).resolve().parents[1] / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``demo``."""
    parser.add_argument("--profile", default="rpi-zero-2w", metavar="NAME|FILE",
                        help="device profile to size and run for (default: rpi-zero-2w, a 512 MB board)")
    parser.add_argument("--backend", default="auto", choices=["auto", "micro", "litert", "onnx"],
                        help="runtime backend: auto tries micro, then litert (default: auto); onnx runs the int8 .onnx")
    parser.add_argument("-o", "--output-dir", metavar="DIR",
                        help="keep the converted models and report here (default: a temporary directory)")


def _load(path: str, backend: str, profile: object):  # type: ignore[no-untyped-def]
    import edge_runtime
    from edge_runtime.errors import EdgeRuntimeError

    order = ["micro", "litert"] if backend == "auto" else [backend]
    notes = []
    for b in order:
        try:
            return edge_runtime.load(path, backend=b, profile=profile), notes
        except (EdgeRuntimeError, ImportError, AttributeError, NotImplementedError) as exc:
            # the micro backend may be absent or still incomplete in this installation
            if b == order[-1]:
                raise
            notes.append(f"backend {b} unavailable ({exc}); trying {order[order.index(b) + 1]}")
    raise AssertionError("unreachable")  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its results."""
    from device_profiles import load_profile
    from edge_runtime.arena.plan import plan_arena
    from edge_runtime.formats.tflite import TFLiteModel

    from converters.pipeline import convert_model

    prof = load_profile(args.profile)
    tmp = None
    out = args.output_dir
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="edge-demo-")
        out = tmp.name
    try:
        sample = np.load(DATA / "digits_sample.npz")
        x, y = sample["x"].astype(np.float32), sample["y"]
        t0 = time.perf_counter()
        res = convert_model(DATA / "digits_cnn.onnx", prof, DATA / "digits_calib.npz", out,
                            held_out=(x, y), progress=sys.stderr.isatty())
        conv_s = time.perf_counter() - t0
        fit = res.report["fit"]
        print(f"converted digits_cnn.onnx -> int8 in {conv_s:.2f} s: {res.tflite_path}, {res.onnx_path}")
        print(fit["summary"])
        plan = plan_arena(TFLiteModel.open(res.tflite_path))
        print(f"arena plan ({plan.planner}{', in place' if plan.in_place else ''}): {plan.arena_bytes:,} B "
              f"for {plan.num_tensors} tensors (lower bound {plan.lower_bound_bytes:,} B)")
        path = res.onnx_path if args.backend == "onnx" else res.tflite_path
        model, notes = _load(path, args.backend, prof)
        for n in notes:
            print(n)
        spec = model.inputs[0]
        in_q = res.plan.activations[res.graph.inputs[0]]  # ONNX inputs carry no scale: use the plan's
        preds, times = [], []
        for xi in x:
            xin = xi[None] if args.backend == "onnx" else xi.transpose(1, 2, 0)[None]
            if spec.quantized:
                q = spec.quantize(xin)
            elif np.dtype(spec.dtype) == np.int8:
                q = in_q.quantize(xin)
            elif np.dtype(spec.dtype) == np.uint8:
                q = (in_q.quantize(xin).astype(np.int16) + 128).astype(np.uint8)
            else:
                q = xin.astype(np.float32)
            t = time.perf_counter()
            outv = model.run(q)[0]
            times.append(time.perf_counter() - t)
            preds.append(int(np.argmax(outv)))
        model.close()
        preds_a = np.array(preds)
        print(f"\nbackend {model.backend} on profile {prof.name} ({prof.display_name}); 40 held-out digits:")
        print("  predicted: " + " ".join(str(p) for p in preds_a))
        print("  label:     " + " ".join(str(v) for v in y))
        print("  wrong:     " + " ".join("^" if p != v else " " for p, v in zip(preds_a, y)))
        acc = float(np.mean(preds_a == y))
        ho = res.report["held_out"]
        ms = np.array(times) * 1e3
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"accuracy {acc:.3f} ({int(np.sum(preds_a == y))}/{len(y)}); float model {ho['float_accuracy']:.3f}")
        print(f"latency per inference: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms")
        print(f"memory: model {fit['flash_bytes']:,} B, arena {plan.arena_bytes:,} B, "
              f"peak RSS of this process {rss / 2**20:.1f} MiB (includes the converter)")
        if out == args.output_dir:
            print(f"report: {os.path.join(out, 'report.md')}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0

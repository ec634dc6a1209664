"""Pruning, sparse weights and distillation (issue 9): the acceptance figures, as tables.

``python -m benchmarks.compress [--runs N] [--epochs N] [--skip-distill]``

1. ad01_fp32 and the digits CNN pruned to 50 % (1x16 blocks, refit on calibration data): quality
   before/after (ad01: anomaly score, the mean window MSE; fp32 reference 9.7071; digits:
   held-out accuracy), flash of the unpruned int8, dense pruned int8 and sparse int8 files, micro
   backend RAM (arena + host workspace) dense vs sparse, and whether the sparse outputs equal the
   dense pruned model's on every sample (np.array_equal, micro backend).
2. Structured channel pruning of the digits CNN (25 %, 50 %): parameters, flash, arena, accuracy
   change, and micro-backend latency of the unpruned and the pruned int8 model, measured side by
   side in this process (interleaved run by run, one thread), with the ratio.
3. Distillation of the digits CNN into small students (PyTorch needed): parameters, accuracy of
   teacher, float student and int8 student on LiteRT, onnxruntime and the micro backend.

The micro backend's sparse kernels are registered for this run the way tests/test_compress_support.py
does (edge_runtime/backends/micro does not register them itself yet).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "converters" / "data" / "digits_cnn.onnx"
CALIB = ROOT / "converters" / "data" / "digits_calib.npz"
HELD = ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz"


def _micro_outputs(path: str, xs: np.ndarray) -> np.ndarray:
    import edge_runtime

    m = edge_runtime.load(path, backend="micro")
    spec = m.inputs[0]
    return np.stack([m.run(spec.quantize(x.reshape(spec.shape)))[0].copy() for x in xs])


def _latency(paths: list[str], x: np.ndarray, runs: int) -> list[float]:
    """Median ms per model on the micro backend, interleaved run by run on the same input."""
    import edge_runtime

    models = [edge_runtime.load(p, backend="micro") for p in paths]
    q = []
    for m in models:
        spec = m.inputs[0]
        shape = spec.shape
        xi = x.reshape(shape[0], shape[3], shape[1], shape[2]).transpose(0, 2, 3, 1) if len(shape) == 4 and \
            x.size == np.prod(shape) and x.shape != tuple(shape) else x.reshape(shape)
        q.append(spec.quantize(xi))
    times: list[list[float]] = [[] for _ in models]
    for _ in range(runs):
        for i, m in enumerate(models):
            it = m.interpreter
            t0 = time.perf_counter()
            it.set_input(0, q[i])
            it.invoke()
            times[i].append(time.perf_counter() - t0)
    return [1000.0 * float(np.median(t)) for t in times]


def _params(path: Path | str) -> int:
    from converters.pipeline import import_model

    g = import_model(path)
    return int(sum(t.data.size for t in g.tensors.values() if t.data is not None))


def unstructured(out: str, runs: int) -> None:
    """Table 1."""
    from converters.compress.search import compress_model
    from converters.compress.sparse import ram_comparison
    from edge_runtime.reference_data import load_ad01_windows, mlperf_model

    rows = []
    ad = load_ad01_windows()
    np.save(os.path.join(out, "ad01_windows.npy"), ad)
    cases = [("ad01_fp32", str(mlperf_model("ad01_fp32.tflite")), os.path.join(out, "ad01_windows.npy"), None,
              "nrf52840", ad),
             ("digits_cnn", str(DIGITS), str(CALIB), str(HELD), "rpi4-4gb", np.load(HELD)["x"])]
    for name, model, calib, data, prof, xs in cases:
        res = compress_model(model, prof, calib, os.path.join(out, name), sparsity=0.5, data=data, backend="micro")
        c, b = res.chosen, res.baseline
        ram = ram_comparison(c.tflite_path, c.sparse_path)
        equal = np.array_equal(_micro_outputs(c.sparse_path, xs), _micro_outputs(c.tflite_path, xs))
        lat = _latency([c.tflite_path, c.sparse_path], xs[0], runs)
        rows.append((name, res.float_quality, b, c, ram, equal, len(xs), lat))
    print("\n1. Unstructured pruning to 50 % (1x16 blocks, refit), int8, quality on the micro backend")
    print(f"{'model':<11} {'metric':<14} {'float':>9} {'int8':>9} {'pruned':>9} {'drop':>7} {'flash int8':>11} "
          f"{'pruned':>9} {'sparse':>9} {'saved':>7} {'RAM dense':>10} {'RAM sparse':>10} {'bit-exact':>10} "
          f"{'ms dense':>9} {'ms sparse':>9}")
    for name, fq, b, c, ram, equal, n, lat in rows:
        dense_ram, sparse_ram = ram["dense_loaded_bytes"], ram["sparse_loaded_bytes"]
        pruned_flash = os.path.getsize(c.tflite_path)
        print(f"{name:<11} {b.quality.metric:<14} {fq.value:>9.4f} {b.quality.value:>9.4f} {c.quality.value:>9.4f} "
              f"{c.drop:>7.3f} {b.flash_bytes:>11,} {pruned_flash:>9,} {c.flash_bytes:>9,} "
              f"{100 * (1 - c.flash_bytes / b.flash_bytes):>6.1f}% {dense_ram:>10,} {sparse_ram:>10,} "
              f"{('yes' if equal else 'NO') + f' ({n})':>10} {lat[0]:>9.3f} {lat[1]:>9.3f}")
    print("drop: accuracy points, or % change of the anomaly score, vs the unpruned int8 model. "
          "RAM: bytes the micro backend holds for the loaded model\n(tracemalloc: arena, workspace, prepared "
          "kernel data; the weights stay memory-mapped).")


def structured(out: str, runs: int) -> None:
    """Table 2."""
    from converters.compress.search import compress_model

    x = np.load(HELD)["x"]
    print("\n2. Structured channel pruning of the digits CNN (refit), int8; latency: micro backend, median of "
          f"{runs} interleaved runs")
    print(f"{'model':<16} {'params':>7} {'flash':>7} {'arena':>6} {'accuracy':>9} {'change':>7} "
          f"{'ms unpruned':>12} {'ms pruned':>10} {'ratio':>6}")
    printed = False
    for ratio in (0.25, 0.5):
        res = compress_model(DIGITS, "rpi4-4gb", CALIB, os.path.join(out, f"ch{ratio}"), sparsity=ratio,
                             structured=True, data=HELD, backend="micro")
        b, c = res.baseline, res.chosen
        lat = _latency([b.tflite_path, c.tflite_path], x[0], runs)  # side by side, this run
        if not printed:
            printed = True
            print(f"{'unpruned':<16} {_params(DIGITS):>7,} {b.flash_bytes:>7,} {b.arena_bytes:>6,} "
                  f"{b.quality.value:>9.2f} {0.0:>7.2f}")
        kept = sum(t.data.size for t in _pruned_graph_tensors(ratio))
        print(f"{f'channels -{int(ratio * 100)}%':<16} {kept:>7,} {c.flash_bytes:>7,} {c.arena_bytes:>6,} "
              f"{c.quality.value:>9.2f} {-c.drop:>7.2f} {lat[0]:>12.4f} {lat[1]:>10.4f} {lat[1] / lat[0]:>5.2f}x")


def _pruned_graph_tensors(ratio: float):  # type: ignore[no-untyped-def]
    from converters.compress.prune import channel_prune
    from converters.pipeline import import_model

    g = channel_prune(import_model(DIGITS), ratio).graph
    return [t for t in g.tensors.values() if t.data is not None]


def distillation(out: str, epochs: int) -> None:
    """Table 3."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("\n3. Distillation: skipped (PyTorch not installed: pip install torch==2.13.0)")
        return
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from converters.cli import main

    d = load_digits()
    xa = (d.images.astype(np.float32) / 16.0)[:, None]
    x_tr, _, _, _ = train_test_split(xa, d.target, test_size=0.25, random_state=0, stratify=d.target)
    unl = os.path.join(out, "unlabeled")
    os.makedirs(unl, exist_ok=True)
    np.save(os.path.join(unl, "train.npy"), x_tr)
    print(f"\n3. Distillation of the digits CNN ({epochs} epochs, unlabeled training split of "
          f"{len(x_tr)} images + 4 augmented copies); accuracy on the {len(np.load(HELD)['y'])} held-out images")
    print(f"{'student':<32} {'params':>7} {'of teacher':>10} {'int8 flash':>10} {'teacher':>8} {'float':>7} "
          f"{'litert':>7} {'onnx':>7} {'micro':>7} {'gap':>6}")
    import contextlib
    import io
    import json

    for spec in ("mlp:hidden=32", "dscnn:channels=12,blocks=2", "mobilenet:alpha=0.25,blocks=2"):
        o = os.path.join(out, spec.split(":")[0])
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["distill", str(DIGITS), "--student", spec, "--data", unl, "--epochs", str(epochs),
                         "--eval", str(HELD), "-o", o])
        if code:
            print(f"{spec:<32} failed (exit {code})")
            continue
        r = json.load(open(os.path.join(o, "distill_report.json")))
        q = r["quality"]

        def v(k: str) -> str:
            return f"{q[k]['value']:.2f}" if q.get(k) else "n/a"

        worst = min(q[f"student_int8_{b}"]["value"] for b in ("litert", "onnx", "micro") if q.get(f"student_int8_{b}"))
        print(f"{spec:<32} {r['student_params']:>7,} {r['param_ratio']:>9.0%} {r['student_int8_tflite_bytes']:>10,} "
              f"{v('teacher'):>8} {v('student_float'):>7} {v('student_int8_litert'):>7} {v('student_int8_onnx'):>7} "
              f"{v('student_int8_micro'):>7} {q['teacher']['value'] - worst:>6.2f}")
    print("gap: teacher accuracy minus the worst int8 backend's, in points.")


def main(argv: list[str]) -> int:
    """Print the three tables."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300, help="latency runs per model (default 300)")
    ap.add_argument("--epochs", type=int, default=40, help="distillation epochs (default 40)")
    ap.add_argument("--skip-distill", action="store_true", help="skip the distillation table")
    args = ap.parse_args(argv)
    from edge_runtime.reference_data import shared_dir

    with tempfile.TemporaryDirectory() as out:
        if shared_dir() is not None:
            unstructured(out, args.runs)
        else:
            print("1. skipped: ../shared/models is absent")
        structured(out, args.runs)
        if not args.skip_distill:
            distillation(out, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

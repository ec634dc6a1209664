"""The ``onnx`` wheel's own backend-test models, converted by us and by ONNX Runtime's ``quantize_static``.

``python -m benchmarks.onnx_backend_models [--models a,b] [--folders light,simple] [--markdown] [--json]``

A breadth check on models nobody on this project shaped: every model the installed ``onnx`` package ships
under ``onnx/backend/test/data/`` in ``light/`` (alexnet, densenet121, inception v1/v2, resnet50,
shufflenet, squeezenet, vgg19, zfnet512: real architectures at old opsets, weights made by
``ConstantOfShape``), ``pytorch-converted/`` and ``pytorch-operator/`` (single-layer torch exports) and
``simple/``. A model is skipped (and the table says why) when an input that is not an initializer is not
float, or it has no reference data.

Reference data: ``test_data_set_0/input_*.pb`` and ``output_*.pb`` next to ``model.onnx``; for ``light/``
the input is what onnx's backend runner feeds (``arange(n).reshape(shape) / n``) and the output is the
shipped ``light_*_output_0.pb``. Calibration (the same for us and for ORT): the reference input, four copies
``x * (1 + 0.1 * noise)`` and three draws of Gaussian noise with the input's mean and standard deviation
(noise is standard normal, seed 0; a model with several inputs gets this per input, seed = the input's
index, given to us as ``{input name: samples}`` and to ORT through a multi-input
``CalibrationDataReader``). Every input keeps the reference input's shape (``input_shapes``), so a
fixed batch above 1 stays. Per model: ``convert_model`` (what ``edge-convert convert`` runs, profile
rpi4-4gb) or its one-line error; the SQNR of our int8 .tflite on LiteRT against the reference output; the
SQNR of ORT ``quantize_static`` (QDQ, per-channel int8, MinMax; per tensor where per channel fails) of the
same model on the same calibration, run by onnxruntime; and whether micro equals tflite-micro
(``np.array_equal``) on the reference input. Most ``pytorch-*`` models are opset 6: the converter upgrades
them itself (``converters/importers/prepare.py``); ONNX Runtime runs opset 7 and up only, so its
``quantize_static`` is given such a model as the converter prepared it (upgraded to opset 13; the ``opset``
column shows ``6->13 for ORT``). Each model runs in its own process, stopped after ``--timeout`` seconds
(default 180): such a model is reported as skipped, with its time. A step that kills its process (tflite-micro aborts on some int8 SOFTMAX
inputs; ORT's quantizer on some graphs) is reported as ``crashed the process`` in that column; micro runs
first, and a model micro refuses is not given to tflite-micro.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

PROFILE = "rpi4-4gb"
FOLDERS = ("light", "pytorch-converted", "pytorch-operator", "simple")
TIMEOUT = 180.0
ORT_MIN_OPSET = 7  # onnxruntime runs no older model: below it, ORT is given the model as the converter prepared it


def data_root() -> Path:
    """``onnx/backend/test/data`` of the installed onnx package."""
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def find_models(folders: tuple[str, ...] | list[str] = FOLDERS) -> list[tuple[str, str, Path]]:
    """``(label, folder, model path)`` of every model in ``folders``, sorted by folder then name."""
    root = data_root()
    found = []
    for folder in folders:
        d = root / folder
        if not d.is_dir():
            continue
        if folder == "light":
            found += [(p.stem, folder, p) for p in sorted(d.glob("light_*.onnx"))]
        else:
            found += [(p.name, folder, p / "model.onnx") for p in sorted(d.iterdir()) if (p / "model.onnx").is_file()]
    return found


def _light_input(vi: Any) -> np.ndarray:
    """What onnx's backend runner feeds a ``light/`` model: ``arange(n).reshape(shape) / n`` (float32)."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def reference(path: Path, folder: str) -> tuple[list[np.ndarray], list[np.ndarray], Optional[str]]:
    """``(inputs, outputs, skip reason)``: the reference data of one model, or why it is skipped."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    real = [vi for vi in model.graph.input if vi.name not in inits]
    if not real:
        return [], [], "no graph input"
    for vi in real:
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            return [], [], f"input {vi.name} is a {kind.replace('_type', '')}, not a float tensor"
        et = vi.type.tensor_type.elem_type
        if et not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            return [], [], f"input {vi.name} is {onnx.TensorProto.DataType.Name(et).lower()}, not float"
    if folder == "light":
        out = path.with_name(f"{path.stem}_output_0.pb")
        if not out.is_file():
            return [], [], "no reference output"
        return [_light_input(vi) for vi in real], [numpy_helper.to_array(onnx.load_tensor(str(out)))], None
    ds = path.parent / "test_data_set_0"
    ins = sorted(ds.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    outs = sorted(ds.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    if not ins or not outs:
        return [], [], "no test_data_set_0"
    try:
        xs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in ins]
        ys = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in outs]
    except Exception as exc:  # a sequence / optional output is not a TensorProto
        return [], [], f"reference data is not plain tensors ({type(exc).__name__})"
    return xs, ys, None


def calibration(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The reference input, 4 copies ``x * (1 + 0.1 * noise)`` and 3 draws of noise with ``x``'s mean and
    std, stacked (float32, ``[8, *x.shape]``)."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float32)
    std = float(x.std()) or 1.0
    calib = [x] + [x * (1 + 0.1 * rng.standard_normal(x.shape)) for _ in range(4)]
    calib += [float(x.mean()) + std * rng.standard_normal(x.shape) for _ in range(3)]
    return np.stack(calib).astype(np.float32)


def _sqnr(ref: np.ndarray, got: np.ndarray, nhwc: bool = False) -> float:
    """SQNR (dB, :func:`converters.quality.metrics.sqnr_db`) of ``got`` against ``ref``; with ``nhwc`` a 4-D
    ``got`` (every 4-D activation of our graph is NHWC) is transposed back to NCHW; any other same-size shape
    is reshaped."""
    from converters.quality.metrics import sqnr_db

    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    if nhwc and g.ndim == 4 == r.ndim and (g.shape[0], g.shape[3], g.shape[1], g.shape[2]) == r.shape:
        g = g.transpose(0, 3, 1, 2)  # 4-D activations are NHWC in our graph, even when C == H == W
    if g.shape != r.shape:
        if g.size == r.size:
            g = g.reshape(r.shape)
        else:
            raise ValueError(f"output shape {g.shape} does not match the reference {r.shape}")
    return sqnr_db(float(np.sum(r ** 2)), float(np.sum((g - r) ** 2)))


def _ort_session(path: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_quantized(path: str, calib: dict[str, np.ndarray], x: dict[str, np.ndarray], work: str,
                  ) -> tuple[list[np.ndarray], str]:
    """ORT ``quantize_static`` (QDQ, int8, MinMax, per channel; per tensor when that fails) of ``path`` on
    ``calib`` (``{input name: [samples, ...]}``, read by a multi-input ``CalibrationDataReader``); its outputs
    on ``x`` (``{input name: array}``) and a note."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    names = list(calib)
    count = len(calib[names[0]])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(range(count))

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            i = next(self.it, None)
            return None if i is None else {n: calib[n][i] for n in names}

    out, note = os.path.join(work, "ort_qdq.onnx"), ""
    try:
        quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    except ValueError:
        quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
        note = "per-tensor"
    return _ort_session(out).run(None, x), note


def micro_equal(tflite_path: str, graph: Any, xs: list[np.ndarray]) -> str:
    """``equal`` when micro and tflite-micro give identical outputs on ``xs`` (one array per graph input, in
    ``graph.inputs`` order, source layout; ``np.array_equal``)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return "n/a (no tflite-micro)"
    import edge_runtime
    from converters.report import TFLiteRunner
    from edge_runtime.formats.tflite import TFLiteModel

    from converters.ir import ir_feed

    lite = TFLiteRunner(tflite_path)
    qs = [TFLiteRunner._q(v, d).reshape(d["shape"]) for v, d in zip(ir_feed(graph, tuple(xs)).values(), lite.inps)]
    try:  # micro first: a model it refuses is not given to tflite-micro (which may abort on it)
        ours = [np.asarray(o) for o in edge_runtime.load(tflite_path, backend="micro").run(qs)]
    except Exception as exc:
        return f"fails: micro: {type(exc).__name__}: {' '.join(str(exc).split())}".replace(tflite_path + ": ", "")
    try:
        model = TFLiteModel.open(tflite_path)  # every activation twice over plus 1 MiB (the default is too small)
        arena = 2 * sum(t.nbytes for sg in model.subgraphs for t in sg.tensors if t.data is None) + (1 << 20)
        tflm = runtime.Interpreter.from_file(tflite_path, arena_size=arena)
        for k, q in enumerate(qs):
            tflm.set_input(q, k)
        tflm.invoke()
        if not all(np.array_equal(o, tflm.get_output(k)) for k, o in enumerate(ours)):
            return "differs"
    except Exception as exc:  # a missing kernel is a result too
        return f"fails: tflite-micro: {type(exc).__name__}: {' '.join(str(exc).split())[:100]}"
    return "equal"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def measure(label: str, folder: str, path: Path, emit: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
    """One row: skip reason, or conversion (ours and ORT's), SQNR against the reference output, micro check.
    ``emit`` is given the row so far before each step that may abort the process (tflite-micro, ORT)."""
    emit = emit or (lambda row: None)
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    row: dict[str, Any] = {"model": label, "folder": folder, "path": str(path),
                           "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                                        default=0),
                           "ops": sorted({n.op_type for n in proto.graph.node})}
    xs, ys, skip = reference(path, folder)
    inits = {i.name for i in proto.graph.initializer}
    names = [vi.name for vi in proto.graph.input if vi.name not in inits]
    if skip:
        row["skipped"] = skip
        return row
    row["inputs"] = [list(x.shape) for x in xs]
    shapes = dict(zip(names, (tuple(x.shape) for x in xs)))  # keep a fixed batch > 1 (the default makes it 1)
    ref_in = {n: x.astype(np.float32) for n, x in zip(names, xs)}
    # one input: its stack of samples; several: {input name: stack}, each input's own noise (seed = its index)
    calib_in = {n: calibration(x, seed=k) for k, (n, x) in enumerate(ref_in.items())}
    calib: Any = calib_in[names[0]] if len(names) == 1 else calib_in
    from converters.pipeline import convert_model

    with tempfile.TemporaryDirectory() as work:
        src = str(path)
        t = time.perf_counter()
        res = None
        try:
            res = convert_model(src, PROFILE, calib, os.path.join(work, "ours"), plot=False, report_samples=8,
                                input_shapes=shapes)
            row["ok"] = True
        except Exception as exc:
            row["ok"] = False
            row["error"] = _one_line(exc).replace(src + ": ", "").replace(str(path) + ": ", "")
            row["error_type"] = type(exc).__name__
            row["error_lines"] = len(str(exc).strip().splitlines())
        row["convert_s"] = round(time.perf_counter() - t, 2)
        if res is not None:
            try:
                from converters.report import TFLiteRunner

                from converters.ir import ir_feed

                feed = ir_feed(res.graph, _in_graph_order(res.graph, ref_in))
                got = TFLiteRunner(res.tflite_path).run(list(feed.values()))
                row["ours_db"] = [round(_sqnr(r, g, nhwc=True), 2) for r, g in zip(ys, got)]
            except Exception as exc:
                row["ours_error"] = _one_line(exc)[:200]
            row["micro"] = "crashed the process"
            emit(row)
            row["micro"] = micro_equal(res.tflite_path, res.graph, list(_in_graph_order(res.graph, ref_in)))
            emit(row)
        row["ort_error"] = "crashed the process"
        emit(row)
        del row["ort_error"]
        try:
            ort_src = str(path)
            if row["opset"] < ORT_MIN_OPSET:
                ort_src = prepared(path, work, shapes)
                row["opset"] = f"{row['opset']}->13 for ORT"
            outs, note = ort_quantized(ort_src, calib_in, ref_in, work)
            row["ort_db"] = [round(_sqnr(r, g), 2) for r, g in zip(ys, outs)]
            if note:
                row["ort_note"] = note
        except Exception as exc:
            row["ort_error"] = _one_line(exc)[:200]
    return row


def _in_graph_order(graph: Any, src: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The reference inputs (by ONNX input name) ordered as the imported graph's inputs."""
    return tuple(src[n] for n in graph.inputs) if all(n in src for n in graph.inputs) else tuple(src.values())


def prepared(path: Path, work: str, shapes: dict[str, tuple[int, ...]]) -> str:
    """``path`` as the converter prepares it (:func:`converters.importers.prepare.prepare_onnx`: upgraded to
    opset 13, static shapes, folded), saved in ``work``: what ORT is given for a model older than it runs."""
    import onnx

    from converters.importers.prepare import prepare_onnx

    out = os.path.join(work, "prepared.onnx")
    onnx.save(prepare_onnx(path, shapes), out)
    return out


def run_one(label: str, folder: str, path: Path, timeout: float) -> dict[str, Any]:
    """:func:`measure` in a child process, stopped after ``timeout`` seconds; a crash is a row too."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "benchmarks.onnx_backend_models", "--_one", f"{folder}/{label}"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        return {"model": label, "folder": folder, "skipped": f"takes > {timeout:.0f} s (stopped)",
                "wall_s": round(time.perf_counter() - t, 1)}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    tail = " | ".join(p.stderr.strip().splitlines()[-3:])[:300]
    if lines:  # the last row printed; a step marked "crashed the process" is where it died
        row = json.loads(lines[-1])
        if p.returncode:
            row["crash"] = f"process exited {p.returncode}: {tail}"
    else:
        row = {"model": label, "folder": folder, "ok": False, "error_type": "crash",
               "error": f"process exited {p.returncode}: {tail}"}
    row["wall_s"] = round(time.perf_counter() - t, 1)
    return row


# ---------------------------------------------------------------- table
HEAD = ["folder", "model", "opset", "result", "convert s", "ours dB", "ORT dB", "micro == TFLM", "skipped / error"]


def _db(v: Optional[list[float]]) -> str:
    return "-" if not v else ", ".join(f"{d:.1f}" for d in v)


def _cells(r: dict[str, Any]) -> list[str]:
    ort = _db(r.get("ort_db")) + (" (per-tensor)" if r.get("ort_note") else "") if "ort_db" in r else \
        ({"crashed the process": "crashed"}.get(r["ort_error"], "fails")
         if "ort_error" in r else "-")
    if "skipped" in r:
        return [r["folder"], r["model"], str(r.get("opset", "-")), "skipped", "-", "-", "-", "-", r["skipped"]]
    if not r["ok"]:
        return [r["folder"], r["model"], str(r.get("opset", "-")), "refused", f"{r.get('convert_s', 0):.1f}", "-",
                ort, "-", r["error"][:220]]
    return [r["folder"], r["model"], str(r["opset"]), "converted", f"{r['convert_s']:.1f}",
            _db(r.get("ours_db")) if "ours_db" in r else "fails", ort, r.get("micro", "-"),
            r.get("ours_error", "") or r.get("crash", "")[:120]]


def table(rows: list[dict[str, Any]], markdown: bool) -> str:
    """The rows as a Markdown or aligned text table."""
    cells = [HEAD] + [_cells(r) for r in rows]
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in cells[1:]]
        return "\n".join(["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
                         + ["| " + " | ".join(c) + " |" for c in esc])
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEAD))).rstrip() for c in cells)


#: The project's one-line refusals: a model it does not support, a bad setting, calibration data it refuses
#: (the reference inputs of two models hold NaN or produce it).
CLEAN_ERRORS = ("UnsupportedModelError", "ConfigError", "CalibrationDataError")


def _clean_refusal(row: dict[str, Any]) -> bool:
    return row.get("error_type") in CLEAN_ERRORS and row.get("error_lines", 1) <= 1


def summary(rows: list[dict[str, Any]]) -> str:
    """``converted a, refused b, skipped c of n`` plus the micro mismatches and non-clean refusals."""
    ok = [r for r in rows if r.get("ok")]
    bad = [r for r in rows if "skipped" not in r and not r.get("ok")]
    skipped = [r for r in rows if "skipped" in r]
    unclean = [r["model"] for r in bad if not _clean_refusal(r)]
    differs = [r["model"] for r in ok if r.get("micro") != "equal"]
    lines = [f"converted {len(ok)}, refused {len(bad)}, skipped {len(skipped)} of {len(rows)} onnx backend-test models"]
    if unclean:
        lines.append(f"refusals that are not one clean line: {', '.join(unclean)}")
    if differs:
        lines.append(f"micro != tflite-micro (or fails): {', '.join(differs)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Measure the models and print the table; exit 1 when micro differs from tflite-micro on a converted
    model or a refusal is anything but one line of :data:`CLEAN_ERRORS`."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.onnx_backend_models", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m benchmarks.onnx_backend_models --markdown\n"
               "  python -m benchmarks.onnx_backend_models --folders light --timeout 300\n"
               "  python -m benchmarks.onnx_backend_models --models test_Conv2d,test_PixelShuffle\n"
               "  python -m benchmarks.onnx_backend_models --json > onnx_backend.json")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--folders", default=",".join(FOLDERS),
                    help=f"comma-separated folders (default {','.join(FOLDERS)})")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per model (default {TIMEOUT:.0f})")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--_one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._one:
        folder, label = args._one.split("/", 1)
        hit = [m for m in find_models((folder,)) if m[0] == label]
        print(json.dumps(measure(*hit[0], emit=lambda row: print(json.dumps(row), flush=True))))
        return 0
    folders = [f for f in args.folders.split(",") if f]
    if any(f not in FOLDERS for f in folders) or args.timeout <= 0:
        ap.error(f"unknown folder in {args.folders}; choose from {', '.join(FOLDERS)}" if args.timeout > 0
                 else "--timeout must be positive")
    models = find_models(folders)
    if not models:
        ap.error(f"no models under {data_root()} (is the onnx package installed with its test data?)")
    want = [s for s in args.models.split(",") if s]
    unknown = [s for s in want if s not in {m[0] for m in models}]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; see {data_root()}")
    rows = []
    for label, folder, path in models:
        if want and label not in want:
            continue
        rows.append(run_one(label, folder, path, args.timeout))
        r = rows[-1]
        state = "skipped" if "skipped" in r else ("converted" if r.get("ok") else "refused")
        print(f"  {folder}/{label}: {state} ({r['wall_s']} s)", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(table(rows, args.markdown))
        print("\n" + summary(rows))
    bad = [r for r in rows if (r.get("ok") and r.get("micro") != "equal")
           or ("skipped" not in r and not r.get("ok") and not _clean_refusal(r))]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

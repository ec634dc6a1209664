"""Converter quality and speed: every acceptance model x every calibration method, one table.

``python -m benchmarks.convert_quality [--methods mse,minmax,percentile] [--models kws,ad01,vww,resnet,digits]
[--fc per-channel|per-tensor|both] [--bias-correction on|off|both]``

For each model and method: the wall time of ``convert_model`` (import, calibration, both writers,
sizing and report), then the quality metric measured side by side with TensorFlow's own int8 model
where one exists, all in LiteRT's default configuration:

- kws: top-1 on kws01 inputs 100..999 (calibration: the first 100, dequantized (q - 83) x 0.584703);
- ad01: mean anomaly score over the 196 windows (calibration: every other window); fp32 = 9.7071;
- vww, resnet: top-1 agreement with the float model and mean |int8 - float| output error on 200
  structured synthetic images (:func:`converters.calibration_data.synthetic_images`, calibration on
  100 others);
- digits: held-out accuracy of the int8 TFLite and int8 ONNX against the float ONNX;
- digits-ort: output SQNR of ours against ONNX Runtime's ``quantize_static`` (QDQ, per-channel,
  same calibration data), on the held-out set.

Every row also gives the output SQNR of our int8 model against the float model on the same inputs.
``--fc`` and ``--bias-correction`` compare quantization options (default: the converter's defaults).
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.calibration_data import synthetic_images
from converters.pipeline import convert_model
from converters.quality.metrics import sqnr_db
from converters.report import TFLiteRunner
from edge_runtime import reference_data as rd

ROOT = Path(__file__).resolve().parents[1]


def _float_outputs(path: str, xs: np.ndarray) -> np.ndarray:
    return TFLiteRunner(path).run_batch(xs)


def _quant_outputs(path: str, xs: np.ndarray) -> np.ndarray:
    return TFLiteRunner(path).run_batch(xs, quantized=True)


def _sqnr(ref: np.ndarray, got: np.ndarray) -> str:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return f"SQNR {sqnr_db(float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2))):.2f} dB"


def bench_kws(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """KWS: top-1, agreement and output error against TF int8 and float."""
    x, y, _ = rd.load_kws01()
    xf = ((x.astype(np.float32) - rd.KWS_INPUT_ZERO_POINT) * np.float32(rd.KWS_INPUT_SCALE)).astype(np.float32)
    t = time.perf_counter()
    res = convert_model(rd.mlperf_model("kws_ref_model_float32.tflite"), "rpi4-4gb", xf[:100], out, method=method,
                        **opts)
    dt = time.perf_counter() - t
    o = _float_outputs(res.tflite_path, xf[100:])
    tq = _quant_outputs(str(rd.mlperf_model("kws_ref_model.tflite")), x[100:])
    t_out = (tq.astype(np.float32) + 128) / 256.0  # TF's int8 softmax output (1/256, -128)
    f = _float_outputs(str(rd.mlperf_model("kws_ref_model_float32.tflite")), xf[100:])
    yy = y[100:]
    ours = (f"top-1 {np.mean(o.argmax(1) == yy):.4f}, agree {np.mean(o.argmax(1) == f.argmax(1)):.3f}, "
            f"MAE {np.abs(o - f).mean():.4f}, {_sqnr(f, o)}")
    ref = (f"TF int8: top-1 {np.mean(tq.argmax(1) == yy):.4f}, agree {np.mean(tq.argmax(1) == f.argmax(1)):.3f}, "
           f"MAE {np.abs(t_out - f).mean():.4f}; float top-1 {np.mean(f.argmax(1) == yy):.4f} (900 inputs)")
    return dt, ours, ref


def bench_ad01(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """AD: mean anomaly score against fp32 and TF int8."""
    w = rd.load_ad01_windows()
    t = time.perf_counter()
    res = convert_model(rd.mlperf_model("ad01_fp32.tflite"), "rpi4-4gb", w[::2], out, method=method, **opts)
    dt = time.perf_counter() - t
    o = _float_outputs(res.tflite_path, w)
    f = _float_outputs(str(rd.mlperf_model("ad01_fp32.tflite")), w)
    ours = float(np.mean(np.mean((w.reshape(len(w), -1) - o) ** 2, axis=1)))
    r = TFLiteRunner(str(rd.mlperf_model("ad01_int8.tflite")))
    tf = float(np.mean([np.mean((x - r.run(x)[0]) ** 2) for x in w]))
    return (dt, f"score {ours:.4f} ({100 * (ours / 9.7071 - 1):+.2f}%), {_sqnr(f, o)}",
            f"TF int8 {tf:.4f} ({100 * (tf / 9.7071 - 1):+.2f}%), fp32 9.7071")


def _bench_image(name: str, tf_name: str, scale: float, hw: int, method: str, out: str,
                 opts: dict[str, Any]) -> tuple[float, str, str]:
    calib = synthetic_images(100, hw, hw, seed=0) * scale
    test = synthetic_images(200, hw, hw, seed=1) * scale
    t = time.perf_counter()
    res = convert_model(rd.mlperf_model(name), "rpi4-4gb", calib, out, method=method, **opts)
    dt = time.perf_counter() - t
    f = _float_outputs(str(rd.mlperf_model(name)), test)
    ours = _float_outputs(res.tflite_path, test)
    r = TFLiteRunner(str(rd.mlperf_model(tf_name)))
    tf = np.stack([r.run(x[None])[0].reshape(-1) for x in test])
    a_o, a_t = np.mean(ours.argmax(1) == f.argmax(1)), np.mean(tf.argmax(1) == f.argmax(1))
    return (dt, f"agree {a_o:.3f}, MAE {np.abs(ours - f).mean():.4f}, {_sqnr(f, ours)}",
            f"TF int8: agree {a_t:.3f}, MAE {np.abs(tf - f).mean():.4f}; "
            f"ours vs TF {np.mean(ours.argmax(1) == tf.argmax(1)):.3f}")


def bench_vww(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """VWW on synthetic images."""
    return _bench_image("vww_96_float.tflite", "vww_96_int8.tflite", 1.0, 96, method, out, opts)


def bench_resnet(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """ResNet-8 on synthetic images (0..255)."""
    return _bench_image("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite", 255.0, 32, method, out, opts)


DIGITS = ROOT / "converters" / "data"


def _convert_digits(method: str, out: str, opts: dict[str, Any]) -> tuple[float, Any, Any]:
    """Convert the shipped digits CNN with its held-out set: (seconds, result, held-out arrays)."""
    z = np.load(ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz")
    t = time.perf_counter()
    res = convert_model(DIGITS / "digits_cnn.onnx", "rpi4-4gb", DIGITS / "digits_calib.npz", out, method=method,
                        held_out=(z["x"], z["y"]), **opts)
    return time.perf_counter() - t, res, z


def bench_digits(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """Digits CNN: held-out accuracy of both int8 models."""
    dt, res, _ = _convert_digits(method, out, opts)
    h = res.report["held_out"]
    return (dt, (f"tflite {h['tflite']['accuracy']:.4f}, onnx {h['onnx']['accuracy']:.4f}, "
                 f"SQNR {h['tflite']['output_sqnr_db']:.2f} dB"),
            f"float {h['float_accuracy']:.4f} ({h['samples']} held-out)")


def ort_quantize_static(model: Path, calib: np.ndarray, out: str) -> str:
    """ONNX Runtime's own int8 QDQ model (per-channel weights, MinMax calibration on ``calib``)."""
    import onnxruntime as ort

    from benchmarks._ort_quantize import quantize_static_qdq

    name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    path = str(Path(out) / "ort_int8.onnx")
    logging.getLogger().setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice, once per call
    quantize_static_qdq(str(model), path, name, [x[None].astype(np.float32) for x in calib])
    return path


def bench_digits_vs_ort(method: str, out: str, opts: dict[str, Any]) -> tuple[float, str, str]:
    """Digits CNN: our int8 ONNX and TFLite against ORT's quantize_static, same calibration data."""
    import onnxruntime as ort

    dt, res, z = _convert_digits(method, out, opts)
    calib = np.load(DIGITS / "digits_calib.npz")["x"]
    paths = {"float": str(DIGITS / "digits_cnn.onnx"),
             "ort": ort_quantize_static(DIGITS / "digits_cnn.onnx", calib, out)}
    sess = {k: ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    outs = {k: np.concatenate([s.run(None, {s.get_inputs()[0].name: x[None]})[0] for x in z["x"]])
            for k, s in sess.items()}
    h = res.report["held_out"]
    ours = f"SQNR tflite {h['tflite']['output_sqnr_db']:.2f} dB, onnx {h['onnx']['output_sqnr_db']:.2f} dB"
    acc = float(np.mean(outs["ort"].argmax(1) == z["y"]))
    return dt, ours, (f"ORT quantize_static (QDQ, per-channel, minmax): {_sqnr(outs['float'], outs['ort'])}, "
                      f"accuracy {acc:.4f}")


BENCHES: dict[str, Callable[[str, str, dict[str, Any]], tuple[float, str, str]]] = {
    "kws": bench_kws, "ad01": bench_ad01, "vww": bench_vww, "resnet": bench_resnet, "digits": bench_digits,
    "digits-ort": bench_digits_vs_ort}


def main(argv: list[str]) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.convert_quality", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="mse,minmax,percentile")
    ap.add_argument("--models", default=",".join(BENCHES))
    ap.add_argument("--fc", choices=["default", "per-channel", "per-tensor", "both"], default="default",
                    help="FULLY_CONNECTED weights (default: the profile's, per channel on rpi4-4gb)")
    ap.add_argument("--bias-correction", choices=["default", "on", "off", "both"], default="default")
    args = ap.parse_args(argv)
    fcs = {"default": [None], "per-channel": [True], "per-tensor": [False], "both": [False, True]}[args.fc]
    bcs = {"default": [None], "on": [True], "off": [False], "both": [False, True]}[args.bias_correction]
    variants = []
    for fc in fcs:
        for bc in bcs:
            opts = {k: v for k, v in (("fc_per_channel", fc), ("bias_correction", bc)) if v is not None}
            names = {"fc_per_channel": ("fc/tensor", "fc/ch"), "bias_correction": ("no-bc", "bc")}
            label = ",".join(names[k][int(v)] for k, v in opts.items())
            variants.append((opts, label))
    if rd.shared_dir() is None:
        print("../shared/models is absent: only the digits model can be measured", file=sys.stderr)
    rows = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            if not model.startswith("digits") and rd.shared_dir() is None:
                continue
            for opts, label in variants:
                with tempfile.TemporaryDirectory() as out:
                    dt, ours, ref = BENCHES[model](method, out, opts)
                name = f"{method} {label}".strip()
                rows.append((model, name, f"{dt:.2f}", ours, ref))
                print(f"  {model:7s} {name:24s} done", file=sys.stderr, flush=True)
    head = ("model", "method", "convert s", "ours (int8 TFLite, LiteRT)", "reference")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(5)]
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Which quantization techniques help: output SQNR per model x technique, with ORT side by side.

``python -m benchmarks.quant_techniques [--models kws,ad01,...] [--techniques plain,bc,cle,...] [--markdown]``

Every model is converted by ``convert_model`` (profile rpi4-4gb, calibration method mse) once per
technique, and our int8 .tflite (LiteRT) is compared with the float model on held-out inputs:
output SQNR in dB, the minimum over outputs. Techniques (combinations joined by ``+``):

- ``plain``: neither bias correction nor equalization nor AdaRound;
- ``bc``: bias correction (:mod:`converters.quality.bias_correction`);
- ``cle``: cross-layer equalization of the float graph (:mod:`converters.quality.equalization`);
- ``ada``: AdaRound-style rounding on the calibration data (:mod:`converters.quality.adaround`).

ONNX models also get ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, int8
activations, MinMax, the same calibration data) in the same run; TFLite models have no ORT column.
Models and data:

- kws (MLPerf Tiny DS-CNN): calibration on kws01 inputs 0..99, held-out 100..999; extra: top-1;
- ad01 (FC autoencoder): calibration on every other of the 196 windows, held-out all; extra: the
  anomaly score (mean window MSE) against fp32 9.7071;
- vww (MobileNetV1 96x96), resnet (ResNet-8): 100 / 200 structured synthetic images;
- digits (``converters/data/digits_cnn.onnx``): its calibration set and 450 held-out digits; extra:
  accuracy;
- zoo models (``tests/fixtures/zoo``, random weights with BatchNorm statistics; opset 13): 32
  calibration and 32 held-out inputs from the input distribution.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the zoo lives in tests/fixtures/zoo

TECHNIQUES = ("plain", "bc", "cle", "cle+bc", "bc+ada", "cle+bc+ada")
MLPERF = ("kws", "ad01", "vww", "resnet")
ZOO = ("mobilenet_v2", "mobilenet_v3", "efficientnet_lite", "shufflenet", "regnet", "resnet_zoo", "ghostnet")
ZOO_CALIB, ZOO_HELD = 32, 32


@dataclass
class Case:
    """One model: where it is, its data (source layout) and how to judge an int8 version."""

    name: str
    model: str
    calib: np.ndarray
    held: np.ndarray
    reference: list[np.ndarray]
    input_shapes: Optional[dict[str, tuple[int, ...]]] = None
    ort: Optional[Callable[[str], list[np.ndarray]]] = None  # out_dir -> ORT's outputs on ``held``
    extra: Optional[Callable[[list[np.ndarray]], str]] = None  # our outputs -> an extra figure


def _tflite_outputs(path: str, xs: np.ndarray, nchw: bool = False) -> list[np.ndarray]:
    from converters.report import TFLiteRunner

    r = TFLiteRunner(path)
    per = [r.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nchw and x.ndim == 4 else x) for x in xs]
    return [np.stack([p[k] for p in per]) for k in range(len(per[0]))]


def _case_kws() -> Case:
    from edge_runtime import reference_data as rd

    x, y, _ = rd.load_kws01()
    xf = ((x.astype(np.float32) - rd.KWS_INPUT_ZERO_POINT) * np.float32(rd.KWS_INPUT_SCALE)).astype(np.float32)
    path = str(rd.mlperf_model("kws_ref_model_float32.tflite"))
    yy = y[100:]
    return Case("kws", path, xf[:100], xf[100:], _tflite_outputs(path, xf[100:]),
                extra=lambda o: f"top-1 {np.mean(o[0].reshape(len(yy), -1).argmax(1) == yy):.4f}")


def _case_ad01() -> Case:
    from edge_runtime import reference_data as rd

    w = rd.load_ad01_windows()
    path = str(rd.mlperf_model("ad01_fp32.tflite"))

    def score(o: list[np.ndarray]) -> str:
        s = float(np.mean(np.mean((w.reshape(len(w), -1) - o[0].reshape(len(w), -1)) ** 2, axis=1)))
        return f"score {s:.4f} ({100 * (s / 9.7071 - 1):+.2f}%)"

    return Case("ad01", path, w[::2], w, _tflite_outputs(path, w), extra=score)


def _case_image(name: str, file: str, hw: int, scale: float) -> Case:
    from converters.calibration_data import synthetic_images
    from edge_runtime import reference_data as rd

    calib = synthetic_images(100, hw, hw, seed=0) * scale
    test = synthetic_images(200, hw, hw, seed=1) * scale
    path = str(rd.mlperf_model(file))
    return Case(name, path, calib, test, _tflite_outputs(path, test))


def _case_digits() -> Case:
    from benchmarks.convert_quality import ort_quantize_static
    from fixtures.zoo import harness

    data = ROOT / "converters" / "data"
    z = np.load(ROOT / "tests" / "fixtures" / "digits" / "digits_heldout.npz")
    held = z["x"].astype(np.float32)
    calib = np.load(data / "digits_calib.npz")["x"].astype(np.float32)
    model = data / "digits_cnn.onnx"
    ref = harness.float_outputs(str(model), held[:, None])

    def ort(out: str) -> list[np.ndarray]:
        return harness.float_outputs(ort_quantize_static(model, calib, out), held[:, None])

    return Case("digits", str(model), calib, held, ref, ort=ort,
                extra=lambda o: f"accuracy {np.mean(o[0].reshape(len(held), -1).argmax(1) == z['y']):.4f}")


def _case_zoo(name: str, work: str) -> Case:
    from fixtures.zoo import MODELS, export_onnx, harness, sample_inputs

    zoo_name = "resnet" if name == "resnet_zoo" else name
    d = os.path.join(work, zoo_name)
    os.makedirs(d, exist_ok=True)
    path = export_onnx(zoo_name, 13, d)
    calib, held = sample_inputs(zoo_name, ZOO_CALIB, seed=1), sample_inputs(zoo_name, ZOO_HELD, seed=2)

    def ort(out: str) -> list[np.ndarray]:
        return harness.float_outputs(harness.ort_quantize_static(path, zoo_name, calib, out), held)

    return Case(name, path, calib, held, harness.float_outputs(path, held), MODELS[zoo_name].input_shapes, ort=ort)


def make_case(name: str, work: str) -> Case:
    """The :class:`Case` called ``name`` (MLPerf Tiny, digits or a zoo model)."""
    if name == "kws":
        return _case_kws()
    if name == "ad01":
        return _case_ad01()
    if name == "vww":
        return _case_image("vww", "vww_96_float.tflite", 96, 1.0)
    if name == "resnet":
        return _case_image("resnet", "pretrainedResnet.tflite", 32, 255.0)
    if name == "digits":
        return _case_digits()
    return _case_zoo(name, work)


def options(technique: str) -> dict[str, bool]:
    """``convert_model`` keyword arguments for a technique name such as ``cle+bc``."""
    parts = set(technique.split("+")) - {"plain"}
    unknown = parts - {"bc", "cle", "ada"}
    if unknown:
        raise ValueError(f"unknown technique part(s) {sorted(unknown)}")
    return {"bias_correction": "bc" in parts, "equalize": "cle" in parts, "adaround": "ada" in parts}


def _sqnr(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    from fixtures.zoo import harness

    return harness.sqnr_db(ref, got)


def measure(case: Case, technique: str, work: str) -> dict[str, Any]:
    """Convert ``case`` with ``technique``; our SQNR, the extra figure and the convert time."""
    from converters.pipeline import convert_model

    out = tempfile.mkdtemp(dir=work)
    t = time.perf_counter()
    res = convert_model(case.model, "rpi4-4gb", case.calib, out, formats=["tflite"], input_shapes=case.input_shapes,
                        report_samples=4, **options(technique))
    dt = time.perf_counter() - t
    g = res.graph
    nchw = g.input_layouts.get(g.inputs[0]) == "NCHW"
    xs = case.held if case.held.ndim > len(g.source_shape(g.inputs[0])) else case.held[:, None]
    got = _tflite_outputs(res.tflite_path, xs.reshape((len(xs),) + g.source_shape(g.inputs[0])), nchw)
    q = res.report["quantization"]
    ada = q.get("adaround") or {}
    return {"db": _sqnr(case.reference, got), "s": dt, "extra": case.extra(got) if case.extra else "",
            "pairs": (q.get("equalization") or {}).get("pairs"), "ada_db": ada.get("reduction_db")}


def main(argv: list[str]) -> int:
    """Print the table of SQNR per model and technique."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quant_techniques", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MLPERF + ("digits",) + ZOO))
    ap.add_argument("--techniques", default=",".join(TECHNIQUES))
    ap.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime's quantize_static column")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    from edge_runtime import reference_data as rd

    techniques = [t for t in args.techniques.split(",") if t]
    for t in techniques:
        options(t)
    rows: list[list[str]] = []
    extras: list[str] = []
    baseline = "bc" if "bc" in techniques else techniques[0]
    wins = {t: 0 for t in techniques}
    losses = {t: 0 for t in techniques}
    with tempfile.TemporaryDirectory() as work:
        for name in (m for m in args.models.split(",") if m):
            if name in MLPERF and rd.shared_dir() is None:
                print(f"  {name}: skipped (../shared/models is absent)", file=sys.stderr)
                continue
            case = make_case(name, work)
            results = {t: measure(case, t, work) for t in techniques}
            ort_db = None
            if case.ort is not None and not args.no_ort:
                ort_db = _sqnr(case.reference, case.ort(tempfile.mkdtemp(dir=work)))
            base = results[baseline]["db"]
            for t in techniques:
                wins[t] += results[t]["db"] > base + 0.05
                losses[t] += results[t]["db"] < base - 0.05
            rows.append([name] + [f"{results[t]['db']:.2f}" for t in techniques]
                        + ["-" if ort_db is None else f"{ort_db:.2f}"])
            for t in techniques:
                r = results[t]
                note = "".join([f" {r['extra']}" if r["extra"] else "",
                                f", {r['pairs']} pairs equalized" if r["pairs"] is not None else "",
                                f", AdaRound layer error {r['ada_db']:+.2f} dB" if r["ada_db"] is not None else ""])
                extras.append(f"{name} {t}: {r['s']:.1f} s{note}")
            print(f"  {name} done", file=sys.stderr, flush=True)
    head = ["model"] + [f"{t} dB" for t in techniques] + ["ORT dB"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()
    for e in extras:
        print(e)
    if len(techniques) > 1:
        print(f"\nagainst {baseline}, models better / worse by more than 0.05 dB: "
              + ", ".join(f"{t} {wins[t]}/{losses[t]}" for t in techniques if t != baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

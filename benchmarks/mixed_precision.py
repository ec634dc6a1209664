"""Mixed precision on the acceptance models: ``--target-sqnr`` and ``--activations int16``, one table.

``python -m benchmarks.mixed_precision [--models kws,ad01,vww,resnet,digits,collapse,zoo] [--profile rpi4-4gb]
[--target 30] [--json]``

Per model and output: the SQNR against float on the calibration samples the search measures (the
first 32) with plain int8 (``precision_policy="int8"``), with the default precision policy (LSTM/GRU
recurrence int16, LayerNorm statistics as float islands on OS profiles; the same as plain int8 on models
without them), with ``--activations int16`` (every op with an int16 kernel in 16x8), and
with ``--target-sqnr`` (layers raised int8 -> int16 -> float island, the last only on profiles with an
OS); then the layers the search changed, what stopped it, flash and arena bytes and the LiteRT host
latency (1 thread, median, interleaved) before and after, the wall time of the conversion, and whether
the int16 and the target models run on micro bit-exactly against tflite-micro (2 calibration inputs).
Calibration data as in ``benchmarks.convert_quality`` (kws: 100 kws01 inputs; ad01: every other
window; vww, resnet: 100 synthetic images; digits: the shipped calibration set; collapse: the test
fixture of ``tests/fixtures/collapse_model.py``, ratio 300; ``zoo``: every static-shape model of the
[IMPORT] zoo, tests/fixtures/zoo, opset 17, 32 inputs of its calibration distribution).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from converters.calibration_data import synthetic_images
from converters.pipeline import convert_model
from edge_runtime import reference_data as rd
from edge_runtime.errors import EdgeRuntimeError

ROOT = Path(__file__).resolve().parents[1]


def _kws() -> tuple[Any, Any]:
    x, _, _ = rd.load_kws01(100)
    xf = ((x.astype(np.float32) - rd.KWS_INPUT_ZERO_POINT) * np.float32(rd.KWS_INPUT_SCALE)).astype(np.float32)
    return rd.mlperf_model("kws_ref_model_float32.tflite"), xf


def _ad01() -> tuple[Any, Any]:
    return rd.mlperf_model("ad01_fp32.tflite"), rd.load_ad01_windows()[::2]


def _vww() -> tuple[Any, Any]:
    return rd.mlperf_model("vww_96_float.tflite"), synthetic_images(100, 96, 96, seed=0)


def _resnet() -> tuple[Any, Any]:
    return rd.mlperf_model("pretrainedResnet.tflite"), synthetic_images(100, 32, 32, seed=0) * 255.0


def _digits() -> tuple[Any, Any]:
    data = ROOT / "converters" / "data"
    return data / "digits_cnn.onnx", data / "digits_calib.npz"


def _collapse() -> tuple[Any, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.collapse_model import build_collapse_model, calibration_data

    path = Path(tempfile.mkdtemp(prefix="collapse_")) / "collapse.onnx"
    return build_collapse_model(path), calibration_data()


MODELS: dict[str, Callable[[], tuple[Any, Any]]] = {"kws": _kws, "ad01": _ad01, "vww": _vww, "resnet": _resnet,
                                                    "digits": _digits, "collapse": _collapse}


def _zoo(name: str) -> Callable[[], tuple[Any, Any]]:
    def load() -> tuple[Any, Any]:
        sys.path.insert(0, str(ROOT / "tests"))
        from fixtures.zoo.export import export_onnx, sample_inputs

        return export_onnx(name, 17, tempfile.mkdtemp(prefix="zoo_")), sample_inputs(name, 32, seed=0)
    return load


def zoo_names() -> list[str]:
    """The [IMPORT] zoo models of tests/fixtures/zoo with static shapes (the benchmark-only large one left out)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.zoo.export import MODELS as ZOO

    return [n for n, m in ZOO.items() if not m.large and not m.dynamic_axes]


def _outputs_db(rep: dict[str, Any]) -> dict[str, float]:
    return {r["name"]: r["sqnr_db"] for r in rep["calibration_outputs"]["outputs"]}


def micro_exact(res: Any, calib: Any) -> str:
    """``exact`` when micro equals tflite-micro (every output, 2 calibration inputs), else the max difference."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.zoo.harness import micro_vs_tflm

    from converters.calibration_data import open_calibration

    g = res.graph
    data = open_calibration(calib, g.source_shape(g.inputs[0]), g.inputs[0], limit=2)
    check = micro_vs_tflm(res, np.stack([x for x in data]))
    if check is None:
        return "n/a (no tflite-micro)"
    return "exact" if check.max_abs_diff == 0 else f"max diff {check.max_abs_diff}"


def run_model(name: str, profile: str, target: float) -> dict[str, Any]:
    """Convert ``name`` four ways (plain int8, the default precision policy, --activations int16,
    --target-sqnr); the table's data."""
    model, calib = MODELS[name]()
    row: dict[str, Any] = {"model": name, "profile": profile}
    with tempfile.TemporaryDirectory() as d:
        base = convert_model(model, profile, calib, Path(d) / "int8", formats=("tflite",), precision_policy="int8")
        row["int8"] = _outputs_db(base.report)
        default = convert_model(model, profile, calib, Path(d) / "default", formats=("tflite",))
        row["default"] = _outputs_db(default.report)
        a16 = convert_model(model, profile, calib, Path(d) / "int16", formats=("tflite",), activations="int16")
        row["int16"] = _outputs_db(a16.report)
        row["kept_int8"] = [r["op"] for r in a16.report["mixed_precision"]["kept_int8"]]
        row["int16_micro"] = micro_exact(a16, calib)
        t = time.perf_counter()
        res = convert_model(model, profile, calib, Path(d) / "target", formats=("tflite",), target_sqnr=target)
        row["convert_s"] = round(time.perf_counter() - t, 2)
        mp = res.report["mixed_precision"]
        row["target"] = _outputs_db(res.report)
        row["search"] = {k: mp[k] for k in ("met", "stopped_by", "measurements", "search_s", "flash_bytes",
                                             "arena_bytes", "host_latency_ms", "sqnr_after_db")}
        row["changed"] = [f"{r['name']} ({r['op']}) -> {r['to']}" for r in mp["changed_layers"]]
        row["target_micro"] = micro_exact(res, calib)
    return row


def table(rows: list[dict[str, Any]], target: float) -> str:
    """The printed table: one line per output, then one line per model with the search's costs."""
    lines = [f"target {target:g} dB; SQNR (dB) vs float on the first 32 calibration samples, LiteRT",
             "model | output | int8 | default | --activations int16 | --target-sqnr | layers changed | stopped by",
             "------+--------+------+---------+---------------------+---------------+----------------+-----------"]
    for r in rows:
        for k, o in enumerate(r["int8"]):
            changed = f"{len(r['changed'])}" if k == 0 else ""
            stop = r["search"]["stopped_by"] if k == 0 else ""
            lines.append(f"{r['model'] if k == 0 else ''} | {o[:24]} | {r['int8'][o]:.2f} | {r['default'][o]:.2f} | "
                         f"{r['int16'][o]:.2f} | "
                         f"{r['target'][o]:.2f} | {changed} | {stop}")
    lines.append("")
    lines.append("model | flash B before -> after | arena B before -> after | host ms before -> after | "
                 "measurements | convert s | micro vs TFLM (int16 / target) | changed layers | "
                 "kept int8 by --activations int16")
    for r in rows:
        s = r["search"]
        lat = s.get("host_latency_ms") or {}
        lines.append(f"{r['model']} | {s['flash_bytes']['before']:,} -> {s['flash_bytes']['after']:,} | "
                     f"{s['arena_bytes']['before']:,} -> {s['arena_bytes']['after']:,} | "
                     f"{lat.get('before')} -> {lat.get('after')} | {s['measurements']} | {r['convert_s']} | "
                     f"{r['int16_micro']} / {r['target_micro']} | "
                     f"{'; '.join(r['changed']) or '-'} | {', '.join(sorted(set(r['kept_int8']))) or '-'}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the benchmark and print the table (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mixed_precision", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}, zoo")
    ap.add_argument("--profile", default="rpi4-4gb", help="device profile (default rpi4-4gb)")
    ap.add_argument("--target", type=float, default=30.0, help="--target-sqnr in dB (default 30)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if "zoo" in names:
        names.remove("zoo")
        for z in zoo_names():
            MODELS[f"zoo:{z}"] = _zoo(z)
            names.append(f"zoo:{z}")
    bad = [m for m in names if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    rows = []
    for n in names:
        if n in ("kws", "ad01", "vww", "resnet") and rd.shared_dir() is None:
            print(f"skipping {n}: ../shared/models is missing", file=sys.stderr)
            continue
        try:
            rows.append(run_model(n, args.profile, args.target))
        except EdgeRuntimeError as exc:  # a model the converter refuses: its one line, not a traceback
            print(f"{n}: {exc}", file=sys.stderr)
            continue
        print(f"done {n}", file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else table(rows, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

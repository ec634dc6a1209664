"""ONNX import breadth and quality: the torch model zoo (tests/fixtures/zoo) at opsets 11, 13 and 17.

``python -m benchmarks.import_zoo [--models a,b] [--opsets 11,13,17,dynamo] [--held-out N] [--markdown]``

The opsets use torch's TorchScript exporter (``dynamo=False``); ``dynamo`` in ``--opsets`` adds an
export with torch's default exporter (``torch.export`` + onnxscript, the default of a plain
``torch.onnx.export`` call since torch 2.9) at its own default opset, shown as ``dynamo/<opset>``.

Per model and opset: the exported ONNX node count, the int8 TFLite op count, the wall time of
``convert_model`` for a Pi profile (rpi4-4gb) in a fresh child process (first-use imports included,
as for a CLI user) and that child's peak RSS,
then output SQNR against the float model (onnxruntime) on ``--held-out`` inputs (default 160) from the
calibration distribution for our int8 .tflite (LiteRT), our QDQ .onnx (onnxruntime) and
``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8, same calibration set), side
by side in one run, and whether micro matches tflite-micro bit for bit on 4 of the inputs. A model
that does not convert shows the one-line refusal instead. ``resnet_224`` (5.06M parameters,
224x224) is the speed yardstick.
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
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the zoo lives in tests/fixtures/zoo

#: calibration inputs, and held-out inputs by default: with 16 held-out inputs the difference between our
#: SQNR and ORT's moved by up to 1.0 dB from one input set to another, so the table uses 160
CALIB, HELD_OUT = 32, 160


def _peak_rss_mb(fallback: float) -> float:
    """This process's peak RSS in MB: VmHWM from /proc (``ru_maxrss`` on Linux keeps the forking parent's
    peak across exec, so it reported the benchmark process's size for small models), else ``fallback``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return fallback


def _child(name: str, onnx_path: str, calib_path: str, held_path: str, out_dir: str) -> dict[str, Any]:
    """Convert in this (child) process; report time, peak RSS and our SQNRs as JSON-ready values."""
    import resource

    from fixtures.zoo import harness

    calib, held = np.load(calib_path), np.load(held_path)
    t = time.perf_counter()
    try:
        res = harness.convert(name, onnx_path, out_dir, calib, report_samples=32)  # the CLI's default
    except Exception as exc:  # the refusal (or a bug) is the result for this row
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    seconds = time.perf_counter() - t
    peak_mb = _peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    ref = harness.float_outputs(onnx_path, held)
    try:
        check = harness.micro_vs_tflm(res, held[:4])
        micro = "n/a" if check is None else ("exact" if check.max_abs_diff == 0 else f"off by {check.max_abs_diff}")
    except Exception as exc:  # a missing micro kernel is a result too
        micro = f"fails: {type(exc).__name__}"
    return {"ok": True, "seconds": seconds, "peak_rss_mb": peak_mb, "int8_ops": sum(res.report["ops"].values()),
            "tflite_db": harness.sqnr_db(ref, harness.tflite_outputs(res, held)),
            "onnx_db": harness.sqnr_db(ref, harness.qdq_outputs(res, held)), "micro": micro}


def _row(name: str, opset: "int | str", work: str, held_out: int = HELD_OUT) -> dict[str, Any]:
    import onnx

    from fixtures.zoo import export_onnx, harness, sample_inputs

    d = os.path.join(work, f"{name}_op{opset}")
    os.makedirs(d)
    dynamo = opset == "dynamo"
    path = export_onnx(name, None if dynamo else int(opset), d, dynamo=dynamo)
    calib, held = sample_inputs(name, CALIB, seed=1), sample_inputs(name, held_out, seed=2)
    np.save(os.path.join(d, "calib.npy"), calib)
    np.save(os.path.join(d, "held.npy"), held)
    proto = onnx.load(path)
    shown = f"dynamo/{proto.opset_import[0].version}" if dynamo else opset
    row: dict[str, Any] = {"model": name, "opset": shown, "onnx_nodes": len(proto.graph.node)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.import_zoo", "--child", name, path,
                           os.path.join(d, "calib.npy"), os.path.join(d, "held.npy"), os.path.join(d, "out")],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    row.update(json.loads(lines[-1]) if lines else
               {"ok": False, "error": f"child failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"})
    try:
        q = harness.ort_quantize_static(path, name, calib, d)
        row["ort_db"] = harness.sqnr_db(harness.float_outputs(path, held), harness.float_outputs(q, held))
    except Exception as exc:
        row["ort_db"] = None
        row.setdefault("error", f"quantize_static: {type(exc).__name__}: {exc}")
    return row


def _cells(r: dict[str, Any]) -> list[str]:
    def db(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    if not r["ok"]:
        return [r["model"], str(r["opset"]), str(r["onnx_nodes"]), "-", "-", "-", "-", "-", db(r.get("ort_db")), "-",
                "-", r["error"][:110]]
    delta = None if r.get("ort_db") is None else r["tflite_db"] - r["ort_db"]
    return [r["model"], str(r["opset"]), str(r["onnx_nodes"]), str(r["int8_ops"]), f"{r['seconds']:.2f}",
            f"{r['peak_rss_mb']:.0f}", db(r["tflite_db"]), db(r["onnx_db"]), db(r.get("ort_db")),
            ("-" if delta is None else f"{delta:+.1f}"), r["micro"], "converted"]


HEAD = ["model", "opset", "ONNX nodes", "int8 ops", "convert s", "peak RSS MB", "ours tflite dB", "ours QDQ dB",
        "ORT quantize_static dB", "ours - ORT", "micro vs TFLM", "status"]


def _table(rows: list[dict[str, Any]], markdown: bool) -> str:
    cells = [HEAD] + [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        lines += ["| " + " | ".join(c) + " |" for c in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD) - 1)]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEAD) - 1)) + "  " + c[-1] for c in cells)


def main(argv: list[str]) -> int:
    """Run the matrix and print the table; exit 1 when a model does not convert or loses > 1 dB to ORT."""
    if argv[:1] == ["--child"]:
        print(json.dumps(_child(*argv[1:6])))
        return 0
    from fixtures.zoo import MODELS

    ap = argparse.ArgumentParser(prog="python -m benchmarks.import_zoo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n  python -m benchmarks.import_zoo --markdown\n"
                                        "  python -m benchmarks.import_zoo --models mobilevit,transformer --opsets 13 "
                                        "--held-out 16\n"
                                        "  python -m benchmarks.import_zoo --opsets dynamo --markdown")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo model names (default: all)")
    ap.add_argument("--opsets", default="11,13,17", help="comma-separated opsets, and 'dynamo' for torch's default "
                    "exporter at its default opset (default: 11,13,17)")
    ap.add_argument("--held-out", type=int, default=HELD_OUT, help=f"held-out inputs per model (default {HELD_OUT})")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args(argv)
    if args.held_out < 1:
        ap.error(f"--held-out must be at least 1, got {args.held_out}")
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    opsets: list["int | str"] = []
    for o in (o.strip() for o in args.opsets.split(",") if o.strip()):
        if o != "dynamo" and not o.isdigit():
            ap.error(f"--opsets takes opset numbers and 'dynamo', got {o!r}")
        opsets.append(o if o == "dynamo" else int(o))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            for opset in opsets:
                rows.append(_row(name, opset, work, args.held_out))
                print(f"  {name} opset {opset}: {'converted' if rows[-1]['ok'] else 'refused'}", file=sys.stderr,
                      flush=True)
    print(_table(rows, args.markdown))
    ok = [r for r in rows if r["ok"]]
    behind = [r for r in ok if r.get("ort_db") is not None and r["tflite_db"] < r["ort_db"] - 1.0]
    print(f"\nconverted {len(ok)}/{len(rows)}; within 1 dB of ORT quantize_static or better: "
          f"{len(ok) - len(behind)}/{len(ok)}")
    return 0 if len(ok) == len(rows) and not behind else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

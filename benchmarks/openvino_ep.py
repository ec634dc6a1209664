"""OpenVINO EP vs ONNX Runtime's CPU EP vs LiteRT on the MLPerf Tiny models, side by side in one run.

``python -m benchmarks.openvino_ep [--runs 200] [--n 50] [--markdown]``. The float MLPerf
Tiny models are converted by our converter to int8 (QDQ .onnx and .tflite from one
quantization plan) for the ``intel-n100`` profile. The .onnx runs in the
onnxruntime-openvino venv (built on first use, see ``_openvino_venv.py``) on the OpenVINO
EP (OpenVINO's CPU device here: this machine has no Intel GPU) and on ORT's CPU EP; the
.tflite runs in LiteRT in this venv. Latency: median of ``--runs`` single-input
inferences after 5 warm-up runs (the OpenVINO and CPU EP runs alternate, so both see the same
machine load). LiteRT's nodes on its default XNNPACK delegate are read from its node list
(``edge_runtime/backends/delegate_placement.py``). Agreement: top-1 and the largest int8 difference (LSB)
against ORT's CPU EP on ``--n`` inputs; "logits" is the int8 tensor before a softmax.
Threads: ``--threads`` (default 1) for all three runtimes; OpenVINO gets one stream of that
many unpinned threads (``_openvino_run.ov_threads``): with its defaults (pinned threads,
several streams) its latency on a machine shared with other work jumps up to tenfold.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._openvino_models import NOT_CONVERTIBLE, PROFILE, Converted, convert_all
from benchmarks._openvino_venv import REPO, OpenVinoVenvError, child_env, ensure_venv

OV = "OpenVINOExecutionProvider"


def _litert(c: Converted, runs: int, threads: int) -> tuple[float, np.ndarray, str]:
    """LiteRT's median latency, its outputs on every test input (int8, flattened) and its delegated nodes."""
    import edge_runtime

    xs = np.load(c.inputs)["x"]
    with edge_runtime.load(c.tflite, backend="litert", profile=PROFILE, accelerator="none",
                           threads=threads) as m:
        place = m.info.get("node_placement") or {}
        delegated = f"{m.info.get('delegated_nodes', 0)}/{sum(place.values())}" if place else "n/a"
        ys = np.stack([m.run([x])[0].reshape(-1) for x in xs])
        for _ in range(5):
            m.run([xs[0]])
        t = np.empty(runs)
        for i in range(runs):
            t0 = time.perf_counter()
            m.run([xs[0]])
            t[i] = time.perf_counter() - t0
    return float(np.median(t) * 1e3), ys, delegated


def measure(models_dir: Path, work: Path, runs: int, n: int, threads: int) -> list[dict[str, Any]]:
    """Convert, run in both venvs, and return one row per model."""
    py = ensure_venv(log=lambda msg: print(msg, file=sys.stderr))
    conv = convert_all(models_dir, work, n_test=n)
    spec = [{"name": c.name, "onnx": c.onnx, "inputs": c.inputs, "runs": runs, "compare_onnx": c.logits_onnx,
             "threads": threads} for c in conv]
    (work / "spec.json").write_text(json.dumps(spec))
    r = subprocess.run([str(py), "-m", "benchmarks._openvino_run", str(work / "spec.json"), str(work / "out.json")],
                       check=False,
                       env=child_env(), cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the OpenVINO run failed: {r.stderr.strip()[-1500:]}")
    rows = []
    for c, rec in zip(conv, json.loads((work / "out.json").read_text())):
        lite_ms, y_lite, lite_nodes = _litert(c, runs, threads)
        y_cpu = np.asarray(rec["y_cpu"])
        place = rec["ov"]["node_placement"] or {}
        rows.append({
            "model": c.source, "ep": f"{OV} ({rec['ov']['provider_options'].get('device_type')})",
            "nodes": f"{place.get(OV, 0)}/{sum(place.values())}", "ov_ms": rec["ov_ms"], "cpu_ms": rec["cpu_ms"],
            "litert_ms": lite_ms, "litert_nodes": lite_nodes, "ov_lsb": [o["ov_vs_cpu"] for o in rec["outputs"]],
            "ov_top1": f"{rec['top1_agree']}/{rec['n']}",
            "litert_top1": f"{int(np.sum(y_lite.argmax(1) == y_cpu.argmax(1)))}/{len(y_cpu)}",
            "litert_lsb": int(np.max(np.abs(y_lite.astype(np.int64) - y_cpu.astype(np.int64)))),
            "onnxruntime": rec["onnxruntime"],
        })
    return rows


COLUMNS = ("model", "EP", "nodes on EP", "LiteRT nodes on XNNPACK", "OpenVINO ms", "ORT CPU ms", "LiteRT ms", "CPU/OV", "LiteRT/OV",
           "OV vs CPU: top-1", "OV vs CPU: max LSB (out/logits)", "LiteRT vs ORT CPU: top-1, max LSB")


def _cells(r: dict[str, Any]) -> list[str]:
    return [r["model"], r["ep"], r["nodes"], r["litert_nodes"], f"{r['ov_ms']:.3f}", f"{r['cpu_ms']:.3f}", f"{r['litert_ms']:.3f}",
            f"{r['cpu_ms'] / r['ov_ms']:.2f}", f"{r['litert_ms'] / r['ov_ms']:.2f}", r["ov_top1"],
            "/".join(str(x) for x in r["ov_lsb"]), f"{r['litert_top1']}, {r['litert_lsb']}"]


def render(rows: list[dict[str, Any]], markdown: bool) -> str:
    """The table as aligned text or as a Markdown table."""
    cells = [_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*COLUMNS)] + [fmt.format(*c) for c in cells])


def main(argv: list[str] | None = None) -> int:
    """Print the table; 1 when the venv cannot be built or the shared models are missing."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.openvino_ep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200, help="timed runs per model and runtime (default 200)")
    p.add_argument("--n", type=int, default=50, help="inputs compared per model (default 50)")
    p.add_argument("--threads", type=int, default=1, help="threads for every runtime (default 1)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = p.parse_args(argv if argv is not None else sys.argv[1:])
    from edge_runtime.reference_data import shared_dir

    shared = shared_dir()
    if shared is None:
        print("openvino_ep: ../shared/models is missing; the MLPerf Tiny models live there", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="openvino-ep-bench-") as tmp:
        try:
            rows = measure(shared / "models" / "mlperf_tiny" / "models", Path(tmp), a.runs, a.n, a.threads)
        except OpenVinoVenvError as exc:
            print(f"openvino_ep: {exc}", file=sys.stderr)
            return 1
    print(render(rows, a.markdown))
    notes = [f"onnxruntime-openvino {rows[0]['onnxruntime']}", f"median of {a.runs} runs", f"{a.threads} threads",
             f"agreement on up to {a.n} inputs", "str_ww_ref_model: its int8 model dequantized, then converted",
             *(f"{k}: not run ({v})" for k, v in NOT_CONVERTIBLE.items())]
    print("\n" + "; ".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

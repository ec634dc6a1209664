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

``--divergence`` (``benchmarks/_openvino_divergence.py``): instead of latency, where OpenVINO and
ORT's CPU EP diverge: per model the first int8 tensor where they differ (each read from the model
truncated after it), both EPs' distance from the int8 .tflite on tflite-micro at the logits and
outputs, whether each softmax is exact on its own logits; per op kind, each op isolated and fed the
same int8 inputs on OpenVINO, the CPU EP and plain QDQ against a float64 evaluation of the QDQ
semantics; and the OpenVINO/ORT options tried as remedies (1 thread each).

Examples::

    python -m benchmarks.openvino_ep --markdown --runs 300
    python -m benchmarks.openvino_ep --divergence --markdown
    python -m benchmarks.openvino_ep --divergence --n 10 --json
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


def divergence(models_dir: Path, work: Path, n: int, variants: bool = True,
               names: tuple[str, ...] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Where OpenVINO and ORT's CPU EP diverge (``benchmarks/_openvino_divergence.py``): one row per model (of
    ``names``; default all), and the isolated-op results per op kind. ``variants``: also try the remedy options."""
    from benchmarks._openvino_divergence import analyse, op_totals, prepare

    py = ensure_venv(log=lambda msg: print(msg, file=sys.stderr))
    conv = [c for c in convert_all(models_dir, work, n_test=n) if names is None or c.name in names]
    spec = [{**prepare(c.onnx, c.logits_onnx, work / c.name / "divergence"), "name": c.name, "inputs": c.inputs}
            for c in conv]
    if not variants:
        for e in spec:
            e["variants"] = []
    (work / "probe.json").write_text(json.dumps(spec))
    r = subprocess.run([str(py), "-m", "benchmarks._openvino_run", "--probe", str(work / "probe.json")],
                       check=False, env=child_env(), cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the OpenVINO probe run failed: {r.stderr.strip()[-1500:]}")
    rows = [analyse(c.source, e, c.tflite, np.load(c.inputs)["x"]) for c, e in zip(conv, spec)]
    return rows, op_totals(rows)


DIV_COLUMNS = ("model", "first tensor where OV != CPU (op, position, elements, LSB)", "OV vs CPU max LSB (logits/out)",
               "OV vs CPU: outputs within 1 LSB", "OV vs tflite-micro: max LSB (logits/out), within 1 LSB",
               "CPU vs tflite-micro: max LSB (logits/out), within 1 LSB",
               "vs float64 QDQ, whole model: max LSB (logits/out) OV; CPU; tflite-micro",
               "top-1 = tflite-micro (OV/CPU)",
               "softmax of own logits vs float64 (OV/CPU)", "probe outputs change output (OV/CPU)")
OP_COLUMNS = ("op (isolated, same int8 inputs)", "outputs", "OV != float64 QDQ", "CPU != float64 QDQ",
              "plain QDQ != float64 QDQ", "max LSB (OV/CPU/plain)", "mismatches' distance from .5 (OV/CPU/plain)",
              "of them exact ties (OV/CPU/plain)")


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _div_cells(r: dict[str, Any]) -> list[str]:
    f = r["first_divergence"]
    first = "none" if f is None else f"{f['op']} {f['index']}/{f['of']}: {f['elements']}/{f['size']}, {f['lsb']} LSB"

    def vs(k: str) -> str:
        v = r[k]
        return f"{v['logits']}/{v['out']}, {_pct(v['logits_within_1'])}/{_pct(v['out_within_1'])}"

    soft = r.get("softmax_vs_float64")
    ovc = r["ov_vs_cpu"]
    return [r["model"], first, f"{ovc['logits']}/{ovc['out']}", _pct(ovc["out_within_1"]),
            vs("ov_vs_micro"), vs("cpu_vs_micro"),
            "; ".join(f"{r[k]['logits']}/{r[k]['out']}"
                      for k in ("ov_vs_float64", "cpu_vs_float64", "micro_vs_float64")),
            f"{r['ov_vs_micro']['top1']}/{r['cpu_vs_micro']['top1']} of {r['n']}",
            f"{soft['ov']}/{soft['cpu']}" if soft else "no softmax",
            f"{r['probe_changes_output']['ov']}/{r['probe_changes_output']['cpu']}"]


def _op_cells(t: dict[str, Any]) -> list[str]:
    eps = ("ov", "cpu", "ref")
    conv = t["kind"] in ("Conv", "Gemm")
    ties = "/".join(f"{t[ep]['max_tie_distance']:.1e}" for ep in eps) if conv else "-"
    exact = "/".join(str(t[ep]["exact_ties"]) for ep in eps) if conv else "-"
    return [t["kind"], str(t["size"]), *(f"{t[ep]['mismatches']}" for ep in eps),
            "/".join(str(t[ep]["lsb"]) for ep in eps), ties, exact]


def _table(columns: tuple[str, ...], cells: list[list[str]], markdown: bool) -> str:
    if markdown:
        return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                          *("| " + " | ".join(c) + " |" for c in cells)])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*columns)] + [fmt.format(*c) for c in cells])


def _variant_table(rows: list[dict[str, Any]], markdown: bool) -> str:
    if not rows[0]["variants"]:
        return "(no options tried)"
    cols = ("options (other EP as shipped)",
            *(f"{r['model'].split('.')[0]}: max LSB (logits/out), median ms" for r in rows))
    cells = [[v["name"], *(f"{r['variants'][i]['logits']}/{r['variants'][i]['out']}, {r['variants'][i]['ms']:.2f}"
                           for r in rows)] for i, v in enumerate(rows[0]["variants"])]
    return _table(cols, cells, markdown)


def render_divergence(rows: list[dict[str, Any]], totals: list[dict[str, Any]], markdown: bool) -> str:
    """The per-model breakdown, the isolated ops per kind, the options tried, and tflite-micro's first op against
    float64."""
    micro = "; ".join(f"{r['model']} {m['kind']}: {m['mismatches']}/{m['size']}, {m['lsb']} LSB, "
                      f"within {m['max_tie_distance']:.3f} of .5"
                      for r in rows if (m := r.get("micro_first_op")))
    return "\n\n".join([_table(DIV_COLUMNS, [_div_cells(r) for r in rows], markdown),
                         _table(OP_COLUMNS, [_op_cells(t) for t in totals], markdown),
                         _variant_table(rows, markdown),
                         f"tflite-micro's first op vs float64 QDQ (same int8 input): {micro}"])


def main(argv: list[str] | None = None) -> int:
    """Print the table; 1 when the venv cannot be built or the shared models are missing."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.openvino_ep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=200, help="timed runs per model and runtime (default 200)")
    p.add_argument("--n", type=int, default=50, help="inputs compared per model (default 50)")
    p.add_argument("--threads", type=int, default=1, help="threads for every runtime (default 1)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--divergence", action="store_true",
                   help="instead of latency: where OpenVINO and the CPU EP diverge, against float64 QDQ and "
                        "tflite-micro")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    a = p.parse_args(argv if argv is not None else sys.argv[1:])
    from edge_runtime.reference_data import shared_dir

    shared = shared_dir()
    if shared is None:
        print("openvino_ep: ../shared/models is missing; the MLPerf Tiny models live there", file=sys.stderr)
        return 1
    models = shared / "models" / "mlperf_tiny" / "models"
    with tempfile.TemporaryDirectory(prefix="openvino-ep-bench-") as tmp:
        try:
            if a.divergence:
                div, totals = divergence(models, Path(tmp), a.n)
            else:
                rows = measure(models, Path(tmp), a.runs, a.n, a.threads)
        except OpenVinoVenvError as exc:
            print(f"openvino_ep: {exc}", file=sys.stderr)
            return 1
    if a.divergence:
        for r in div:
            r.pop("ops")
        print(json.dumps({"models": div, "ops": totals}, indent=1) if a.json
              else render_divergence(div, totals, a.markdown))
        return 0
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(render(rows, a.markdown))
    notes = [f"onnxruntime-openvino {rows[0]['onnxruntime']}", f"median of {a.runs} runs", f"{a.threads} threads",
             f"agreement on up to {a.n} inputs", "str_ww_ref_model: its int8 model dequantized, then converted",
             *(f"{k}: not run ({v})" for k, v in NOT_CONVERTIBLE.items())]
    print("\n" + "; ".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

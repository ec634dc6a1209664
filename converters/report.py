"""The quality report: what quantization cost, layer by layer and end to end.

- Per-layer SQNR (dB), float vs int8, on calibration samples: the float values come from the
  float IR in ONNX Runtime, the int8 values from the written .tflite in LiteRT (reference-free
  builtin kernels, all tensors preserved), dequantized. A layer's *loss* is the SQNR of its input
  minus the SQNR of its output; the layers that lose most are flagged.
- On the held-out set: top-1 agreement of each int8 model with the float model (and accuracy
  when labels are given), mean absolute and RMS output error, output SQNR.
- ``report.json``, ``report.md`` (for people) and ``report.png`` (SQNR per layer, float vs int8
  outputs).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Optional

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph
from converters.quantize import QuantPlan
from edge_runtime.quantization import dequantize_affine, quantize_affine

FLAG_TOP = 3


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """10 log10(signal / noise), capped at 99 dB for an exact match."""
    if noise_energy <= 0:
        return 99.0
    if signal_energy <= 0:
        return -99.0
    return float(min(99.0, 10.0 * np.log10(signal_energy / noise_energy)))


def litert_interpreter(path: str, reference_kernels: bool = False, preserve: bool = False) -> Any:
    """A LiteRT interpreter (tflite-runtime when LiteRT is missing), default configuration unless asked."""
    try:
        from ai_edge_litert import interpreter as tfl
    except ImportError:  # pragma: no cover - devices without LiteRT wheels
        from tflite_runtime import interpreter as tfl  # type: ignore[no-redef]
    kw: dict[str, Any] = {"model_path": path, "num_threads": 1}
    if reference_kernels:
        kw["experimental_op_resolver_type"] = tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if preserve:
        kw["experimental_preserve_all_tensors"] = True
    it = tfl.Interpreter(**kw)
    it.allocate_tensors()
    return it


class TFLiteRunner:
    """Run an int8 (or float-I/O) .tflite on float NHWC inputs; return float (dequantized) outputs."""

    def __init__(self, path: str, preserve: bool = False) -> None:
        self.it = litert_interpreter(path, reference_kernels=preserve, preserve=preserve)
        self.inp = self.it.get_input_details()[0]
        self.outs = self.it.get_output_details()
        self.by_name = {d["name"]: d for d in self.it.get_tensor_details()}

    @staticmethod
    def _q(x: np.ndarray, d: dict) -> np.ndarray:
        if d["dtype"] == np.float32:
            return x.astype(np.float32)
        s, zp = d["quantization"]
        return quantize_affine(x, s, zp, d["dtype"])

    @staticmethod
    def _dq(q: np.ndarray, d: dict) -> np.ndarray:
        if q.dtype == np.float32:
            return q.copy()
        s, zp = d["quantization"]
        return dequantize_affine(q, s, zp)

    def run(self, x_nhwc: np.ndarray) -> list[np.ndarray]:
        """One inference; outputs dequantized to float32."""
        self.it.set_tensor(self.inp["index"], self._q(x_nhwc, self.inp))
        self.it.invoke()
        return [self._dq(self.it.get_tensor(d["index"]), d) for d in self.outs]

    def run_raw(self, q: np.ndarray) -> np.ndarray:
        """One inference on an input already in the model's input type; the first output as stored
        (int8 stays int8), a copy."""
        self.it.set_tensor(self.inp["index"], q.reshape(self.inp["shape"]))
        self.it.invoke()
        return self.it.get_tensor(self.outs[0]["index"]).copy()

    def run_batch(self, xs: np.ndarray, quantized: bool = False) -> np.ndarray:
        """The first output of each sample of ``xs``, flattened and stacked: dequantized from float
        inputs (:meth:`run`), or as stored from already-quantized inputs (``quantized``, :meth:`run_raw`)."""
        if quantized:
            return np.stack([self.run_raw(x).reshape(-1) for x in xs])
        return np.stack([self.run(x.reshape(self.inp["shape"]).astype(np.float32))[0].reshape(-1) for x in xs])

    def tensor(self, name: str) -> Optional[np.ndarray]:
        """Dequantized value of an intermediate tensor after :meth:`run` (needs ``preserve``)."""
        d = self.by_name.get(name)
        if d is None:
            return None
        return self._dq(self.it.get_tensor(d["index"]), d)


class OnnxRunner:
    """Run the QDQ int8 .onnx on float inputs in the source layout; return float outputs."""

    def __init__(self, path: str, plan: QuantPlan, graph: Graph) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.plan, self.graph = plan, graph
        self.in_q = plan.activations[graph.inputs[0]]
        self.out_q = [plan.activations[o] for o in graph.outputs]

    def run(self, x_src: np.ndarray) -> list[np.ndarray]:
        """One inference; outputs dequantized to float32."""
        io = self.plan.io_dtype
        if io == "float32":
            feed = x_src.astype(np.float32)
        else:
            feed = self.in_q.quantize(x_src)
            if io == "uint8":
                feed = (feed.astype(np.int16) + 128).astype(np.uint8)
        outs = self.sess.run(None, {self.sess.get_inputs()[0].name: feed})
        res = []
        for o, qp in zip(outs, self.out_q):
            if io == "uint8":
                o = (o.astype(np.int16) - 128).astype(np.int8)
            res.append(o.astype(np.float32) if io == "float32" else qp.dequantize(o))
        return res


def layer_sqnr(graph: Graph, float_sess, runner: TFLiteRunner, samples: Iterable[np.ndarray]) -> list[dict]:  # type: ignore[no-untyped-def]
    """SQNR of every IR activation, float (ONNX Runtime) vs int8 (``runner``), summed over ``samples``."""
    sig: dict[str, float] = {}
    noise: dict[str, float] = {}
    name = graph.inputs[0]
    for x in samples:
        x_ir = graph.to_ir_layout(name, x)
        fvals = run_float(float_sess, graph, x_ir)
        runner.run(x_ir)
        for t, fv in fvals.items():
            qv = runner.tensor(t)
            if qv is None or qv.shape != fv.shape:
                continue
            sig[t] = sig.get(t, 0.0) + float(np.sum(fv.astype(np.float64) ** 2))
            noise[t] = noise.get(t, 0.0) + float(np.sum((fv.astype(np.float64) - qv) ** 2))
    rows = []
    in_db = sqnr_db(sig.get(name, 0.0), noise.get(name, 0.0)) if name in sig else None
    rows.append({"index": -1, "op": "INPUT", "name": name, "tensor": name,
                 "sqnr_db": None if in_db is None else round(in_db, 2), "loss_db": 0.0})
    db = {name: in_db}
    for i, op in enumerate(graph.ops):
        t = op.outputs[0]
        if t not in sig:
            continue
        v = sqnr_db(sig[t], noise[t])
        db[t] = v
        ins = [db[s] for s in op.inputs if s in db and db[s] is not None]
        loss = (min(ins) - v) if ins else 0.0
        rows.append({"index": i, "op": op.kind, "name": op.name, "tensor": t, "sqnr_db": round(v, 2),
                     "loss_db": round(loss, 2)})
    ranked = sorted((r for r in rows if r["index"] >= 0), key=lambda r: -r["loss_db"])
    flagged = {r["index"] for r in ranked[:FLAG_TOP] if r["loss_db"] > 0.5}
    for r in rows:
        r["flagged"] = r["index"] in flagged
    return rows


def _output_stats(ref: np.ndarray, got: np.ndarray, labels: Optional[np.ndarray]) -> dict[str, Any]:
    err = got.astype(np.float64) - ref
    d: dict[str, Any] = {
        "mean_abs_error": float(np.mean(np.abs(err))),
        "rms_error": float(np.sqrt(np.mean(err ** 2))),
        "output_sqnr_db": round(sqnr_db(float(np.sum(ref ** 2)), float(np.sum(err ** 2))), 2),
    }
    if ref.ndim == 2 and ref.shape[1] > 1:
        d["top1_agreement_with_float"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
        if labels is not None:
            d["accuracy"] = float(np.mean(got.argmax(1) == labels))
    return d


def evaluate_held_out(graph: Graph, float_sess, runners: dict[str, Callable[[np.ndarray], list[np.ndarray]]],  # type: ignore[no-untyped-def]
                      x: np.ndarray, y: Optional[np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Float vs each int8 runner on ``x`` (samples in the source layout). Returns stats and raw outputs."""
    name, out_name = graph.inputs[0], graph.outputs[0]
    outs: dict[str, list[np.ndarray]] = {"float": []}
    outs.update({k: [] for k in runners})
    for xi in x:
        xi = xi.reshape(graph.source_shape(name)).astype(np.float32)
        x_ir = graph.to_ir_layout(name, xi)
        outs["float"].append(run_float(float_sess, graph, x_ir)[out_name].reshape(-1))
        for k, run in runners.items():
            outs[k].append(run(xi if k == "onnx" else x_ir)[0].reshape(-1))
    arr = {k: np.stack(v) for k, v in outs.items()}
    stats: dict[str, Any] = {"samples": int(len(x)), "labels": y is not None}
    if y is not None and arr["float"].shape[1] > 1:
        stats["float_accuracy"] = float(np.mean(arr["float"].argmax(1) == y))
    for k in runners:
        stats[k] = _output_stats(arr["float"].astype(np.float64), arr[k], y)
    return stats, arr


def plot(path: str, layers: list[dict], outputs: Optional[dict[str, np.ndarray]], title: str) -> str:
    """Write the PNG: SQNR per layer (flagged layers in red) and int8 vs float outputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if outputs:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    else:
        fig, ax = plt.subplots(1, 1, figsize=(max(7.0, 0.3 * len(layers) + 2), 4.8))
        axes = [ax]
    rows = [r for r in layers if r["sqnr_db"] is not None]
    xs = np.arange(len(rows))
    axes[0].bar(xs, [r["sqnr_db"] for r in rows], color=["#d62728" if r["flagged"] else "#1f77b4" for r in rows])
    axes[0].set_xticks(xs)
    axes[0].set_xticklabels([f"{r['index']}:{r['op']}" for r in rows], rotation=75, fontsize=7)
    axes[0].set_ylabel("SQNR float vs int8 (dB)")
    axes[0].set_title("per-layer SQNR on calibration data (red: layers that lose most)")
    axes[0].grid(axis="y", alpha=0.3)
    if outputs:
        f = outputs["float"].reshape(-1)
        for k, v in outputs.items():
            if k != "float":
                axes[1].scatter(f, v.reshape(-1), s=4, alpha=0.4, label=f"int8 {k}")
        lo, hi = float(f.min()), float(f.max())
        axes[1].plot([lo, hi], [lo, hi], "k--", lw=0.8)
        axes[1].set_xlabel("float output")
        axes[1].set_ylabel("int8 output (dequantized)")
        axes[1].set_title("held-out outputs")
        axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"# Conversion report: {report['model']}", "",
             f"- source: {report['source']} ({report['source_format']}), profile: {report['profile']}",
             f"- calibration: {report['calibration']['samples']} samples, method {report['calibration']['method']}",
             f"- outputs: " + ", ".join(f"{k} `{os.path.basename(v)}`" for k, v in report["outputs"].items() if v), ""]
    fit = report.get("fit")
    if fit:
        lines += ["## Fit", "", "```", fit["summary"], "```", ""]
    ho = report.get("held_out")
    if ho:
        lines += ["## Held-out set", "", f"{ho['samples']} samples" + (f", float accuracy {ho['float_accuracy']:.4f}"
                                                                      if "float_accuracy" in ho else ""), "",
                  "| model | top-1 agreement with float | accuracy | mean abs error | output SQNR (dB) |",
                  "|---|---|---|---|---|"]
        for k in ("tflite", "onnx"):
            if k in ho:
                s = ho[k]
                lines.append(f"| int8 {k} | {s.get('top1_agreement_with_float', float('nan')):.4f} | "
                             f"{s.get('accuracy', float('nan')):.4f} | {s['mean_abs_error']:.5f} | {s['output_sqnr_db']} |")
        lines.append("")
    lines += ["## Per-layer SQNR (calibration data)", "", "| # | op | tensor | SQNR dB | loss dB | |", "|---|---|---|---|---|---|"]
    for r in report["layers"]:
        lines.append(f"| {r['index']} | {r['op']} | `{r['tensor']}` | {r['sqnr_db']} | {r['loss_db']} | "
                     f"{'**flagged**' if r['flagged'] else ''} |")
    flagged = sorted((r for r in report["layers"] if r["flagged"]), key=lambda r: -r["loss_db"])
    if flagged:
        lines += ["", "Layers that lose most: " + ", ".join(f"{r['index']}:{r['op']} ({r['loss_db']} dB)" for r in flagged)]
    lines += ["", "![per-layer SQNR](report.png)", ""]
    return "\n".join(lines)


def write_report(out_dir: str, report: dict[str, Any], layers: list[dict],
                 outputs: Optional[dict[str, np.ndarray]]) -> str:
    """Write report.json, report.md and report.png into ``out_dir``; return the JSON path."""
    report["layers"] = layers
    report["plot"] = plot(os.path.join(out_dir, "report.png"), layers, outputs, f"{report['model']}: int8 vs float")
    path = os.path.join(out_dir, "report.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=float)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(report))
    return path


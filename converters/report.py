"""The quality report: what quantization cost, output by output and layer by layer.

- Every output of the model, float vs int8: SQNR, max and mean absolute error and the output's
  range, on the calibration samples and, when given, on the held-out set; top-1 agreement (and
  accuracy with labels) only for outputs that are class distributions
  (:mod:`converters.quality.metrics`). The summary names the worst output.
- Per-layer SQNR (dB), float vs int8, on calibration samples: the float values come from the
  float IR in ONNX Runtime, the int8 values from the written .tflite in LiteRT (reference-free
  builtin kernels, all tensors preserved), dequantized. A layer's *loss* is the SQNR of its input
  minus the SQNR of its output; the layers that lose most are flagged. Colours follow absolute
  thresholds: >= 30 dB fine, 20-30 dB warning, < 20 dB bad.
- With ``--analyze``, the per-layer sensitivity (:mod:`converters.quality.sensitivity`).
- ``report.json``, ``report.md`` (for people) and, with ``--plot`` (or when matplotlib is already
  loaded in the process), ``report.png``; the markdown links the PNG only when it was written.
"""
from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph, ir_feed, sample_arrays
from converters.quality.metrics import (BAD_DB, FINE_DB, GRADE_COLOURS, compare_outputs, grade, output_kinds,
                                        sqnr_db, summary_line)
from converters.quantize import QuantPlan
from edge_runtime.quantization import dequantize_affine, quantize_affine

__all__ = ["sqnr_db", "litert_interpreter", "TFLiteRunner", "OnnxRunner", "compare_on_samples", "layer_sqnr",
           "evaluate_held_out", "plot", "markdown", "want_plot", "write_report"]

FLAG_TOP = 3


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
    from edge_runtime.native_stderr import quiet_native_info

    with quiet_native_info():  # LiteRT's "Created ... XNNPACK delegate" line; its warnings still pass
        it = tfl.Interpreter(**kw)
        it.allocate_tensors()
    return it


class TFLiteRunner:
    """Run an int8 (or float-I/O) .tflite on float NHWC inputs; return float (dequantized) outputs.

    Every input and output: :meth:`run` takes one array per model input (or a single array for a
    one-input model) and returns every output, in the model's output order.
    """

    def __init__(self, path: str, preserve: bool = False) -> None:
        self.it = litert_interpreter(path, reference_kernels=preserve, preserve=preserve)
        self.inps = self.it.get_input_details()
        self.inp = self.inps[0]
        self.outs = self.it.get_output_details()
        self.by_name = {d["name"]: d for d in self.it.get_tensor_details()}

    @staticmethod
    def _q(x: np.ndarray, d: dict) -> np.ndarray:
        if d["dtype"] == np.float32:
            return x.astype(np.float32)
        s, zp = d["quantization"]
        if d["dtype"] == np.int32 and s == 0:  # an integer input (token ids, bytes, indices): not quantized
            return np.asarray(x).astype(np.int32)
        return quantize_affine(x, s, zp, d["dtype"])

    @staticmethod
    def _dq(q: np.ndarray, d: dict) -> np.ndarray:
        if q.dtype == np.float32:
            return q.copy()
        s, zp = d["quantization"]
        if q.dtype in (np.int32, np.bool_) and s == 0:  # an index or mask output: not quantized
            return q.astype(np.float32)
        return dequantize_affine(q, s, zp)

    def _feed(self, xs: "np.ndarray | Sequence[np.ndarray]", quantize: bool) -> None:
        arrays = [xs] if isinstance(xs, np.ndarray) else list(xs)
        if len(arrays) != len(self.inps):
            raise ValueError(f"the model takes {len(self.inps)} inputs, got {len(arrays)}")
        for x, d in zip(arrays, self.inps):
            v = self._q(x, d) if quantize else x
            self.it.set_tensor(d["index"], np.asarray(v).reshape(d["shape"]))

    def run(self, x_nhwc: "np.ndarray | Sequence[np.ndarray]") -> list[np.ndarray]:
        """One inference on float inputs (one array per model input); every output, dequantized to float32."""
        self._feed(x_nhwc, quantize=True)
        self.it.invoke()
        return [self._dq(self.it.get_tensor(d["index"]), d) for d in self.outs]

    def run_raw(self, q: "np.ndarray | Sequence[np.ndarray]", output: int = 0) -> np.ndarray:
        """One inference on inputs already in the model's input types; output ``output`` as stored
        (int8 stays int8), a copy."""
        self._feed(q, quantize=False)
        self.it.invoke()
        return self.it.get_tensor(self.outs[output]["index"]).copy()

    def run_batch(self, xs: np.ndarray, quantized: bool = False, output: int = 0) -> np.ndarray:
        """Output ``output`` of each sample of ``xs`` (a one-input model), flattened and stacked: dequantized
        from float inputs (:meth:`run`), or as stored from already-quantized inputs (``quantized``)."""
        if quantized:
            return np.stack([self.run_raw(x, output).reshape(-1) for x in xs])
        return np.stack([self.run(x.reshape(self.inp["shape"]).astype(np.float32))[output].reshape(-1) for x in xs])

    def tensor(self, name: str) -> Optional[np.ndarray]:
        """Dequantized value of an intermediate tensor after :meth:`run` (needs ``preserve``)."""
        d = self.by_name.get(name)
        if d is None:
            return None
        return self._dq(self.it.get_tensor(d["index"]), d)


#: ONNX Runtime input types of integer model inputs -> numpy dtype
_ORT_INTEGER = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
                "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
                "tensor(uint32)": np.uint32}


class OnnxRunner:
    """Run the QDQ int8 .onnx on float inputs in the source layout; return float outputs."""

    def __init__(self, path: str, plan: QuantPlan, graph: Graph) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.plan, self.graph = plan, graph
        self.in_q = [plan.activations[i] for i in graph.inputs]
        self.out_q = [plan.params(o, "int16") if o in plan.wide_outputs and plan.tensor_dtype(o) == "int16"
                      else plan.activations[o] for o in graph.outputs]  # wide outputs: int16 (or float)

    def run(self, x_src: "np.ndarray | Sequence[np.ndarray]") -> list[np.ndarray]:
        """One inference on float inputs (one array per model input); every output, dequantized to float32."""
        io = self.plan.io_dtype
        arrays = [x_src] if isinstance(x_src, np.ndarray) else list(x_src)
        feeds = {}
        for x, qp, d, name in zip(arrays, self.in_q, self.sess.get_inputs(), self.graph.inputs):
            if name in self.graph.input_dtypes:  # an integer input (token ids, bytes, indices): not quantized
                feeds[d.name] = np.asarray(x).astype(_ORT_INTEGER[d.type])
                continue
            if io == "float32":
                feed = x.astype(np.float32)
            else:
                feed = qp.quantize(x)
                if io == "uint8":
                    feed = (feed.astype(np.int16) + 128).astype(np.uint8)
            feeds[d.name] = feed
        outs = self.sess.run(None, feeds)
        res = []
        for o, qp in zip(outs, self.out_q):
            if o.dtype in (np.int32, np.bool_, np.float32):  # indices, masks, float-only op outputs (or float I/O)
                res.append(o.astype(np.float32))
                continue
            if io == "uint8":
                o = (o.astype(np.int16) - 128).astype(np.int8)
            res.append(o.astype(np.float32) if io == "float32" else qp.dequantize(o))
        return res


Outputs = dict[str, np.ndarray]


def _reported_tensors(graph: Graph) -> list[str]:
    """The tensors whose SQNR the per-layer rows use: the model input and each op's first output, in
    graph order (energies of any other tensor would be summed and never read)."""
    seen = {n: None for n in graph.inputs if n not in graph.input_dtypes}  # integer inputs: as given
    for op in graph.ops:
        if op.outputs:
            seen.setdefault(op.outputs[0], None)
    return list(seen)


def _int8_run(graph: Graph, runner: TFLiteRunner, names: Sequence[str], item: tuple[int, np.ndarray],
              ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The int8 model on sample ``item = (i, x)``: its outputs (dequantized) and a copy of each of
    ``names`` it has, as stored (runs in :func:`converters.calibrate.ahead`'s thread, the only user of
    ``runner`` meanwhile)."""
    outs = runner.run(list(ir_feed(graph, item[1]).values()))
    get, by_name = runner.it.get_tensor, runner.by_name
    return outs, {t: get(by_name[t]["index"]) for t in names if t in by_name}


def _float_run(graph: Graph, float_sess,  # type: ignore[no-untyped-def]
               float_values: Optional[Callable[[int, np.ndarray], dict]], item: tuple[int, np.ndarray]) -> dict:
    """Sample ``item = (i, x)``'s float activations: from ``float_values`` when given, else one run of
    ``float_sess`` (in :func:`converters.calibrate.ahead`'s thread)."""
    i, x = item
    if float_values is not None:
        return float_values(i, x)
    return run_float(float_sess, graph, ir_feed(graph, x))


#: Tensors of at most this many values are summed several at a time (see :class:`_Energies`), up to
#: ROWS_VALUES values in one array.
SMALL_TENSOR, ROWS_VALUES = 4096, 1 << 16


class _Energies:
    """Per-tensor signal and noise energy, float vs int8, summed over samples.

    Each sample adds exactly ``np.sum(np.square(f.astype(np.float64)))`` and
    ``np.sum(np.square(f.astype(np.float64) - q))`` (``q`` dequantized as :func:`dequantize_affine`
    does, in float32): the same float64 values in a contiguous array, summed by the same numpy
    reduction (pairwise, fixed by the number of values), so the same sums to the last bit.
    :meth:`add` takes one tensor, in buffers reused across tensors and samples. :meth:`add_sample`
    takes all of a sample's tensors and sums the small int8/int16 ones of equal size together, one per
    row of a 2-D array (a row of a contiguous array is summed as the same values alone are), so a model
    of many small tensors (an unrolled LSTM) pays numpy's per-call cost once per size, not per tensor.
    """

    def __init__(self) -> None:
        self.signal: dict[str, float] = {}
        self.noise: dict[str, float] = {}
        self._f64 = np.empty(0, np.float64)
        self._d64 = np.empty(0, np.float64)
        self._f32 = np.empty(0, np.float32)

    def _buffers(self, n: int) -> None:
        if n > self._f64.size:
            self._f64, self._d64, self._f32 = np.empty(n, np.float64), np.empty(n, np.float64), np.empty(n, np.float32)

    def _dequantized(self, q: np.ndarray, d: dict) -> np.ndarray:
        if q.dtype not in (np.int8, np.int16):
            return TFLiteRunner._dq(q, d)
        s, zp = d["quantization"]
        out = self._f32[:q.size].reshape(q.shape)
        np.subtract(q, np.float32(zp), out=out, dtype=np.float32)
        return np.multiply(out, np.float32(s), out=out)

    def _accumulate(self, t: str, signal: float, noise: float) -> None:
        self.signal[t] = self.signal.get(t, 0.0) + signal
        self.noise[t] = self.noise.get(t, 0.0) + noise

    def add(self, t: str, fv: np.ndarray, q: np.ndarray, d: dict) -> None:
        """Add one sample of tensor ``t``: float ``fv`` against ``q`` (as stored, described by ``d``)."""
        if q.size != fv.size or fv.dtype.kind != "f":  # int indices: no SQNR
            return
        self._buffers(fv.size)
        qv = self._dequantized(q, d)
        if qv.shape != fv.shape:
            return
        # f and q widened once each (float32 -> float64 copies are exact), then squared in place: the same
        # float64 arrays as f.astype(float64) ** 2 and (f.astype(float64) - q) ** 2, summed by np.sum's own
        # reduction (np.add.reduce over every axis), without widening f twice (12 % less time on tensors of
        # the 96x96 CNN's shapes)
        f64 = self._f64[:fv.size].reshape(fv.shape)
        d64 = self._d64[:fv.size].reshape(fv.shape)
        np.copyto(f64, fv)
        np.copyto(d64, qv)
        np.subtract(f64, d64, out=d64)
        signal = float(np.add.reduce(np.square(f64, out=f64), axis=None))
        self._accumulate(t, signal, float(np.add.reduce(np.square(d64, out=d64), axis=None)))

    def add_sample(self, tensors: Iterable[tuple[str, np.ndarray, np.ndarray, dict]]) -> None:
        """Add one sample of each ``(t, fv, q, d)`` as :meth:`add` does (the same sums)."""
        groups: dict[tuple[int, str], list[tuple[str, np.ndarray, np.ndarray, dict]]] = {}
        for t, fv, q, d in tensors:
            if (fv.size <= SMALL_TENSOR and fv.dtype.kind == "f" and q.dtype in (np.int8, np.int16)
                    and q.shape == fv.shape):
                groups.setdefault((fv.size, q.dtype.str), []).append((t, fv, q, d))
            else:
                self.add(t, fv, q, d)
        for (n, _), rows in groups.items():
            if len(rows) == 1:
                self.add(*rows[0])
                continue
            per_block = max(1, ROWS_VALUES // n)  # at most ROWS_VALUES values (512 KB of float64) at a time
            for b in range(0, len(rows), per_block):
                self._add_rows(n, rows[b:b + per_block])

    def _add_rows(self, n: int, rows: list[tuple[str, np.ndarray, np.ndarray, dict]]) -> None:
        """Tensors of ``n`` values each, int8 or int16 (all the same), as rows of one array."""
        zp = np.array([[r[3]["quantization"][1]] for r in rows], np.float32)  # as float32, as _dequantized
        scale = np.array([[r[3]["quantization"][0]] for r in rows], np.float32)  # uses them, one per row
        f64 = np.concatenate([r[1].reshape(1, n) for r in rows], axis=0, dtype=np.float64)
        qv = np.subtract(np.concatenate([r[2].reshape(1, n) for r in rows], axis=0), zp, dtype=np.float32)
        np.multiply(qv, scale, out=qv)
        signal = np.add.reduce(np.square(f64), axis=1)
        np.subtract(f64, qv, out=f64)
        noise = np.add.reduce(np.square(f64, out=f64), axis=1)
        for (t, *_), s, e in zip(rows, signal.tolist(), noise.tolist()):
            self._accumulate(t, s, e)


def compare_on_samples(graph: Graph, float_sess, runner: TFLiteRunner,  # type: ignore[no-untyped-def]
                       samples: Iterable[np.ndarray], float_values: Optional[Callable[[int, np.ndarray], dict]] = None,
                       ) -> tuple[list[dict], Outputs, Outputs]:
    """Float (ONNX Runtime) vs int8 (``runner``, built with ``preserve``) on ``samples`` (source layout).

    ``float_values(i, x)``, when given (e.g. the conversion's :class:`converters.calibrate.FloatRuns`),
    supplies sample ``i``'s float activations instead of running ``float_sess``.
    Returns the per-layer rows (SQNR of every IR activation summed over the samples, see
    :func:`layer_sqnr`) and every graph output, float and int8, stacked over the samples.
    Three things overlap, each in its own thread (:func:`converters.calibrate.ahead`, twice): the int8
    model runs two samples ahead, the float model one sample ahead, and the caller sums this sample's
    energies. Small models, whose runs take less than ``AHEAD_MIN_S``, run all in the caller's thread.
    """
    from converters.calibrate import AHEAD_MIN_S, ahead

    energies = _Energies()
    names = _reported_tensors(graph)
    f_out: dict[str, list[np.ndarray]] = {o: [] for o in graph.outputs}
    q_out: dict[str, list[np.ndarray]] = {o: [] for o in graph.outputs}
    int8_runs = ahead(partial(_int8_run, graph, runner, names), enumerate(samples))
    # a remembered float sample costs nothing, so the float stream goes to a thread when its runs are
    # known to be slow (FloatRuns.run_seconds), else when the first one is
    seconds = getattr(float_values, "run_seconds", None)
    float_bg = None if seconds is None else seconds >= AHEAD_MIN_S
    float_job = partial(_float_run, graph, float_sess, float_values)
    both = ahead(lambda pair: float_job(pair[0]), int8_runs, float_bg)
    try:
        for (_, (outs, stored)), fvals in both:
            for o, qv in zip(graph.outputs, outs):
                f_out[o].append(fvals[o].reshape(-1))
                q_out[o].append(qv.reshape(-1))
            fvals = dict(fvals)  # a sample remembered by FloatRuns stays whole; a fresh one is freed tensor by tensor
            energies.add_sample((t, fvals.pop(t), stored.pop(t), runner.by_name[t]) for t in names
                                if t in fvals and t in stored)
            del fvals, stored
    finally:  # both threads end here, also when a run fails
        both.close()
        int8_runs.close()
    sig, noise = energies.signal, energies.noise
    rows = []
    db: dict[str, Optional[float]] = {}
    for name in graph.inputs:  # one INPUT row per model input
        in_db = sqnr_db(sig.get(name, 0.0), noise.get(name, 0.0)) if name in sig else None
        rows.append({"index": -1, "op": "INPUT", "name": name, "tensor": name,
                     "sqnr_db": None if in_db is None else round(in_db, 2), "loss_db": 0.0})
        db[name] = in_db
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
        r["grade"] = grade(r["sqnr_db"])
    return rows, _stack(f_out), _stack(q_out)


def _stack(d: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack(v) if v else np.zeros((0, 0), np.float32) for k, v in d.items()}


def layer_sqnr(graph: Graph, float_sess, runner: TFLiteRunner, samples: Iterable[np.ndarray]) -> list[dict]:  # type: ignore[no-untyped-def]
    """SQNR of every IR activation, float (ONNX Runtime) vs int8 (``runner``), summed over ``samples``."""
    return compare_on_samples(graph, float_sess, runner, samples)[0]


def evaluate_held_out(graph: Graph, float_sess, runners: dict[str, Callable[[np.ndarray], list[np.ndarray]]],  # type: ignore[no-untyped-def]
                      x: np.ndarray, y: Optional[np.ndarray], task: str = "auto",
                      ) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Float vs each int8 runner on ``x`` (samples in the source layout), every output. ``x`` is an array of
    samples for a one-input model, or a sequence of samples, each a tuple ordered as ``graph.inputs``.

    Returns the stats (per runner: :func:`converters.quality.metrics.compare_outputs`) and the raw
    outputs ``{"float" | runner: {output: [samples, values]}}``.
    """
    outs: dict[str, dict[str, list[np.ndarray]]] = {k: {o: [] for o in graph.outputs} for k in ["float", *runners]}
    single = len(graph.inputs) == 1
    for xi in x:
        src = [np.asarray(a).reshape(graph.source_shape(n)).astype(np.int32 if n in graph.input_dtypes else np.float32)
               for n, a in zip(graph.inputs, sample_arrays(graph, xi))]
        feed = ir_feed(graph, src)
        fv = run_float(float_sess, graph, feed, only=graph.outputs)
        for o in graph.outputs:
            outs["float"][o].append(fv[o].reshape(-1))
        x_ir = list(feed.values())
        for k, run in runners.items():
            arrays = src if k == "onnx" else x_ir
            for o, v in zip(graph.outputs, run(arrays[0] if single else arrays)):
                outs[k][o].append(v.reshape(-1))
    arr = {k: {o: np.stack(v) for o, v in d.items()} for k, d in outs.items()}
    kinds = output_kinds(graph, task, labels=y)
    stats: dict[str, Any] = {"samples": len(x), "labels": y is not None, "output_kinds": kinds}
    cls = next((o for o in graph.outputs if kinds[o] == "class"), None)
    if y is not None and cls is not None and int(np.max(y)) < arr["float"][cls].shape[1]:
        stats["float_accuracy"] = float(np.mean(arr["float"][cls].argmax(1) == y))
    for k in runners:
        stats[k] = compare_outputs(graph.outputs, kinds, arr["float"], arr[k], y)
    return stats, arr


def _sqnr_bars(ax, rows: list[dict], label_key: str, value_key: str, title: str, ylabel: str) -> None:  # type: ignore[no-untyped-def]
    """Bars coloured by the absolute thresholds, with the threshold lines."""
    xs = np.arange(len(rows))
    vals = np.array([r[value_key] for r in rows], np.float64)
    bottom = min(0.0, float(vals.min(initial=0.0))) - 5.0  # a 0 dB (collapsed) bar stays visible
    ax.bar(xs, vals - bottom, bottom=bottom, color=[GRADE_COLOURS[grade(v)] for v in vals])
    ax.set_ylim(bottom, max(float(vals.max(initial=0.0)), FINE_DB) + 5.0)
    if len(rows) <= 40:
        for x, v in zip(xs, vals):
            ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=6)
    ax.axhline(FINE_DB, color=GRADE_COLOURS["fine"], lw=0.8, ls="--")
    ax.axhline(BAD_DB, color=GRADE_COLOURS["bad"], lw=0.8, ls="--")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(r[label_key])[:28] for r in rows], rotation=75, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def plot(path: str, report: dict[str, Any], title: str) -> str:
    """Write the PNG: SQNR per layer and per output (green >= 30 dB, orange 20-30, red < 20) and, with
    a sensitivity analysis, the layers whose quantization costs the output most."""
    try:
        import matplotlib
    except ImportError:
        from edge_runtime.errors import ConfigError

        raise ConfigError("the plot (--plot) needs matplotlib: pip install matplotlib, or "
                          "'edge-runtime[convert]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [dict(r, label=f"{r['index']}:{r['op']}") for r in report["layers"] if r["sqnr_db"] is not None]
    outs = _output_rows(report)
    sens = (report.get("sensitivity") or {}).get("layers", [])
    panels = 1 + bool(outs) + bool(sens)
    fig, axes = plt.subplots(1, panels, figsize=(max(8.0, 0.28 * len(layers) + 3) + 4.5 * (panels - 1), 5.0),
                             gridspec_kw={"width_ratios": [2.2] + [1.0] * (panels - 1)}, squeeze=False)
    axes = axes[0]
    _sqnr_bars(axes[0], layers, "label", "sqnr_db", "per-layer SQNR, calibration data (green >= 30 dB, "
               "orange 20-30, red < 20)", "SQNR float vs int8 (dB)")
    k = 1
    if outs:
        _sqnr_bars(axes[k], outs, "label", "sqnr_db", f"every output ({outs[0]['where']})", "output SQNR (dB)")
        k += 1
    if sens:
        top = sorted(sens, key=lambda r: r["only_quantized_db"])[:12]
        rows = [dict(r, label=f"{r['index']}:{r['op']}") for r in top]
        _sqnr_bars(axes[k], rows, "label", "only_quantized_db", "sensitivity: output SQNR with only this "
                   "layer int8 (worst 12)", "worst-output SQNR (dB)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _output_rows(report: dict[str, Any]) -> list[dict]:
    """Per-output SQNR rows for the plot: held-out when measured, else calibration samples."""
    ho = report.get("held_out")
    if ho:
        return [dict(r, label=f"{k}:{r['name']}", where="held-out") for k in ("tflite", "onnx") if k in ho
                for r in ho[k]["outputs"] if r["sqnr_db"] is not None]  # index outputs have no SQNR
    cal = report.get("calibration_outputs")
    return [dict(r, label=r["name"], where="calibration data") for r in cal["outputs"]
            if r["sqnr_db"] is not None] if cal else []


def _output_table(stats: dict[str, Any], model: str) -> list[str]:
    lines = []
    for r in stats["outputs"]:
        cls = (f"{r.get('top1_agreement_with_float', float('nan')):.4f} | {r.get('accuracy', float('nan')):.4f}"
               if r["kind"] == "class" else "- | -")
        lines.append(f"| {model} | `{r['name']}` | {r['kind']} | [{r['range'][0]:.4g}, {r['range'][1]:.4g}] | "
                     f"{r['sqnr_db'] if r['sqnr_db'] is not None else format(r['exact_match'], '.2%') + ' exact'} "
                     f"({r['grade']}) | {r['max_abs_error']:.4g} | {r['mean_abs_error']:.4g} | {cls} |")
    return lines


OUT_HEAD = [("| model | output | kind | float range | SQNR dB | max abs error | mean abs error | top-1 agreement "
             "| accuracy |"), "|---|---|---|---|---|---|---|---|---|"]


def summary(report: dict[str, Any]) -> list[str]:
    """Summary lines naming the worst output (held-out when measured, else calibration data)."""
    ho = report.get("held_out")
    lines = []
    if ho:
        lines += [summary_line(ho[k], f"held-out, int8 {k}") for k in ("tflite", "onnx") if k in ho]
    elif report.get("calibration_outputs"):
        lines.append(summary_line(report["calibration_outputs"], "calibration data, int8 tflite"))
    sens = report.get("sensitivity")
    if sens and sens.get("summary"):
        lines.append(sens["summary"])
    mp = report.get("mixed_precision")
    if mp and "changed_layers" in mp:
        lines.append(mixed_precision_line(mp))
    return lines


def mixed_precision_line(mp: dict[str, Any]) -> str:
    """One line: the target, the worst output before/after, the layers changed, what stopped the search."""
    worst_b, worst_a = min(mp["sqnr_before_db"].values()), min(mp["sqnr_after_db"].values())
    return (f"mixed precision (target {mp['target_sqnr_db']:g} dB, {'met' if mp['met'] else 'NOT met'}): worst output "
            f"{worst_b:.1f} -> {worst_a:.1f} dB with {len(mp['changed_layers'])} layer(s) changed; "
            f"stopped by: {mp['stopped_by']}")


def qdq_line(q: dict[str, Any]) -> str:
    """One line for a QDQ source: how many activation ranges and weights came from the model, how many from
    calibration (the lists are in report.json's ``qdq``)."""
    if q["ranges"] != "model":
        return f"- QDQ source: {q['model_pairs']} model pair(s) ignored, every range from {q['ranges']}"
    moved = len(q["changed_by_constraints"])
    return (f"- QDQ source: {len(q['activations_from_model'])} activation range(s) from the model"
            + (f" ({moved} more moved by TFLite's constraints)" if moved else "")
            + f", {len(q['activations_calibrated'])} from calibration; {len(q['weights_from_model'])} weight(s) from "
            f"the model, {len(q['weights_requantized'])} re-quantized")


def markdown(report: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"# Conversion report: {report['model']}", "",
             f"- source: {report['source']} ({report['source_format']}), profile: {report['profile']}",
             f"- calibration: {report['calibration']['samples']} samples, method {report['calibration']['method']}",
             "- outputs: " + ", ".join(f"{k} `{os.path.basename(v)}`" for k, v in report["outputs"].items() if v), ""]
    if report.get("qdq"):
        lines[-1:-1] = [qdq_line(report["qdq"])]
    lines += ["## Summary", ""] + [f"- {s}" for s in report.get("summary", [])] + [""]
    fit = report.get("fit")
    if fit:
        lines += ["## Fit", "", "```", fit["summary"], "```", ""]
    cal = report.get("calibration_outputs")
    if cal:
        lines += ["## Every output (calibration samples)", ""] + OUT_HEAD + _output_table(cal, "int8 tflite") + [""]
    ho = report.get("held_out")
    if ho:
        lines += ["## Every output (held-out set)", "", f"{ho['samples']} samples" + (
            f", float accuracy {ho['float_accuracy']:.4f}" if "float_accuracy" in ho else ""), ""] + OUT_HEAD
        for k in ("tflite", "onnx"):
            if k in ho:
                lines += _output_table(ho[k], f"int8 {k}")
        lines.append("")
    sens = report.get("sensitivity")
    if sens:
        lines += ["## Sensitivity (worst-output SQNR, float graph with fake-quant in ONNX Runtime)", "",
                  (f"All layers int8: {sens['all_quantized_db']} dB. Sorted by the SQNR with only that layer "
                   "quantized; 'float gain' is what leaving only that layer in float gives back (little for a "
                   "layer whose output shares its int8 scale with others, e.g. a CONCATENATION input)."), "",
                  "| # | op | tensor | only this layer int8 (dB) | all but this layer int8 (dB) | float gain (dB) |",
                  "|---|---|---|---|---|---|"]
        for r in sens["layers"]:
            lines.append(f"| {r['index']} | {r['op']} | `{r['tensor']}` | {r['only_quantized_db']} | "
                         f"{r['only_float_db']} | {r['float_gain_db']} |")
        lines.append("")
    mp = report.get("mixed_precision")
    if mp:
        lines += mixed_precision_markdown(mp)
    lines += ["## Per-layer SQNR (calibration data)", "", "| # | op | tensor | SQNR dB | grade | loss dB | |",
              "|---|---|---|---|---|---|---|"]
    for r in report["layers"]:
        lines.append(f"| {r['index']} | {r['op']} | `{r['tensor']}` | {r['sqnr_db']} | {r.get('grade', '')} | "
                     f"{r['loss_db']} | {'**flagged**' if r['flagged'] else ''} |")
    flagged = sorted((r for r in report["layers"] if r["flagged"]), key=lambda r: -r["loss_db"])
    if flagged:
        lines += ["", "Layers that lose most: " + ", ".join(f"{r['index']}:{r['op']} ({r['loss_db']} dB)"
                                                           for r in flagged)]
    if report.get("plot"):
        lines += ["", f"![SQNR per layer and per output]({os.path.basename(report['plot'])})"]
    lines.append("")
    return "\n".join(lines)


def want_plot(plot_png: Optional[bool]) -> bool:
    """Whether to write report.png: as asked, or by default only when matplotlib is already loaded (then
    the plot costs its drawing time alone, not matplotlib's import)."""
    return "matplotlib" in sys.modules if plot_png is None else bool(plot_png)


def mixed_precision_markdown(mp: dict[str, Any]) -> list[str]:
    """The report's mixed-precision section: ops kept int8, and the layers the target search changed."""
    lines = ["## Mixed precision", "", f"Starting point: {mp['activations']} activations."]
    if mp.get("kept_int8"):
        lines.append("Kept in int8 (no int16 kernel in TFLite Micro and LiteRT): "
                     + ", ".join(f"{r['name']} ({r['op']})" for r in mp["kept_int8"]) + ".")
    if "changed_layers" in mp:
        lines += ["", mixed_precision_line(mp), "", "| output | SQNR before (dB) | SQNR after (dB) |", "|---|---|---|"]
        lines += [f"| `{o}` | {mp['sqnr_before_db'][o]} | {mp['sqnr_after_db'][o]} |" for o in mp["sqnr_before_db"]]
        lines += ["", "Each layer's cost: the final model minus the same model with only that layer back at its "
                  "start precision (flash and arena bytes from the profile fit).", "",
                  "| layer | op | new precision | flash bytes | arena bytes |", "|---|---|---|---|---|"]
        lines += [f"| `{r['name']}` | {r['op']} | {r['from']} -> {r['to']} | {r['flash_bytes']:+,} | "
                  f"{r['arena_bytes']:+,} |" for r in mp["changed_layers"]]
        lat = mp.get("host_latency_ms")
        lines += ["", f"Whole model: flash {mp['flash_bytes']['before']:,} -> {mp['flash_bytes']['after']:,} B, arena "
                  f"{mp['arena_bytes']['before']:,} -> {mp['arena_bytes']['after']:,} B"
                  + (f"; host latency ({lat['runtime']}) {lat['before']} -> {lat['after']} ms" if lat else "") + "."]
        if mp.get("message"):
            lines += ["", f"**{mp['message']}**"]
    return lines + [""]


def write_report(out_dir: str, report: dict[str, Any], layers: list[dict], plot_png: Optional[bool] = None) -> str:
    """Write report.json, report.md and (see :func:`want_plot`) report.png into ``out_dir``; return the
    JSON path. ``report["plot"]`` is the PNG's path or None; the time the plot took goes into
    ``report["timings"]["plot_s"]`` (and ``total_s``) when the report has timings."""
    report["layers"] = layers
    report["summary"] = summary(report)
    report["plot"] = None
    png = os.path.join(out_dir, "report.png")
    if not want_plot(plot_png) and os.path.isfile(png):
        os.remove(png)  # a previous conversion's plot would not match this report
    if want_plot(plot_png):
        t0 = time.perf_counter()
        report["plot"] = plot(png, report, f"{report['model']}: int8 vs float")
        timings = report.get("timings")
        if isinstance(timings, dict):
            timings["plot_s"] = round(time.perf_counter() - t0, 3)
            if "total_s" in timings:
                timings["total_s"] = round(timings["total_s"] + timings["plot_s"], 3)
    path = os.path.join(out_dir, "report.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=float)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(report))
    return path

"""Per-layer quantization sensitivity: which layers cost the outputs most.

The float IR runs in ONNX Runtime with a switchable fake-quant point on every activation and every
weight of a weighted op: QuantizeLinear -> DequantizeLinear with the plan's parameters (per-channel
weights as the plan has them), selected by a boolean mask fed at run time, so one session measures
every configuration. A *layer* is an op: its weights and its output activation (the model input is
layer ``-1``). For each layer, the worst output's SQNR against float:

- ``only_quantized_db``: only that layer int8, everything else float (its own sensitivity);
- ``only_float_db``: everything int8 except that layer (what keeping it in float gives back,
  ``float_gain_db`` above the all-int8 SQNR).

Int32 biases, float constant operands and float islands are not simulated (their error is far below
int8 rounding). Tensors that share one int8 scale (the inputs of CONCATENATION, pooling, RESHAPE, ...)
keep it when one of them is left in float, so such a layer shows little ``float_gain_db`` alone even
when the shared scale is the culprit: its ``only_quantized_db`` still names it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from converters.ir import WEIGHTED, Graph, unquantized_tensors
from converters.quality.metrics import sqnr_db
from converters.quantize import QuantPlan

#: Weight layout of each weighted op in the float ONNX model (see converters.writers.onnx).
ONNX_WEIGHT_PERM = {"CONV_2D": (0, 3, 1, 2), "DEPTHWISE_CONV_2D": (3, 0, 1, 2), "TRANSPOSE_CONV": (3, 0, 1, 2),
                    "FULLY_CONNECTED": (0, 1)}
MASK = "fake_quant_mask"
#: Layers named in the summary.
TOP = 3
#: Calibration samples the conversion pipeline analyses (2 runs per layer per sample).
SAMPLES = 16


@dataclass
class _Point:
    """One fake-quant point: an activation or a weight, and the layer it belongs to."""

    tensor: str
    layer: int
    weight: bool


def dequantized_weight(plan: QuantPlan, name: str) -> np.ndarray:
    """The plan's int8 weight ``name`` back in float (IR layout)."""
    qw = plan.weights[name]
    scales = qw.scales.astype(np.float32)
    if scales.size > 1:
        shape = [1] * qw.values.ndim
        shape[qw.axis] = -1
        scales = scales.reshape(shape)
    return qw.values.astype(np.float32) * scales


def _points(graph: Graph, plan: QuantPlan) -> list[_Point]:
    raw = unquantized_tensors(graph)  # integer inputs (token ids), indices and masks are never quantized
    pts = [_Point(graph.inputs[0], -1, False)] if graph.inputs[0] not in raw else []
    seen = {graph.inputs[0]} | set(raw)
    for i, op in enumerate(graph.ops):
        if op.kind in WEIGHTED and op.inputs[1] in plan.weights and op.inputs[1] not in seen:
            pts.append(_Point(op.inputs[1], i, True))
            seen.add(op.inputs[1])
        for t in op.outputs:
            if t in plan.activations and t not in seen:
                pts.append(_Point(t, i, False))
                seen.add(t)
    return pts


def build_fake_quant_model(graph: Graph, plan: QuantPlan) -> tuple[Any, list[_Point]]:
    """The float ONNX model (NHWC input) with a fake-quant point per activation and weight, each
    switched on by its entry of the boolean graph input :data:`MASK`."""
    from onnx import TensorProto, checker, helper, numpy_helper

    from converters.writers.onnx import build_onnx

    model = build_onnx(graph, None, expose_all=False, source_layout=False)
    g = model.graph
    pts = _points(graph, plan)
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    kinds = {op.inputs[1]: op.kind for op in graph.ops if op.kind in WEIGHTED}
    new_nodes, new_inits = [], []
    for k, p in enumerate(pts):
        t = p.tensor
        flag, sel_in = f"{t}/fq_flag", f"{t}/fq"
        new_inits.append(numpy_helper.from_array(np.array([k], np.int64), f"{t}/fq_index"))
        new_nodes.append(helper.make_node("Gather", [MASK, f"{t}/fq_index"], [f"{t}/fq_flag1"], axis=0))
        new_nodes.append(helper.make_node("Squeeze", [f"{t}/fq_flag1"], [flag]))
        if p.weight:
            raw = inits[t]
            w = numpy_helper.to_array(raw)
            fq = dequantized_weight(plan, t).transpose(ONNX_WEIGHT_PERM[kinds[t]])
            if fq.shape != w.shape:
                raise ValueError(f"weight '{t}': ONNX layout {w.shape} does not match the plan's {fq.shape}")
            raw.name = f"{t}/raw"
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(fq), sel_in))
            new_nodes.append(helper.make_node("Where", [flag, sel_in, f"{t}/raw"], [t]))
            continue
        qp = plan.activations[t]
        new_inits += [numpy_helper.from_array(np.array(qp.scale, np.float32), f"{t}/fq_scale"),
                      numpy_helper.from_array(np.array(qp.zero_point, np.int8), f"{t}/fq_zp")]
        if t in producers:
            src, dst = f"{t}/raw", t
            node = producers[t]
            node.output[list(node.output).index(t)] = src
        else:  # a graph input: its readers switch to the selected value
            src, dst = t, f"{t}/sel"
            for n in g.node:
                for j, name in enumerate(n.input):
                    if name == t:
                        n.input[j] = dst
        new_nodes += [helper.make_node("QuantizeLinear", [src, f"{t}/fq_scale", f"{t}/fq_zp"], [f"{t}/fq_q"]),
                      helper.make_node("DequantizeLinear", [f"{t}/fq_q", f"{t}/fq_scale", f"{t}/fq_zp"], [sel_in]),
                      helper.make_node("Where", [flag, sel_in, src], [dst])]
    g.input.append(helper.make_tensor_value_info(MASK, TensorProto.BOOL, [len(pts)]))
    g.initializer.extend(new_inits)
    g.node.extend(new_nodes)
    _topo_sort(g)
    checker.check_model(model)
    return model, pts


def _topo_sort(g: Any) -> None:
    """Reorder ``g.node`` topologically (the inserted nodes were appended at the end)."""
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    nodes = list(g.node)
    order = []
    while nodes:
        rest = []
        for n in nodes:
            if all(i in ready for i in n.input):
                order.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            raise ValueError("the fake-quant model has a cycle")
        nodes = rest
    del g.node[:]
    g.node.extend(order)


class FakeQuantRunner:
    """One ONNX Runtime session over the fake-quant model; :meth:`outputs` runs a configuration."""

    def __init__(self, graph: Graph, plan: QuantPlan) -> None:
        import onnxruntime as ort

        model, self.points = build_fake_quant_model(graph, plan)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.graph = graph
        self.layers = sorted({p.layer for p in self.points})

    def mask(self, layers: Optional[Iterable[int]], invert: bool = False) -> np.ndarray:
        """Boolean mask quantizing the points of ``layers`` (all when None), or all others with ``invert``."""
        chosen = set(self.layers if layers is None else layers)
        return np.array([(p.layer in chosen) != invert for p in self.points], bool)

    def outputs(self, xs_ir: list[np.ndarray], mask: np.ndarray) -> list[list[np.ndarray]]:
        """Every graph output for each NHWC sample under ``mask``."""
        name = self.graph.inputs[0]
        return [self.sess.run(self.graph.outputs, {name: x, MASK: mask}) for x in xs_ir]


def _worst_sqnr(ref: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> tuple[float, int]:
    """Lowest SQNR over the outputs (summed over samples) and the index of that output."""
    dbs = []
    for k in range(len(ref[0])):
        f = np.concatenate([r[k].reshape(-1) for r in ref]).astype(np.float64)
        q = np.concatenate([g[k].reshape(-1) for g in got]).astype(np.float64)
        dbs.append(sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))))
    k = int(np.argmin(dbs))
    return dbs[k], k


def analyze(graph: Graph, plan: QuantPlan, samples: Iterable[np.ndarray]) -> dict[str, Any]:
    """Sensitivity of every layer on ``samples`` (source layout); see the module docstring.

    Returns ``{"all_quantized_db", "worst_output", "layers": [...sorted by only_quantized_db], "top",
    "summary"}``.
    """
    runner = FakeQuantRunner(graph, plan)
    name = graph.inputs[0]
    xs = [graph.to_ir_layout(name, np.asarray(x, _input_type(graph)).reshape(graph.source_shape(name))) for x in samples]
    if not xs:
        raise ValueError("the sensitivity analysis needs at least one sample")
    ref = runner.outputs(xs, runner.mask([]))
    all_db, worst = _worst_sqnr(ref, runner.outputs(xs, runner.mask(None)))
    rows = []
    for layer in runner.layers:
        only_q, _ = _worst_sqnr(ref, runner.outputs(xs, runner.mask([layer])))
        only_f, _ = _worst_sqnr(ref, runner.outputs(xs, runner.mask([layer], invert=True)))
        op = graph.ops[layer] if layer >= 0 else None
        rows.append({"index": layer, "op": op.kind if op else "INPUT", "name": op.name if op else name,
                     "tensor": op.outputs[0] if op else name, "only_quantized_db": round(only_q, 2),
                     "only_float_db": round(only_f, 2), "float_gain_db": round(only_f - all_db, 2)})
    rows.sort(key=lambda r: (r["only_quantized_db"], -r["float_gain_db"]))
    top = rows[:TOP]
    text = (f"sensitivity: all layers int8 give {all_db:.1f} dB on output '{graph.outputs[worst]}'; most sensitive: "
            + ", ".join(f"{r['index']}:{r['op']} ({r['only_quantized_db']} dB alone, +{r['float_gain_db']} dB "
                        f"if float)" for r in top))
    return {"samples": len(xs), "all_quantized_db": round(all_db, 2), "worst_output": graph.outputs[worst],
            "layers": rows, "top": [r["index"] for r in top], "summary": text}


def _input_type(graph: Graph) -> type:
    """The numpy type samples of the graph input are fed in: int32 for integer inputs (token ids), else float32."""
    return np.int32 if graph.inputs[0] in graph.input_dtypes else np.float32

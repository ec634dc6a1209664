"""Where the OpenVINO EP and ORT's CPU EP diverge on our int8 QDQ models, measured against exact references.

Main-venv side (it needs ``onnx`` and the micro interpreter); the runs themselves happen in
the onnxruntime-openvino venv (``benchmarks/_openvino_run.py --probe``). Three views:

* **prefixes**: the model truncated after each activation QuantizeLinear (that tensor its only
  output), so every fusion before it is the unmodified model's; the first one where OpenVINO
  and the CPU EP differ is the first diverging op.
* **probe**: the model with every activation QuantizeLinear output added as a graph output, run
  with graph optimisations off (plain QDQ) for the int8 inputs of the isolated ops. Extra outputs
  can change an EP's fusions: :func:`analyse` reports, per EP, how far the probe model's output
  moved from the unmodified model's.
* **isolated ops**: one small model per quantized op (its int8 activation inputs, DQ, the op,
  Q), fed the same int8 inputs on every EP (the plain-QDQ values from the probe run) and
  compared with a float64 evaluation of the QDQ semantics (:func:`float64_qdq`: ONNX's
  reference evaluator with every float constant in float64). For Conv/Gemm it also measures
  how far the exact value x/s + zp of each mismatching element lies from a .5 rounding boundary.
* **int8 references**: the .tflite from the same quantization plan on our micro interpreter
  (bit-exact with tflite-micro), stepped op by op (:func:`micro_tensors`), at the logits (the
  int8 tensor a softmax reads) and the outputs; and float64 softmax of each EP's own logits
  (is an output difference the softmax amplifying a logit difference, or the softmax itself?).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: op types that only move or copy values; an isolated op's "kind" leaves them out
_MOVES = ("QuantizeLinear", "DequantizeLinear", "Transpose", "Identity")


#: Options tried as remedies: OpenVINO provider options / CPU properties (``ep: ov``) and ORT CPU session options
#: (``ep: cpu``); each is compared with the other EP as shipped. LP_TRANSFORMS_MODE is the CPU plugin's switch for
#: its low-precision transformations (off: FakeQuantize and convolutions run in f32).
VARIANTS: list[dict[str, Any]] = [
    {"name": "OpenVINO as shipped (precision ACCURACY)", "ep": "ov"},
    {"name": "OpenVINO precision FP32", "ep": "ov", "ov_options": {"precision": "FP32"}},
    {"name": "OpenVINO INFERENCE_PRECISION_HINT f32", "ep": "ov", "ov_cpu": {"INFERENCE_PRECISION_HINT": "f32"}},
    {"name": "OpenVINO enable_qdq_optimizer", "ep": "ov", "ov_options": {"enable_qdq_optimizer": "True"}},
    {"name": "OpenVINO disable_dynamic_shapes", "ep": "ov", "ov_options": {"disable_dynamic_shapes": "True"}},
    {"name": "OpenVINO LP_TRANSFORMS_MODE NO", "ep": "ov", "ov_cpu": {"LP_TRANSFORMS_MODE": "NO"}},
    {"name": "OpenVINO 4 threads", "ep": "ov", "ov_cpu": {"INFERENCE_NUM_THREADS": "4"}},
    {"name": "ORT CPU session.disable_quant_qdq (no QLinear fusion)", "ep": "cpu",
     "session_config": {"session.disable_quant_qdq": "1"}},
]


@dataclass(frozen=True)
class IsolatedOp:
    """One quantized op as a model of its own: int8 ``inputs`` (with ``in_shapes``) -> int8 ``output``."""

    path: str
    kind: str
    inputs: list[str]
    in_shapes: list[list[int]]
    output: str


def _activation_qs(m: Any) -> list[Any]:
    """The QuantizeLinear nodes of activations, in graph order, without the duplicate Q of a graph output."""
    inits = {i.name for i in m.graph.initializer}
    outs = {o.name for o in m.graph.output}
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    feeds_output = {n.input[0] for n in qs if n.output[0] in outs}
    return [n for n in qs if n.output[0] in outs or n.input[0] not in feeds_output]


def probe_model(onnx_path: str, out: Path) -> list[str]:
    """Write ``onnx_path`` with every activation Q output as an extra graph output; return all output names."""
    import onnx
    from onnx import helper

    m = onnx.load(onnx_path)
    have = [o.name for o in m.graph.output]
    for q in _activation_qs(m):
        if q.output[0] not in have:
            m.graph.output.append(helper.make_tensor_value_info(q.output[0], onnx.TensorProto.INT8, None))
    onnx.save(m, str(out))
    return [o.name for o in m.graph.output]


def isolate_ops(onnx_path: str, out_dir: Path, prefix: bool = False) -> list[IsolatedOp]:
    """One model per activation QuantizeLinear: the nodes between the int8 activations it depends on and it.
    ``prefix``: the nodes between the graph's inputs and it instead (the model truncated after that tensor)."""
    import onnx
    from onnx import helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(onnx_path))
    inits = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    info = {v.name: v for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    qs = _activation_qs(m)
    int8 = {i.name for i in m.graph.input} | (set() if prefix else {q.output[0] for q in qs})
    out_dir.mkdir(parents=True, exist_ok=True)
    ops = []
    for k, q in enumerate(qs):
        members, inputs, todo, seen = {id(q)}, [], [q.input[0]], set()
        while todo:
            t = todo.pop()
            if t in seen or t in inits or not t:
                continue
            seen.add(t)
            if t in int8:
                inputs.append(t)
                continue
            members.add(id(producer[t]))
            todo.extend(producer[t].input)
        nodes = [n for n in m.graph.node if id(n) in members]
        used = {i for n in nodes for i in n.input}
        g = helper.make_graph(nodes, f"op{k}", [info[i] for i in inputs],
                              [helper.make_tensor_value_info(q.output[0], onnx.TensorProto.INT8, None)],
                              [inits[i] for i in sorted(used) if i in inits])
        model = helper.make_model(g, opset_imports=m.opset_import)
        model.ir_version = m.ir_version
        path = out_dir / f"op{k:02d}.onnx"
        onnx.save(model, str(path))
        kind = "+".join(n.op_type for n in nodes if n.op_type not in _MOVES) or "Q"
        shapes = [[d.dim_value for d in info[i].type.tensor_type.shape.dim] for i in inputs]
        ops.append(IsolatedOp(str(path), kind, inputs, shapes, q.output[0]))
    return ops


def float64_qdq(path: str, feeds: list[np.ndarray], names: list[str], pre_round: bool = False,
                output: int = 0) -> np.ndarray:
    """QDQ semantics in float64 (ONNX's reference evaluator, float constants widened, opset 21 for its Q/DQ), one
    run per row of ``feeds``: graph output ``output``. ``pre_round``: instead of the int8 output, the exact
    x/s + zp its QuantizeLinear rounds."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    m = onnx.load(path)
    for op in m.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, 21)  # the reference evaluator has DequantizeLinear from opset 19 on
    consts = {}
    for i, t in enumerate(m.graph.initializer):
        a = numpy_helper.to_array(t)
        consts[t.name] = a
        if a.dtype == np.float32:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a.astype(np.float64), t.name))
    scale = zp = 0.0
    if pre_round:
        q = m.graph.node[-1]
        scale, zp = float(consts[q.input[1]]), float(consts[q.input[2]])
        del m.graph.output[:]
        m.graph.output.append(helper.make_tensor_value_info(q.input[0], onnx.TensorProto.DOUBLE, None))
        m.graph.node.pop()
    ev = ReferenceEvaluator(m)
    rows = [np.asarray(ev.run(None, {n: f[j] for n, f in zip(names, feeds)})[output]).reshape(-1)
            for j in range(len(feeds[0]))]
    y = np.stack(rows)
    return y / scale + zp if pre_round else y.astype(np.int64)


def micro_tensors(tflite: str, xs: np.ndarray) -> dict[str, np.ndarray]:
    """Every op output of the int8 .tflite on our micro interpreter (bit-exact with tflite-micro), read after each
    op: tensor name -> (len(xs), size) array."""
    from edge_runtime.backends.micro.interpreter import Interpreter
    from edge_runtime.formats.tflite import TFLiteModel

    it = Interpreter(TFLiteModel.open(tflite))
    ops = list(zip(it.kernels, it.sg.operators))
    got: dict[str, list[np.ndarray]] = {}
    for x in xs:
        it.set_input(0, x.reshape(it.input_views[0].shape))
        for kernel, op in ops:
            if not getattr(kernel, "aliased", False):
                kernel.run()
            for t in op.outputs:
                got.setdefault(it.sg.tensors[t].name, []).append(it.views[t].reshape(-1).copy())
    out = {k: np.stack(v) for k, v in got.items()}
    import edge_runtime

    with edge_runtime.load(tflite, backend="micro") as m:  # stepping op by op must not change what it computes
        whole = np.stack([m.run([x.reshape(m.inputs[0].shape)])[0].reshape(-1) for x in xs])
    if not np.array_equal(whole, out[it.sg.tensors[it.sg.outputs[0]].name]):
        raise RuntimeError(f"{tflite}: the micro interpreter stepped op by op differs from its whole invoke")
    return out


def _match(name: str, tflite_names: list[str]) -> str | None:
    """The .tflite tensor an ONNX Q output comes from: the longest .tflite name it starts with."""
    hits = [t for t in tflite_names if name.startswith(t)]
    return max(hits, key=len) if hits else None


def _lsb(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64))))


def _within1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int64) - b.astype(np.int64)) <= 1))


def prepare(onnx_path: str, logits_onnx: str | None, work: Path) -> dict[str, Any]:
    """The probe and isolated-op models of one converted model, as a spec entry for ``_openvino_run --probe``."""
    import onnx

    work.mkdir(parents=True, exist_ok=True)
    names = probe_model(onnx_path, work / "probe.onnx")
    ops = isolate_ops(onnx_path, work / "ops")
    prefixes = isolate_ops(onnx_path, work / "prefix", prefix=True)
    logits = onnx.load(logits_onnx).graph.output[1].name if logits_onnx else None
    return {"probe_onnx": str(work / "probe.onnx"), "probe_names": names, "onnx": onnx_path,
            "compare_onnx": logits_onnx or onnx_path, "logits_name": logits, "ops": [asdict(o) for o in ops],
            "prefixes": [asdict(o) for o in prefixes], "variants": VARIANTS,
            "out": str(work / "probe.npz")}


def _softmax_q(logits: np.ndarray, scale: float, zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    z = (logits.astype(np.float64) - zp) * scale
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.clip(np.rint(p / out_scale) + out_zp, -128, 127).astype(np.int64)


def _softmax_params(onnx_path: str) -> tuple[float, int, float, int] | None:
    """(logit scale, zp, output scale, zp) around the last Softmax, or None without one."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(onnx_path)
    consts = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    soft = [n for n in m.graph.node if n.op_type == "Softmax"]
    if not soft:
        return None
    dq = producer[soft[-1].input[0]]
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == soft[-1].output[0])
    return (float(consts[dq.input[1]]), int(consts[dq.input[2]]), float(consts[q.input[1]]), int(consts[q.input[2]]))


def analyse(name: str, spec: dict[str, Any], tflite: str, xs: np.ndarray) -> dict[str, Any]:
    """One model's breakdown from the probe run's arrays (see module docstring)."""
    r = np.load(spec["out"])
    kinds = {o["output"]: o["kind"] for o in spec["ops"]}
    row: dict[str, Any] = {"model": name}
    # the probe's extra outputs must not change what the EPs compute at the model output
    row["probe_changes_output"] = {ep: _lsb(r[f"probe|{ep}|0"], r[f"final|{ep}"]) for ep in ("ov", "cpu", "ref")}
    # the first int8 tensor (graph order) where OpenVINO and the CPU EP differ, each read from the model truncated
    # right after it (its only output, so every fusion before it is the unmodified model's)
    first = None
    for k, o in enumerate(spec["prefixes"]):
        a, b = r[f"prefix{k}|ov"], r[f"prefix{k}|cpu"]
        if not np.array_equal(a, b):
            first = {"op": kinds.get(o["output"], "?"), "index": k + 1, "of": len(spec["prefixes"]),
                     "lsb": _lsb(a, b), "elements": int(np.sum(a != b)), "size": int(a.size)}
            break
    row["first_divergence"] = first
    # the logits (int8 input of the softmax) and outputs of the unmodified model (its logits-output variant)
    soft = _softmax_params(spec["compare_onnx"])
    outs = {ep: r[f"cmp|{ep}|0"] for ep in ("ov", "cpu", "ref")}
    logits = {ep: r[f"cmp|{ep}|1"] for ep in outs} if soft else outs
    mic = micro_tensors(tflite, xs)
    tnames = list(mic)
    m_out = mic[tnames[-1]]
    t_logits = _match(spec["logits_name"], tnames) if soft else None
    if soft and t_logits is None:
        raise ValueError(f"{name}: no .tflite tensor matches the ONNX logits '{spec['logits_name']}'")
    m_logits = mic[t_logits] if t_logits else m_out
    row["ov_vs_cpu"] = {"logits": _lsb(logits["ov"], logits["cpu"]), "out": _lsb(outs["ov"], outs["cpu"]),
                        "out_within_1": _within1(outs["ov"], outs["cpu"]),
                        "logits_within_1": _within1(logits["ov"], logits["cpu"])}
    for ep in ("ov", "cpu", "ref"):
        row[f"{ep}_vs_micro"] = {"logits": _lsb(logits[ep], m_logits), "out": _lsb(outs[ep], m_out),
                                 "logits_within_1": _within1(logits[ep], m_logits),
                                 "out_within_1": _within1(outs[ep], m_out),
                                 "top1": int(np.sum(outs[ep].argmax(1) == m_out.argmax(1)))}
    row["n"] = len(xs)
    # the whole model in float64 QDQ semantics
    graph_input = [spec["prefixes"][0]["inputs"][0]]
    f_out = float64_qdq(spec["compare_onnx"], [xs], graph_input)
    f_logits = float64_qdq(spec["compare_onnx"], [xs], graph_input, output=1) if soft else f_out
    for ep in ("ov", "cpu", "ref"):
        row[f"{ep}_vs_float64"] = {"logits": _lsb(logits[ep], f_logits), "out": _lsb(outs[ep], f_out)}
    row["micro_vs_float64"] = {"logits": _lsb(m_logits, f_logits), "out": _lsb(m_out, f_out)}
    row["variants"] = []
    for k, var in enumerate(spec["variants"]):
        other = "cpu" if var["ep"] == "ov" else "ov"
        o, lg = r[f"variant{k}|0"], r[f"variant{k}|1"] if soft else r[f"variant{k}|0"]
        row["variants"].append({"name": var["name"], "logits": _lsb(lg, logits[other]), "out": _lsb(o, outs[other]),
                                "ms": float(r[f"variant{k}|ms"])})
    if soft:
        # the softmax of each EP on its own logits, against float64: is an output difference only amplification?
        row["softmax_vs_float64"] = {ep: _lsb(outs[ep], _softmax_q(logits[ep], *soft)) for ep in outs}
        row["inputs_with_logit_difference"] = int(np.sum(np.any(logits["ov"] != logits["cpu"], axis=1)))
        row["logit_scale"] = soft[0]
    # isolated ops against float64 QDQ semantics
    ops = []
    for k, o in enumerate(spec["ops"]):
        feeds = [r[f"op{k}|feed{j}"] for j in range(len(o["inputs"]))]
        exact = float64_qdq(o["path"], feeds, o["inputs"])
        rec = {"kind": o["kind"].replace("+Relu", ""), "size": int(exact.size)}
        mism = {ep: r[f"op{k}|{ep}"].astype(np.int64) != exact for ep in ("ov", "cpu", "ref")}
        for ep, bad in mism.items():
            rec[ep] = {"mismatches": int(bad.sum()), "lsb": _lsb(r[f"op{k}|{ep}"], exact)}
        if rec["kind"] in ("Conv", "Gemm") and any(b.any() for b in mism.values()):
            pre = float64_qdq(o["path"], feeds, o["inputs"], pre_round=True)
            tie = np.abs(pre - np.floor(pre) - 0.5)
            for ep, bad in mism.items():
                rec[ep]["max_tie_distance"] = float(tie[bad].max()) if bad.any() else 0.0
                rec[ep]["exact_ties"] = int(np.sum(tie[bad] == 0))
        ops.append(rec)
    row["ops"] = ops
    # the micro interpreter's first op against float64 QDQ semantics: how tflite-micro's fixed-point rounding differs
    o0 = spec["ops"][0]
    feeds0 = [r[f"op0|feed{j}"] for j in range(len(o0["inputs"]))]
    t0 = _match(o0["output"], tnames)
    if t0 is not None:
        pre = float64_qdq(o0["path"], feeds0, o0["inputs"], pre_round=True)
        exact0 = np.clip(np.rint(pre), -128, 127)
        bad = mic[t0] != exact0
        tie = np.abs(pre - np.floor(pre) - 0.5)
        row["micro_first_op"] = {"kind": o0["kind"].replace("+Relu", ""), "mismatches": int(bad.sum()),
                                 "size": int(bad.size), "lsb": _lsb(mic[t0], exact0),
                                 "max_tie_distance": float(tie[bad].max()) if bad.any() else 0.0}
    return row


def op_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Isolated-op results summed per op kind over all models."""
    tot: dict[str, dict[str, Any]] = {}
    for r in rows:
        for o in r["ops"]:
            t = tot.setdefault(o["kind"], {"kind": o["kind"], "size": 0, **{ep: {"mismatches": 0, "lsb": 0,
                                                                            "max_tie_distance": 0.0,
                                                                            "exact_ties": 0}
                                                                       for ep in ("ov", "cpu", "ref")}})
            t["size"] += o["size"]
            for ep in ("ov", "cpu", "ref"):
                t[ep]["mismatches"] += o[ep]["mismatches"]
                t[ep]["lsb"] = max(t[ep]["lsb"], o[ep]["lsb"])
                t[ep]["max_tie_distance"] = max(t[ep]["max_tie_distance"], o[ep].get("max_tie_distance", 0.0))
                t[ep]["exact_ties"] += o[ep].get("exact_ties", 0)
    return list(tot.values())

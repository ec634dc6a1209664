"""Mixed precision: ``--activations int16`` and the ``--target-sqnr DB`` search.

A precision map (``{op_key: 'int16' | 'float'}``, see :mod:`converters.quantize`) is turned into a
plan (:class:`PlanMaker`: the same ranges, the same int8 weights, bias correction for int8 and int16
layers alike), written as .tflite and measured: every output's SQNR against the float model on the
calibration samples, with LiteRT running the written file.

The search (:func:`search`), greedy and measured at every step:

1. rank the layers for each output by the per-layer sensitivity analysis
   (:class:`converters.quality.sensitivity.FakeQuantRunner`: the output's SQNR with only that layer
   int8), worst first;
2. while some output is below the target, take the worst one and try raising its top-ranked layers one
   step (int8 -> int16 -> float island, the float step only on profiles with an OS): first each layer
   alone, then each layer with the layers between it and that output (a value kept in int16 helps only
   if the ops downstream read it in int16 too), and on OS profiles, when no int16 move helps, the same
   moves straight to float islands; keep the first change that raises that output by at
   least :data:`MIN_GAIN_DB` without pushing another output below the target, and that still fits the
   profile's flash and RAM budgets (:func:`converters.fit.fit_model`);
3. stop when every output meets the target, when no candidate helps (or only ones over budget), or after
   :data:`MAX_MEASUREMENTS` measurements;
4. prune: lower each changed layer back one step where every output still meets the target (or, when the
   target was missed, where the worst output loses under 0.1 dB), and measure each remaining layer's
   cost in flash and arena bytes (the fit with only that layer lowered back).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph
from converters.quality.metrics import sqnr_db
from converters.quantize import (
    INT16_KINDS,
    QuantPlan,
    QuantWeight,
    op_key,
    plan_quantization,
)

#: Smallest gain (dB) on the failing output for a change to be kept.
MIN_GAIN_DB = 0.5
#: Layers tried per round, alone and with their path to the output.
TOP_K = 4
#: Measurements (write + run the .tflite) the search may spend.
MAX_MEASUREMENTS = 60
#: Samples the sensitivity ranking runs (2 ORT runs per layer per sample are not needed: one).
RANK_SAMPLES = 8
ACTIVATIONS = ("int8", "int16")


def next_step(kind: str, current: str, os_profile: bool) -> Optional[str]:
    """The precision one step above ``current`` for an op of ``kind``, or None when it cannot go higher."""
    if current == "int8" and kind in INT16_KINDS:
        return "int16"
    if current in ("int8", "int16") and os_profile:
        return "float"
    return None


def all_int16(graph: Graph) -> dict[str, str]:
    """``--activations int16``: every op with an int16 kernel in 16x8 form."""
    return {op_key(op): "int16" for op in graph.ops if op.kind in INT16_KINDS}


def kept_int8(graph: Graph) -> list[dict[str, str]]:
    """The ops ``--activations int16`` leaves in int8 (no int16 kernel in TFLite Micro or LiteRT)."""
    return [{"name": op.name or op_key(op), "op": op.kind} for op in graph.ops if op.kind not in INT16_KINDS]


class PlanMaker:
    """Plans for precision maps over one graph: same ranges and int8 weights, biases corrected."""

    def __init__(self, graph: Graph, ranges: dict, ranges16: dict, io_dtype: str, per_channel_fc: bool,
                 weights: dict[str, QuantWeight], means: Optional[dict[str, np.ndarray]]) -> None:
        self.graph, self.ranges, self.ranges16 = graph, ranges, ranges16
        self.io_dtype, self.per_channel_fc, self.weights, self.means = io_dtype, per_channel_fc, weights, means

    def plan(self, precision: dict[str, str]) -> QuantPlan:
        """The plan for ``precision`` (bias correction as the pipeline applies it, int16 layers in int64)."""
        plan = plan_quantization(self.graph, self.ranges, self.io_dtype, per_channel_fc=self.per_channel_fc,
                                 precision=precision, ranges16=self.ranges16, weights=self.weights)
        if self.means is not None:
            from converters.quality.bias_correction import correct_biases

            correct_biases(self.graph, plan, self.means)
            correct_int16_biases(self.graph, plan, self.means)
        return plan


def correct_int16_biases(graph: Graph, plan: QuantPlan, means: dict[str, np.ndarray]) -> None:
    """Bias correction (:mod:`converters.quality.bias_correction`) for the int16 layers, into int64 biases."""
    from converters.quality.bias_correction import corrected_bias

    weight_errors: dict = {}
    for op in graph.ops:
        got = corrected_bias(graph, plan, op, means, weight_errors) if plan.op_dtype(op) == "int16" else None
        if got is None:
            continue
        b = got[0]
        qb = plan.biases[op.inputs[2]]
        scale = np.broadcast_to(qb.scales.astype(np.float64), b.shape)
        plan.biases[op.inputs[2]] = QuantWeight(np.round(b / scale).astype(np.int64), qb.scales, qb.axis)


@dataclass
class Measurement:
    """One written candidate: every output's SQNR, and its fit (only when asked)."""

    sqnr: dict[str, float]
    fit: Any = None


class Evaluator:
    """Write a plan as .tflite and measure every output's SQNR against float on fixed samples."""

    def __init__(self, graph: Graph, float_sess: Any, samples: list[np.ndarray], work_path: str, profile: Any) -> None:
        name = graph.inputs[0]
        self.graph, self.path, self.profile = graph, work_path, profile
        self.xs = [graph.to_ir_layout(name, np.asarray(x, _input_type(graph)).reshape(graph.source_shape(name)))
                   for x in samples]
        self.float_sess = float_sess
        ref = [run_float(float_sess, graph, x) for x in self.xs]
        self.ref = {o: np.stack([r[o].reshape(-1) for r in ref]).astype(np.float64) for o in graph.outputs}
        self.count = 0

    def write(self, plan: QuantPlan, path: Optional[str] = None) -> str:
        """Write ``plan`` to ``path`` (default: the work file); the path."""
        from converters.writers.tflite import write_tflite

        return write_tflite(self.graph, plan, path or self.path)

    def measure(self, plan: QuantPlan, with_fit: bool = False) -> Measurement:
        """Every output's SQNR (dB) of ``plan`` on the samples (LiteRT on the written file)."""
        from converters.report import TFLiteRunner

        self.count += 1
        path = self.write(plan)
        runner = TFLiteRunner(path, preserve=True)  # LiteRT's reference kernels: XNNPACK refuses extreme scales
        got = {o: [] for o in self.graph.outputs}
        for x in self.xs:
            for o, v in zip(self.graph.outputs, runner.run(x)):
                got[o].append(v.reshape(-1))
        db = {}
        for o in self.graph.outputs:
            f, q = self.ref[o], np.stack(got[o]).astype(np.float64)
            db[o] = round(sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))), 2)
        return Measurement(db, self.fit(path) if with_fit else None)

    def fit(self, path: Optional[str] = None) -> Any:
        """:func:`converters.fit.fit_model` of the written file."""
        from converters.fit import fit_model

        return fit_model(path or self.path, self.profile)


def rank_layers(graph: Graph, plan: QuantPlan, samples: list[np.ndarray]) -> dict[str, list[int]]:
    """For each output, the op indices ordered by that output's SQNR with only that layer int8 (worst first)."""
    from converters.quality.sensitivity import FakeQuantRunner

    runner = FakeQuantRunner(graph, plan)
    name = graph.inputs[0]
    xs = [graph.to_ir_layout(name, np.asarray(x, _input_type(graph)).reshape(graph.source_shape(name)))
          for x in samples[:RANK_SAMPLES]]
    ref = runner.outputs(xs, runner.mask([]))
    scores: dict[str, list[tuple[float, int]]] = {o: [] for o in graph.outputs}
    for layer in runner.layers:
        if layer < 0:
            continue
        got = runner.outputs(xs, runner.mask([layer]))
        for k, o in enumerate(graph.outputs):
            f = np.concatenate([r[k].reshape(-1) for r in ref]).astype(np.float64)
            q = np.concatenate([g[k].reshape(-1) for g in got]).astype(np.float64)
            scores[o].append((sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))), layer))
    # ops without a fake-quant point of their own (none today) go last, in graph order
    out = {}
    for o, s in scores.items():
        ranked = [i for _, i in sorted(s)]
        out[o] = ranked + [i for i in range(len(graph.ops)) if i not in ranked]
    return out


def path_to_output(graph: Graph, start: int, output: str) -> list[int]:
    """Indices of the ops after op ``start`` that lie on a path from its outputs to graph output ``output``."""
    producers = {o: i for i, op in enumerate(graph.ops) for o in op.outputs}
    reaches: set[int] = set()
    stack = [producers[output]] if output in producers else []
    while stack:  # ops from which ``output`` is reachable
        i = stack.pop()
        if i in reaches:
            continue
        reaches.add(i)
        stack.extend(producers[t] for t in graph.ops[i].inputs if t in producers)
    downstream: set[int] = set()
    frontier = set(graph.ops[start].outputs)
    for i in range(start + 1, len(graph.ops)):
        if frontier & set(graph.ops[i].inputs):
            downstream.add(i)
            frontier |= set(graph.ops[i].outputs)
    return sorted(downstream & reaches)


def budget_stop(fit: Any) -> Optional[str]:
    """``'flash budget'`` / ``'RAM budget'`` when ``fit`` does not fit, else None."""
    if fit is None or fit.fits:
        return None
    over = []
    if fit.flash_bytes > fit.flash_budget_bytes:
        over.append(f"flash budget ({fit.flash_bytes:,} B > {fit.flash_budget_bytes:,} B)")
    if fit.ram_bytes > fit.ram_budget_bytes:
        over.append(f"RAM budget ({fit.ram_bytes:,} B > {fit.ram_budget_bytes:,} B)")
    return " and ".join(over) or "profile budget"


def _stuck_hint(graph: Graph, ranked: list[int], state: dict[str, str]) -> str:
    """Name the most sensitive int8 layer that cannot be raised on a microcontroller (no int16 kernel)."""
    for k, i in enumerate(ranked):
        op = graph.ops[i]
        if op.kind not in INT16_KINDS and state.get(op_key(op), "int8") == "int8":
            return (f"; {op.name or op_key(op)} ({op.kind}, #{k + 1} in this output's sensitivity ranking) has no "
                    "int16 kernel and stays int8")
    return ""


def _helps(new: dict[str, float], old: dict[str, float], o: str, target: float) -> bool:
    if new[o] < old[o] + MIN_GAIN_DB:
        return False
    return not any(old[k] >= target > new[k] for k in new)


@dataclass
class SearchResult:
    """What :func:`search` did: the final precision map and plan, the per-output SQNR before/after."""

    precision: dict[str, str]
    plan: QuantPlan
    before: dict[str, float]
    after: dict[str, float]
    met: bool
    stopped_by: str
    measurements: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def search(graph: Graph, maker: PlanMaker, evaluator: Evaluator, start: dict[str, str], target: float,
           os_profile: bool, samples: list[np.ndarray], progress: bool = False,
           max_measurements: int = MAX_MEASUREMENTS) -> SearchResult:
    """Raise layers until every output reaches ``target`` dB (see the module docstring)."""
    from edge_runtime.progress import NoBar, progress_bar

    t0 = time.perf_counter()
    state = dict(start)
    plan = maker.plan(state)
    cur = evaluator.measure(plan).sqnr
    before = dict(cur)
    ranking: Optional[dict[str, list[int]]] = None
    steps: list[dict[str, Any]] = []
    stopped = ""
    budget_note = ""
    shown = progress_bar(max_measurements, f"mixed precision (target {target:g} dB)", show=bool(progress))
    bar = NoBar() if shown is None else shown

    def level(i: int) -> str:
        return state.get(op_key(graph.ops[i]), "int8")

    def raised(indices: Iterable[int], top: bool = False) -> Optional[dict[str, str]]:
        cand = dict(state)
        changed = False
        for i in indices:
            nxt = next_step(graph.ops[i].kind, level(i), os_profile)
            if top and nxt == "int16" and os_profile:  # straight to a float island
                nxt = "float"
            if nxt is not None:
                cand[op_key(graph.ops[i])] = nxt
                changed = True
        return cand if changed else None

    while True:
        failing = [o for o in graph.outputs if cur[o] < target]
        if not failing:
            stopped = "target met"
            break
        if evaluator.count >= max_measurements:
            stopped = f"search limit ({max_measurements} measurements)"
            break
        if ranking is None:
            ranking = rank_layers(graph, maker.plan(start), samples)
        o = min(failing, key=lambda k: cur[k])
        top = [i for i in ranking[o] if next_step(graph.ops[i].kind, level(i), os_profile) is not None][:TOP_K]
        if not top:
            stopped = "nothing left to raise" + ("" if os_profile else " (int16 is the highest step on a "
                                                  "microcontroller profile: no float islands"
                                                  + _stuck_hint(graph, ranking[o], state) + ")")
            break
        moves = [[i] for i in top] + [[i] + path_to_output(graph, i, o) for i in top]
        tried = [(mv, False) for mv in moves] + ([(mv, True) for mv in moves] if os_profile else [])
        seen: set = set()
        accepted = False
        budget_note = ""
        for move, to_top in tried:
            cand = raised(move, to_top)
            key = tuple(sorted(cand.items())) if cand else None
            if cand is None or key in seen:
                continue
            seen.add(key)
            if evaluator.count >= max_measurements:
                break
            cplan = maker.plan(cand)
            m = evaluator.measure(cplan)
            bar.update(1)
            if not _helps(m.sqnr, cur, o, target):
                continue
            over = budget_stop(evaluator.fit())
            if over:
                budget_note = over
                continue
            steps.append({"output": o, "raised": [graph.ops[i].name or op_key(graph.ops[i]) for i in move
                                                  if cand.get(op_key(graph.ops[i])) != state.get(op_key(graph.ops[i]))],
                          "sqnr_db": dict(m.sqnr)})
            state, cur, plan, accepted = cand, m.sqnr, cplan, True
            break
        if not accepted:
            stopped = budget_note if budget_note else (
                f"search limit ({max_measurements} measurements)" if evaluator.count >= max_measurements
                else f"no raisable layer helps output '{o}'" + ("" if os_profile else
                     " (int16 is the highest step on a microcontroller profile: no float islands"
                     + _stuck_hint(graph, ranking[o], state) + ")"))
            break
    state, plan, cur = _prune(graph, maker, evaluator, start, state, plan, cur, target, bar)
    bar.close()
    met = all(v >= target for v in cur.values())
    if met:
        stopped = "target met"
    else:
        stopped += _output_ceiling_note(evaluator, plan, [o for o, v in cur.items() if v < target], target)
    return SearchResult(state, plan, before, cur, met, stopped, evaluator.count, steps, time.perf_counter() - t0)


def _prune(graph: Graph, maker: PlanMaker, evaluator: Evaluator, start: dict[str, str], state: dict[str, str],
           plan: QuantPlan, cur: dict[str, float], target: float, bar: Any) -> tuple:
    """Lower each changed layer back to its start precision where that costs nothing (see module docstring)."""
    kinds = {op_key(op): op.kind for op in graph.ops}
    met = all(v >= target for v in cur.values())
    order = ["int8", "int16", "float"]
    for k in reversed([k for k in state if state[k] != start.get(k, "int8")]):
        while state.get(k, "int8") != start.get(k, "int8"):  # one step down at a time
            lower = order[order.index(state[k]) - 1]
            if lower == "int16" and kinds[k] not in INT16_KINDS:
                lower = "int8"
            if order.index(lower) < order.index(start.get(k, "int8")):
                break
            cand = dict(state)
            cand[k] = lower
            if lower == "int8":
                cand.pop(k)
            cplan = maker.plan(cand)
            m = evaluator.measure(cplan)
            bar.update(1)
            ok = (all(v >= target for v in m.sqnr.values()) if met
                  else min(m.sqnr.values()) >= min(cur.values()) - 0.1)
            if not ok:
                break
            state, plan, cur = cand, cplan, m.sqnr
    return state, plan, cur


def layer_costs(graph: Graph, maker: PlanMaker, evaluator: Evaluator, start: dict[str, str],
                final: dict[str, str], final_fit: Any, work: str) -> list[dict[str, Any]]:
    """Each changed layer, its new precision, and what it costs: flash and arena bytes of the final model
    minus those with only that layer back at its start precision."""
    rows = []
    kinds = {op_key(op): (op.kind, op.name or op_key(op)) for op in graph.ops}
    for k, p in final.items():
        was = start.get(k, "int8")
        if p == was:
            continue
        cand = dict(final)
        if was == "int8":
            cand.pop(k)
        else:
            cand[k] = was
        path = evaluator.write(maker.plan(cand), work)
        fit = evaluator.fit(path)
        rows.append({"name": kinds[k][1], "op": kinds[k][0], "tensor": k, "from": was, "to": p,
                     "flash_bytes": int(final_fit.flash_bytes - fit.flash_bytes),
                     "arena_bytes": int(final_fit.arena_bytes - fit.arena_bytes)})
    if os.path.exists(work):
        os.remove(work)
    return rows


def host_latency_ms(paths: list[str], runs: int = 30) -> list[float]:
    """Median LiteRT latency (ms, one thread) of each .tflite, runs interleaved so they share the noise."""
    from converters.report import litert_interpreter

    its = []
    for p in paths:
        try:
            it = litert_interpreter(p)
        except RuntimeError:  # XNNPACK refuses some extreme scales: LiteRT's builtin kernels then
            it = litert_interpreter(p, reference_kernels=True)
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        its.append(it)
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(runs):
        for k, it in enumerate(its):
            t = time.perf_counter()
            it.invoke()
            times[k].append((time.perf_counter() - t) * 1e3)
    return [round(float(np.median(t)), 4) for t in times]


def output_ceiling_db(evaluator: "Evaluator", plan: QuantPlan, output: str) -> Optional[float]:
    """SQNR of the float output against itself stored in the output's own quantized type: no layer change
    can beat it (None for an unquantized output)."""
    qp = plan.activations.get(output)
    if qp is None:
        return None
    f = evaluator.ref[output]
    q = qp.dequantize(qp.quantize(f.astype(np.float32))).astype(np.float64)
    return round(sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))), 2)


def input_ceiling_db(evaluator: "Evaluator", plan: QuantPlan) -> dict[str, float]:
    """Per output: SQNR of the float model fed the quantized model input (the profile's input type) against
    the float model fed the float input: no layer change can beat it."""
    name = evaluator.graph.inputs[0]
    qp = plan.activations.get(name)
    if qp is None:
        return {}
    runs = [run_float(evaluator.float_sess, evaluator.graph, qp.dequantize(qp.quantize(x))) for x in evaluator.xs]
    out = {}
    for o in evaluator.graph.outputs:
        f = evaluator.ref[o]
        q = np.stack([r[o].reshape(-1) for r in runs]).astype(np.float64)
        out[o] = round(sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))), 2)
    return out


def weights_ceiling_db(evaluator: "Evaluator", plan: QuantPlan) -> dict[str, float]:
    """Per output: SQNR of the float model with the plan's int8 weights and its (bias-corrected) biases,
    dequantized, against the float model: 16x8 keeps these weights, so on a profile without float islands
    no activation change can beat it."""
    import dataclasses

    from converters.calibrate import float_session

    g = evaluator.graph
    tensors = dict(g.tensors)
    for name, qw in [*plan.weights.items(), *plan.biases.items()]:  # biases carry the bias correction
        t = tensors.get(name)
        if t is None or t.data is None:
            continue
        shape = [1] * qw.values.ndim
        if qw.scales.size > 1:
            shape[qw.axis] = qw.scales.size
        w = (qw.values.astype(np.float64) * np.asarray(qw.scales, np.float64).reshape(shape)).astype(np.float32)
        if w.shape == np.shape(t.data):
            tensors[name] = dataclasses.replace(t, data=w)
    sess = float_session(dataclasses.replace(g, tensors=tensors), expose_all=False)
    out = {}
    runs = [run_float(sess, g, x) for x in evaluator.xs]
    for o in g.outputs:
        f = evaluator.ref[o]
        q = np.stack([r[o].reshape(-1) for r in runs]).astype(np.float64)
        out[o] = round(sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2))), 2)
    return out


def _output_ceiling_note(evaluator: "Evaluator", plan: QuantPlan, failing: list[str], target: float) -> str:
    """``; the int8 output 'y' alone caps it at X dB ...`` for failing outputs whose own type is the limit."""
    notes = []
    in_caps = input_ceiling_db(evaluator, plan)
    in_qp = plan.activations.get(evaluator.graph.inputs[0])
    try:
        w_caps = weights_ceiling_db(evaluator, plan)
    except Exception:  # noqa: BLE001 - a diagnostic only: never fail the conversion over it
        w_caps = {}
    for o in failing:
        if o in w_caps and w_caps[o] < target + 1.0:
            notes.append(f"the int8 weights alone cap '{o}' at {w_caps[o]:.1f} dB on these samples (the float "
                         "model with the quantized weights; 16x8 keeps int8 weights)")
        if o in in_caps and in_caps[o] < target + 1.0 and in_qp is not None:
            notes.append(f"the {'int16' if in_qp.bits == 16 else 'int8'} model input (scale {in_qp.scale:.3g}) alone "
                         f"caps '{o}' at {in_caps[o]:.1f} dB on these samples (the float model fed the quantized "
                         "input): the profile's input type, not a layer, is the limit")
        cap = output_ceiling_db(evaluator, plan, o)
        qp = plan.activations.get(o)
        if cap is not None and qp is not None and cap < target + 1.0:
            notes.append(f"the {'int16' if qp.bits == 16 else 'int8'} output '{o}' itself (scale {qp.scale:.3g}, "
                         f"zero point {qp.zero_point}) caps it at {cap:.1f} dB on these samples: the profile's "
                         "output type, not a layer, is the limit")
    return ("; " + "; ".join(notes)) if notes else ""


def shortfall_message(model: str, res: SearchResult, target: float) -> str:
    """One line: the SQNR reached per failing output, how far short, and what stopped the search."""
    short = ", ".join(f"'{o}' {v:.1f} dB ({target - v:.1f} dB short)" for o, v in res.after.items() if v < target)
    return f"{model}: --target-sqnr {target:g} dB not met: {short}; stopped by: {res.stopped_by}"


def summarize(res: SearchResult, target: float, rows: list[dict[str, Any]], fit_before: Any, fit_after: Any,
              latency: Optional[list[float]]) -> dict[str, Any]:
    """The report's ``mixed_precision`` section."""
    d: dict[str, Any] = {
        "target_sqnr_db": target, "met": res.met, "stopped_by": res.stopped_by,
        "sqnr_before_db": res.before, "sqnr_after_db": res.after, "measurements": res.measurements,
        "search_s": round(res.seconds, 2), "changed_layers": rows, "steps": res.steps,
        "flash_bytes": {"before": fit_before.flash_bytes, "after": fit_after.flash_bytes},
        "arena_bytes": {"before": fit_before.arena_bytes, "after": fit_after.arena_bytes},
    }
    if latency is not None:
        d["host_latency_ms"] = {"before": latency[0], "after": latency[1], "runtime": "LiteRT, 1 thread, median"}
    return d


def apply(graph: Graph, float_sess: Any, data: Any, plan: QuantPlan, ranges: dict, profile: Any,
          per_channel_fc: bool, means: Optional[dict[str, np.ndarray]], activations: str = "int8",
          target_sqnr: Optional[float] = None, work_dir: str = ".", progress: bool = False,
          samples: int = 32, start_precision: Optional[dict[str, str]] = None,
          start_reasons: Optional[dict[str, Any]] = None) -> tuple[QuantPlan, Optional[dict[str, Any]]]:
    """The pipeline's mixed-precision step: the plan to write and the state for :func:`report_section`.

    ``plan`` is the int8 plan (its weights are kept); ``activations`` ``int16`` starts from every op in
    16x8; ``target_sqnr`` runs :func:`search`. Without either, ``plan`` comes back unchanged.
    """
    from converters.calibrate import calibrate

    if activations not in ACTIVATIONS:
        from edge_runtime.errors import ConfigError

        raise ConfigError(f"--activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    if activations == "int8" and target_sqnr is None:
        return plan, None
    ranges16 = calibrate(graph, data, "minmax", session=float_sess)
    maker = PlanMaker(graph, ranges, ranges16, plan.io_dtype, per_channel_fc, plan.weights, means)
    # the search starts from the default precision policy's choices (int8 elsewhere), or from all-int16
    start = all_int16(graph) if activations == "int16" else dict(start_precision or {})
    state: dict[str, Any] = {"activations": activations, "start": start, "maker": maker, "base": plan,
                             "kept_int8": kept_int8(graph) if activations == "int16" else None}
    if target_sqnr is None:
        return maker.plan(start), state
    xs = [x for i, x in enumerate(data) if i < samples]
    work = os.path.join(work_dir, ".mixed_precision_work.tflite")
    ev = Evaluator(graph, float_sess, xs, work, profile)
    res = search(graph, maker, ev, start, float(target_sqnr), not getattr(profile, "microcontroller", False), xs,
                 progress=progress)
    state.update(result=res, evaluator=ev, target=float(target_sqnr), work=work)
    if start_reasons:  # the policy's reasons, for the ops still at the precision it chose
        res.plan.reasons = {k: why for k, why in start_reasons.items() if res.precision.get(k) == start.get(k)}
    return res.plan, state


def report_section(state: Optional[dict[str, Any]], tflite_path: str, fit: Any, model: str) -> Optional[dict[str, Any]]:
    """The report's ``mixed_precision`` section for the written model (``None`` without mixed precision)."""
    if state is None:
        return None
    d: dict[str, Any] = {"activations": state["activations"]}
    if state["kept_int8"] is not None:
        d["kept_int8"] = state["kept_int8"]
    res: Optional[SearchResult] = state.get("result")
    if res is None:
        return d
    ev: Evaluator = state["evaluator"]
    base_path = state["work"] + ".int8"
    ev.write(state["base"] if state["activations"] == "int8" else state["maker"].plan(state["start"]), base_path)
    fit_before = ev.fit(base_path)
    rows = layer_costs(ev.graph, state["maker"], ev, state["start"], res.precision, fit, state["work"])
    latency = host_latency_ms([base_path, tflite_path])
    os.remove(base_path)
    d.update(summarize(res, state["target"], rows, fit_before, fit, latency))
    d["baseline"] = state["activations"]
    if not res.met:
        d["message"] = shortfall_message(model, res, state["target"])
    return d


def _input_type(graph: Graph) -> type:
    """The numpy type samples of the graph input are fed in: int32 for integer inputs (token ids), else float32."""
    return np.int32 if graph.inputs[0] in graph.input_dtypes else np.float32

"""Apply what a QDQ source model fixes to the converter's IR: the model's activation ranges and int8 weights.

:func:`converters.importers.qdq.read_qdq_params` records each QuantizeLinear -> DequantizeLinear pair and each
dequantized constant of the source model (:class:`~converters.importers.qdq.QdqParams`); this module maps them
onto the imported IR graph and the quantization plan: :func:`fixed_ranges` (activation ranges reproducing each
pair's scale and zero point exactly), :func:`fixed_weights` (the model's int8 weights and scales, where TFLite's
kernels take them) and :class:`QdqSource` (what one conversion keeps, for its log line and ``report["qdq"]``).
``--recalibrate-qdq`` re-calibrates instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from converters.importers.qdq import QdqParams, QdqWeight, dequantize, read_qdq_params
from converters.quantize import (
    FIXED16,
    WEIGHT_AXIS,
    QuantWeight,
    int16_params,
    parameter_groups,
    qparams_from_range,
    quantize_bias,
)

log = logging.getLogger("converters.importers.onnx")


def range_of(scale: float, zero_point: int, bits: int = 8) -> tuple[float, float]:
    """The real range ``(lo, hi)`` from which the converter's int8 parameters (``qparams_from_range``) come back
    exactly as ``(scale, zero_point)``: the whole integer grid of the pair. An int16 pair gives its grid too."""
    lo_q, hi_q = (-128, 127) if bits == 8 else (-32768, 32767)
    s = float(np.float32(scale))
    return s * (lo_q - zero_point), s * (hi_q - zero_point)


def fixed_ranges(graph: Any, params: QdqParams, pairs: Optional[dict[str, tuple[float, int, int]]] = None,
                 ) -> tuple[dict[str, tuple[float, float]], dict[str, str]]:
    """The activation ranges the QDQ model fixes, keyed by IR tensor name, and the model's pairs left to
    calibration with the reason (``{tensor: why}``).

    An int8 pair (uint8 shifted) becomes the range its grid covers, so the written int8 tensor gets the pair's
    scale and zero point exactly; an int16 pair becomes its real range (the int8 tensor covers what the model's
    int16 one does). Pairs on tensors the IR does not have (fused away) are left out. ``pairs``: filled with
    ``{IR tensor: (scale, zero point, bits)}`` of the pairs kept.
    """
    acts = set(graph.activations())
    integer = set(getattr(graph, "input_dtypes", {}) or {})
    out: dict[str, tuple[float, float]] = {}
    left: dict[str, str] = dict(params.skipped)
    found = {params.aliases.get(a, a) for a in acts}
    last_op = {op.name: op for op in graph.ops}  # each ONNX node's last IR op (ops are in graph order)
    moved: dict[str, str] = {}
    for name, (scale, zp, bits) in params.activations.items():
        if bits == 8 and not -128 <= zp <= 127:
            left[name] = f"zero point {zp} outside int8"
            continue
        if name in integer:
            left[name] = "an integer input (token ids, indices) is not quantized"
            continue
        if name in acts:
            out[name] = range_of(scale, zp, bits)
            if pairs is not None:
                pairs[name] = (scale, zp, bits)
            continue
        if name in params.aliases or name in found or name in params.clamped:
            continue  # another name of a kept tensor; a Relu's input fused with it
        op = last_op.get(params.made_by.get(name, ""))
        if op is not None and op.kind in _SAME_VALUES_KINDS and op.act == "NONE" and op.outputs:
            moved[op.outputs[0]] = name  # the import's layout moves after it cancelled: its output is ``name``
        else:
            left[name] = "no such activation in the converted graph (fused or rewritten)"
    for ir_name, name in moved.items():
        if ir_name in out:
            left[name] = "no such activation in the converted graph (fused or rewritten)"
        else:
            scale, zp, bits = params.activations[name]
            out[ir_name] = range_of(scale, zp, bits)
            if pairs is not None:
                pairs[ir_name] = (scale, zp, bits)
    _spread_over_groups(graph, out, acts - integer)
    return out, left


def _spread_over_groups(graph: Any, out: dict[str, tuple[float, float]], acts: set[str]) -> None:
    """Give the unfixed activations of each parameter-sharing group (:func:`converters.quantize.parameter_groups`:
    the RESHAPE/TRANSPOSE the import adds around a 1-D convolution, pooling, concatenation) the range the group's
    fixed members span, in place, so their calibrated ranges do not widen the model's parameters."""
    for members in parameter_groups(graph):
        fixed = [out[m] for m in members if m in out]
        if not fixed:
            continue
        span = (min(r[0] for r in fixed), max(r[1] for r in fixed))
        for m in members:
            if m in acts and m not in out:
                out[m] = span


#: IR kinds whose output, when their ONNX node's own tensor is gone from the IR (the RESHAPE/TRANSPOSE the import
#: put after a 1-D convolution cancelled against the next one's), is that tensor in the IR's layout
_SAME_VALUES_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def fixed_weights(graph: Any, params: QdqParams, per_channel_fc: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """The model's int8 weights, exactly as stored, for the IR's weighted ops (``{IR weight name:
    QuantWeight}``), and the weighted ops left to re-quantization with the reason (``{IR weight name: why}``).

    A weight is kept where TFLite's kernels take it: int8 values in -127..127 with zero point
    0 (symmetric), per tensor or per output channel along the kernel's axis (CONV_2D / TRANSPOSE_CONV /
    FULLY_CONNECTED axis 0, DEPTHWISE_CONV_2D axis 3; FULLY_CONNECTED per tensor on profiles without
    per-channel FC); a per-tensor scale on a per-channel kernel is repeated per channel. The IR weight (the
    dequantized constant, transposed to the IR's layout) must equal ``values x scales`` bit for bit, so a
    weight the import changed (folded, split per group) is never mistaken for the model's; a weight the import
    multiplied by a factor per output channel (a Mul after the conv folded into it) keeps the model's integers
    with its scales times the factor (:func:`_folded_weight`).
    """
    by_reader: dict[str, list[QdqWeight]] = {}
    by_size: dict[int, list[QdqWeight]] = {}
    for w in params.weights:
        for r in w.readers:
            by_reader.setdefault(r, []).append(w)
        by_size.setdefault(int(w.scales.size), []).append(w)
    kept: dict[str, Any] = {}
    left: dict[str, str] = {}
    for op in graph.ops:
        if op.kind not in WEIGHT_AXIS or len(op.inputs) < 2:
            continue
        name = op.inputs[1]
        t = graph.tensors.get(name)
        if name in kept or t is None or t.data is None:
            continue
        wf = np.asarray(t.data, np.float32)
        axis: Optional[int] = WEIGHT_AXIS[op.kind]
        if op.kind == "FULLY_CONNECTED" and not per_channel_fc:
            axis = None
        n = 1 if axis is None else int(wf.shape[axis])
        tried = by_reader.get(op.name, []) + [w for w in by_size.get(n, []) + by_size.get(1, [])
                                              if op.name not in w.readers]
        why = "no DequantizeLinear weight of the model matches it (folded or rewritten on import)"
        for w in tried:
            got, reason = _as_weight(wf, w, axis)
            if got is not None:
                kept[name] = QuantWeight(got[0], got[1], 0 if axis is None else axis)
                break
            if op.name in w.readers or _same_values(wf, w):
                why = reason
        else:
            folded = _folded_weight(wf, tried, axis)
            if folded is not None:
                kept[name] = folded
            elif tried or params.weights:
                left[name] = why
    return kept, left


def _folded_weight(wf: np.ndarray, tried: list[QdqWeight], axis: Optional[int]) -> Optional[QuantWeight]:
    """The model's int8 weight behind IR weight ``wf`` when the import multiplied it by a factor per output channel
    (a per-channel Mul after the conv folded into it: onnxslim's Conv+Mul fusion, or
    :func:`converters.ir.simplify`), else None: the model's integers in ``wf``'s layout, negated in channels whose
    factor is negative, with scales ``max|wf| / max|q|`` per channel (:func:`_channel_multiple`)."""
    for w in tried:
        got = _channel_multiple(wf, w, axis)
        if got is not None:
            return QuantWeight(got[0], got[1], 0 if axis is None else axis)
    return None


#: How far (relative to a channel's largest value) a folded weight may be from ``values x scale``: the fold's and
#: the scale's float32 rounding (a few units in the last place)
_FOLD_SLACK = 1e-6


def _channel_multiple(wf: np.ndarray, w: QdqWeight,
                      axis: Optional[int]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(int8 values in wf's layout, scales)`` when each output channel of ``wf`` (along ``axis``; the whole
    tensor with ``axis`` None) is the same channel of the model's symmetric int8 weight ``w`` times one factor
    (to float32 rounding, :data:`_FOLD_SLACK`): the same integers (as a multiset, so any layout), negated where
    the factor is negative, zero where it is zero (the model's scale kept there). None otherwise."""
    if w.block or w.values.dtype != np.int8 or (w.zero_points is not None and np.any(w.zero_points != 0)) \
            or int(w.values.size) != int(wf.size):
        return None
    n = 1 if axis is None else int(wf.shape[axis])
    q_all = np.asarray(w.values)
    if axis is None:
        if w.scales.size != 1:
            return None
        model_axes: list[Optional[int]] = [None]
    elif w.scales.size > 1:
        a = w.axis + q_all.ndim if w.axis < 0 else w.axis
        model_axes = [a] if w.scales.size == n and q_all.shape[a] == n else []
    else:
        model_axes = [a for a in range(q_all.ndim) if q_all.shape[a] == n]
    model_scales = np.broadcast_to(np.asarray(w.scales, np.float32).reshape(-1), (n,))
    for m_axis in model_axes:
        values = np.zeros(wf.shape, np.int8)
        scales = np.empty(n, np.float32)
        for c in range(n):
            q = (q_all if m_axis is None else np.take(q_all, c, axis=m_axis)).reshape(-1).astype(np.int64)
            x = (wf if axis is None else np.take(wf, c, axis=axis)).astype(np.float64)
            q_max, x_max = int(np.abs(q).max(initial=0)), float(np.abs(x).max(initial=0.0))
            if q.size != x.size or (q_max == 0 and x_max != 0):
                break
            if x_max == 0:  # a zero factor (or a zero channel): zeros at the model's scale
                scales[c] = model_scales[c]
                continue
            s = np.float32(x_max / q_max)
            r = np.rint(x / np.float64(s))
            if np.abs(r).max() > 127 or np.abs(r * np.float64(s) - x).max() > _FOLD_SLACK * x_max:
                break
            flat = np.sort(r.reshape(-1).astype(np.int64))
            if not (np.array_equal(flat, np.sort(q)) or np.array_equal(flat, np.sort(-q))):
                break
            scales[c] = s
            if axis is None:
                values[...] = r.astype(np.int8)
            else:
                idx = [slice(None)] * wf.ndim
                idx[axis] = c
                values[tuple(idx)] = r.astype(np.int8)
        else:
            return values, scales
    return None


def _same_values(wf: np.ndarray, w: QdqWeight) -> bool:
    """True when the IR weight ``wf`` holds the dequantized values of ``w`` in some order (another layout)."""
    if int(w.values.size) != int(wf.size):
        return False
    try:
        d = dequantize(w.values, w.scales if w.scales.size > 1 else w.scales.reshape(()),
                       None if w.zero_points is None else (w.zero_points if w.zero_points.size > 1
                                                           else w.zero_points.reshape(())), w.axis, w.block)
    except (ValueError, TypeError, IndexError):
        return False
    return bool(np.array_equal(np.sort(d.astype(np.float32).reshape(-1)), np.sort(wf.reshape(-1))))


def _as_weight(wf: np.ndarray, w: QdqWeight,
               axis: Optional[int]) -> tuple[Optional[tuple[np.ndarray, np.ndarray]], str]:
    """``(int8 values in the IR layout, scales)`` when ``wf`` is exactly the model's weight ``w``; else None and why."""
    if w.block:
        return None, "blocked weight scales"
    if w.values.dtype != np.int8:
        return None, f"{w.values.dtype} weights (TFLite's kernels take int8)"
    if w.zero_points is not None and np.any(w.zero_points != 0):
        return None, "asymmetric weights (a non-zero weight zero point)"
    if int(w.values.size) != int(wf.size):
        return None, "a different number of values"
    if w.scales.size == 1:
        scales = np.full(1 if axis is None else wf.shape[axis], w.scales[0], np.float32)
    elif axis is None:
        return None, "per-channel weights where the kernel needs one scale (per-tensor FULLY_CONNECTED)"
    elif w.scales.size != wf.shape[axis]:
        return None, f"per-channel scales along another axis than the kernel's ({w.scales.size} scales)"
    else:
        scales = w.scales.astype(np.float32)
    shape = [1] * wf.ndim
    if axis is not None:
        shape[axis] = -1
    s = scales.reshape(shape) if axis is not None else scales.reshape(())
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(wf.astype(np.float64) / s.astype(np.float64))
    if not np.all(np.isfinite(q)):
        return None, "a zero weight scale"
    if np.any(np.abs(q) > 127):
        return None, "int8 value -128 (TFLite's int8 weights are symmetric, -127..127)"
    qi = q.astype(np.int8)
    if not np.array_equal(qi.astype(np.float32) * s.astype(np.float32), wf):
        return None, "its per-channel scales do not lie along the kernel's output-channel axis"
    if not np.array_equal(np.sort(qi.reshape(-1)), np.sort(w.values.reshape(-1))):
        return None, "its values differ from the model's"
    return (qi, scales), ""


@dataclass
class QdqSource:
    """A QDQ source model in one conversion: what it fixes, what the converter keeps of it, for the log and report.

    ``ranges``: the activation ranges kept (IR names, :func:`fixed_ranges`), empty with ``recalibrated``;
    ``left``: the model's pairs left to calibration, with why; ``weights_kept`` / ``weights_left``: IR weights
    kept exactly / re-quantized with why (filled once the weight layout is known, :func:`fixed_weights`).
    """

    params: QdqParams
    ranges: dict[str, tuple[float, float]]
    left: dict[str, str]
    recalibrated: bool = False
    weights_kept: list[str] = field(default_factory=list)
    weights_left: dict[str, str] = field(default_factory=dict)
    #: IR tensor -> scale of the model's symmetric int16 pair on it (kept where the converter writes int16)
    int16: dict[str, float] = field(default_factory=dict)
    int16_kept: list[str] = field(default_factory=list)

    def keep_int16(self, graph: Any, plan: Any, means: Optional[dict[str, np.ndarray]] = None) -> None:
        """Give the int16 tensors of ``plan`` (in place) the model's int16 scale where a symmetric int16 pair
        fixes one (its parameter-sharing group with it), and requantize the int64 biases of the 16x8 ops reading
        them (with bias correction's ``means`` when given). Fixed outputs (int16 LOGISTIC/TANH/SOFTMAX) keep
        TFLite's parameters. A precision search's measurements (``report["mixed_precision"]``) were taken
        before."""
        if not self.int16 or "int16" not in plan.op_precision.values():
            return
        fixed_out = {o for op in graph.ops if op.kind in FIXED16 for o in op.outputs}
        want = {t: range_of(s, 0, 16) for t, s in self.int16.items() if t in plan.activations16 and t not in fixed_out}
        _spread_over_groups(graph, want, set(plan.activations16) - fixed_out)
        changed = set()
        for t, (lo, hi) in want.items():
            qp = int16_params(-hi, hi)  # symmetric: the grid's top, as the model's scale x 32767
            if plan.activations16[t] != qp:
                plan.activations16[t] = qp
                changed.add(t)
        int16_read = {i for op in graph.ops if plan.op_dtype(op) == "int16" for i in op.inputs}
        self.int16_kept = sorted(t for t in self.int16 if t in want
                                 and (plan.tensor_dtype(t) == "int16" or t in int16_read))
        for op in graph.ops:
            if op.kind in WEIGHT_AXIS and plan.op_dtype(op) == "int16" and op.inputs[0] in changed \
                    and len(op.inputs) > 2 and op.inputs[2] in plan.biases:
                plan.biases[op.inputs[2]] = quantize_bias(graph.tensors[op.inputs[2]].data,
                                                          plan.activations16[op.inputs[0]].scale,
                                                          plan.weights[op.inputs[1]], True)
        if changed and means is not None:
            from converters.quality.mixed_precision import correct_int16_biases

            correct_int16_biases(graph, plan, means)

    def log(self) -> None:
        """One line saying what was kept, and one naming the weights re-quantized (when any)."""
        log.info("QDQ model: kept the model's scale and zero point on %d activation(s) and its int8 weights on %d "
                 "op(s); %d model pair(s) left to calibration", len(self.ranges), len(self.weights_kept),
                 len(self.left))
        if self.weights_left:
            first, why = next(iter(self.weights_left.items()))
            log.warning("QDQ model: %d weight(s) re-quantized instead of kept (TFLite's kernels need symmetric int8 "
                        "weights per output channel), e.g. '%s': %s", len(self.weights_left), first, why)

    def section(self, graph: Any, plan: Any) -> dict[str, Any]:
        """The report's ``qdq`` entry: which activation ranges came from the model and which from calibration
        (a kept range that TFLite's constraints then moved, e.g. parameters shared through a pooling or
        concatenation, or a scale widened to a kernel limit, is listed as ``changed_by_constraints``)."""
        acts = [a for a in graph.activations() if a in plan.activations]
        exact, moved = [], {}
        for name, r in self.ranges.items():
            want = qparams_from_range(*r)
            got = plan.activations.get(name)
            if got is not None and (got.scale, got.zero_point) == (want.scale, want.zero_point):
                exact.append(name)
            elif got is not None:
                moved[name] = {"model": [want.scale, want.zero_point], "written": [got.scale, got.zero_point]}
        return {"ranges": "calibration (--recalibrate-qdq)" if self.recalibrated else "model",
                "model_pairs": self.params.pairs,
                "activations_from_model": exact,
                "changed_by_constraints": moved,
                "activations_calibrated": [a for a in acts if a not in self.ranges],
                "model_pairs_not_kept": {} if self.recalibrated else dict(self.left),
                "int16_from_model": list(self.int16_kept),
                "weights_from_model": list(self.weights_kept),
                "weights_requantized": dict(self.weights_left)}


def qdq_source(path: Any, graph: Any, recalibrate: bool = False) -> Optional[QdqSource]:
    """What the QDQ ONNX model at ``path`` (imported as ``graph``) fixes and the converter keeps; None for a model
    without QuantizeLinear/DequantizeLinear. ``recalibrate``: keep nothing (``--recalibrate-qdq``), only report."""
    params = read_qdq_params(path)
    if params is None or not (params.activations or params.skipped or params.weights):
        return None
    if recalibrate:
        log.info("QDQ model: every activation range re-calibrated and every weight re-quantized (--recalibrate-qdq)")
        return QdqSource(params, {}, {}, recalibrated=True)
    pairs: dict[str, tuple[float, int, int]] = {}
    ranges, left = fixed_ranges(graph, params, pairs)
    return QdqSource(params, ranges, left, int16={t: s for t, (s, zp, bits) in pairs.items() if bits == 16 and zp == 0})

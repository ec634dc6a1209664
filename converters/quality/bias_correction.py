"""Bias correction: fold the mean error that weight quantization adds to a layer's output into its bias.

For a weighted op y = W x + b, int8 weights give y_q = W_q x + b, whose mean error per output channel
is (W_q - W) E[x]. E[x] (per input channel) comes from the float model on calibration data; the
correction subtracts that error from the float bias before it is quantized again (Nagel et al.,
"Data-Free Quantization", 2019, with empirical instead of BatchNorm statistics). Zero padding at
borders is ignored; TRANSPOSE_CONV is left alone.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph, ir_feed
from converters.quality.sensitivity import dequantized_weight
from converters.quantize import QuantPlan, QuantWeight

CORRECTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: The input means come from the first this many calibration samples.
MEAN_SAMPLES = 256


class InputMeans:
    """Per-channel (last axis) means of the input of every weighted op, accumulated sample by sample.

    Pass it as a calibration observer (``calibrate(..., observers=[means])``) so the means come from the
    calibration pass itself; only the first ``limit`` samples count.
    """

    def __init__(self, graph: Graph, limit: int = MEAN_SAMPLES) -> None:
        self.wanted = {op.inputs[0] for op in graph.ops if op.kind in CORRECTED}
        self.limit = limit
        self.samples = 0
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._ones = np.ones(0)

    def __call__(self, index: int, vals: dict[str, np.ndarray]) -> None:
        """Add one sample's activations (ignored from the ``limit``-th sample on)."""
        if index >= self.limit:
            return
        self.samples += 1
        for t in self.wanted:
            v = vals[t].astype(np.float64)
            v = v.reshape(-1, v.shape[-1])
            # column sums as a BLAS matrix-vector product: 2-4x faster than numpy's axis-0 sum for the few
            # channels of early layers (0.13 of 0.59 s of the 96x96 benchmark CNN's calibration went here);
            # float32 values summed in float64 are exact while their magnitudes span under ~2^29, so the
            # order rarely matters
            if self._ones.size < v.shape[0]:
                self._ones = np.ones(v.shape[0])
            self._sums[t] = self._sums.get(t, 0.0) + self._ones[:v.shape[0]] @ v
            self._counts[t] = self._counts.get(t, 0) + v.shape[0]

    def means(self) -> dict[str, np.ndarray]:
        """The means so far, by tensor name."""
        return {t: self._sums[t] / self._counts[t] for t in self._sums}


def input_means(graph: Graph, float_sess: Any, samples: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) mean of the input of every weighted op, over ``samples`` (source layout; a
    tuple per sample for a model with several inputs)."""
    acc = InputMeans(graph, limit=2 ** 62)
    for i, x in enumerate(samples):
        acc(i, run_float(float_sess, graph, ir_feed(graph, x)))
    return acc.means()


def weight_error_mean(kind: str, dw: np.ndarray, m: np.ndarray, attrs: dict) -> np.ndarray:
    """Mean output error per output channel of ``kind`` with weight error ``dw`` and input means ``m``."""
    if kind == "FULLY_CONNECTED":
        return dw.reshape(dw.shape[0], -1) @ m
    if kind == "CONV_2D":
        return np.einsum("okli,i->o", dw, m)
    mult = int(attrs.get("multiplier", 1))
    return dw[0].sum(axis=(0, 1)) * np.repeat(m, mult)


def corrected_bias(graph: Graph, plan: QuantPlan, op: Any, means: dict[str, np.ndarray],
                   weight_errors: Optional[dict[Any, np.ndarray]] = None) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(float bias with the weight-error mean removed, that error)`` for one weighted op, or None when its
    input means are missing or do not match the weights' input channels.

    ``weight_errors``: a dict the caller keeps over one pass of unchanged weights, so that a weight shared
    by many ops (an unrolled recurrence's) is dequantized and compared once; same values either way."""
    if op.kind not in CORRECTED or op.inputs[0] not in means or op.inputs[2] not in plan.biases:
        return None
    w = graph.tensors[op.inputs[1]].data
    m = means[op.inputs[0]]
    in_ch = w.shape[-1] if op.kind != "DEPTHWISE_CONV_2D" else w.shape[-1] // int(op.attrs.get("multiplier", 1))
    if m.shape[0] != in_ch:
        return None
    key = (op.inputs[1], id(w), id(plan.weights[op.inputs[1]]))
    dw = weight_errors.get(key) if weight_errors is not None else None
    if dw is None:
        dw = dequantized_weight(plan, op.inputs[1]).astype(np.float64) - w.astype(np.float64)
        if weight_errors is not None:
            weight_errors[key] = dw
    err = weight_error_mean(op.kind, dw, m, op.attrs)
    return graph.tensors[op.inputs[2]].data.astype(np.float64) - err, err


def correct_biases(graph: Graph, plan: QuantPlan, means: dict[str, np.ndarray]) -> dict[str, Any]:
    """Requantize the biases of ``plan`` with the weight-error mean removed; return a summary.

    Ops whose input means are missing or do not match the weights' input channels are skipped.
    """
    changed, shift = 0, []
    weight_errors: dict[Any, np.ndarray] = {}
    for op in graph.ops:
        got = corrected_bias(graph, plan, op, means, weight_errors)
        if got is None:
            continue
        b, err = got
        qb = plan.biases[op.inputs[2]]
        scale = np.broadcast_to(qb.scales.astype(np.float64), b.shape)
        values = np.clip(np.round(b / scale), -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
        plan.biases[op.inputs[2]] = QuantWeight(values, qb.scales, qb.axis)
        changed += 1
        shift.append(float(np.max(np.abs(err))))
    return {"layers": changed, "max_shift": max(shift, default=0.0)}

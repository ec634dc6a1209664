"""Bias correction: fold the mean error that weight quantization adds to a layer's output into its bias.

For a weighted op y = W x + b, int8 weights give y_q = W_q x + b, whose mean error per output channel
is (W_q - W) E[x]. E[x] (per input channel) comes from the float model on calibration data; the
correction subtracts that error from the float bias before it is quantized again (Nagel et al.,
"Data-Free Quantization", 2019, with empirical instead of BatchNorm statistics). Zero padding at
borders is ignored; TRANSPOSE_CONV is left alone.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph
from converters.quality.sensitivity import dequantized_weight
from converters.quantize import QuantPlan, QuantWeight

CORRECTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def input_means(graph: Graph, float_sess: Any, samples: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel (last axis) mean of the input of every weighted op, over ``samples`` (source layout)."""
    wanted = {op.inputs[0] for op in graph.ops if op.kind in CORRECTED}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    name = graph.inputs[0]
    for x in samples:
        vals = run_float(float_sess, graph, graph.to_ir_layout(name, x))
        for t in wanted:
            v = vals[t].astype(np.float64)
            v = v.reshape(-1, v.shape[-1])
            sums[t] = sums.get(t, 0.0) + v.sum(axis=0)
            counts[t] = counts.get(t, 0) + v.shape[0]
    return {t: sums[t] / counts[t] for t in sums}


def weight_error_mean(kind: str, dw: np.ndarray, m: np.ndarray, attrs: dict) -> np.ndarray:
    """Mean output error per output channel of ``kind`` with weight error ``dw`` and input means ``m``."""
    if kind == "FULLY_CONNECTED":
        return dw.reshape(dw.shape[0], -1) @ m
    if kind == "CONV_2D":
        return np.einsum("okli,i->o", dw, m)
    mult = int(attrs.get("multiplier", 1))
    return dw[0].sum(axis=(0, 1)) * np.repeat(m, mult)


def correct_biases(graph: Graph, plan: QuantPlan, means: dict[str, np.ndarray]) -> dict[str, Any]:
    """Requantize the biases of ``plan`` with the weight-error mean removed; return a summary.

    Ops whose input means are missing or do not match the weights' input channels are skipped.
    """
    changed, shift = 0, []
    for op in graph.ops:
        if op.kind not in CORRECTED or op.inputs[0] not in means or op.inputs[2] not in plan.biases:
            continue
        w = graph.tensors[op.inputs[1]].data.astype(np.float64)
        m = means[op.inputs[0]]
        in_ch = w.shape[-1] if op.kind != "DEPTHWISE_CONV_2D" else w.shape[-1] // int(op.attrs.get("multiplier", 1))
        if m.shape[0] != in_ch:
            continue
        dw = dequantized_weight(plan, op.inputs[1]).astype(np.float64) - w
        err = weight_error_mean(op.kind, dw, m, op.attrs)
        b = graph.tensors[op.inputs[2]].data.astype(np.float64) - err
        qb = plan.biases[op.inputs[2]]
        scale = np.broadcast_to(qb.scales.astype(np.float64), b.shape)
        values = np.clip(np.round(b / scale), -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
        plan.biases[op.inputs[2]] = QuantWeight(values, qb.scales, qb.axis)
        changed += 1
        shift.append(float(np.max(np.abs(err))))
    return {"layers": changed, "max_shift": max(shift, default=0.0)}

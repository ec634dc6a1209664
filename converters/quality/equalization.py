"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019) on the float IR graph.

For two consecutive weighted ops W1 -> f -> W2 where f is positive-homogeneous per channel
(f(x / s) = f(x) / s for s > 0: no activation, a fused or standalone ReLU, zero padding, max or
average pooling), output channel i of W1 and its bias are divided by s_i and input channel i of W2
is multiplied by s_i. The float function is unchanged; with s_i = sqrt(r1_i * r2_i) / r2_i (r =
the channel's max |weight|) both channels end up with the same range sqrt(r1_i * r2_i), so the
activation between them (one int8 scale for all channels) no longer has a few channels that
dwarf the rest. Chains (conv -> depthwise -> pointwise) are swept a few times until the scales
settle.

Pairs are skipped when the function would change: a ReLU6 / RELU_N1_TO_1 in between (the clip
bound does not commute with a per-channel scale: clip(y / s, 0, 6) != clip(y, 0, 6) / s), an
intermediate tensor read by another op or being a graph output, weights or biases shared with
another op, and a second op that does not read the channels on its last input axis
(a FULLY_CONNECTED after a flattening RESHAPE). TRANSPOSE_CONV is left alone. ReLU6 pairs are
skipped rather than rewritten: no clip bound is changed, so the function stays exact on any input.

On by default in the converter: with bias correction it raised the int8 output's SQNR on most of
the models of ``python -m benchmarks.quant_techniques`` (MLPerf Tiny VWW +4.3 dB) and lost at
most 0.2 dB on the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from converters.ir import Graph, Op

#: Ops whose weights are equalized: the first op of a pair is a convolution (FULLY_CONNECTED ->
#: FULLY_CONNECTED pairs measured worse: -2.7 dB on MLPerf Tiny's AD autoencoder; ``fully_connected=True``
#: includes them), the second any of these.
FIRST = ("CONV_2D", "DEPTHWISE_CONV_2D")
EQUALIZED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Fused activations that commute with a positive per-channel scale.
HOMOGENEOUS_ACTS = ("NONE", "RELU")
#: Ops between the two weighted ops that act per channel and commute with a positive scale.
PASS_THROUGH = ("RELU", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD")
#: Sweeps over all pairs at most, and the change in log-scale under which a sweep stops them.
MAX_SWEEPS = 16
TOLERANCE = 1e-3
#: Scales are kept inside [1 / LIMIT, LIMIT] per sweep (channels with near-zero weights).
LIMIT = 1e4
#: Channels whose weight range is below DEAD times the layer's largest are left unscaled.
DEAD = 1e-6


@dataclass
class Pair:
    """Two weighted ops whose shared channels are equalized."""

    first: Op
    second: Op


def _out_channels(kind: str, w: np.ndarray) -> int:
    return w.shape[3] if kind == "DEPTHWISE_CONV_2D" else w.shape[0]


def _in_channels(op: Op, w: np.ndarray) -> int:
    if op.kind == "DEPTHWISE_CONV_2D":
        return w.shape[3] // int(op.attrs.get("multiplier", 1))
    return w.shape[-1]


def _follow(graph: Graph, op: Op, consumers: dict[str, list[Op]]) -> Optional[Op]:
    """The weighted op reading ``op``'s output through pass-through ops alone, or None."""
    t = op.outputs[0]
    while True:
        readers = consumers.get(t, [])
        if t in graph.outputs or len(readers) != 1:
            return None
        nxt = readers[0]
        if nxt.kind in EQUALIZED:
            return nxt if nxt.inputs[0] == t else None
        if nxt.kind not in PASS_THROUGH or nxt.act not in HOMOGENEOUS_ACTS:
            return None
        if nxt.kind == "PAD" and len(nxt.inputs) > 1:
            return None
        pads = nxt.attrs.get("pads")
        if nxt.kind == "PAD" and pads is not None and len(pads) and tuple(pads[-1]) != (0, 0):
            return None  # padding the channel axis adds channels
        t = nxt.outputs[0]


def find_pairs(graph: Graph, fully_connected: bool = False) -> list[Pair]:
    """The op pairs of ``graph`` that can be equalized without changing its function (with
    ``fully_connected``, FULLY_CONNECTED -> FULLY_CONNECTED pairs too)."""
    consumers = graph.consumers()
    first = EQUALIZED if fully_connected else FIRST
    pairs = []
    for op in graph.ops:
        if op.kind not in first or op.act not in HOMOGENEOUS_ACTS:
            continue
        nxt = _follow(graph, op, consumers)
        if nxt is None:
            continue
        if any(len(consumers.get(name, [])) != 1 for name in (op.inputs[1], op.inputs[2], nxt.inputs[1])):
            continue
        w1, w2 = graph.tensors[op.inputs[1]].data, graph.tensors[nxt.inputs[1]].data
        if w1 is None or w2 is None or w1.ndim not in (2, 4) or w2.ndim not in (2, 4):
            continue
        if graph.tensors[op.outputs[0]].shape[-1] != _out_channels(op.kind, w1):
            continue
        if _out_channels(op.kind, w1) != _in_channels(nxt, w2):
            continue
        pairs.append(Pair(op, nxt))
    return pairs


def out_range(op: Op, w: np.ndarray) -> np.ndarray:
    """Max |weight| per output channel."""
    a = np.abs(w.astype(np.float64))
    if op.kind == "DEPTHWISE_CONV_2D":
        return a.reshape(-1, a.shape[3]).max(axis=0)
    return a.reshape(a.shape[0], -1).max(axis=1)


def in_range(op: Op, w: np.ndarray) -> np.ndarray:
    """Max |weight| per input channel."""
    a = np.abs(w.astype(np.float64))
    if op.kind == "DEPTHWISE_CONV_2D":
        m = int(op.attrs.get("multiplier", 1))
        return a.reshape(-1, a.shape[3] // m, m).max(axis=(0, 2))
    return a.reshape(-1, a.shape[-1]).max(axis=0)


def _scale_out(op: Op, w: np.ndarray, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / s
    if op.kind == "DEPTHWISE_CONV_2D":
        w2 = w.astype(np.float64) * inv.reshape(1, 1, 1, -1)
    else:
        w2 = w.astype(np.float64) * inv.reshape((-1,) + (1,) * (w.ndim - 1))
    return w2.astype(w.dtype), (b.astype(np.float64) * inv).astype(b.dtype)


def _scale_in(op: Op, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    if op.kind == "DEPTHWISE_CONV_2D":
        s = np.repeat(s, int(op.attrs.get("multiplier", 1)))
    return (w.astype(np.float64) * s).astype(w.dtype)


def equalization_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """s_i = sqrt(r1_i * r2_i) / r2_i, clipped to [1/LIMIT, LIMIT].

    Dead channels (a range below :data:`DEAD` times the layer's largest) keep s_i = 1: their
    activation is the bias alone, which 1/s_i would inflate.
    """
    ok = (r1 > DEAD * r1.max(initial=0.0)) & (r2 > DEAD * r2.max(initial=0.0))
    s = np.ones_like(r1)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    return np.clip(s, 1.0 / LIMIT, LIMIT)


def equalize(graph: Graph, sweeps: int = MAX_SWEEPS, fully_connected: bool = False) -> dict[str, Any]:
    """Equalize every pair of ``graph`` in place (see :func:`find_pairs`); return a summary for the report.

    ``{"pairs": n, "layers": [["first op", "second op"], ...], "sweeps": k, "max_ratio_before": x,
    "max_ratio_after": y}``: the ratios are the largest, over pairs, of max/min of r2_i / r1_i (1 when
    every shared channel is equalized).
    """
    pairs = find_pairs(graph, fully_connected)
    t = graph.tensors

    def spread() -> float:
        vals = []
        for p in pairs:
            r1, r2 = out_range(p.first, t[p.first.inputs[1]].data), in_range(p.second, t[p.second.inputs[1]].data)
            ok = (r1 > DEAD * r1.max(initial=0.0)) & (r2 > DEAD * r2.max(initial=0.0))
            if ok.any():
                ratio = r2[ok] / r1[ok]
                vals.append(float(ratio.max() / ratio.min()))
        return max(vals, default=1.0)

    before = spread()
    done = 0
    for done in range(1, sweeps + 1):
        change = 0.0
        for p in pairs:
            w1, b1, w2 = t[p.first.inputs[1]], t[p.first.inputs[2]], t[p.second.inputs[1]]
            s = equalization_scales(out_range(p.first, w1.data), in_range(p.second, w2.data))
            w1.data, b1.data = _scale_out(p.first, w1.data, b1.data, s)
            w2.data = _scale_in(p.second, w2.data, s)
            change = max(change, float(np.max(np.abs(np.log(s)))) if s.size else 0.0)
        if change < TOLERANCE:
            break
    return {"pairs": len(pairs), "layers": [[p.first.name or p.first.outputs[0], p.second.name or p.second.outputs[0]]
                                            for p in pairs],
            "sweeps": done if pairs else 0, "max_ratio_before": round(before, 2), "max_ratio_after": round(spread(), 2)}

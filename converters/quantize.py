"""The one set of quantization decisions that both writers (TFLite, ONNX QDQ) apply.

Follows the TFLite int8 quantization specification:

- activations: int8, asymmetric, per tensor, real = scale * (q - zero_point), with 0.0 exactly representable;
- CONV_2D / DEPTHWISE_CONV_2D weights: int8, symmetric per output channel (zero point 0, range -127..127);
- FULLY_CONNECTED weights: int8, symmetric per output channel (axis 0 of ``[out, in]``; LiteRT and TFLite
  Micro both run it), or per tensor when ``per_channel_fc=False`` (profiles with an NPU delegate);
- biases: int32 with scale = input_scale * weight_scale (per channel where the weights are), zero point 0;
  a weight scale is raised where the bias would otherwise overflow (channels with near-zero weights);
- TRANSPOSE_CONV weights: int8, symmetric per output channel (axis 0 of ``[out, kh, kw, in]``);
- constant operands of other ops (ADD/MUL constants, PRELU alpha, ...): int8 asymmetric per tensor
  from their own value range; integer constants (GATHER indices) stay int32;
- fixed output parameters: SOFTMAX and LOGISTIC (1/256, -128), TANH (1/128, 0), LOG_SOFTMAX (16/256, 127);
- one set of parameters shared by the inputs and output of the ops in :data:`SHARED` (TFLite's int8
  kernels of these ops move values without rescaling), and by all inputs of CONCATENATION,
  MAXIMUM and MINIMUM; a PADV2 that pads with the lowest value takes its range from its input;
- ops in :data:`FLOAT_ISLANDS` (EXP, LOG, SQRT) have no int8 kernel in TFLite Micro: the writers run them
  in float between DEQUANTIZE and QUANTIZE (their int8 input and output keep their own parameters);
- model input and output int8, or uint8/float32 when the device profile's ``io_dtype`` asks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from converters.ir import WEIGHTED as WEIGHTED_KINDS
from converters.ir import Graph
from edge_runtime.errors import ConfigError
from edge_runtime.quantization import dequantize_affine, quantize_affine

FIXED = {"SOFTMAX": (1.0 / 256.0, -128), "LOGISTIC": (1.0 / 256.0, -128), "TANH": (1.0 / 128.0, 0),
         "LOG_SOFTMAX": (16.0 / 256.0, 127)}
SHARED = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD",
          "CONCATENATION", "STRIDED_SLICE", "GATHER", "REDUCE_MAX", "RESIZE_BILINEAR",
          "RESIZE_NEAREST_NEIGHBOR", "MAXIMUM", "MINIMUM", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
#: Shared ops whose every input (not only the first) joins the output's parameters.
SHARED_ALL_INPUTS = ("CONCATENATION", "MAXIMUM", "MINIMUM")
PER_CHANNEL = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "TRANSPOSE_CONV": 0, "FULLY_CONNECTED": 0}
#: Ops TFLite Micro has no int8 kernel for (it runs them in float): written as float islands.
FLOAT_ISLANDS = ("EXP", "LOG", "SQRT")
#: Narrowest activation range quantized (smaller ranges are widened to it).
MIN_RANGE = 1e-5
#: Largest quantized bias magnitude: half of int32, leaving headroom in the int32 accumulator.
BIAS_LIMIT = float(2 ** 30)


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine int8 parameters."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real -> int8 (round half away from zero, as TFLite's reference QUANTIZE does, then clamp)."""
        return quantize_affine(x, self.scale, self.zero_point, np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """int8 -> real (float32)."""
        return dequantize_affine(q, self.scale, self.zero_point)


@dataclass
class QuantWeight:
    """A quantized constant: integer values and per-channel (or single) scales along ``axis``."""

    values: np.ndarray
    scales: np.ndarray
    axis: int = 0


@dataclass
class QuantPlan:
    """Everything a writer needs: activation params, quantized weights and biases, I/O type."""

    activations: dict[str, QParams]
    weights: dict[str, QuantWeight]
    biases: dict[str, QuantWeight]
    io_dtype: str = "int8"
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    operands: dict[str, QParams] = field(default_factory=dict)
    float_islands: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly summary of the activation parameters."""
        return {n: {"scale": q.scale, "zero_point": q.zero_point} for n, q in self.activations.items()}

    def precision(self) -> dict:
        """For the conversion report: how ops int8 cannot represent well are run.

        Everything is int8 (per-channel weights; fully-connected weights per tensor when planned
        with ``per_channel_fc=False``) except the ops listed under ``float_islands``, which run in float
        between DEQUANTIZE and QUANTIZE (EXP, LOG, SQRT: TFLite Micro has no int8 kernel for them).
        No int16 intermediates are used.
        """
        per_tensor = any(w.scales.size == 1 and w.values.shape[w.axis] > 1 for w in self.weights.values())
        return {"activations": "int8",
                "weights": "int8 (per-channel for convolutions)" if per_tensor else "int8 (per-channel)",
                "int16_intermediates": [], "float_islands": list(self.float_islands)}


def qparams_from_range(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering [lo, hi], widened to include 0 so that 0.0 is exact."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_RANGE:  # a (nearly) dead tensor: keep fused-activation bounds (6 / scale) inside int32
        hi = lo + MIN_RANGE
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QParams(float(np.float32(scale)), zp)


def quantize_weight(w: np.ndarray, axis: Optional[int], min_scales: Optional[np.ndarray] = None) -> QuantWeight:
    """Symmetric int8 weights; per channel along ``axis`` or per tensor when ``axis`` is None.

    ``min_scales`` (one per channel, or one) raises scales where the bias would not fit int32.
    """
    floor = np.float64(1e-12) if min_scales is None else np.maximum(np.asarray(min_scales, np.float64), 1e-12)
    if axis is None:
        amax = np.array([np.abs(w).max()], np.float64)
        scales = np.maximum(amax / 127.0, np.max(floor)).astype(np.float32)
        q = np.clip(np.round(w / np.float64(scales[0])), -127, 127).astype(np.int8)
        return QuantWeight(q, scales, 0)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    scales = np.maximum(np.abs(moved).max(axis=1).astype(np.float64) / 127.0, floor).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.astype(np.float64).reshape(shape)), -127, 127).astype(np.int8)
    return QuantWeight(q, scales, axis)


class _Groups:
    """Union-find over tensor names: tensors that must share quantization parameters."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def plan_quantization(graph: Graph, ranges: dict[str, tuple[float, float]], io_dtype: str = "int8",
                      per_channel_fc: bool = True) -> QuantPlan:
    """Turn calibrated activation ranges into the full :class:`QuantPlan` for ``graph``.

    ``per_channel_fc=False`` keeps FULLY_CONNECTED weights per tensor (for delegates that need it).

    ``ranges`` maps every activation tensor to its (clipped) real range, as
    :mod:`converters.calibrate` produces.
    """
    if io_dtype not in ("int8", "uint8", "float32"):
        raise ConfigError(f"io_dtype must be int8, uint8 or float32, got {io_dtype!r}")
    acts = graph.activations()
    missing = [a for a in acts if a not in ranges]
    if missing:
        raise ValueError(f"no calibration range for tensors {missing[:5]}")
    groups = _Groups()
    fixed: dict[str, QParams] = {}
    const_ranges: dict[str, tuple[float, float]] = {}
    no_range: set[str] = set()
    for op in graph.ops:
        for k, name in enumerate(op.inputs):
            t = graph.tensors[name]
            if t.is_constant and t.data.dtype.kind == "f" and not (op.kind in WEIGHTED_KINDS and k in (1, 2)):
                const_ranges[name] = (float(t.data.min()), float(t.data.max()))
        if op.kind in SHARED:
            n_in = len(op.inputs) if op.kind in SHARED_ALL_INPUTS else 1
            for i in op.inputs[:n_in]:
                groups.union(op.outputs[0], i)
        if op.kind == "PADV2" and op.attrs.get("value", 0.0) == float("-inf"):
            no_range.add(op.outputs[0])
        if op.kind in FIXED:
            fixed[op.outputs[0]] = QParams(*FIXED[op.kind])
    for op in graph.ops:  # an ADD/SUB constant (an epsilon, a bias) is quantized on the output's scale or wider,
        if op.kind in ("ADD", "SUB") and op.outputs[0] in ranges:  # so int8 requantization stays well scaled
            lo_o, hi_o = ranges[op.outputs[0]]
            for name in op.inputs:
                if name in const_ranges:
                    lo_c, hi_c = const_ranges[name]
                    const_ranges[name] = (min(lo_c, lo_o), max(hi_c, hi_o))
    all_ranges = dict(const_ranges)
    all_ranges.update(ranges)
    by_root: dict[str, list[str]] = {}
    for a in list(acts) + [c for c in const_ranges if c not in acts]:
        by_root.setdefault(groups.find(a), []).append(a)
    activations: dict[str, QParams] = {}
    operands: dict[str, QParams] = {}
    for members in by_root.values():
        fixed_members = [fixed[m] for m in members if m in fixed]
        if fixed_members:
            qp = fixed_members[0]
        else:
            ranged = [m for m in members if m not in no_range] or members
            lo = min(all_ranges[m][0] for m in ranged)
            hi = max(all_ranges[m][1] for m in ranged)
            qp = qparams_from_range(lo, hi)
        for m in members:
            (operands if m in const_ranges else activations)[m] = qp
    weighted = [op for op in graph.ops if op.kind in WEIGHTED_KINDS]
    # A (near-)dead channel has tiny weights; its bias must still fit int32 at scale s_in * s_w, so the
    # weight scale may not drop below |bias| / (s_in * BIAS_LIMIT) -- for every op sharing the weights.
    axes = {k: (None if k == "FULLY_CONNECTED" and not per_channel_fc else a) for k, a in WEIGHT_AXIS.items()}
    need: dict[str, np.ndarray] = {}
    for op in weighted:
        s_in = np.float64(activations[op.inputs[0]].scale)
        b_abs = np.abs(graph.tensors[op.inputs[2]].data.astype(np.float64))
        n = b_abs / (s_in * BIAS_LIMIT)
        n = n if axes[op.kind] is not None else np.array([n.max()])
        need[op.inputs[1]] = np.maximum(need[op.inputs[1]], n) if op.inputs[1] in need else n
    weights: dict[str, QuantWeight] = {}
    biases: dict[str, QuantWeight] = {}
    for op in weighted:
        w_name, b_name = op.inputs[1], op.inputs[2]
        if w_name not in weights:
            weights[w_name] = quantize_weight(graph.tensors[w_name].data, axes[op.kind], need[w_name])
        qw = weights[w_name]
        s_in = np.float64(activations[op.inputs[0]].scale)
        bscale = (s_in * qw.scales.astype(np.float64)).astype(np.float32)
        b = graph.tensors[b_name].data.astype(np.float64)
        bscale_full = np.broadcast_to(bscale, b.shape).astype(np.float64)
        bq = np.clip(np.round(b / bscale_full), -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
        if b_name in biases and not np.array_equal(biases[b_name].scales, bscale):
            raise ValueError(f"bias '{b_name}' is shared by ops with different input scales; give each op its own")
        biases[b_name] = QuantWeight(bq, bscale.astype(np.float32), 0)
    islands = [op.name or op.outputs[0] for op in graph.ops if op.kind in FLOAT_ISLANDS]
    return QuantPlan(activations, weights, biases, io_dtype, dict(ranges), operands, islands)

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
  a SOFTMAX over :data:`WIDE_SOFTMAX` or more values is a float island (below) instead: tflite-micro's int8
  kernel aborts when a row's sum of exps reaches 512 (>= 512 values at the row's maximum)
  (:func:`wide_softmax_keys`); an integer SOFTMAX whose input scale the runtimes refuse is refused
  (:func:`check_softmax_inputs`);
  an input read only by int8 LOGISTIC/TANH gets at most the range where they saturate (:data:`SATURATION`);
- one set of parameters shared by the inputs and output of the ops in :data:`SHARED` (TFLite's int8
  kernels of these ops move values without rescaling), and by all inputs of CONCATENATION,
  MAXIMUM and MINIMUM; a PADV2 that pads with the lowest value takes its range from its input;
  groups are built by tensor name, so a constant read by several joining ops would tie them all: both
  importers give each joining reader its own copy (ONNX: one IR constant per use; TFLite: ``joined_in``);
- ops in :data:`FLOAT_ISLANDS` (EXP, LOG, SQRT, FLOOR, CEIL, ROUND, SIN, COS; CUMSUM has none in LiteRT) have no
  int8 kernel in TFLite Micro, and a wide SOFTMAX none that is safe: the writers run them in float between
  DEQUANTIZE and QUANTIZE (their int8 input and output keep their own parameters); so is a DIV whose divisor
  is an activation (:func:`activation_divisor_keys`: LiteRT's int8 DIV fails on a divisor at its zero point);
  an int8 DIV by a constant holding a value that quantizes to its zero point is refused
  (:func:`check_constant_divisors`); and so is a masked softmax, ``SOFTMAX(scores + M)`` with a constant
  attention mask ``M`` of 0 and -inf / huge negatives (:func:`converters.masked_softmax.masked_softmax_chains`):
  the ADD/SUB, the RESHAPE/TRANSPOSE after it and the SOFTMAX run in float with the mask as a float constant
  (the scores keep their own int8 range, the SOFTMAX its fixed int8 output);
- scale ratios inside what the integer kernels accept (tflite-micro aborts, micro's .tflite checks refuse,
  beyond them): an output scale too small for its inputs (e.g. an ADD of two wide tensors that cancel) or an input
  scale too small for its output is widened to the smallest one within the limit, with one log line
  (:func:`fit_scale_limits`); models within the limits keep exactly their parameters;
- model input and output int8, or uint8/float32 when the device profile's ``io_dtype`` asks.

Mixed precision (``precision``, one entry per op keyed by its first output's name, see :func:`op_key`):

- ``int8`` (the default);
- ``int16``: TFLite's 16x8 scheme, for the ops in :data:`INT16_KINDS` (those TFLite Micro, the micro
  backend and LiteRT all run with int16 activations): int16 activations, symmetric per tensor with zero
  point 0 (:func:`int16_params`, over the tensor's min/max range ``ranges16`` when given, as 16 bits
  leave no reason to clip), int8 weights as above, int64 biases with scale input_scale x weight_scale;
  LOGISTIC/TANH outputs fixed at (1/32768, 0);
- ``float``: a float island (float weights), for profiles with an OS.

A tensor is stored in its producer's precision; the writers add QUANTIZE (int8 <-> int16, float ->
int) or DEQUANTIZE (int -> float) where a consumer runs in another one, and where a graph output is not int8.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from converters.ir import (
    COMPARE_KINDS,
    FLOAT_OUTPUT_KINDS,
    RAW_OUTPUT_KINDS,
    Graph,
    Op,
    unquantized_tensors,
)
from converters.ir import WEIGHTED as WEIGHTED_KINDS
from converters.masked_softmax import mask_constants, masked_softmax_chains, masked_sums
from edge_runtime.errors import ConfigError, UnsupportedModelError
from edge_runtime.formats.tflite_check import (
    MAX_INT16_ADD_RATIO,
    MAX_PRODUCT_MULTIPLIER,
    MAX_RESCALE_RATIO,
)
from edge_runtime.quantization import dequantize_affine, quantize_affine

FIXED = {"SOFTMAX": (1.0 / 256.0, -128), "LOGISTIC": (1.0 / 256.0, -128), "TANH": (1.0 / 128.0, 0),
         "LOG_SOFTMAX": (16.0 / 256.0, 127)}
SHARED = ("MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD",
          "CONCATENATION", "STRIDED_SLICE", "GATHER", "REDUCE_MAX", "RESIZE_BILINEAR",
          "RESIZE_NEAREST_NEIGHBOR", "MAXIMUM", "MINIMUM", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "GATHER_ND",
          "RELU6", "TOPK_V2")  # a standalone (unfused) RELU6: TFLite's int8 kernel clamps in its input's parameters
#: Shared ops whose every input (not only the first) joins the output's parameters.
SHARED_ALL_INPUTS = ("CONCATENATION", "MAXIMUM", "MINIMUM")
PER_CHANNEL = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "TRANSPOSE_CONV": 0, "FULLY_CONNECTED": 0}
#: Ops TFLite Micro has no int8 kernel for (it runs them in float): written as float islands.
FLOAT_ISLANDS = ("EXP", "LOG", "SQRT", "FLOOR", "CEIL", "ROUND", "SIN", "COS",
                 "CUMSUM",  # LiteRT's CUMSUM has no int8 kernel
                 "CAST")  # int32 indices -> float32 (TFLite's CAST), then QUANTIZE with the calibrated range
#: Ops written in 16x8 form when their precision is ``int16``: every one has an int16 kernel in TFLite
#: Micro (``exact`` in converters/data/op_parity.json) and in LiteRT. Not here: a standalone RELU6 (TFLite
#: Micro's int16 RELU6 needs equal input and output parameters).
INT16_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL",
               "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "CONCATENATION", "PAD", "STRIDED_SLICE", "TRANSPOSE",
               "RELU", "LEAKY_RELU", "LOGISTIC", "TANH", "MAXIMUM", "MINIMUM", "SOFTMAX")
#: Fixed int16 output parameters (TFLite's 16x8 LOGISTIC and TANH; int16 SOFTMAX: [0, 1) in 1/32768 steps).
FIXED16 = {"LOGISTIC": (1.0 / 32768.0, 0), "TANH": (1.0 / 32768.0, 0), "SOFTMAX": (1.0 / 32768.0, 0)}
PRECISIONS = ("int8", "int16", "float")
#: Reduced-axis length from which an int8 SOFTMAX's sum of exps (Q12.19, in units of the row maximum's exp)
#: can reach 512: tflite-micro's int8 kernel then computes a rounding shift of 32 and aborts the process.
#: Such a SOFTMAX (int8 by default) is written as a float island (DEQUANTIZE, float SOFTMAX, QUANTIZE to
#: (1/256, -128)). The alternatives measured worse or do not load: TFLite's int8 -> int16 form (output zero
#: point -32768) is refused by the .tflite checks of ``edge_runtime.load`` (int16 zero points must be 0);
#: the 16x8 form (int16 -> int16) lost 2.2 dB on PP-OCRv4 rec (6625 classes, 11.1 -> 8.9 dB against
#: onnxruntime, ``benchmarks.real_models_onnx``): tflite-micro's int16 exp table stops at -10, so every
#: class far below the maximum still adds exp(-10) to the sum. The float island kept 11.1 dB.
WIDE_SOFTMAX = 512
#: Narrowest activation range quantized (smaller ranges are widened to it).
MIN_RANGE = 1e-5
#: Input magnitude beyond which an int8 LOGISTIC / TANH output no longer changes (sigmoid(8) * 256 and
#: tanh(4) * 128 round to the top code): a tensor read only by these ops gets at most this int8 range.
SATURATION = {"LOGISTIC": 8.0, "TANH": 4.0}
#: Largest quantized bias magnitude: half of int32, leaving headroom in the int32 accumulator.
BIAS_LIMIT = float(2 ** 30)
#: Largest input / output scale ratio (both ways) of the int8/int16 ops that rescale values: the .tflite checks
#: of ``edge_runtime.load`` (and so micro) refuse 2**18 (``tflite_check.MAX_RESCALE_RATIO``); tflite-micro's int8
#: ADD/SUB need max input scale < 2**19 x output scale (multipliers below 1 after a 2**20 left shift).
RESCALE_LIMIT = MAX_RESCALE_RATIO
#: tflite-micro's int16 ADD/SUB shift left by 15 only: max input scale < 2**14 x output scale
#: (``tflite_check.MAX_INT16_ADD_RATIO``, which the .tflite checks refuse too).
RESCALE_LIMIT16 = MAX_INT16_ADD_RATIO
#: Largest input scale x weight (or second input) scale / output scale (``tflite_check.MAX_PRODUCT_MULTIPLIER``).
PRODUCT_LIMIT = MAX_PRODUCT_MULTIPLIER
#: Largest int8 DIV multiplier s1 / (s2 x s_out): micro (as tflite-micro's int8 DIV) needs a shift of at most 23.
DIV_LIMIT = float(2 ** 22)
#: Kinds with a rescale-ratio limit (:data:`RESCALE_LIMIT`) and with a product limit (:data:`PRODUCT_LIMIT`).
RESCALE_KINDS = ("ADD", "SUB", "AVERAGE_POOL_2D", "CONCATENATION", "MAX_POOL_2D", "MEAN", "LEAKY_RELU",
                 "HARD_SWISH", "LOGISTIC", "TANH", "SOFTMAX")
PRODUCT_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MUL", "TRANSPOSE_CONV")
#: Head room under each limit (float32 rounding of the widened scale).
LIMIT_MARGIN = 1.001
log = logging.getLogger("converters.quantize")


@dataclass(frozen=True)
class QParams:
    """Per-tensor affine parameters (int8, or int16 with ``bits=16``)."""

    scale: float
    zero_point: int
    bits: int = 8

    @property
    def dtype(self) -> type:
        """numpy integer type of the quantized values."""
        return np.int16 if self.bits == 16 else np.int8

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real -> int8/int16 (round half away from zero, as TFLite's reference QUANTIZE does, then clamp)."""
        return quantize_affine(x, self.scale, self.zero_point, self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """int8/int16 -> real (float32)."""
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
    #: int16 parameters of every activation and float operand (used where a tensor or op is int16)
    activations16: dict[str, QParams] = field(default_factory=dict)
    operands16: dict[str, QParams] = field(default_factory=dict)
    #: op key (:func:`op_key`) -> ``int16`` or ``float`` for the ops not in int8
    op_precision: dict[str, str] = field(default_factory=dict)
    #: activation -> ``int16`` or ``float32`` for tensors not stored as int8 (their producer's precision)
    tensor_dtypes: dict[str, str] = field(default_factory=dict)
    #: with any int16 op: the ops still computing in int8 (no int16 kernel, or not raised)
    int8_ops: list[str] = field(default_factory=list)
    #: op key -> why it is not int8, for ops a default policy raised (:mod:`converters.quality.default_precision`)
    reasons: dict[str, str] = field(default_factory=dict)
    #: graph outputs written in their own precision (int16, or float32) instead of the I/O type, where int8
    #: cannot hold them (:mod:`converters.quality.concat_ranges`)
    wide_outputs: list[str] = field(default_factory=list)

    def op_dtype(self, op: Op) -> str:
        """The type ``op`` computes in: ``int8``, ``int16`` or ``float32``."""
        p = self.op_precision.get(op_key(op), "int8")
        return "float32" if p == "float" else p

    def tensor_dtype(self, name: str) -> str:
        """How activation ``name`` is stored: ``int8``, ``int16`` or ``float32``."""
        return self.tensor_dtypes.get(name, "int8")

    def params(self, name: str, dtype: str) -> QParams:
        """Parameters of activation (or float operand) ``name`` as ``dtype`` (int8 or int16)."""
        if dtype == "int16":
            return self.activations16[name] if name in self.activations16 else self.operands16[name]
        return self.activations[name] if name in self.activations else self.operands[name]

    def to_dict(self) -> dict:
        """JSON-friendly summary of the activation parameters."""
        return {n: {"scale": q.scale, "zero_point": q.zero_point} for n, q in self.activations.items()}

    def precision(self) -> dict:
        """For the conversion report: how ops int8 cannot represent well are run.

        Everything is int8 (per-channel weights; fully-connected weights per tensor when planned
        with ``per_channel_fc=False``) except the ops listed under ``float_islands``, which run in float
        between DEQUANTIZE and QUANTIZE (EXP, LOG, SQRT: TFLite Micro has no int8 kernel for them).
        Ops planned in ``int16`` (16x8: int16 activations, int8 weights, int64 biases) are listed under
        ``int16_intermediates``; ``activations`` is ``int8``, ``int16`` (every op that has an int16
        kernel) or ``mixed``. ``default_policy`` (when the default precision policy raised ops) maps each
        reason to the precision chosen and the ops (keys, see :func:`op_key`) it applies to.
        """
        per_tensor = any(w.scales.size == 1 and w.values.shape[w.axis] > 1 for w in self.weights.values())
        int16 = [k for k, p in self.op_precision.items() if p == "int16"]
        acts = "int8" if not int16 else ("int16" if not self.int8_ops else "mixed int8/int16")
        d = {"activations": acts,
             "weights": "int8 (per-channel for convolutions)" if per_tensor else "int8 (per-channel)",
             "int16_intermediates": int16, "float_islands": list(self.float_islands)}
        if int16:
            d["int16_biases"] = "int64"
            d["int8_ops"] = list(self.int8_ops)
        if self.reasons:  # {reason: {"precision": ..., "ops": [...]}} for the ops the default policy raised
            by: dict[str, dict] = {}
            for k, why in self.reasons.items():
                entry = by.setdefault(why, {"precision": self.op_precision.get(k, "int8"), "ops": []})
                entry["ops"].append(k)
            d["default_policy"] = by
        return d


def qparams_from_range(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering [lo, hi], widened to include 0 so that 0.0 is exact."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_RANGE:  # a (nearly) dead tensor: keep fused-activation bounds (6 / scale) inside int32
        hi = lo + MIN_RANGE
    scale = (hi - lo) / 255.0
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QParams(float(np.float32(scale)), zp)


def op_key(op: Op) -> str:
    """The key of ``op`` in a precision map: its first output's name (unique in a graph)."""
    return op.outputs[0]


def int16_params(lo: float, hi: float) -> QParams:
    """Symmetric int16 parameters (zero point 0, as TFLite's 16x8 kernels require) covering [lo, hi]."""
    amax = max(abs(float(lo)), abs(float(hi)), MIN_RANGE / 2)
    return QParams(float(np.float32(amax / 32767.0)), 0, 16)


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


def quantize_bias(b: np.ndarray, input_scale: float, weight: QuantWeight, wide16: bool = False) -> QuantWeight:
    """A bias quantized at scale input_scale x weight scale (per channel where the weights are): int32, or int64
    for a 16x8 op (``wide16``)."""
    bscale = (np.float64(input_scale) * weight.scales.astype(np.float64)).astype(np.float32)
    bf = np.asarray(b).astype(np.float64)
    bscale_full = np.broadcast_to(bscale, bf.shape).astype(np.float64)
    if wide16:  # 16x8: int64 biases
        bq = np.clip(np.round(bf / bscale_full), -(2 ** 62), 2 ** 62).astype(np.int64)
    else:
        bq = np.clip(np.round(bf / bscale_full), -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
    return QuantWeight(bq, bscale.astype(np.float32), 0)


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


def _join_shared(groups: _Groups, op: Op) -> None:
    """Join the tensors whose parameters ``op``'s int8 kernel needs equal (:data:`SHARED`, SELECT_V2)."""
    if op.kind in SHARED:
        n_in = len(op.inputs) if op.kind in SHARED_ALL_INPUTS else 1
        for i in op.inputs[:n_in]:
            groups.union(op.outputs[0], i)
    if op.kind == "SELECT_V2":  # int8 SELECT_V2 copies values: both choices share the output's parameters
        for i in op.inputs[1:]:
            groups.union(op.outputs[0], i)


def parameter_groups(graph: Graph) -> list[list[str]]:
    """The groups of two or more tensors that :func:`plan_quantization` gives one set of int8 parameters (the
    inputs and outputs of the ops in :data:`SHARED`, SELECT_V2's choices), each in first-seen order."""
    groups = _Groups()
    for op in graph.ops:
        _join_shared(groups, op)
    by_root: dict[str, list[str]] = {}
    for name in list(groups.parent):
        by_root.setdefault(groups.find(name), []).append(name)
    return [m for m in by_root.values() if len(m) > 1]


def saturated_input_ranges(graph: Graph, ranges: dict[str, tuple[float, float]],
                           precision: Optional[dict[str, str]] = None) -> dict[str, tuple[float, float]]:
    """The int8 ranges of activations read only by int8 LOGISTIC/TANH ops, cut to :data:`SATURATION`.

    The cut is lossless for those ops (their int8 output is the same for any input beyond it) and makes
    the input's int8 step finer: the sigmoid argument in GELU, LSTM/GRU gate pre-activations.
    """
    readers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for name in set(op.inputs):
            readers.setdefault(name, []).append(op)
    keep = set(graph.inputs) | set(graph.outputs)
    out: dict[str, tuple[float, float]] = {}
    for name, ops in readers.items():
        if name in keep or name not in ranges or any(
                op.kind not in SATURATION or op.inputs[0] != name or (precision or {}).get(op_key(op), "int8") != "int8"
                for op in ops):
            continue
        bound = min(SATURATION[op.kind] for op in ops)
        lo, hi = ranges[name]
        out[name] = (float(np.clip(lo, -bound, bound)), float(np.clip(hi, -bound, bound)))
    return out


def plan_quantization(graph: Graph, ranges: dict[str, tuple[float, float]], io_dtype: str = "int8",
                      per_channel_fc: bool = True, precision: Optional[dict[str, str]] = None,
                      ranges16: Optional[dict[str, tuple[float, float]]] = None,
                      weights: Optional[dict[str, QuantWeight]] = None) -> QuantPlan:
    """Turn calibrated activation ranges into the full :class:`QuantPlan` for ``graph``.

    ``per_channel_fc=False`` keeps FULLY_CONNECTED weights per tensor (for delegates that need it).
    ``precision``: ``{op_key: 'int8' | 'int16' | 'float'}`` (see the module docstring; ``int16`` only for
    :data:`INT16_KINDS`); ``ranges16``: the ranges int16 tensors cover (default ``ranges``);
    ``weights``: int8 weights to reuse (e.g. after a rounding optimisation) instead of quantizing anew.

    ``ranges`` maps every activation tensor to its (clipped) real range, as
    :mod:`converters.calibrate` produces.
    """
    if io_dtype not in ("int8", "uint8", "float32"):
        raise ConfigError(f"io_dtype must be int8, uint8 or float32, got {io_dtype!r}")
    raw = unquantized_tensors(graph)
    int_only = {op_key(op) for op in graph.ops if op.outputs and all(raw.get(o) == "int32" for o in op.outputs)
                and op.kind not in RAW_OUTPUT_KINDS}  # selections of token ids: int32 in every precision
    int_only |= {op_key(op) for op in graph.ops if op.kind == "TOPK_V2"}  # copies int8 values; no island form
    precision = {k: v for k, v in (precision or {}).items() if v != "int8" and k not in int_only}
    kinds = {op_key(op): op.kind for op in graph.ops}
    for k, v in precision.items():
        if v not in PRECISIONS or k not in kinds:
            raise ConfigError(f"precision {v!r} for op '{k}': unknown op or precision (choose {', '.join(PRECISIONS)})")
        if v == "int16" and kinds[k] not in INT16_KINDS:
            raise ConfigError(f"op '{k}' ({kinds[k]}) has no int16 kernel in TFLite Micro and LiteRT; "
                              "keep it int8 or make it a float island")
    wide_softmax = set(wide_softmax_keys(graph, precision))
    div_islands = set(activation_divisor_keys(graph, precision))
    masked = masked_softmax_chains(graph, skip=lambda op: op_key(op) in precision)
    masked_keys = {op_key(op) for c in masked for op in c}  # float islands: the mask's range is not int8's
    sums = masked_sums(graph, masked)  # float inside, -inf expected
    masks = mask_constants(graph, masked)
    if masked:  # the masked sums are float: give their (unused) int8 parameters the scores' range
        ranges = dict(ranges)
        for c in masked:
            scores = next(t for t in c[0].inputs if not graph.tensors[t].is_constant)
            ranges.update({o: ranges[scores] for op in c[:-1] for o in op.outputs})
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
            if t.is_constant and t.data.dtype.kind == "f" and not (op.kind in WEIGHTED_KINDS and k in (1, 2)) \
                    and name not in masks:  # an attention mask stays float in its island
                const_ranges[name] = (float(t.data.min()), float(t.data.max()))
        _join_shared(groups, op)
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
    all_ranges.update(saturated_input_ranges(graph, ranges, precision))
    by_root: dict[str, list[str]] = {}
    for a in list(acts) + [c for c in const_ranges if c not in acts]:
        by_root.setdefault(groups.find(a), []).append(a)
    activations: dict[str, QParams] = {}
    operands: dict[str, QParams] = {}
    activations16: dict[str, QParams] = {}
    operands16: dict[str, QParams] = {}
    wide = dict(const_ranges)
    wide.update(ranges16 or ranges)
    fixed16 = {op.outputs[0]: QParams(*FIXED16[op.kind], 16) for op in graph.ops if op.kind in FIXED16}
    for members in by_root.values():
        fixed_members = [fixed[m] for m in members if m in fixed]
        ranged = [m for m in members if m not in no_range] or members
        if fixed_members:
            qp = fixed_members[0]
        else:
            lo = min(all_ranges[m][0] for m in ranged)
            hi = max(all_ranges[m][1] for m in ranged)
            qp = qparams_from_range(lo, hi)
        f16 = [fixed16[m] for m in members if m in fixed16]
        qp16 = f16[0] if f16 else int16_params(min(wide.get(m, all_ranges[m])[0] for m in ranged),
                                              max(wide.get(m, all_ranges[m])[1] for m in ranged))
        for m in members:
            (operands if m in const_ranges else activations)[m] = qp
            (operands16 if m in const_ranges else activations16)[m] = qp16
    fit_scale_limits(graph, {**precision, **{k: "float" for k in div_islands | masked_keys}},
                     {m: ms for ms in by_root.values() for m in ms},
                     {8: set(fixed), 16: set(fixed16)}, {8: (activations, operands), 16: (activations16, operands16)},
                     weights)
    check_constant_divisors(graph, precision, operands)
    weighted = [op for op in graph.ops if op.kind in WEIGHTED_KINDS]
    # A (near-)dead channel has tiny weights; its bias must still fit int32 at scale s_in * s_w, so the
    # weight scale may not drop below |bias| / (s_in * BIAS_LIMIT) -- for every op sharing the weights.
    axes = {k: (None if k == "FULLY_CONNECTED" and not per_channel_fc else a) for k, a in WEIGHT_AXIS.items()}
    need: dict[str, np.ndarray] = {}
    for op in weighted:
        if precision.get(op_key(op)) is not None and any(precision.get(op_key(o)) is None for o in weighted
                                                        if o.inputs[1] == op.inputs[1]):
            continue  # an int16/float op's bias has room (int64 / float); its int8 sharers set the floor
        s_in = np.float64(activations[op.inputs[0]].scale)
        b_abs = np.abs(graph.tensors[op.inputs[2]].data.astype(np.float64))
        n = b_abs / (s_in * BIAS_LIMIT)
        n = n if axes[op.kind] is not None else np.array([n.max()])
        need[op.inputs[1]] = np.maximum(need[op.inputs[1]], n) if op.inputs[1] in need else n
    given = weights or {}
    weights = {}
    biases: dict[str, QuantWeight] = {}
    for op in weighted:
        w_name, b_name = op.inputs[1], op.inputs[2]
        if w_name not in weights:
            weights[w_name] = given[w_name] if w_name in given else quantize_weight(
                graph.tensors[w_name].data, axes[op.kind], need.get(w_name))
        qw = weights[w_name]
        wide16 = precision.get(op_key(op)) == "int16"
        qb = quantize_bias(graph.tensors[b_name].data, (activations16 if wide16 else activations)[op.inputs[0]].scale,
                           qw, wide16)
        if b_name in biases and not np.array_equal(biases[b_name].scales, qb.scales):
            raise ValueError(f"bias '{b_name}' is shared by ops with different input scales; give each op its own")
        biases[b_name] = qb
    # chosen float ops keep float outputs (their readers convert); the automatic islands (FLOAT_ISLANDS)
    # quantize their output right away, as before mixed precision existed
    dtypes = {o: ("float32" if precision[op_key(op)] == "float" else precision[op_key(op)])
              for op in graph.ops if op_key(op) in precision for o in op.outputs}
    dtypes.update(unquantized_tensors(graph))  # ARG_MAX/ARG_MIN indices stay int32, comparison masks bool
    dtypes.update({t: "float32" for t in sums})
    for op in graph.ops:  # float-only ops (TFLite_Detection_PostProcess): a float island with float outputs
        if op.kind in FLOAT_OUTPUT_KINDS:
            precision[op_key(op)] = "float"
            dtypes.update({o: "float32" for o in op.outputs})
    for op in graph.ops:
        if (op.kind in FLOAT_ISLANDS or op_key(op) in wide_softmax or op_key(op) in div_islands
                or op_key(op) in masked_keys) \
                and op_key(op) not in precision:
            precision[op_key(op)] = "float"
    for key in wide_comparison_keys(graph, precision, activations, operands):
        precision[key] = "float"
    check_softmax_inputs(graph, all_ranges, precision, activations, activations16)
    islands = [op.name or op.outputs[0] for op in graph.ops if precision.get(op_key(op)) == "float"]
    int8_ops = ([op.name or op_key(op) for op in graph.ops if op_key(op) not in precision]
                if any(v == "int16" for v in precision.values()) else [])
    return QuantPlan(activations, weights, biases, io_dtype, dict(ranges), operands, islands, activations16,
                     operands16, precision, dtypes, int8_ops)


def fit_scale_limits(graph: Graph, precision: dict[str, str], group_of: dict[str, list[str]],
                     fixed: dict[int, set[str]], tables: dict[int, tuple[dict[str, QParams], dict[str, QParams]]],
                     weights: Optional[dict[str, QuantWeight]] = None) -> list[str]:
    """Widen scales (in place, in ``tables``) until every int8/int16 op is within the scale-ratio limits that
    tflite-micro and micro's .tflite checks impose (:data:`RESCALE_LIMIT`, :data:`PRODUCT_LIMIT`, :data:`DIV_LIMIT`).

    An output too narrow for its inputs gets the smallest scale within the limit (zero point kept), an input too
    narrow for its output likewise; the whole parameter-sharing group (``group_of``) moves together, groups with
    fixed parameters (``fixed``) never. ``tables``: bits -> (activation, operand) parameters. Returns the widened
    tensors (one log line each). Models within the limits are left exactly as they were.
    """
    widened: list[str] = []

    def lookup(name: str, bits: int) -> Optional[QParams]:
        acts, ops = tables[bits]
        return acts.get(name, ops.get(name))

    def widen(name: str, scale: float, bits: int, why: str) -> bool:
        members = group_of.get(name, [name])
        if any(m in fixed[bits] for m in members):
            return False
        scale = float(np.float32(scale * LIMIT_MARGIN))
        for m in members:
            for table in tables[bits]:
                if m in table:
                    old = table[m]
                    table[m] = QParams(scale, old.zero_point, old.bits)
        log.warning("widened the int%d scale of '%s' to %.4g: %s", bits, name, scale, why)
        widened.append(name)
        return True

    def weight_scale(op: Op) -> float:
        w = op.inputs[1]
        if weights and w in weights:
            return float(weights[w].scales.max())
        return max(float(np.abs(graph.tensors[w].data).max()) / 127.0, 1e-12)

    for _ in range(len(graph.ops) + 2):  # every step only widens; stop when a pass widens nothing
        changed = False
        for op in graph.ops:
            p = precision.get(op_key(op), "int8")
            if p == "float" or op.kind not in RESCALE_KINDS + PRODUCT_KINDS + ("DIV",) or not op.outputs:
                continue
            bits = 16 if p == "int16" else 8
            out = op.outputs[0]
            qo = lookup(out, bits)
            n_in = 1 if op.kind in WEIGHTED_KINDS else len(op.inputs)
            ins = [(i, lookup(i, bits)) for i in op.inputs[:n_in]]
            ins = [(i, q) for i, q in ins if q is not None]
            if qo is None or not ins:
                continue
            s_out = qo.scale
            if op.kind in PRODUCT_KINDS:
                second = weight_scale(op) if op.kind in WEIGHTED_KINDS else (ins[1][1].scale if len(ins) > 1 else 1.0)
                m = ins[0][1].scale * second / s_out
                if m >= PRODUCT_LIMIT:
                    changed |= widen(out, ins[0][1].scale * second / PRODUCT_LIMIT, bits,
                                     f"{op.kind} input x weight scale / output scale was {m:.3g} "
                                     f"(limit {PRODUCT_LIMIT:g})")
                continue
            if op.kind == "DIV":
                if bits == 8 and len(ins) == 2 and ins[0][1].scale / (ins[1][1].scale * s_out) >= DIV_LIMIT:
                    changed |= widen(out, ins[0][1].scale / (ins[1][1].scale * DIV_LIMIT), bits,
                                     f"DIV multiplier beyond tflite-micro's limit {DIV_LIMIT:g}")
                continue
            limit = RESCALE_LIMIT16 if bits == 16 and op.kind in ("ADD", "SUB") else RESCALE_LIMIT
            big = max(q.scale for _, q in ins)
            if big / s_out >= limit:
                changed |= widen(out, big / limit, bits, f"{op.kind} input scale {big:.3g} is {big / s_out:.3g}x the "
                                                         f"output's (limit {limit:g})")
                continue
            name, small = min(ins, key=lambda iq: iq[1].scale)
            if s_out / small.scale >= RESCALE_LIMIT:
                changed |= widen(name, s_out / RESCALE_LIMIT, bits,
                                 f"read by {op.kind} whose output scale is {s_out / small.scale:.3g}x its own "
                                 f"(limit {RESCALE_LIMIT:g})")
        if not changed:
            break
    return widened


def wide_softmax_keys(graph: Graph, precision: dict[str, str]) -> list[str]:
    """Keys (:func:`op_key`) of the int8 SOFTMAX ops over :data:`WIDE_SOFTMAX` or more values (the last axis,
    as the IR's SOFTMAX reduces): the ones written as float islands."""
    keys = []
    for op in graph.ops:
        if op.kind == "SOFTMAX" and op_key(op) not in precision and not graph.tensors[op.inputs[0]].is_constant:
            shape = graph.tensors[op.inputs[0]].shape
            if shape and int(shape[-1]) >= WIDE_SOFTMAX:
                keys.append(op_key(op))
    return keys


def activation_divisor_keys(graph: Graph, precision: dict[str, str]) -> list[str]:
    """Keys (:func:`op_key`) of the int8 DIV ops whose divisor is an activation: the ones written as float islands.

    LiteRT's int8 DIV fails the invoke when a divisor value equals its zero point (div.cc: ``data[i] !=
    zero_point``; an error with ai-edge-litert 2.3.0, not an abort) and tflite-micro returns a meaningless value,
    which an int8 activation reaches whenever its real value rounds to 0 (basic-pitch's ``(x - min) / max(x - min)``
    on a quiet example). Such a DIV runs in float between DEQUANTIZE and QUANTIZE (its own output parameters) on
    every profile (tflite-micro has a float DIV). Clamping the divisor away from 0 (MAXIMUM with one step) would
    guard one-signed ranges only and needs an op the source model lacks; the float island guards every range, and
    a float divisor of 0 gives inf/nan as the source model does (QUANTIZE saturates it). On the onnx node tests
    (Div, Reciprocal) and basic-pitch nmp the SQNR is unchanged.
    """
    return [op_key(op) for op in graph.ops
            if op.kind == "DIV" and op_key(op) not in precision and len(op.inputs) > 1
            and not graph.tensors[op.inputs[1]].is_constant]


def wide_comparison_keys(graph: Graph, precision: dict[str, str], activations: dict[str, QParams],
                         operands: dict[str, QParams]) -> list[str]:
    """Keys of the int8 comparisons (LESS, GREATER, EQUAL, ...) with an input scale of 1 or more: they run in float.

    TFLite's int8 comparisons rescale each input by its scale as a fixed-point multiplier below 1:
    tflite-micro aborts on a scale of 1 or more and LiteRT compares wrongly (``x > 0`` false for x = 4.2 at
    scale 1.4). An input that wide (a longitude in degrees, a day of the year) is compared in float, between
    DEQUANTIZE and the bool mask, which every runtime runs exactly.
    """
    keys = []
    for op in graph.ops:
        if op.kind not in COMPARE_KINDS or op_key(op) in precision:
            continue
        scales = [(activations.get(t) or operands.get(t)) for t in op.inputs]
        if any(qp is not None and qp.scale >= 1.0 for qp in scales):
            keys.append(op_key(op))
    return keys


def check_constant_divisors(graph: Graph, precision: dict[str, str], operands: dict[str, QParams]) -> None:
    """Refuse, in one line naming the op, an int8 DIV whose constant divisor holds a value that quantizes to
    its zero point (a zero, or a value below half its int8 step): LiteRT's int8 DIV fails the invoke on it
    (every invoke: the divisor is constant) and tflite-micro returns a meaningless value."""
    for op in graph.ops:
        if op.kind != "DIV" or precision.get(op_key(op), "int8") == "float" or len(op.inputs) < 2:
            continue
        d = graph.tensors[op.inputs[1]]
        if not d.is_constant or op.inputs[1] not in operands:
            continue
        qp = operands[op.inputs[1]]
        values = np.asarray(d.data, np.float32)
        at_zero = values[qp.quantize(values) == qp.zero_point]
        if at_zero.size:
            raise UnsupportedModelError(
                f"DIV '{op.name or op_key(op)}': its constant divisor '{op.inputs[1]}' holds {float(at_zero.flat[0]):.3g}, "
                f"which quantizes to the divisor's zero point (int8 step {qp.scale:.3g}): a division by zero LiteRT's "
                "int8 DIV fails on; keep every divisor value at least half a step from 0 (or multiply by the "
                "inverse in the source model)")


def check_softmax_inputs(graph: Graph, ranges: dict[str, tuple[float, float]], precision: dict[str, str],
                         activations: dict[str, QParams], activations16: dict[str, QParams]) -> None:
    """Refuse, in one line naming the tensor and its range, an integer SOFTMAX whose input scale is so far
    from its fixed output scale that the written model would be refused when loaded.

    ``edge_runtime.load`` checks every rescaling op's input/output scale ratio against
    ``MAX_RESCALE_RATIO`` (2^18); tflite-micro and LiteRT clamp the softmax's input multiplier
    (beta * input_scale * 2^26) instead, which then leaves only the row maximum. With the fixed output
    scales that means logits spanning about +-130,000 (int8) or +-262,000 (int16).
    """

    for op in graph.ops:
        p = precision.get(op_key(op), "int8")
        if op.kind != "SOFTMAX" or p == "float" or graph.tensors[op.inputs[0]].is_constant:
            continue
        x = op.inputs[0]
        sx = (activations16 if p == "int16" else activations)[x].scale
        sy = (FIXED16 if p == "int16" else FIXED)["SOFTMAX"][0]
        ratio = max(sx / sy, sy / sx)
        if not ratio < MAX_RESCALE_RATIO:
            lo, hi = ranges.get(x, (float("nan"), float("nan")))
            raise UnsupportedModelError(
                f"softmax input '{x}' spans {lo:.3g}..{hi:.3g}: no {p} softmax can represent it (input scale "
                f"{sx:.3g} against the output's {sy:.3g}, a factor of {ratio:.3g}; the model checks of edge_runtime.load "
                f"accept less than {MAX_RESCALE_RATIO:.0f}); the float logits are this large on the calibration data: check the "
                "data's scaling, or run this op in float")

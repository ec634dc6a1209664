"""Write the IR as a full-integer int8 .tflite from a :class:`QuantPlan`.

Built with ``flatbuffers`` and the schema facts of :mod:`converters.writers.tflite_schema_table` (the
``tflite`` schema package is not imported). Follows the TFLite int8 quantization spec so that LiteRT,
tflite-runtime, TFLite Micro and the project's micro backend all run it: per-channel conv/depthwise
weights (``quantized_dimension`` 0 and 3), int32 biases, fixed SOFTMAX/LOGISTIC/TANH output params,
shared params through pooling and reshapes.
Constant buffers are 16-byte aligned in the file. uint8 or float32 I/O adds QUANTIZE/DEQUANTIZE
at the edges, as TensorFlow's converter does.

Mixed precision (:class:`~converters.quantize.QuantPlan` ``op_precision``): an int16 op is written in
TFLite's 16x8 form (int16 activations with zero point 0, int8 weights, int64 bias); a float op as
the float op with float weights. Each activation is stored in its producer's type; a consumer that
runs in another type reads it through one QUANTIZE (int8 <-> int16 requantization, float -> int) or
DEQUANTIZE (int -> float), written once per tensor and type. Graph outputs are int8 (then the
profile's I/O type) whatever their producer's type.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from converters.ir import (
    OP_KINDS,
    WEIGHTED,
    Graph,
    Op,
    float_output_tensors,
    padding_mode,
)
from converters.island_bounds import ANY, clamp_range, float_bounds, needs_clamp
from converters.quantize import QParams, QuantPlan, QuantWeight
from converters.writers.flatbuf import (
    Options,
    aligned_bytes,
    buffer_table,
    finish_model,
    little_endian,
    operator_code,
    operator_table,
    options_builder,
    tensor_table,
)
from converters.writers.tflite_schema_table import BUILTIN_OPERATOR, BUILTIN_OPTIONS
from edge_runtime.errors import UnsupportedModelError

ALIGN = 16
TYPE = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9}
#: activation types stored as they are (ARG_MAX/ARG_MIN indices, comparison masks): no quantization
RAW = ("int32", "bool")
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING = {"SAME": 0, "VALID": 1}
#: op version of the int8 form where it is not 1 (LiteRT registers every version from 1 up)
VERSIONS = {
    "ADD": 2, "AVERAGE_POOL_2D": 2, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "DEQUANTIZE": 2,
    "FULLY_CONNECTED": 4, "LOGISTIC": 2, "MAX_POOL_2D": 2, "MUL": 2, "RELU": 2, "RELU6": 2, "SOFTMAX": 2,
    "TANH": 2, "PAD": 2, "TRANSPOSE": 2, "QUANTIZE": 2, "SUB": 2, "MAXIMUM": 2, "MINIMUM": 2, "MEAN": 2,
    "STRIDED_SLICE": 2, "GATHER": 2, "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "REDUCE_MAX": 2,
    "LEAKY_RELU": 2, "PADV2": 2, "MIRROR_PAD": 2, "TRANSPOSE_CONV": 3, "RSQRT": 2, "ABS": 2, "EXP": 2,
    "SQUARED_DIFFERENCE": 2, "GELU": 2, "LOG": 2, "ARG_MAX": 2, "ARG_MIN": 2, "EQUAL": 2, "NOT_EQUAL": 2,
    "GREATER": 2, "GREATER_EQUAL": 2, "LESS": 2, "LESS_EQUAL": 2, "TOPK_V2": 2,
}
#: op version of the 16x8 form of the weighted ops (TFLite's op_version.cc)
VERSIONS16 = {"CONV_2D": 4, "DEPTHWISE_CONV_2D": 5, "FULLY_CONNECTED": 7, "TRANSPOSE_CONV": 3, "SOFTMAX": 3}
#: IR kinds written as TFLite custom ops: their custom code
CUSTOM_CODES = {"DETECTION_POSTPROCESS": "TFLite_Detection_PostProcess"}
#: ops the writer knows (IR kinds plus the QUANTIZE/DEQUANTIZE it adds)
KNOWN = set(OP_KINDS) | {"QUANTIZE", "DEQUANTIZE"}


def _code(kind: str) -> int:
    return BUILTIN_OPERATOR[kind]


def _opt_type(table: str) -> int:
    return BUILTIN_OPTIONS[table]


@dataclass
class _T:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int = 0
    scales: Optional[np.ndarray] = None
    zero_points: Optional[np.ndarray] = None
    qdim: int = 0


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: Optional[Options] = None
    custom_options: bytes = b""


@dataclass
class _Model:
    tensors: list[_T] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[_Op] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    shared: dict[str, int] = field(default_factory=dict)
    views: dict[tuple[str, str], int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    #: float island outputs -> bounds of their float values (:func:`converters.island_bounds.float_bounds`)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, t: _T, data: Optional[np.ndarray] = None) -> int:
        if data is not None:
            self.buffers.append(little_endian(data))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.index[t.name] = len(self.tensors) - 1
        return len(self.tensors) - 1


def _act_tensor(name: str, shape: tuple[int, ...], qp: QParams, dtype: str = "int8") -> _T:
    if dtype == "float32" or dtype in RAW:  # float islands; indices and masks carry no quantization
        return _T(name, shape, dtype)
    zp = qp.zero_point + (128 if dtype == "uint8" else 0)
    return _T(name, shape, dtype, 0, np.array([qp.scale], np.float32), np.array([zp], np.int64))


def _const_tensor(name: str, qw: QuantWeight, dtype: str) -> _T:
    return _T(name, tuple(qw.values.shape), dtype, 0, qw.scales.astype(np.float32),
              np.zeros(qw.scales.size, np.int64), qw.axis if qw.scales.size > 1 else 0)


def _options(kind: str, op: Op, graph: Graph, int16: bool = False) -> Optional[Options]:
    """(BuiltinOptions type, function(builder) -> offset) for ``op``, or None."""
    a = op.attrs
    act = ("FusedActivationFunction", ACT[op.act])
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x = graph.tensors[op.inputs[0]]
        w = graph.tensors[op.inputs[1]].data
        mode = padding_mode(a["pads"], x.shape[1:3], (w.shape[1], w.shape[2]), a["stride"], a["dilation"])
        if mode is None:
            raise UnsupportedModelError(f"op '{op.name}': padding {a['pads']} is neither SAME nor VALID")
        dilation = [("DilationWFactor", a["dilation"][1]), ("DilationHFactor", a["dilation"][0])]
        strides = [("Padding", PADDING[mode]), ("StrideW", a["stride"][1]), ("StrideH", a["stride"][0])]
        if kind == "CONV_2D":
            return (1, options_builder("Conv2DOptions", strides + [act] + dilation))
        return (2, options_builder("DepthwiseConv2DOptions",
                                   strides + [("DepthMultiplier", a.get("multiplier", 1)), act] + dilation))
    if kind == "FULLY_CONNECTED":
        return (8, options_builder("FullyConnectedOptions", [act]))
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        x = graph.tensors[op.inputs[0]]
        mode = padding_mode(a["pads"], x.shape[1:3], a["kernel"], a["stride"])
        if mode is None:
            raise UnsupportedModelError(f"op '{op.name}': padding {a['pads']} is neither SAME nor VALID")
        return (5, options_builder("Pool2DOptions", [
            ("Padding", PADDING[mode]), ("StrideW", a["stride"][1]), ("StrideH", a["stride"][0]),
            ("FilterWidth", a["kernel"][1]), ("FilterHeight", a["kernel"][0]), act]))
    if kind in ("ADD", "MUL", "SUB", "DIV"):
        table = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions", "DIV": "DivOptions"}[kind]
        if kind in ("ADD", "SUB") and int16:  # general int16 scales (the default asks for powers of two)
            return (_opt_type(table), options_builder(table, [act, ("PotScaleInt16", False)]))
        return (_opt_type(table), options_builder(table, [act]))
    if kind == "SOFTMAX":
        return (_opt_type("SoftmaxOptions"), options_builder("SoftmaxOptions", [("Beta", float(a.get("beta", 1.0)))]))
    if kind == "CONCATENATION":
        return (_opt_type("ConcatenationOptions"), options_builder("ConcatenationOptions", [
            ("Axis", int(a["axis"])), act]))
    if kind == "TRANSPOSE_CONV":
        return (_opt_type("TransposeConvOptions"), options_builder("TransposeConvOptions", [
            ("Padding", PADDING["VALID"]), ("StrideW", a["stride"][1]), ("StrideH", a["stride"][0])]))
    if kind == "STRIDED_SLICE":
        return (_opt_type("StridedSliceOptions"), options_builder("StridedSliceOptions", [
            ("EndMask", int(a.get("end_mask", 0)))]))
    if kind in ("MEAN", "SUM", "REDUCE_MAX"):
        return (_opt_type("ReducerOptions"), options_builder("ReducerOptions", [("KeepDims", bool(a["keep_dims"]))]))
    if kind in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        table = "ResizeBilinearOptions" if kind == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
        return (_opt_type(table), options_builder(table, [
            ("AlignCorners", bool(a.get("align_corners", False))),
            ("HalfPixelCenters", bool(a.get("half_pixel_centers", False)))]))
    if kind == "GATHER":
        return (_opt_type("GatherOptions"), options_builder("GatherOptions", [("Axis", int(a["axis"]))]))
    if kind == "LEAKY_RELU":
        return (_opt_type("LeakyReluOptions"), options_builder("LeakyReluOptions", [("Alpha", float(a["alpha"]))]))
    if kind == "MIRROR_PAD":
        return (_opt_type("MirrorPadOptions"), options_builder("MirrorPadOptions", [
            ("Mode", 0 if a.get("mode", "REFLECT") == "REFLECT" else 1)]))
    if kind == "BATCH_MATMUL":
        return (_opt_type("BatchMatMulOptions"), options_builder("BatchMatMulOptions", [
            ("AdjX", False), ("AdjY", False)]))
    if kind == "GELU":
        return (_opt_type("GeluOptions"), options_builder("GeluOptions", [
            ("Approximate", bool(a.get("approximate", False)))]))
    if kind in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        table = "DepthToSpaceOptions" if kind == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
        return (_opt_type(table), options_builder(table, [("BlockSize", int(a["block_size"]))]))
    if kind == "CUMSUM":
        return (_opt_type("CumsumOptions"), options_builder("CumsumOptions", [
            ("Exclusive", bool(a.get("exclusive", False))), ("Reverse", bool(a.get("reverse", False)))]))
    if kind in ("ARG_MAX", "ARG_MIN"):
        table = "ArgMaxOptions" if kind == "ARG_MAX" else "ArgMinOptions"
        return (_opt_type(table), options_builder(table, [("OutputType", TYPE["int32"])]))
    if kind == "TRANSPOSE":
        return (_opt_type("TransposeOptions"), options_builder("TransposeOptions", []))
    if kind == "TOPK_V2":
        return (_opt_type("TopKV2Options"), options_builder("TopKV2Options", []))
    if kind == "CAST":  # int32 indices -> float32 (an island: a QUANTIZE follows)
        return (_opt_type("CastOptions"), options_builder("CastOptions", [("InDataType", TYPE["int32"]),
                                                                          ("OutDataType", TYPE["float32"])]))
    if kind in ("MAXIMUM", "MINIMUM"):
        return (_opt_type("MaximumMinimumOptions"), options_builder("MaximumMinimumOptions", []))
    if kind == "RESHAPE":
        new_shape = [int(d) for d in graph.tensors[op.outputs[0]].shape]
        return (17, options_builder("ReshapeOptions", [("NewShape", new_shape)]))
    return None


def build_tflite(graph: Graph, plan: QuantPlan) -> bytes:
    """Serialise ``graph`` quantized by ``plan`` into .tflite bytes."""
    m = _Model()
    m.bounds = float_bounds(graph, plan)
    acts = plan.activations
    float_outs = float_output_tensors(graph) | set(plan.wide_outputs)  # wide outputs: as stored (int16/float32)
    for name in graph.activations():
        dt = plan.tensor_dtype(name)
        stored = name if dt == "int8" or dt in RAW or name in float_outs else (f"{name}/float" if dt == "float32" else
                                            (f"{name}/{dt}" if name in graph.outputs else name))
        qp = plan.params(name, dt) if dt != "float32" else acts[name]
        m.add(_act_tensor(stored, graph.tensors[name].shape, qp, dt))
        m.index[name] = len(m.tensors) - 1
        m.views[(name, dt)] = m.index[name]
    ops: list[_Op] = []
    io = plan.io_dtype
    graph_inputs, graph_outputs = [], []
    for name in graph.inputs:
        if io == "int8" or plan.tensor_dtype(name) in RAW:  # integer inputs (token ids, bytes) stay int32
            graph_inputs.append(m.index[name])
            continue
        shape = graph.tensors[name].shape
        ext = _act_tensor(f"{name}_{io}", shape, acts[name], io) if io == "uint8" else _T(f"{name}_float32", shape, "float32")
        i = m.add(ext)
        graph_inputs.append(i)
        ops.append(_Op("QUANTIZE", [i], [m.index[name]]))
    for op in graph.ops:
        if op.kind not in KNOWN:
            raise UnsupportedModelError(f"op '{op.name}': {op.kind} is not supported by the TFLite writer")
        _emit(m, graph, plan, op, ops)
    for name in graph.outputs:
        if plan.tensor_dtype(name) in RAW or name in float_outs:  # indices, masks, float-only op outputs as they are
            graph_outputs.append(m.index[name])
            continue
        q8 = _view(m, graph, plan, name, "int8", ops)
        if io == "int8":
            graph_outputs.append(q8)
            continue
        shape = graph.tensors[name].shape
        if io == "uint8":
            o = m.add(_act_tensor(f"{name}_uint8", shape, acts[name], "uint8"))
            ops.append(_Op("QUANTIZE", [q8], [o]))
        else:
            o = m.add(_T(f"{name}_float32", shape, "float32"))
            ops.append(_Op("DEQUANTIZE", [q8], [o]))
        graph_outputs.append(o)
    m.ops = ops
    return _serialise(m, graph_inputs, graph_outputs, graph.name)


def _view(m: _Model, graph: Graph, plan: QuantPlan, name: str, dtype: str, ops: list[_Op]) -> int:
    """Activation ``name`` as ``dtype`` (int8, int16 or float32): the stored tensor, or a converted copy
    (added to ``ops`` the first time it is needed)."""
    key = (name, dtype)
    if key in m.views:
        return m.views[key]
    home = src = m.index[name]
    stored = plan.tensor_dtype(name)
    out_name = name if dtype == "int8" and (stored == "float32" or name in graph.outputs) else f"{name}/{dtype}"
    qp = plan.params(name, dtype) if dtype != "float32" else plan.activations[name]
    if stored == "float32" and dtype != "float32":
        src = _saturating(m, graph, name, src, qp, ops)
    i = m.add(_act_tensor(out_name, graph.tensors[name].shape, qp, dtype))
    m.index[name] = home  # m.add re-pointed the name; the stored tensor stays the tensor's home
    ops.append(_Op("DEQUANTIZE" if dtype == "float32" else "QUANTIZE", [src], [i]))
    m.views[key] = i
    return i


def _saturating(m: _Model, graph: Graph, name: str, f: int, qp: QParams, ops: list[_Op]) -> int:
    """Float tensor ``f`` (the float value of ``name``) ready for a QUANTIZE to ``qp``: ``f`` itself, or ``f``
    clamped to qp's range (``MAXIMUM`` with its bottom, ``MINIMUM`` with its top) on the sides where its values
    can overflow the QUANTIZE's int32 conversion (on x86 ``+inf`` becomes the lowest code, and ``-inf`` the
    highest under a negative zero point: :mod:`converters.island_bounds`)."""
    low, high = needs_clamp(m.bounds.get(name, ANY), qp)
    shape = graph.tensors[name].shape
    for kind, side, value in (("MAXIMUM", low, clamp_range(qp)[0]), ("MINIMUM", high, clamp_range(qp)[1])):
        if not side:
            continue
        limit = m.add(_T(f"{name}/{kind.lower()}_bound", (1,), "float32"), np.array([value], np.float32))
        clamped = m.add(_T(f"{name}/float_{kind.lower()}", shape, "float32"))
        ops.append(_Op(kind, [f, limit], [clamped], _options(kind, Op(kind, [], []), graph)))
        f = clamped
    return f


def _const_input(m: _Model, graph: Graph, plan: QuantPlan, op: Op, k: int, t: str, dtype: str) -> int:
    """Add constant ``t`` (input ``k`` of ``op``, which computes in ``dtype``) as the tensor its consumer
    expects; its index."""
    data = graph.tensors[t].data
    island = dtype == "float32"
    if op.kind in WEIGHTED and k in (1, 2) and island:
        arr = data.astype(np.float32)
        return m.add(_T(f"{t}/float", tuple(arr.shape), "float32"), arr)
    if op.kind in WEIGHTED and k == 1:  # weights shared by several ops (an unrolled RNN) are stored once
        if t not in m.shared:
            m.shared[t] = m.add(_const_tensor(t, plan.weights[t], "int8"), plan.weights[t].values)
        return m.shared[t]
    if op.kind in WEIGHTED and k == 2:
        qb = plan.biases[t]
        bdt = "int64" if dtype == "int16" else "int32"
        return m.add(_const_tensor(t, qb, bdt), qb.values.astype(np.int64 if dtype == "int16" else np.int32))
    if data.dtype == np.bool_:  # a constant SELECT_V2 condition
        return m.add(_T(t, tuple(data.shape), "bool"), data.astype(np.bool_))
    if data.dtype.kind != "f":
        arr = data.astype(np.int32)
        return m.add(_T(t, tuple(arr.shape), "int32"), arr)
    if island:
        arr = data.astype(np.float32)
        return m.add(_T(t, tuple(arr.shape), "float32"), arr)
    qp = plan.params(t, dtype)
    return m.add(_act_tensor(t, tuple(data.shape), qp, dtype), qp.quantize(data))


def _int32(m: _Model, name: str, values) -> int:  # type: ignore[no-untyped-def]
    arr = np.array(values, np.int32)
    return m.add(_T(name, tuple(arr.shape), "int32"), arr)


def _emit(m: _Model, graph: Graph, plan: QuantPlan, op: Op, out_ops: list[_Op]) -> None:
    """Append the TFLite operator(s) for one IR op to ``out_ops`` (with QUANTIZE/DEQUANTIZE for inputs
    stored in another type than the op computes in)."""
    dtype = plan.op_dtype(op)
    ins: list[int] = []
    for k, t in enumerate(op.inputs):
        if graph.tensors[t].is_constant:
            ins.append(_const_input(m, graph, plan, op, k, t, dtype))
        elif plan.tensor_dtype(t) in RAW:
            ins.append(m.index[t])
        else:
            ins.append(_view(m, graph, plan, t, dtype, out_ops))
    a, out = op.attrs, op.outputs[0]
    oshape = graph.tensors[out].shape
    if op.kind == "RESHAPE":
        ins.append(_int32(m, f"{out}/shape", oshape))
    elif op.kind in ("PAD", "PADV2", "MIRROR_PAD"):
        ins.append(_int32(m, f"{out}/paddings", a["pads"]))
        if op.kind == "PADV2":
            qp = plan.params(out, dtype) if dtype != "float32" else plan.activations[out]
            value = np.array([a["value"]], np.float32)
            if dtype == "float32":
                q = np.array([np.finfo(np.float32).min if a["value"] == float("-inf") else a["value"]], np.float32)
            else:
                q = (np.array([np.iinfo(qp.dtype).min], qp.dtype) if a["value"] == float("-inf")
                     else qp.quantize(value))
            ins.append(m.add(_act_tensor(f"{out}/value", (1,), qp, dtype), q))
    elif op.kind == "TRANSPOSE":
        ins.append(_int32(m, f"{out}/perm", a["perm"]))
    elif op.kind == "STRIDED_SLICE":
        ins += [_int32(m, f"{out}/begin", a["begin"]), _int32(m, f"{out}/end", a["end"]),
                _int32(m, f"{out}/strides", a["strides"])]
    elif op.kind in ("MEAN", "SUM", "REDUCE_MAX"):
        ins.append(_int32(m, f"{out}/axes", a["axes"]))
    elif op.kind in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        ins.append(_int32(m, f"{out}/size", oshape[1:3]))
    elif op.kind == "TRANSPOSE_CONV":
        ins = [_int32(m, f"{out}/output_shape", oshape), ins[1], ins[0], ins[2]]
    elif op.kind in ("ARG_MAX", "ARG_MIN"):
        ins.append(_int32(m, f"{out}/axis", [a["axis"]]))
    elif op.kind == "CUMSUM":
        ins.append(_int32(m, f"{out}/axis", a["axis"]))
    elif op.kind == "TOPK_V2":
        ins.append(_int32(m, f"{out}/k", a["k"]))
    outs = [m.index[o] for o in op.outputs]
    if dtype == "int16" and op.kind in VERSIONS16:
        m.versions[op.kind] = max(m.versions.get(op.kind, 1), VERSIONS16[op.kind])
    if dtype == "float32" and plan.tensor_dtype(out) not in ("float32",) + RAW:  # an island quantizing its output
        f = m.add(_T(f"{out}/float", oshape, "float32"))
        m.index[out] = outs[0]
        out_ops.append(_Op(op.kind, ins, [f], _options(op.kind, op, graph)))
        f = _saturating(m, graph, out, f, plan.params(out, plan.tensor_dtype(out)), out_ops)
        out_ops.append(_Op("QUANTIZE", [f], outs))
        return
    if op.kind in CUSTOM_CODES:
        out_ops.append(_Op(op.kind, ins, outs, None, bytes(a["custom_options"])))
        return
    out_ops.append(_Op(op.kind, ins, outs, _options(op.kind, op, graph, int16=dtype == "int16")))


def _serialise(m: _Model, inputs: list[int], outputs: list[int], name: str) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024 + sum(len(x) for x in m.buffers) * 2)
    # buffers: data vectors first, 16-byte aligned
    data_offs = [aligned_bytes(b, raw, ALIGN) if raw else None for raw in m.buffers]
    buf_offs = [buffer_table(b, off) for off in data_offs]
    zero_points: dict = {}  # equal zero-point vectors written once
    tensor_offs = [tensor_table(b, t.name, t.shape, TYPE[t.dtype], t.buffer, t.scales, t.zero_points, t.qdim,
                                zero_points) for t in m.tensors]
    kinds = list(dict.fromkeys(op.kind for op in m.ops))
    code_offs = [operator_code(b, 32, 1, CUSTOM_CODES[k]) if k in CUSTOM_CODES else
                 operator_code(b, _code(k), max(VERSIONS.get(k, 1), m.versions.get(k, 1))) for k in kinds]
    op_offs = [operator_table(b, kinds.index(op.kind), op.inputs, op.outputs, op.options, op.custom_options)
               for op in m.ops]
    return finish_model(b, tensor_offs, inputs, outputs, op_offs, name or "main", code_offs, buf_offs,
                        "edge-convert int8")


def write_tflite(graph: Graph, plan: QuantPlan, path: "str | os.PathLike[str]") -> str:
    """Write the int8 model to ``path`` and return the path."""
    p = os.fspath(path)
    data = build_tflite(graph, plan)
    with open(p, "wb") as f:
        f.write(data)
    return p

"""Write the IR as a full-integer int8 .tflite from a :class:`QuantPlan`.

Built with ``flatbuffers`` and the PyPI ``tflite`` schema package's builder functions. Follows the
TFLite int8 quantization spec so that LiteRT, tflite-runtime, TFLite Micro and the project's micro
backend all run it: per-channel conv/depthwise weights (``quantized_dimension`` 0 and 3), int32
biases, fixed SOFTMAX/LOGISTIC/TANH output params, shared params through pooling and reshapes.
Constant buffers are 16-byte aligned in the file. uint8 or float32 I/O adds QUANTIZE/DEQUANTIZE
at the edges, as TensorFlow's converter does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from converters.ir import OP_KINDS, WEIGHTED, Graph, Op, padding_mode
from converters.quantize import FLOAT_ISLANDS, QParams, QuantPlan, QuantWeight
from converters.writers.flatbuf import (
    Options,
    aligned_bytes,
    buffer_table,
    finish_model,
    little_endian,
    operator_code,
    operator_table,
    options_builder,
    schema,
    tensor_table,
    vector,
)
from edge_runtime.errors import UnsupportedModelError

ALIGN = 16
TYPE = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int8": 9}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING = {"SAME": 0, "VALID": 1}
#: op version of the int8 form where it is not 1 (LiteRT registers every version from 1 up)
VERSIONS = {
    "ADD": 2, "AVERAGE_POOL_2D": 2, "CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "DEQUANTIZE": 2,
    "FULLY_CONNECTED": 4, "LOGISTIC": 2, "MAX_POOL_2D": 2, "MUL": 2, "RELU": 2, "RELU6": 2, "SOFTMAX": 2,
    "TANH": 2, "PAD": 2, "TRANSPOSE": 2, "QUANTIZE": 2, "SUB": 2, "MAXIMUM": 2, "MINIMUM": 2, "MEAN": 2,
    "STRIDED_SLICE": 2, "GATHER": 2, "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "REDUCE_MAX": 2,
    "LEAKY_RELU": 2, "PADV2": 2, "MIRROR_PAD": 2, "TRANSPOSE_CONV": 3, "RSQRT": 2, "ABS": 2, "EXP": 2,
    "SQUARED_DIFFERENCE": 2, "GELU": 2, "LOG": 2,
}
#: ops the writer knows (IR kinds plus the QUANTIZE/DEQUANTIZE it adds)
KNOWN = set(OP_KINDS) | {"QUANTIZE", "DEQUANTIZE"}


def _code(kind: str) -> int:
    from tflite.BuiltinOperator import BuiltinOperator

    return int(getattr(BuiltinOperator, kind))


def _opt_type(table: str) -> int:
    from tflite.BuiltinOptions import BuiltinOptions

    return int(getattr(BuiltinOptions, table))


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


@dataclass
class _Model:
    tensors: list[_T] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[_Op] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    shared: dict[str, int] = field(default_factory=dict)

    def add(self, t: _T, data: Optional[np.ndarray] = None) -> int:
        if data is not None:
            self.buffers.append(little_endian(data))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.index[t.name] = len(self.tensors) - 1
        return len(self.tensors) - 1


def _act_tensor(name: str, shape: tuple[int, ...], qp: QParams, dtype: str = "int8") -> _T:
    zp = qp.zero_point + (128 if dtype == "uint8" else 0)
    return _T(name, shape, dtype, 0, np.array([qp.scale], np.float32), np.array([zp], np.int64))


def _const_tensor(name: str, qw: QuantWeight, dtype: str) -> _T:
    return _T(name, tuple(qw.values.shape), dtype, 0, qw.scales.astype(np.float32),
              np.zeros(qw.scales.size, np.int64), qw.axis if qw.scales.size > 1 else 0)


def _options(kind: str, op: Op, graph: Graph) -> Optional[Options]:
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
    if kind == "TRANSPOSE":
        return (_opt_type("TransposeOptions"), options_builder("TransposeOptions", []))
    if kind in ("MAXIMUM", "MINIMUM"):
        return (_opt_type("MaximumMinimumOptions"), options_builder("MaximumMinimumOptions", []))
    if kind == "RESHAPE":
        new_shape = [int(d) for d in graph.tensors[op.outputs[0]].shape]

        def build_rs(b):  # type: ignore[no-untyped-def]
            R = schema("ReshapeOptions")
            vec = vector(b, R.ReshapeOptionsStartNewShapeVector, new_shape)
            R.ReshapeOptionsStart(b)
            R.ReshapeOptionsAddNewShape(b, vec)
            return R.ReshapeOptionsEnd(b)
        return (17, build_rs)
    return None


def build_tflite(graph: Graph, plan: QuantPlan) -> bytes:
    """Serialise ``graph`` quantized by ``plan`` into .tflite bytes."""
    m = _Model()
    acts = plan.activations
    for name in graph.activations():
        m.add(_act_tensor(name, graph.tensors[name].shape, acts[name]))
    ops: list[_Op] = []
    io = plan.io_dtype
    graph_inputs, graph_outputs = [], []
    for name in graph.inputs:
        if io == "int8":
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
        ops.extend(_emit(m, graph, plan, op))
    for name in graph.outputs:
        if io == "int8":
            graph_outputs.append(m.index[name])
            continue
        shape = graph.tensors[name].shape
        if io == "uint8":
            o = m.add(_act_tensor(f"{name}_uint8", shape, acts[name], "uint8"))
            ops.append(_Op("QUANTIZE", [m.index[name]], [o]))
        else:
            o = m.add(_T(f"{name}_float32", shape, "float32"))
            ops.append(_Op("DEQUANTIZE", [m.index[name]], [o]))
        graph_outputs.append(o)
    m.ops = ops
    return _serialise(m, graph_inputs, graph_outputs, graph.name)


def _const_input(m: _Model, graph: Graph, plan: QuantPlan, op: Op, k: int, t: str, island: bool) -> int:
    """Add constant ``t`` (input ``k`` of ``op``) as the tensor its consumer expects; its index."""
    data = graph.tensors[t].data
    if op.kind in WEIGHTED and k == 1:  # weights shared by several ops (an unrolled RNN) are stored once
        if t not in m.shared:
            m.shared[t] = m.add(_const_tensor(t, plan.weights[t], "int8"), plan.weights[t].values)
        return m.shared[t]
    if op.kind in WEIGHTED and k == 2:
        return m.add(_const_tensor(t, plan.biases[t], "int32"), plan.biases[t].values)
    if data.dtype.kind != "f":
        arr = data.astype(np.int32)
        return m.add(_T(t, tuple(arr.shape), "int32"), arr)
    if island:
        arr = data.astype(np.float32)
        return m.add(_T(t, tuple(arr.shape), "float32"), arr)
    qp = plan.operands[t]
    return m.add(_act_tensor(t, tuple(data.shape), qp), qp.quantize(data))


def _int32(m: _Model, name: str, values) -> int:  # type: ignore[no-untyped-def]
    arr = np.array(values, np.int32)
    return m.add(_T(name, tuple(arr.shape), "int32"), arr)


def _emit(m: _Model, graph: Graph, plan: QuantPlan, op: Op) -> list[_Op]:
    """The TFLite operator(s) for one IR op (a float island adds DEQUANTIZE/QUANTIZE around it)."""
    island = op.kind in FLOAT_ISLANDS
    out_ops: list[_Op] = []
    ins: list[int] = []
    for k, t in enumerate(op.inputs):
        if graph.tensors[t].is_constant:
            ins.append(_const_input(m, graph, plan, op, k, t, island))
        elif island:
            f = m.add(_T(f"{t}/float_for/{op.name}", graph.tensors[t].shape, "float32"))
            out_ops.append(_Op("DEQUANTIZE", [m.index[t]], [f]))
            ins.append(f)
        else:
            ins.append(m.index[t])
    a, out = op.attrs, op.outputs[0]
    oshape = graph.tensors[out].shape
    if op.kind == "RESHAPE":
        ins.append(_int32(m, f"{out}/shape", oshape))
    elif op.kind in ("PAD", "PADV2", "MIRROR_PAD"):
        ins.append(_int32(m, f"{out}/paddings", a["pads"]))
        if op.kind == "PADV2":
            qp = plan.activations[out]
            value = np.array([a["value"]], np.float32)
            q = (np.array([-128], np.int8) if a["value"] == float("-inf")
                 else qp.quantize(value))
            ins.append(m.add(_act_tensor(f"{out}/value", (1,), qp), q))
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
    outs = [m.index[o] for o in op.outputs]
    if island:
        f = m.add(_T(f"{out}/float", oshape, "float32"))
        out_ops.append(_Op(op.kind, ins, [f], _options(op.kind, op, graph)))
        out_ops.append(_Op("QUANTIZE", [f], outs))
        return out_ops
    out_ops.append(_Op(op.kind, ins, outs, _options(op.kind, op, graph)))
    return out_ops


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
    code_offs = [operator_code(b, _code(k), VERSIONS.get(k, 1)) for k in kinds]
    op_offs = [operator_table(b, kinds.index(op.kind), op.inputs, op.outputs, op.options) for op in m.ops]
    return finish_model(b, tensor_offs, inputs, outputs, op_offs, name or "main", code_offs, buf_offs,
                        "edge-convert int8")


def write_tflite(graph: Graph, plan: QuantPlan, path: "str | os.PathLike[str]") -> str:
    """Write the int8 model to ``path`` and return the path."""
    p = os.fspath(path)
    data = build_tflite(graph, plan)
    with open(p, "wb") as f:
        f.write(data)
    return p

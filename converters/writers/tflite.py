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

from converters.ir import Graph, Op, padding_mode
from converters.quantize import QParams, QuantPlan, QuantWeight
from converters.writers.flatbuf import (
    Options, aligned_bytes, buffer_table, finish_model, little_endian, operator_code, operator_table,
    options_builder, schema, tensor_table, vector,
)
from edge_runtime.errors import UnsupportedModelError

ALIGN = 16
TYPE = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "int8": 9}
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING = {"SAME": 0, "VALID": 1}
#: builtin code and the op version for its int8 form
OPS = {
    "ADD": (0, 2), "AVERAGE_POOL_2D": (1, 2), "CONCATENATION": (2, 2), "CONV_2D": (3, 3),
    "DEPTHWISE_CONV_2D": (4, 3), "DEQUANTIZE": (6, 2), "FULLY_CONNECTED": (9, 4), "LOGISTIC": (14, 2),
    "MAX_POOL_2D": (17, 2), "MUL": (18, 2), "RELU": (19, 2), "RELU6": (21, 2), "RESHAPE": (22, 1),
    "SOFTMAX": (25, 2), "TANH": (28, 2), "PAD": (34, 2), "TRANSPOSE": (39, 2), "QUANTIZE": (114, 2),
}


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
    if kind in ("ADD", "MUL"):
        code, table = (11, "AddOptions") if kind == "ADD" else (21, "MulOptions")
        return (code, options_builder(table, [act]))
    if kind == "SOFTMAX":
        return (9, options_builder("SoftmaxOptions", [("Beta", float(a.get("beta", 1.0)))]))
    if kind == "CONCATENATION":
        return (10, options_builder("ConcatenationOptions", [("Axis", int(a["axis"])), act]))
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
        ins: list[int] = []
        for k, t in enumerate(op.inputs):
            if not graph.tensors[t].is_constant:
                ins.append(m.index[t])
            elif k == 1:
                ins.append(m.add(_const_tensor(t, plan.weights[t], "int8"), plan.weights[t].values))
            else:
                ins.append(m.add(_const_tensor(t, plan.biases[t], "int32"), plan.biases[t].values))
        if op.kind == "RESHAPE":
            shape = np.array(graph.tensors[op.outputs[0]].shape, np.int32)
            ins.append(m.add(_T(f"{op.outputs[0]}/shape", tuple(shape.shape), "int32"), shape))
        elif op.kind == "PAD":
            pads = np.array(op.attrs["pads"], np.int32)
            ins.append(m.add(_T(f"{op.outputs[0]}/paddings", tuple(pads.shape), "int32"), pads))
        elif op.kind == "TRANSPOSE":
            perm = np.array(op.attrs["perm"], np.int32)
            ins.append(m.add(_T(f"{op.outputs[0]}/perm", tuple(perm.shape), "int32"), perm))
        if op.kind not in OPS:
            raise UnsupportedModelError(f"op '{op.name}': {op.kind} is not supported by the TFLite writer")
        ops.append(_Op(op.kind, ins, [m.index[o] for o in op.outputs], _options(op.kind, op, graph)))
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


def _serialise(m: _Model, inputs: list[int], outputs: list[int], name: str) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024 + sum(len(x) for x in m.buffers) * 2)
    # buffers: data vectors first, 16-byte aligned
    data_offs = [aligned_bytes(b, raw, ALIGN) if raw else None for raw in m.buffers]
    buf_offs = [buffer_table(b, off) for off in data_offs]
    tensor_offs = [tensor_table(b, t.name, t.shape, TYPE[t.dtype], t.buffer, t.scales, t.zero_points, t.qdim)
                   for t in m.tensors]
    kinds = list(dict.fromkeys(op.kind for op in m.ops))
    code_offs = [operator_code(b, *OPS[k]) for k in kinds]
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

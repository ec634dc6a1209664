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
    options: Optional[tuple] = None  # (options_type, builder callable)


@dataclass
class _Model:
    tensors: list[_T] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    ops: list[_Op] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, t: _T, data: Optional[np.ndarray] = None) -> int:
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
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


class _Schema:
    """Access to the ``tflite`` package's per-table modules (its package namespace holds the classes)."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        import importlib

        return importlib.import_module(f"tflite.{name}")


def _options(kind: str, op: Op, graph: Graph):  # type: ignore[no-untyped-def]
    """(BuiltinOptions type, function(builder) -> offset) for ``op``, or None."""
    tflite = _Schema()

    a = op.attrs
    act = ACT[op.act]
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        x = graph.tensors[op.inputs[0]]
        w = graph.tensors[op.inputs[1]].data
        mode = padding_mode(a["pads"], x.shape[1:3], (w.shape[1], w.shape[2]), a["stride"], a["dilation"])
        if mode is None:
            raise UnsupportedModelError(f"op '{op.name}': padding {a['pads']} is neither SAME nor VALID")
        if kind == "CONV_2D":
            M = tflite.Conv2DOptions

            def build(b):  # type: ignore[no-untyped-def]
                M.Conv2DOptionsStart(b)
                M.Conv2DOptionsAddPadding(b, PADDING[mode])
                M.Conv2DOptionsAddStrideW(b, a["stride"][1])
                M.Conv2DOptionsAddStrideH(b, a["stride"][0])
                M.Conv2DOptionsAddFusedActivationFunction(b, act)
                M.Conv2DOptionsAddDilationWFactor(b, a["dilation"][1])
                M.Conv2DOptionsAddDilationHFactor(b, a["dilation"][0])
                return M.Conv2DOptionsEnd(b)
            return (1, build)
        D = tflite.DepthwiseConv2DOptions

        def build_dw(b):  # type: ignore[no-untyped-def]
            D.DepthwiseConv2DOptionsStart(b)
            D.DepthwiseConv2DOptionsAddPadding(b, PADDING[mode])
            D.DepthwiseConv2DOptionsAddStrideW(b, a["stride"][1])
            D.DepthwiseConv2DOptionsAddStrideH(b, a["stride"][0])
            D.DepthwiseConv2DOptionsAddDepthMultiplier(b, a.get("multiplier", 1))
            D.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
            D.DepthwiseConv2DOptionsAddDilationWFactor(b, a["dilation"][1])
            D.DepthwiseConv2DOptionsAddDilationHFactor(b, a["dilation"][0])
            return D.DepthwiseConv2DOptionsEnd(b)
        return (2, build_dw)
    if kind == "FULLY_CONNECTED":
        F = tflite.FullyConnectedOptions

        def build_fc(b):  # type: ignore[no-untyped-def]
            F.FullyConnectedOptionsStart(b)
            F.FullyConnectedOptionsAddFusedActivationFunction(b, act)
            return F.FullyConnectedOptionsEnd(b)
        return (8, build_fc)
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        x = graph.tensors[op.inputs[0]]
        mode = padding_mode(a["pads"], x.shape[1:3], a["kernel"], a["stride"])
        if mode is None:
            raise UnsupportedModelError(f"op '{op.name}': padding {a['pads']} is neither SAME nor VALID")
        P = tflite.Pool2DOptions

        def build_pool(b):  # type: ignore[no-untyped-def]
            P.Pool2DOptionsStart(b)
            P.Pool2DOptionsAddPadding(b, PADDING[mode])
            P.Pool2DOptionsAddStrideW(b, a["stride"][1])
            P.Pool2DOptionsAddStrideH(b, a["stride"][0])
            P.Pool2DOptionsAddFilterWidth(b, a["kernel"][1])
            P.Pool2DOptionsAddFilterHeight(b, a["kernel"][0])
            P.Pool2DOptionsAddFusedActivationFunction(b, act)
            return P.Pool2DOptionsEnd(b)
        return (5, build_pool)
    if kind in ("ADD", "MUL"):
        A = tflite.AddOptions if kind == "ADD" else tflite.MulOptions
        pre = "AddOptions" if kind == "ADD" else "MulOptions"

        def build_add(b):  # type: ignore[no-untyped-def]
            getattr(A, f"{pre}Start")(b)
            getattr(A, f"{pre}AddFusedActivationFunction")(b, act)
            return getattr(A, f"{pre}End")(b)
        return (11 if kind == "ADD" else 21, build_add)
    if kind == "SOFTMAX":
        S = tflite.SoftmaxOptions

        def build_sm(b):  # type: ignore[no-untyped-def]
            S.SoftmaxOptionsStart(b)
            S.SoftmaxOptionsAddBeta(b, float(a.get("beta", 1.0)))
            return S.SoftmaxOptionsEnd(b)
        return (9, build_sm)
    if kind == "CONCATENATION":
        C = tflite.ConcatenationOptions

        def build_cat(b):  # type: ignore[no-untyped-def]
            C.ConcatenationOptionsStart(b)
            C.ConcatenationOptionsAddAxis(b, int(a["axis"]))
            C.ConcatenationOptionsAddFusedActivationFunction(b, act)
            return C.ConcatenationOptionsEnd(b)
        return (10, build_cat)
    if kind == "RESHAPE":
        R = tflite.ReshapeOptions
        new_shape = [int(d) for d in graph.tensors[op.outputs[0]].shape]

        def build_rs(b):  # type: ignore[no-untyped-def]
            R.ReshapeOptionsStartNewShapeVector(b, len(new_shape))
            for d in reversed(new_shape):
                b.PrependInt32(d)
            vec = b.EndVector()
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

    tflite = _Schema()
    b = flatbuffers.Builder(1024 + sum(len(x) for x in m.buffers) * 2)

    def ivec(start, values, prepend):  # type: ignore[no-untyped-def]
        start(b, len(values))
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    # buffers: data vectors first, 16-byte aligned
    data_offs = []
    for raw in m.buffers:
        if not raw:
            data_offs.append(None)
            continue
        b.StartVector(1, len(raw), ALIGN)
        b.head = b.head - len(raw)
        b.Bytes[b.head:b.head + len(raw)] = raw
        data_offs.append(b.EndVector())
    buf_offs = []
    for off in data_offs:
        tflite.Buffer.BufferStart(b)
        if off is not None:
            tflite.Buffer.BufferAddData(b, off)
        buf_offs.append(tflite.Buffer.BufferEnd(b))
    # tensors
    Q, T = tflite.QuantizationParameters, tflite.Tensor
    tensor_offs = []
    for t in m.tensors:
        name_off = b.CreateString(t.name)
        shape_off = ivec(T.TensorStartShapeVector, list(t.shape), b.PrependInt32)
        q_off = None
        if t.scales is not None:
            s_off = ivec(Q.QuantizationParametersStartScaleVector, [float(s) for s in t.scales], b.PrependFloat32)
            z_off = ivec(Q.QuantizationParametersStartZeroPointVector, [int(z) for z in t.zero_points], b.PrependInt64)
            Q.QuantizationParametersStart(b)
            Q.QuantizationParametersAddScale(b, s_off)
            Q.QuantizationParametersAddZeroPoint(b, z_off)
            Q.QuantizationParametersAddQuantizedDimension(b, t.qdim)
            q_off = Q.QuantizationParametersEnd(b)
        T.TensorStart(b)
        T.TensorAddShape(b, shape_off)
        T.TensorAddType(b, TYPE[t.dtype])
        T.TensorAddBuffer(b, t.buffer)
        T.TensorAddName(b, name_off)
        if q_off is not None:
            T.TensorAddQuantization(b, q_off)
        tensor_offs.append(T.TensorEnd(b))
    # operator codes
    kinds = list(dict.fromkeys(op.kind for op in m.ops))
    OC = tflite.OperatorCode
    code_offs = []
    for k in kinds:
        code, version = OPS[k]
        OC.OperatorCodeStart(b)
        OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OC.OperatorCodeAddBuiltinCode(b, code)
        OC.OperatorCodeAddVersion(b, version)
        code_offs.append(OC.OperatorCodeEnd(b))
    O = tflite.Operator
    op_offs = []
    for op in m.ops:
        in_off = ivec(O.OperatorStartInputsVector, op.inputs, b.PrependInt32)
        out_off = ivec(O.OperatorStartOutputsVector, op.outputs, b.PrependInt32)
        opt = op.options[1](b) if op.options else None
        O.OperatorStart(b)
        O.OperatorAddOpcodeIndex(b, kinds.index(op.kind))
        O.OperatorAddInputs(b, in_off)
        O.OperatorAddOutputs(b, out_off)
        if opt is not None:
            O.OperatorAddBuiltinOptionsType(b, op.options[0])
            O.OperatorAddBuiltinOptions(b, opt)
        op_offs.append(O.OperatorEnd(b))
    S = tflite.SubGraph
    t_vec = ivec(S.SubGraphStartTensorsVector, tensor_offs, b.PrependUOffsetTRelative)
    i_vec = ivec(S.SubGraphStartInputsVector, inputs, b.PrependInt32)
    o_vec = ivec(S.SubGraphStartOutputsVector, outputs, b.PrependInt32)
    op_vec = ivec(S.SubGraphStartOperatorsVector, op_offs, b.PrependUOffsetTRelative)
    sg_name = b.CreateString(name or "main")
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, t_vec)
    S.SubGraphAddInputs(b, i_vec)
    S.SubGraphAddOutputs(b, o_vec)
    S.SubGraphAddOperators(b, op_vec)
    S.SubGraphAddName(b, sg_name)
    sg = S.SubGraphEnd(b)
    M = tflite.Model
    codes_vec = ivec(M.ModelStartOperatorCodesVector, code_offs, b.PrependUOffsetTRelative)
    sgs_vec = ivec(M.ModelStartSubgraphsVector, [sg], b.PrependUOffsetTRelative)
    bufs_vec = ivec(M.ModelStartBuffersVector, buf_offs, b.PrependUOffsetTRelative)
    desc = b.CreateString("edge-convert int8")
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes_vec)
    M.ModelAddSubgraphs(b, sgs_vec)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, bufs_vec)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def write_tflite(graph: Graph, plan: QuantPlan, path: "str | os.PathLike[str]") -> str:
    """Write the int8 model to ``path`` and return the path."""
    p = os.fspath(path)
    data = build_tflite(graph, plan)
    with open(p, "wb") as f:
        f.write(data)
    return p

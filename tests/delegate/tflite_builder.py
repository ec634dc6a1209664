"""Build small .tflite models for tests with the ``tflite`` schema package and ``flatbuffers`` (host side only).

``build_model`` takes plain descriptions of tensors and operators and returns the
serialized model bytes. Used by the backend, accelerator and fuzz tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import flatbuffers
import numpy as np
import importlib

import tflite


def _m(name: str):  # type: ignore[no-untyped-def]
    # tflite/__init__ re-exports classes under the module names; fetch the modules themselves.
    return importlib.import_module(f"tflite.{name}")


AddOptions, Buffer, FullyConnectedOptions, Model, MulOptions = (
    _m("AddOptions"), _m("Buffer"), _m("FullyConnectedOptions"), _m("Model"), _m("MulOptions"))
Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor = (
    _m("Operator"), _m("OperatorCode"), _m("QuantizationParameters"), _m("SubGraph"), _m("Tensor"))

TYPE_CODES = {np.dtype(np.float32): 0, np.dtype(np.int32): 2, np.dtype(np.uint8): 3, np.dtype(np.int64): 4,
              np.dtype(np.int16): 7, np.dtype(np.int8): 9}
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


@dataclass
class T:
    """A tensor: name, shape, dtype, optional constant data and per-tensor quantization."""

    name: str
    shape: Sequence[int]
    dtype: "np.dtype | type" = np.float32
    data: Optional[np.ndarray] = None
    scale: Optional[float] = None
    zero_point: int = 0


@dataclass
class Op:
    """An operator: builtin name (``ADD``, ``MUL``, ``FULLY_CONNECTED``) or ``custom`` code, tensors by index."""

    name: str
    inputs: Sequence[int]
    outputs: Sequence[int]
    activation: str = "NONE"
    custom: Optional[str] = None
    custom_options: bytes = b""
    extra: dict = field(default_factory=dict)


_BUILTIN = {"ADD": 0, "FULLY_CONNECTED": 9, "MUL": 18, "CUSTOM": 32}


def _ivec(b: flatbuffers.Builder, start, values: Sequence[int]) -> int:  # type: ignore[no-untyped-def]
    start(b, len(values))
    for v in reversed(list(values)):
        b.PrependInt32(int(v))
    return b.EndVector()


def build_model(tensors: list[T], ops: list[Op], inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
    """Serialize one subgraph with these tensors and ops into .tflite bytes."""
    b = flatbuffers.Builder(1024)
    # Opcodes (one per distinct op kind).
    kinds: list[tuple[int, Optional[str]]] = []
    op_kind_index = []
    for op in ops:
        key = (_BUILTIN["CUSTOM"], op.custom) if op.custom else (_BUILTIN[op.name], None)
        if key not in kinds:
            kinds.append(key)
        op_kind_index.append(kinds.index(key))
    opcode_offsets = []
    for code, custom in kinds:
        cname = b.CreateString(custom) if custom else None
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OperatorCode.OperatorCodeAddBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddVersion(b, 1)
        if cname is not None:
            OperatorCode.OperatorCodeAddCustomCode(b, cname)
        opcode_offsets.append(OperatorCode.OperatorCodeEnd(b))
    # Buffers: 0 is the empty sentinel; each constant tensor gets its own.
    buffer_data: list[Optional[bytes]] = [None]
    tensor_buffer = []
    for t in tensors:
        if t.data is not None:
            arr = np.ascontiguousarray(np.asarray(t.data, dtype=t.dtype))
            buffer_data.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
            tensor_buffer.append(len(buffer_data) - 1)
        else:
            tensor_buffer.append(0)
    buffer_offsets = []
    for data in buffer_data:
        vec = None
        if data:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        Buffer.BufferStart(b)
        if vec is not None:
            Buffer.BufferAddData(b, vec)
        buffer_offsets.append(Buffer.BufferEnd(b))
    # Tensors.
    tensor_offsets = []
    for i, t in enumerate(tensors):
        name = b.CreateString(t.name)
        shape = _ivec(b, Tensor.TensorStartShapeVector, t.shape)
        q = None
        if t.scale is not None:
            QuantizationParameters.QuantizationParametersStartScaleVector(b, 1)
            b.PrependFloat32(float(t.scale))
            sv = b.EndVector()
            QuantizationParameters.QuantizationParametersStartZeroPointVector(b, 1)
            b.PrependInt64(int(t.zero_point))
            zv = b.EndVector()
            QuantizationParameters.QuantizationParametersStart(b)
            QuantizationParameters.QuantizationParametersAddScale(b, sv)
            QuantizationParameters.QuantizationParametersAddZeroPoint(b, zv)
            q = QuantizationParameters.QuantizationParametersEnd(b)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, TYPE_CODES[np.dtype(t.dtype)])
        Tensor.TensorAddBuffer(b, tensor_buffer[i])
        Tensor.TensorAddName(b, name)
        if q is not None:
            Tensor.TensorAddQuantization(b, q)
        tensor_offsets.append(Tensor.TensorEnd(b))
    # Operators.
    op_offsets = []
    for k, op in enumerate(ops):
        ins = _ivec(b, Operator.OperatorStartInputsVector, op.inputs)
        outs = _ivec(b, Operator.OperatorStartOutputsVector, op.outputs)
        opts, opts_type = None, 0
        act = ACTIVATIONS[op.activation]
        if op.custom is None and op.name == "ADD":
            AddOptions.AddOptionsStart(b)
            AddOptions.AddOptionsAddFusedActivationFunction(b, act)
            opts, opts_type = AddOptions.AddOptionsEnd(b), tflite.BuiltinOptions.AddOptions
        elif op.custom is None and op.name == "MUL":
            MulOptions.MulOptionsStart(b)
            MulOptions.MulOptionsAddFusedActivationFunction(b, act)
            opts, opts_type = MulOptions.MulOptionsEnd(b), tflite.BuiltinOptions.MulOptions
        elif op.custom is None and op.name == "FULLY_CONNECTED":
            FullyConnectedOptions.FullyConnectedOptionsStart(b)
            FullyConnectedOptions.FullyConnectedOptionsAddFusedActivationFunction(b, act)
            opts = FullyConnectedOptions.FullyConnectedOptionsEnd(b)
            opts_type = tflite.BuiltinOptions.FullyConnectedOptions
        custom_vec = None
        if op.custom is not None and op.custom_options:
            custom_vec = b.CreateByteVector(op.custom_options)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, op_kind_index[k])
        Operator.OperatorAddInputs(b, ins)
        Operator.OperatorAddOutputs(b, outs)
        if opts is not None:
            Operator.OperatorAddBuiltinOptionsType(b, opts_type)
            Operator.OperatorAddBuiltinOptions(b, opts)
        if custom_vec is not None:
            Operator.OperatorAddCustomOptions(b, custom_vec)
        op_offsets.append(Operator.OperatorEnd(b))

    def table_vec(start, offsets: list[int]) -> int:  # type: ignore[no-untyped-def]
        start(b, len(offsets))
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tv = table_vec(SubGraph.SubGraphStartTensorsVector, tensor_offsets)
    ov = table_vec(SubGraph.SubGraphStartOperatorsVector, op_offsets)
    iv = _ivec(b, SubGraph.SubGraphStartInputsVector, inputs)
    outv = _ivec(b, SubGraph.SubGraphStartOutputsVector, outputs)
    sg_name = b.CreateString("main")
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tv)
    SubGraph.SubGraphAddInputs(b, iv)
    SubGraph.SubGraphAddOutputs(b, outv)
    SubGraph.SubGraphAddOperators(b, ov)
    SubGraph.SubGraphAddName(b, sg_name)
    sg = SubGraph.SubGraphEnd(b)
    sgv = table_vec(Model.ModelStartSubgraphsVector, [sg])
    ocv = table_vec(Model.ModelStartOperatorCodesVector, opcode_offsets)
    bv = table_vec(Model.ModelStartBuffersVector, buffer_offsets)
    desc = b.CreateString("edge-runtime test model")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, ocv)
    Model.ModelAddSubgraphs(b, sgv)
    Model.ModelAddDescription(b, desc)
    Model.ModelAddBuffers(b, bv)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def add_mul_fc_model(units: int = 4, depth: int = 8, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """``y = FC(relu((a + b) * c), W, bias)``: float32, integer-valued weights so every sum is exact.

    Returns the model bytes and the constants (``W``, ``bias``).
    """
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, size=(units, depth)).astype(np.float32)
    bias = rng.integers(-5, 6, size=(units,)).astype(np.float32)
    tensors = [
        T("a", (1, depth)), T("b", (1, depth)), T("c", (1, depth)),
        T("sum", (1, depth)), T("prod", (1, depth)),
        T("W", (units, depth), data=w), T("bias", (units,), data=bias), T("y", (1, units)),
    ]
    ops = [Op("ADD", [0, 1], [3]), Op("MUL", [3, 2], [4], activation="RELU"), Op("FULLY_CONNECTED", [4, 5, 6], [7])]
    return build_model(tensors, ops, inputs=[0, 1, 2], outputs=[7]), {"W": w, "bias": bias}


def add_mul_fc_reference(a: np.ndarray, b: np.ndarray, c: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """numpy reference for :func:`add_mul_fc_model` (float64 sums of small integers are exact)."""
    h = np.maximum((a.astype(np.float64) + b) * c, 0.0)
    return (h @ w.astype(np.float64).T + bias).astype(np.float32)


def edgetpu_model() -> bytes:
    """A model whose only op is the Coral compiler's ``edgetpu-custom-op`` (as edgetpu_compiler emits)."""
    tensors = [T("input", (1, 8), np.uint8, scale=0.5, zero_point=128), T("output", (1, 8), np.uint8, scale=0.5,
                                                                         zero_point=128)]
    ops = [Op("CUSTOM", [0], [1], custom="edgetpu-custom-op", custom_options=b"\x00" * 16)]
    return build_model(tensors, ops, inputs=[0], outputs=[1])

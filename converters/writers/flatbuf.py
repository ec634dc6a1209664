"""Flatbuffers helpers that write .tflite tables with the ``tflite`` schema package (host side).

Shared by the int8 writer (:mod:`converters.writers.tflite`) and the tests' model builder.
Each helper writes one table or vector in the order the TFLite schema expects and returns
its offset; the schema package is imported on first use.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable, Optional, Sequence

import numpy as np

#: (BuiltinOptions type, function(builder) -> options offset)
Options = tuple[int, Callable[..., int]]


def schema(name: str) -> ModuleType:
    """The ``tflite`` package's module for one table (its package namespace holds the classes)."""
    return importlib.import_module(f"tflite.{name}")


def vector(b, start: Callable[..., None], values: Sequence, kind: str = "Int32") -> int:  # type: ignore[no-untyped-def]
    """A vector of scalars (``kind``: Int32, Int64, Float32) or of table offsets (``UOffsetTRelative``)."""
    prepend = getattr(b, f"Prepend{kind}")
    start(b, len(values))
    for v in reversed(values):
        prepend(v)
    return b.EndVector()


def aligned_bytes(b, raw: bytes, align: int) -> int:  # type: ignore[no-untyped-def]
    """A byte vector whose data starts at a multiple of ``align`` in the file (a constant buffer)."""
    b.StartVector(1, len(raw), align)
    b.head = b.head - len(raw)
    b.Bytes[b.head:b.head + len(raw)] = raw
    return b.EndVector()


def buffer_table(b, data: Optional[int]) -> int:  # type: ignore[no-untyped-def]
    """A Buffer table, holding the byte vector ``data`` or empty when it is None."""
    B = schema("Buffer")
    B.BufferStart(b)
    if data is not None:
        B.BufferAddData(b, data)
    return B.BufferEnd(b)


def tensor_table(b, name: str, shape: Sequence[int], type_code: int, buffer: int,  # type: ignore[no-untyped-def]
                 scales: Optional[Sequence[float]] = None, zero_points: Optional[Sequence[int]] = None,
                 qdim: int = 0, shared: Optional[dict] = None) -> int:
    """A Tensor table, with QuantizationParameters when ``scales`` is given.

    ``shared`` (one dict per builder) lets equal zero-point vectors be written once and referenced by
    every tensor that has them: the all-zero vectors of per-channel weights and biases.
    """
    Q, T = schema("QuantizationParameters"), schema("Tensor")
    name_off = b.CreateString(name)
    shape_off = vector(b, T.TensorStartShapeVector, [int(d) for d in shape])
    q_off = None
    if scales is not None:
        s_off = vector(b, Q.QuantizationParametersStartScaleVector, [float(s) for s in scales], "Float32")
        zps = tuple(int(z) for z in zero_points)
        z_off = shared.get(zps) if shared is not None else None
        if z_off is None:
            z_off = vector(b, Q.QuantizationParametersStartZeroPointVector, list(zps), "Int64")
            if shared is not None:
                shared[zps] = z_off
        Q.QuantizationParametersStart(b)
        Q.QuantizationParametersAddScale(b, s_off)
        Q.QuantizationParametersAddZeroPoint(b, z_off)
        Q.QuantizationParametersAddQuantizedDimension(b, qdim)
        q_off = Q.QuantizationParametersEnd(b)
    T.TensorStart(b)
    T.TensorAddShape(b, shape_off)
    T.TensorAddType(b, type_code)
    T.TensorAddBuffer(b, buffer)
    T.TensorAddName(b, name_off)
    if q_off is not None:
        T.TensorAddQuantization(b, q_off)
    return T.TensorEnd(b)


def operator_code(b, code: int, version: int, custom: Optional[str] = None) -> int:  # type: ignore[no-untyped-def]
    """An OperatorCode table (the deprecated int8 code field capped at 127, as TFLite writes it)."""
    OC = schema("OperatorCode")
    cname = b.CreateString(custom) if custom else None
    OC.OperatorCodeStart(b)
    OC.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
    OC.OperatorCodeAddBuiltinCode(b, code)
    OC.OperatorCodeAddVersion(b, version)
    if cname is not None:
        OC.OperatorCodeAddCustomCode(b, cname)
    return OC.OperatorCodeEnd(b)


def operator_table(b, opcode_index: int, inputs: Sequence[int], outputs: Sequence[int],  # type: ignore[no-untyped-def]
                   options: Optional[Options] = None, custom_options: bytes = b"") -> int:
    """An Operator table; ``options`` builds its builtin options, ``custom_options`` are raw bytes."""
    O = schema("Operator")
    in_off = vector(b, O.OperatorStartInputsVector, [int(i) for i in inputs])
    out_off = vector(b, O.OperatorStartOutputsVector, [int(i) for i in outputs])
    opt = options[1](b) if options else None
    custom = b.CreateByteVector(custom_options) if custom_options else None
    O.OperatorStart(b)
    O.OperatorAddOpcodeIndex(b, opcode_index)
    O.OperatorAddInputs(b, in_off)
    O.OperatorAddOutputs(b, out_off)
    if opt is not None:
        O.OperatorAddBuiltinOptionsType(b, options[0])
        O.OperatorAddBuiltinOptions(b, opt)
    if custom is not None:
        O.OperatorAddCustomOptions(b, custom)
    return O.OperatorEnd(b)


def options_builder(table: str, fields: Sequence[tuple[str, object]]) -> Callable[..., int]:
    """A function(builder) writing the options table ``table`` (e.g. ``Conv2DOptions``) with
    ``fields`` (name without the ``Add`` prefix, value), added in the order given."""
    def build(b) -> int:  # type: ignore[no-untyped-def]
        mod = schema(table)
        getattr(mod, f"{table}Start")(b)
        for name, value in fields:
            getattr(mod, f"{table}Add{name}")(b, value)
        return getattr(mod, f"{table}End")(b)
    return build


def finish_model(b, tensors: list[int], inputs: Sequence[int], outputs: Sequence[int],  # type: ignore[no-untyped-def]
                 operators: list[int], name: str, opcodes: list[int], buffers: list[int], description: str) -> bytes:
    """Write one SubGraph and the Model (schema version 3) around the given tables; the file bytes."""
    S, M = schema("SubGraph"), schema("Model")
    t_vec = vector(b, S.SubGraphStartTensorsVector, tensors, "UOffsetTRelative")
    i_vec = vector(b, S.SubGraphStartInputsVector, [int(i) for i in inputs])
    o_vec = vector(b, S.SubGraphStartOutputsVector, [int(i) for i in outputs])
    op_vec = vector(b, S.SubGraphStartOperatorsVector, operators, "UOffsetTRelative")
    sg_name = b.CreateString(name)
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, t_vec)
    S.SubGraphAddInputs(b, i_vec)
    S.SubGraphAddOutputs(b, o_vec)
    S.SubGraphAddOperators(b, op_vec)
    S.SubGraphAddName(b, sg_name)
    sg = S.SubGraphEnd(b)
    codes_vec = vector(b, M.ModelStartOperatorCodesVector, opcodes, "UOffsetTRelative")
    sgs_vec = vector(b, M.ModelStartSubgraphsVector, [sg], "UOffsetTRelative")
    bufs_vec = vector(b, M.ModelStartBuffersVector, buffers, "UOffsetTRelative")
    desc = b.CreateString(description)
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes_vec)
    M.ModelAddSubgraphs(b, sgs_vec)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, bufs_vec)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def little_endian(data: np.ndarray) -> bytes:
    """The bytes of an array in little-endian order, C-contiguous (a .tflite constant buffer)."""
    arr = np.ascontiguousarray(data)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()

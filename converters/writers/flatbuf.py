"""Flatbuffers helpers that write .tflite tables and vectors (host side).

Shared by the int8 writer (:mod:`converters.writers.tflite`) and the tests' model builder. Each helper
writes one table or vector in the order the TFLite schema expects and returns its offset. Tables are
written through the flatbuffers ``Builder`` with the schema facts of
:mod:`converters.writers.tflite_schema_table` (what the ``tflite`` package's generated functions
do, without importing its ~190 modules); every table goes through :func:`write_table` and every
vector field through :func:`vector`, which writes the elements as one block of bytes.
"""
from __future__ import annotations

import struct
from typing import Callable, Optional, Sequence

import numpy as np

from converters.writers.tflite_schema_table import TABLES, VECTORS

#: (BuiltinOptions type, function(builder) -> options offset)
Options = tuple[int, Callable[..., int]]
#: vector element kind -> (struct format character, little-endian numpy dtype)
_KINDS = {"Int32": ("i", np.dtype("<i4")), "Int64": ("q", np.dtype("<i8")), "Float32": ("f", np.dtype("<f4")),
          "UOffsetTRelative": ("I", np.dtype("<u4"))}


def write_table(b, table: str, fields: Sequence[tuple[str, object]]) -> int:  # type: ignore[no-untyped-def]
    """Table ``table`` with ``fields`` (field name, value) added in the order given; its offset.

    A value equal to the field's schema default is left out, as the schema's generated code does.
    """
    nfields, spec = TABLES[table]
    b.StartObject(nfields)
    for name, value in fields:
        slot, method, default = spec[name]
        getattr(b, method)(slot, value, default)
    return b.EndObject()


def _pack(values: "Sequence | np.ndarray", kind: str) -> bytes:
    """``values`` as little-endian ``kind`` elements, the bytes prepending them one by one gives."""
    fmt, dtype = _KINDS[kind]
    if isinstance(values, np.ndarray) and values.dtype == dtype:
        return values.tobytes()
    return struct.pack(f"<{len(values)}{fmt}", *values)


def vector(b, table: str, field: str, values: "Sequence | np.ndarray",  # type: ignore[no-untyped-def]
           kind: str = "Int32") -> int:
    """Vector field ``field`` of ``table``: scalars (``kind`` Int32, Int64, Float32) or offsets of
    tables already written (``UOffsetTRelative``); ``values`` a sequence or a 1-D array."""
    elem_size, alignment = VECTORS[(table, field)]
    n = len(values)
    b.StartVector(elem_size, n, alignment)
    if kind == "UOffsetTRelative":  # relative to each element's own position, the first element lowest
        end = b.Offset() + elem_size * n
        values = [end - elem_size * i - off for i, off in enumerate(values)]
    data = _pack(values, kind)
    if len(data) != elem_size * n:
        raise ValueError(f"{table}.{field} holds {elem_size}-byte elements, not {kind}")
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    return b.EndVector()


def aligned_bytes(b, raw: bytes, align: int) -> int:  # type: ignore[no-untyped-def]
    """A byte vector whose data starts at a multiple of ``align`` in the file (a constant buffer)."""
    b.StartVector(1, len(raw), align)
    b.head = b.head - len(raw)
    b.Bytes[b.head:b.head + len(raw)] = raw
    return b.EndVector()


def buffer_table(b, data: Optional[int]) -> int:  # type: ignore[no-untyped-def]
    """A Buffer table, holding the byte vector ``data`` or empty when it is None."""
    return write_table(b, "Buffer", [] if data is None else [("Data", data)])


def _floats(values: "Sequence | np.ndarray") -> "list[float] | np.ndarray":
    return values if isinstance(values, np.ndarray) and values.dtype == _KINDS["Float32"][1] else [
        float(v) for v in values]


def _ints(values: "Sequence | np.ndarray", kind: str) -> "list[int] | np.ndarray":
    return values if isinstance(values, np.ndarray) and values.dtype == _KINDS[kind][1] else [int(v) for v in values]


def tensor_table(b, name: str, shape: Sequence[int], type_code: int, buffer: int,  # type: ignore[no-untyped-def]
                 scales: "Optional[Sequence[float] | np.ndarray]" = None,
                 zero_points: "Optional[Sequence[int] | np.ndarray]" = None,
                 qdim: int = 0, shared: Optional[dict] = None) -> int:
    """A Tensor table, with QuantizationParameters when ``scales`` is given.

    ``shared`` (one dict per builder) lets equal zero-point vectors be written once and referenced by
    every tensor that has them: the all-zero vectors of per-channel weights and biases.
    """
    name_off = b.CreateString(name)
    shape_off = vector(b, "Tensor", "Shape", _ints(shape, "Int32"))
    fields: list[tuple[str, object]] = [("Shape", shape_off), ("Type", type_code), ("Buffer", buffer),
                                        ("Name", name_off)]
    if scales is not None:
        s_off = vector(b, "QuantizationParameters", "Scale", _floats(scales), "Float32")
        zps = _ints(zero_points, "Int64")
        key = _pack(zps, "Int64")
        z_off = shared.get(key) if shared is not None else None
        if z_off is None:
            z_off = vector(b, "QuantizationParameters", "ZeroPoint", zps, "Int64")
            if shared is not None:
                shared[key] = z_off
        q_off = write_table(b, "QuantizationParameters", [("Scale", s_off), ("ZeroPoint", z_off),
                                                          ("QuantizedDimension", qdim)])
        fields.append(("Quantization", q_off))
    return write_table(b, "Tensor", fields)


def operator_code(b, code: int, version: int, custom: Optional[str] = None) -> int:  # type: ignore[no-untyped-def]
    """An OperatorCode table (the deprecated int8 code field capped at 127, as TFLite writes it)."""
    cname = b.CreateString(custom) if custom else None
    fields: list[tuple[str, object]] = [("DeprecatedBuiltinCode", min(code, 127)), ("BuiltinCode", code),
                                        ("Version", version)]
    if cname is not None:
        fields.append(("CustomCode", cname))
    return write_table(b, "OperatorCode", fields)


def operator_table(b, opcode_index: int, inputs: Sequence[int], outputs: Sequence[int],  # type: ignore[no-untyped-def]
                   options: Optional[Options] = None, custom_options: bytes = b"") -> int:
    """An Operator table; ``options`` builds its builtin options, ``custom_options`` are raw bytes."""
    in_off = vector(b, "Operator", "Inputs", [int(i) for i in inputs])
    out_off = vector(b, "Operator", "Outputs", [int(i) for i in outputs])
    opt = options[1](b) if options else None
    custom = b.CreateByteVector(custom_options) if custom_options else None
    fields: list[tuple[str, object]] = [("OpcodeIndex", opcode_index), ("Inputs", in_off), ("Outputs", out_off)]
    if opt is not None:
        fields += [("BuiltinOptionsType", options[0]), ("BuiltinOptions", opt)]
    if custom is not None:
        fields.append(("CustomOptions", custom))
    return write_table(b, "Operator", fields)


def options_builder(table: str, fields: Sequence[tuple[str, object]]) -> Callable[..., int]:
    """A function(builder) writing the options table ``table`` (e.g. ``Conv2DOptions``) with
    ``fields`` (field name, value), added in the order given; a list or tuple value is an int32
    vector field (e.g. ReshapeOptions' ``NewShape``), written before the table."""
    def build(b) -> int:  # type: ignore[no-untyped-def]
        vectors = {name: vector(b, table, name, [int(v) for v in value])
                   for name, value in fields if isinstance(value, (list, tuple))}
        return write_table(b, table, [(name, vectors.get(name, value)) for name, value in fields])
    return build


def finish_model(b, tensors: list[int], inputs: Sequence[int], outputs: Sequence[int],  # type: ignore[no-untyped-def]
                 operators: list[int], name: str, opcodes: list[int], buffers: list[int], description: str) -> bytes:
    """Write one SubGraph and the Model (schema version 3) around the given tables; the file bytes."""
    t_vec = vector(b, "SubGraph", "Tensors", tensors, "UOffsetTRelative")
    i_vec = vector(b, "SubGraph", "Inputs", [int(i) for i in inputs])
    o_vec = vector(b, "SubGraph", "Outputs", [int(i) for i in outputs])
    op_vec = vector(b, "SubGraph", "Operators", operators, "UOffsetTRelative")
    sg_name = b.CreateString(name)
    sg = write_table(b, "SubGraph", [("Tensors", t_vec), ("Inputs", i_vec), ("Outputs", o_vec),
                                     ("Operators", op_vec), ("Name", sg_name)])
    codes_vec = vector(b, "Model", "OperatorCodes", opcodes, "UOffsetTRelative")
    sgs_vec = vector(b, "Model", "Subgraphs", [sg], "UOffsetTRelative")
    bufs_vec = vector(b, "Model", "Buffers", buffers, "UOffsetTRelative")
    desc = b.CreateString(description)
    model = write_table(b, "Model", [("Version", 3), ("OperatorCodes", codes_vec), ("Subgraphs", sgs_vec),
                                     ("Description", desc), ("Buffers", bufs_vec)])
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


def little_endian(data: np.ndarray) -> bytes:
    """The bytes of an array in little-endian order, C-contiguous (a .tflite constant buffer)."""
    arr = np.ascontiguousarray(data)
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()

"""Validate an .onnx file's structure without importing onnx (the device side may not).

A minimal protobuf wire-format walker: every tag, varint and length is decoded
with bounds checks, and the messages that matter (ModelProto, GraphProto,
NodeProto, TensorProto, ValueInfoProto, AttributeProto, ...) are walked by
field number with the wire type each field must have. Tensors' stored bytes are
checked against their dims and data type, and external data must stay inside
the model's folder. The result is a small summary; any defect raises
:class:`~edge_runtime.errors.ModelFormatError` naming the file and the place.

Field numbers follow ``onnx/onnx.proto`` (ModelProto: ir_version=1,
producer_name=2, producer_version=3, domain=4, model_version=5, doc_string=6,
graph=7, opset_import=8, metadata_props=14, training_info=20, functions=25).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

from edge_runtime.errors import ModelFormatError

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MAX_DEPTH = 64

#: TensorProto.DataType -> element size in bytes (0: variable size / string).
ONNX_DTYPE_SIZES: dict[int, int] = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: 0, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8,
    14: 8, 15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 1, 22: 1, 23: 1, 24: 1, 25: 1, 26: 1,
}


class _WireError(ValueError):
    pass


@dataclass
class OnnxSummary:
    """What the walk found: IR version, opsets, op counts and graph I/O names."""

    ir_version: int = 0
    opsets: dict[str, int] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    initializer_bytes: int = 0
    has_graph: bool = False


class _Reader:
    __slots__ = ("data", "end")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.end = len(data)

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise _WireError(f"varint runs past the end of its message at byte {pos}")
            b = self.data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise _WireError(f"varint longer than 10 bytes at byte {pos}")

    def fields(self, start: int, end: int):  # type: ignore[no-untyped-def]
        """Yield ``(field_number, wire_type, value_or_start, length)`` for a message in ``[start, end)``."""
        pos = start
        while pos < end:
            tag, pos = self.varint(pos, end)
            num, wt = tag >> 3, tag & 7
            if num == 0:
                raise _WireError(f"field number 0 at byte {pos}")
            if wt == VARINT:
                v, pos = self.varint(pos, end)
                yield num, wt, v, 0
            elif wt == I64:
                if pos + 8 > end:
                    raise _WireError(f"64-bit field {num} runs past the end at byte {pos}")
                yield num, wt, pos, 8
                pos += 8
            elif wt == I32:
                if pos + 4 > end:
                    raise _WireError(f"32-bit field {num} runs past the end at byte {pos}")
                yield num, wt, pos, 4
                pos += 4
            elif wt == LEN:
                n, pos = self.varint(pos, end)
                if pos + n > end:
                    raise _WireError(
                        f"field {num} claims {n} bytes at byte {pos} but its message ends at byte {end}"
                    )
                yield num, wt, pos, n
                pos += n
            else:
                raise _WireError(f"field {num} has unsupported wire type {wt} at byte {pos}")

    def string(self, start: int, n: int, what: str) -> str:
        try:
            return bytes(self.data[start:start + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise _WireError(f"{what} is not valid UTF-8 (byte {start})") from None


# Message schemas: field number -> (expected wire type, child schema name or None, kind).
# kind: "str" (UTF-8 string), "msg" (sub-message), "bytes", "packed" (packed or unpacked scalars).
_S = dict[int, tuple[int, Optional[str], str]]
_SCHEMAS: dict[str, _S] = {
    "Model": {1: (VARINT, None, "int"), 2: (LEN, None, "str"), 3: (LEN, None, "str"), 4: (LEN, None, "str"),
              5: (VARINT, None, "int"), 6: (LEN, None, "str"), 7: (LEN, "Graph", "msg"),
              8: (LEN, "OpSet", "msg"), 14: (LEN, "StrStr", "msg"), 20: (LEN, None, "bytes"),
              25: (LEN, "Function", "msg")},
    "OpSet": {1: (LEN, None, "str"), 2: (VARINT, None, "int")},
    "StrStr": {1: (LEN, None, "str"), 2: (LEN, None, "str")},
    "Graph": {1: (LEN, "Node", "msg"), 2: (LEN, None, "str"), 5: (LEN, "Tensor", "msg"),
              10: (LEN, None, "str"), 11: (LEN, "ValueInfo", "msg"), 12: (LEN, "ValueInfo", "msg"),
              13: (LEN, "ValueInfo", "msg"), 14: (LEN, None, "bytes"), 15: (LEN, "SparseTensor", "msg"),
              16: (LEN, "StrStr", "msg")},
    "Node": {1: (LEN, None, "str"), 2: (LEN, None, "str"), 3: (LEN, None, "str"), 4: (LEN, None, "str"),
             5: (LEN, "Attribute", "msg"), 6: (LEN, None, "str"), 7: (LEN, None, "str"),
             8: (LEN, None, "str"), 9: (LEN, "StrStr", "msg"), 10: (LEN, None, "bytes")},
    "Attribute": {1: (LEN, None, "str"), 2: (I32, None, "f32"), 3: (VARINT, None, "int"),
                  4: (LEN, None, "bytes"), 5: (LEN, "Tensor", "msg"), 6: (LEN, "Graph", "msg"),
                  7: (-1, None, "fixed4"), 8: (-1, None, "packed"), 9: (LEN, None, "bytes"),
                  10: (LEN, "Tensor", "msg"), 11: (LEN, "Graph", "msg"), 13: (LEN, None, "str"),
                  14: (LEN, "TypeProto", "msg"), 15: (LEN, "TypeProto", "msg"),
                  20: (VARINT, None, "int"), 21: (LEN, None, "str"), 22: (LEN, "SparseTensor", "msg"),
                  23: (LEN, "SparseTensor", "msg")},
    "ValueInfo": {1: (LEN, None, "str"), 2: (LEN, "TypeProto", "msg"), 3: (LEN, None, "str"),
                  4: (LEN, "StrStr", "msg")},
    "TypeProto": {1: (LEN, "TensorType", "msg"), 4: (LEN, "TypeProto", "msg"), 5: (LEN, "TypeProto", "msg"),
                  6: (LEN, None, "str"), 8: (LEN, "SparseTensorType", "msg"), 9: (LEN, "TypeProto", "msg")},
    "TensorType": {1: (VARINT, None, "int"), 2: (LEN, "Shape", "msg")},
    "SparseTensorType": {1: (VARINT, None, "int"), 2: (LEN, "Shape", "msg")},
    "Shape": {1: (LEN, "Dim", "msg")},
    "Dim": {1: (VARINT, None, "int"), 2: (LEN, None, "str"), 3: (LEN, None, "str")},
    "Tensor": {1: (-1, None, "packed"), 2: (VARINT, None, "int"), 3: (LEN, None, "bytes"),
               4: (-1, None, "fixed4"), 5: (-1, None, "packed"), 6: (LEN, None, "bytes"),
               7: (-1, None, "packed"), 8: (LEN, None, "str"), 9: (LEN, None, "bytes"),
               10: (-1, None, "fixed8"), 11: (-1, None, "packed"), 12: (LEN, None, "str"),
               13: (LEN, "StrStr", "msg"), 14: (VARINT, None, "int"), 16: (LEN, "StrStr", "msg")},
    "SparseTensor": {1: (LEN, "Tensor", "msg"), 2: (LEN, "Tensor", "msg"), 3: (-1, None, "packed")},
    "Function": {1: (LEN, None, "str"), 4: (LEN, None, "str"), 5: (LEN, None, "str"),
                 6: (LEN, None, "str"), 7: (LEN, "Node", "msg"), 8: (LEN, None, "str"),
                 9: (LEN, "OpSet", "msg"), 10: (LEN, None, "str"), 11: (LEN, "Attribute", "msg"),
                 12: (LEN, "ValueInfo", "msg"), 13: (LEN, "StrStr", "msg"), 14: (LEN, None, "str")},
}


class _Walker:
    def __init__(self, data: memoryview, path: str) -> None:
        self.r = _Reader(data)
        self.path = path
        self.summary = OnnxSummary()
        self.model_dir = os.path.dirname(os.path.abspath(path)) if path and not path.startswith("<") else None

    def walk(self, schema: str, start: int, end: int, depth: int, where: str,
             visit: Optional[Callable[[int, int, int, int], None]] = None) -> None:
        if depth > _MAX_DEPTH:
            raise _WireError(f"{where}: messages nested deeper than {_MAX_DEPTH} levels")
        spec = _SCHEMAS[schema]
        for num, wt, v, n in self.r.fields(start, end):
            if visit is not None:
                visit(num, wt, v, n)
            entry = spec.get(num)
            if entry is None:
                continue  # unknown fields are legal protobuf; their framing was checked
            want, child, kind = entry
            if kind == "packed":
                if wt == LEN:
                    pos, e = v, v + n
                    while pos < e:
                        _, pos = self.r.varint(pos, e)
                elif wt != VARINT:
                    raise _WireError(f"{where} field {num} has wire type {wt}, expected a varint")
                continue
            if kind in ("fixed4", "fixed8"):
                size = 4 if kind == "fixed4" else 8
                if wt == LEN and n % size:
                    raise _WireError(f"{where} field {num}: {n} bytes is not a whole number of {size}-byte values")
                if wt not in (LEN, I32 if size == 4 else I64):
                    raise _WireError(f"{where} field {num} has wire type {wt}")
                continue
            if want != wt:
                raise _WireError(f"{where} field {num} has wire type {wt}, expected {want}")
            if kind == "str":
                self.r.string(v, n, f"{where} field {num}")
            elif kind == "msg" and child is not None:
                handler = getattr(self, f"_{child.lower()}", None)
                if handler is not None:
                    handler(v, v + n, depth + 1, f"{where}.{child}")
                else:
                    self.walk(child, v, v + n, depth + 1, f"{where}.{child}")

    # -- messages with semantic checks --------------------------------------
    def _graph(self, start: int, end: int, depth: int, where: str) -> None:
        top = depth == 1
        self.walk("Graph", start, end, depth, where)
        if top:
            for num, wt, v, n in self.r.fields(start, end):
                if num == 11 and wt == LEN:
                    self.summary.inputs.append(self._first_string(v, v + n))
                elif num == 12 and wt == LEN:
                    self.summary.outputs.append(self._first_string(v, v + n))

    def _first_string(self, start: int, end: int) -> str:
        for num, wt, v, n in self.r.fields(start, end):
            if num == 1 and wt == LEN:
                return self.r.string(v, n, "name")
        return ""

    def _node(self, start: int, end: int, depth: int, where: str) -> None:
        self.walk("Node", start, end, depth, where)
        op = ""
        domain = ""
        for num, wt, v, n in self.r.fields(start, end):
            if num == 4 and wt == LEN:
                op = self.r.string(v, n, "op_type")
            elif num == 7 and wt == LEN:
                domain = self.r.string(v, n, "domain")
        if not op:
            raise _WireError(f"{where}: a node has no op_type")
        key = f"{domain}::{op}" if domain and domain != "ai.onnx" else op
        self.summary.op_counts[key] = self.summary.op_counts.get(key, 0) + 1

    def _opset(self, start: int, end: int, depth: int, where: str) -> None:
        self.walk("OpSet", start, end, depth, where)
        dom, ver = "", 0
        for num, wt, v, n in self.r.fields(start, end):
            if num == 1 and wt == LEN:
                dom = self.r.string(v, n, "opset domain")
            elif num == 2 and wt == VARINT:
                ver = v
        self.summary.opsets[dom or "ai.onnx"] = ver

    def _tensor(self, start: int, end: int, depth: int, where: str) -> None:
        self.walk("Tensor", start, end, depth, where)
        dims: list[int] = []
        dtype = 0
        raw_len: Optional[int] = None
        location = 0
        name = ""
        external: dict[str, str] = {}
        counts = {4: 0, 5: 0, 6: 0, 7: 0, 10: 0, 11: 0}
        for num, wt, v, n in self.r.fields(start, end):
            if num == 1:
                if wt == LEN:
                    pos, e = v, v + n
                    while pos < e:
                        d, pos = self.r.varint(pos, e)
                        dims.append(d)
                elif wt == VARINT:
                    dims.append(v)
            elif num == 2 and wt == VARINT:
                dtype = v
            elif num == 8 and wt == LEN:
                name = self.r.string(v, n, "tensor name")
            elif num == 9 and wt == LEN:
                raw_len = n
            elif num == 14 and wt == VARINT:
                location = v
            elif num == 13 and wt == LEN:
                key = val = ""
                for k2, w2, v2, n2 in self.r.fields(v, v + n):
                    if k2 == 1 and w2 == LEN:
                        key = self.r.string(v2, n2, "external_data key")
                    elif k2 == 2 and w2 == LEN:
                        val = self.r.string(v2, n2, "external_data value")
                external[key] = val
            elif num in counts:
                if wt == LEN:
                    if num == 4:
                        counts[num] += n // 4
                    elif num == 10:
                        counts[num] += n // 8
                    elif num == 6:
                        counts[num] += 1
                    else:
                        pos, e = v, v + n
                        while pos < e:
                            _, pos = self.r.varint(pos, e)
                            counts[num] += 1
                else:
                    counts[num] += 1
        label = f"{where} '{name}'" if name else where
        for d in dims:
            if d >= 1 << 63:
                raise _WireError(f"{label}: negative dimension in {dims}")
        if dtype and dtype not in ONNX_DTYPE_SIZES:
            raise _WireError(f"{label}: unknown data type {dtype}")
        numel = 1
        for d in dims:
            numel *= d
        if numel > 1 << 40:
            raise _WireError(f"{label}: implausible shape {dims}")
        itemsize = ONNX_DTYPE_SIZES.get(dtype, 0)
        if location == 1 or external:
            self._check_external(label, external)
            return
        if raw_len is not None and itemsize:
            need = numel * itemsize
            if dtype in (22, 23, 25, 26):  # 4-bit and 2-bit types pack several values per byte
                need = (numel * (2 if dtype in (25, 26) else 4) + 7) // 8
            if raw_len != need:
                raise _WireError(
                    f"{label}: raw_data holds {raw_len} bytes but dims {dims} of type {dtype} need {need}"
                )
            self.summary.initializer_bytes += raw_len
        elif dims and raw_len is None:
            stored = max(counts.values())
            if stored and stored != numel and dtype not in (10, 16, 14, 15):
                # float16/bfloat16 pack into int32_data one per value; complex types store pairs.
                raise _WireError(f"{label}: holds {stored} values but dims {dims} need {numel}")

    def _check_external(self, label: str, external: dict[str, str]) -> None:
        loc = external.get("location", "")
        if not loc:
            raise _WireError(f"{label}: external data without a location")
        if os.path.isabs(loc) or ".." in loc.replace("\\", "/").split("/"):
            raise _WireError(f"{label}: external data location '{loc}' leaves the model's folder")
        if self.model_dir is not None:
            target = os.path.join(self.model_dir, loc)
            if not os.path.isfile(target):
                raise _WireError(f"{label}: external data file '{loc}' is missing")
            try:
                offset = int(external.get("offset", "0") or 0)
                length = int(external.get("length", "0") or 0)
            except ValueError:
                raise _WireError(f"{label}: external data offset/length are not integers") from None
            if offset < 0 or length < 0 or offset + length > os.path.getsize(target):
                raise _WireError(f"{label}: external data range lies outside '{loc}'")


def check_onnx_bytes(data: "bytes | memoryview", path: str = "<bytes>") -> OnnxSummary:
    """Walk a serialized ModelProto; return an :class:`OnnxSummary` or raise :class:`ModelFormatError`."""
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    w = _Walker(mv, path)
    try:
        def visit_top(num: int, wt: int, v: int, n: int) -> None:
            if num == 1 and wt == VARINT:
                w.summary.ir_version = v
            elif num == 7 and wt == LEN:
                w.summary.has_graph = True

        w.walk("Model", 0, len(mv), 0, "ModelProto", visit_top)
    except _WireError as exc:
        raise ModelFormatError(f"{path}: not a valid ONNX model: {exc}") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: not a valid ONNX model: messages nested too deeply") from None
    s = w.summary
    if not s.has_graph:
        raise ModelFormatError(f"{path}: not a valid ONNX model: ModelProto has no graph (truncated or corrupt)")
    if s.ir_version < 3 or s.ir_version > 64:
        raise ModelFormatError(f"{path}: not a valid ONNX model: implausible IR version {s.ir_version}")
    if not s.opsets:
        raise ModelFormatError(f"{path}: not a valid ONNX model: no opset_import")
    if not s.outputs:
        raise ModelFormatError(f"{path}: not a valid ONNX model: the graph has no outputs")
    return s


def check_onnx_file(path: str) -> OnnxSummary:
    """Read ``path`` and validate it with :func:`check_onnx_bytes`."""
    with open(path, "rb") as f:
        return check_onnx_bytes(f.read(), path)

"""Read a .tflite file into plain Python objects, zero-copy over a memory map.

This is the device side's only TFLite parser: the micro interpreter, the arena
planner, ``inspect`` and the structural check that runs before a file is handed
to native code all use it. Weights stay in the mapped file; tensors' constant
data are numpy views into it.

Field numbers follow the TFLite schema (``tensorflow/lite/schema/schema.fbs``):
Model{version, operator_codes, subgraphs, description, buffers, metadata_buffer,
metadata, signature_defs}, SubGraph{tensors, inputs, outputs, operators, name},
Tensor{shape, type, buffer, name, quantization, is_variable, sparsity, ...},
Operator{opcode_index, inputs, outputs, builtin_options_type, builtin_options,
custom_options, ...}, Buffer{data, offset, size}.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flatbuffer import Buffer, FlatBufferError, Table
from edge_runtime.formats.tflite_ops import op_name

TFLITE_IDENTIFIER = b"TFL3"

#: TensorType enum -> numpy dtype (None where numpy has no equivalent).
TENSOR_TYPES: dict[int, tuple[str, Optional[np.dtype]]] = {
    0: ("FLOAT32", np.dtype(np.float32)),
    1: ("FLOAT16", np.dtype(np.float16)),
    2: ("INT32", np.dtype(np.int32)),
    3: ("UINT8", np.dtype(np.uint8)),
    4: ("INT64", np.dtype(np.int64)),
    5: ("STRING", None),
    6: ("BOOL", np.dtype(np.bool_)),
    7: ("INT16", np.dtype(np.int16)),
    8: ("COMPLEX64", np.dtype(np.complex64)),
    9: ("INT8", np.dtype(np.int8)),
    10: ("FLOAT64", np.dtype(np.float64)),
    11: ("COMPLEX128", np.dtype(np.complex128)),
    12: ("UINT64", np.dtype(np.uint64)),
    13: ("RESOURCE", None),
    14: ("VARIANT", None),
    15: ("UINT32", np.dtype(np.uint32)),
    16: ("UINT16", np.dtype(np.uint16)),
    17: ("INT4", None),
    18: ("BFLOAT16", None),
}
DTYPE_TO_TENSOR_TYPE: dict[str, int] = {
    np.dtype(dt).name: code for code, (_, dt) in TENSOR_TYPES.items() if dt is not None
}


@dataclass(frozen=True)
class OpCode:
    """One entry of the model's operator-code table."""

    builtin_code: int
    custom_code: str
    version: int

    @property
    def name(self) -> str:
        """``CONV_2D``-style name; custom ops give their custom code."""
        if self.builtin_code == 32:  # CUSTOM
            return self.custom_code or "CUSTOM"
        return op_name(self.builtin_code)


@dataclass
class Quantization:
    """Affine quantization parameters: real = scale * (q - zero_point)."""

    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        """True when there is more than one scale."""
        return self.scale.size > 1


@dataclass
class TensorInfo:
    """One tensor of a subgraph. ``data`` is a read-only view of its constant bytes, if any."""

    index: int
    name: str
    shape: tuple[int, ...]
    type_code: int
    buffer: int
    quantization: Optional[Quantization]
    is_variable: bool
    sparse: bool
    shape_signature: Optional[tuple[int, ...]]
    data: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def type_name(self) -> str:
        """TensorType name such as ``INT8``."""
        return TENSOR_TYPES.get(self.type_code, (f"TYPE_{self.type_code}", None))[0]

    @property
    def dtype(self) -> Optional[np.dtype]:
        """numpy dtype, or ``None`` for types numpy lacks (string, int4, ...)."""
        return TENSOR_TYPES.get(self.type_code, ("", None))[1]

    @property
    def is_constant(self) -> bool:
        """True when the tensor's values are stored in the file."""
        return self.data is not None

    @property
    def num_elements(self) -> int:
        """Product of the shape (1 for a scalar)."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Bytes the tensor occupies when materialised."""
        dt = self.dtype
        return self.num_elements * (dt.itemsize if dt is not None else 1)

    def array(self) -> np.ndarray:
        """The constant data as a read-only numpy array of the tensor's shape and dtype."""
        if self.data is None:
            raise ValueError(f"tensor '{self.name}' has no constant data")
        dt = self.dtype
        if dt is None:
            raise ValueError(f"tensor '{self.name}' has type {self.type_name}, which numpy cannot view")
        return self.data.view(dt.newbyteorder("<")).reshape(self.shape)


@dataclass
class Operator:
    """One operator of a subgraph. Optional inputs are -1."""

    index: int
    opcode: OpCode
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    options_type: int
    options: Optional[Table]
    custom_options: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The op's name, e.g. ``CONV_2D``."""
        return self.opcode.name


@dataclass
class SubGraph:
    """A subgraph: tensors, operators in execution order, inputs and outputs."""

    index: int
    name: str
    tensors: list[TensorInfo]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: list[Operator]


class TFLiteModel:
    """A parsed .tflite model. Construct with :meth:`open` (file) or from bytes."""

    def __init__(self, data: "bytes | memoryview | mmap.mmap", path: str = "<bytes>") -> None:
        self.path = path
        self._data = data
        try:
            self._parse(Buffer(memoryview(data)))
        except FlatBufferError as exc:
            raise ModelFormatError(f"{path}: not a valid TFLite model: {exc}") from None
        except (ValueError, OverflowError, IndexError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{path}: not a valid TFLite model: {exc}") from None

    @classmethod
    def open(cls, path: "str | os.PathLike[str]") -> "TFLiteModel":
        """Memory-map ``path`` and parse it; raise :class:`ModelFormatError` on any defect."""
        p = os.fspath(path)
        if not os.path.exists(p):
            raise ModelFormatError(f"{p}: no such file")
        if os.path.isdir(p):
            raise ModelFormatError(f"{p}: is a directory, not a model file")
        size = os.path.getsize(p)
        if size == 0:
            raise ModelFormatError(f"{p}: the file is empty")
        with open(p, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(mm, p)

    # ------------------------------------------------------------------
    def _parse(self, buf: Buffer) -> None:
        if buf.size < 8:
            raise FlatBufferError(f"only {buf.size} bytes, too short for a FlatBuffer")
        ident = bytes(buf.data[4:8])
        if ident != TFLITE_IDENTIFIER:
            raise FlatBufferError(f"file identifier is {ident!r}, expected {TFLITE_IDENTIFIER!r}")
        self.buf = buf
        root = buf.root()
        self.version = int(root.scalar(0, "I", 0))
        self.description = root.string(3)
        self.opcodes = [self._opcode(t) for t in root.tables(1, "operator_code")]
        self._buffer_tables = root.tables(4, "buffer")
        self.metadata: dict[str, int] = {}
        for t in root.tables(6, "metadata"):
            self.metadata[t.string(0)] = int(t.scalar(1, "I", 0))
        self.subgraphs = [self._subgraph(i, t) for i, t in enumerate(root.tables(2, "subgraph"))]
        if not self.subgraphs:
            raise FlatBufferError("the model has no subgraphs")

    @staticmethod
    def _opcode(t: Table) -> OpCode:
        deprecated = int(t.scalar(0, "b", 0))
        builtin = int(t.scalar(3, "i", 0))
        return OpCode(max(deprecated, builtin), t.string(1), int(t.scalar(2, "i", 1)))

    def buffer_data(self, index: int) -> Optional[np.ndarray]:
        """Bytes of buffer ``index`` as a read-only uint8 view, or ``None`` when empty."""
        if index < 0 or index >= len(self._buffer_tables):
            raise FlatBufferError(f"buffer index {index} out of range (the model has {len(self._buffer_tables)})")
        t = self._buffer_tables[index]
        data = t.vector(0, np.uint8)
        if data is not None and data.size:
            return data
        offset = int(t.scalar(1, "Q", 0))
        size = int(t.scalar(2, "Q", 0))
        if offset > 1 and size:
            return self.buf.array(offset, size, np.uint8, f"buffer {index} (external offset)")
        return None

    def _subgraph(self, sg_index: int, t: Table) -> SubGraph:
        tensors = []
        for i, tt in enumerate(t.tables(0, "tensor")):
            shape_v = tt.vector(0, np.int32)
            shape = tuple(int(s) for s in shape_v) if shape_v is not None else ()
            if any(s < 0 for s in shape):
                raise FlatBufferError(f"tensor {i} has a negative dimension in shape {shape}")
            sig = tt.vector(7, np.int32)
            q = None
            qt = tt.table(4, "quantization")
            if qt is not None:
                scale = qt.vector(2, np.float32)
                zp = qt.vector(3, np.int64)
                if scale is not None and scale.size:
                    zp_arr = zp if zp is not None and zp.size else np.zeros(scale.size, np.int64)
                    q = Quantization(np.asarray(scale), np.asarray(zp_arr), int(qt.scalar(6, "i", 0)))
            buffer = int(tt.scalar(2, "I", 0))
            info = TensorInfo(
                index=i, name=tt.string(3), shape=shape, type_code=int(tt.scalar(1, "b", 0)),
                buffer=buffer, quantization=q, is_variable=bool(tt.scalar(5, "?", False)),
                sparse=tt.has(6), shape_signature=tuple(int(s) for s in sig) if sig is not None else None,
            )
            info.data = self.buffer_data(buffer) if buffer else None
            if info.data is not None and info.dtype is not None and not info.sparse:
                if info.data.size != info.nbytes:
                    raise FlatBufferError(
                        f"tensor {i} ('{info.name}') holds {info.data.size} bytes of data but its shape "
                        f"{shape} and type {info.type_name} need {info.nbytes}"
                    )
            tensors.append(info)
        n = len(tensors)

        def indices(v: Optional[np.ndarray], what: str, allow_optional: bool = False) -> tuple[int, ...]:
            if v is None:
                return ()
            out = tuple(int(x) for x in v)
            low = -1 if allow_optional else 0
            for x in out:
                if x < low or x >= n:
                    raise FlatBufferError(f"{what} refers to tensor {x}, but the subgraph has {n} tensors")
            return out

        ops = []
        for i, ot in enumerate(t.tables(3, "operator")):
            oc = int(ot.scalar(0, "I", 0))
            if oc >= len(self.opcodes):
                raise FlatBufferError(f"operator {i} uses opcode index {oc}; the model has {len(self.opcodes)}")
            ops.append(Operator(
                index=i, opcode=self.opcodes[oc],
                inputs=indices(ot.vector(1, np.int32), f"operator {i} input", True),
                outputs=indices(ot.vector(2, np.int32), f"operator {i} output", True),
                intermediates=indices(ot.vector(8, np.int32), f"operator {i} intermediate"),
                options_type=int(ot.scalar(3, "B", 0)),
                options=ot.table(4, "builtin_options"),
                custom_options=ot.vector(5, np.uint8),
            ))
        return SubGraph(
            index=sg_index, name=t.string(4), tensors=tensors,
            inputs=indices(t.vector(1, np.int32), "subgraph input"),
            outputs=indices(t.vector(2, np.int32), "subgraph output"),
            operators=ops,
        )

    # ------------------------------------------------------------------
    @property
    def main(self) -> SubGraph:
        """The primary subgraph (index 0)."""
        return self.subgraphs[0]

    def op_counts(self) -> dict[str, int]:
        """How many times each op appears, over all subgraphs."""
        counts: dict[str, int] = {}
        for sg in self.subgraphs:
            for op in sg.operators:
                counts[op.name] = counts.get(op.name, 0) + 1
        return counts

    def weight_bytes(self) -> int:
        """Total bytes of constant tensor data (all subgraphs)."""
        seen: set[int] = set()
        total = 0
        for sg in self.subgraphs:
            for t in sg.tensors:
                if t.data is not None and t.buffer not in seen:
                    seen.add(t.buffer)
                    total += int(t.data.size)
        return total

    def metadata_bytes(self, name: str) -> Optional[np.ndarray]:
        """The buffer behind metadata entry ``name``, or ``None``."""
        idx = self.metadata.get(name)
        return None if idx is None else self.buffer_data(idx)

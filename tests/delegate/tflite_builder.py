"""Build small .tflite models for tests with the flatbuffers helpers of converters.writers.flatbuf and ``flatbuffers`` (host side only).

``build_model`` takes plain descriptions of tensors and operators and returns the
serialized model bytes. Used by the backend, accelerator and fuzz tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import flatbuffers
import numpy as np

from converters.writers.flatbuf import (
    aligned_bytes, buffer_table, finish_model, little_endian, operator_code, operator_table, options_builder,
    tensor_table,
)

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
#: builtin op name -> (BuiltinOptions type, options table)
_OPTIONS = {"ADD": (11, "AddOptions"), "MUL": (21, "MulOptions"), "FULLY_CONNECTED": (8, "FullyConnectedOptions")}


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
    opcode_offsets = [operator_code(b, code, 1, custom) for code, custom in kinds]
    # Buffers: 0 is the empty sentinel; each constant tensor gets its own.
    buffer_data: list[Optional[bytes]] = [None]
    tensor_buffer = []
    for t in tensors:
        if t.data is not None:
            buffer_data.append(little_endian(np.asarray(t.data, dtype=t.dtype)))
            tensor_buffer.append(len(buffer_data) - 1)
        else:
            tensor_buffer.append(0)
    buffer_offsets = [buffer_table(b, aligned_bytes(b, data, 16) if data else None) for data in buffer_data]
    tensor_offsets = [
        tensor_table(b, t.name, t.shape, TYPE_CODES[np.dtype(t.dtype)], tensor_buffer[i],
                     None if t.scale is None else [t.scale], None if t.scale is None else [t.zero_point])
        for i, t in enumerate(tensors)]
    op_offsets = []
    for k, op in enumerate(ops):
        options = None
        if op.custom is None and op.name in _OPTIONS:
            opts_type, table = _OPTIONS[op.name]
            options = (opts_type, options_builder(table, [("FusedActivationFunction", ACTIVATIONS[op.activation])]))
        custom = op.custom_options if op.custom is not None else b""
        op_offsets.append(operator_table(b, op_kind_index[k], op.inputs, op.outputs, options, custom))
    return finish_model(b, tensor_offsets, inputs, outputs, op_offsets, "main", opcode_offsets, buffer_offsets,
                        "edge-runtime test model")


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

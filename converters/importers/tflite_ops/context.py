"""State of one float-TFLite import and the helpers its op handlers share (TFLite is NHWC like the IR)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.importers.tensor_table import TensorTable
from converters.ir import Op, Tensor
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.flatbuffer import Table
from edge_runtime.formats.tflite import TensorInfo

ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def const_value(t: TensorInfo) -> Optional[np.ndarray]:
    """A constant tensor's value: float as float32 (fp16 too), quantized integers dequantized,
    plain integers (shapes, axes, indices) unchanged; None for activations."""
    if t.data is None:
        return None
    arr = np.array(t.array())
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    q = t.quantization
    if q is None or arr.dtype not in (np.int8, np.uint8, np.int16, np.int32) or q.scale.size == 0:
        return arr
    shape = [1] * arr.ndim
    if q.per_channel:
        shape[q.quantized_dimension] = -1
    scale = q.scale.reshape(shape).astype(np.float64)
    zp = q.zero_point.reshape(shape).astype(np.float64)
    return ((arr.astype(np.float64) - zp) * scale).astype(np.float32)


class TFLiteContext(TensorTable):
    """Tensors and ops of the graph being imported from one TFLite subgraph."""

    def __init__(self, path: str, sg: Any) -> None:
        super().__init__()
        self.path = path
        self.sg = sg
        self.ops: list[Op] = []
        self.names: dict[int, str] = {}
        self._used: set[str] = set()
        #: constants already read as the bias of a weighted op (a second reader gets its own copy)
        self.biases_used: set[str] = set()
        self._readers: Optional[dict[int, int]] = None
        #: complex tensors (RFFT2D results, by TFLite index) as their (real, imaginary) IR tensors
        self.complex_parts: dict[int, tuple[str, str]] = {}
        #: IR tensors holding int32 indices (integer inputs, ARG_MAX results, what selections take from them)
        self.int_names: set[str] = set()
        #: integer tensor selected from another -> the tensor its values come from (an input, ARG_MAX result)
        self.int_roots: dict[str, str] = {}

    def err(self, op: Any, msg: str) -> UnsupportedModelError:
        """One-line refusal naming the operator (index and name)."""
        return UnsupportedModelError(f"{self.path}: operator {op.index} ({op.name}): {msg}")

    def name(self, idx: int) -> str:
        """IR name of TFLite tensor ``idx`` (registered on first use)."""
        if idx not in self.names:
            t = self.sg.tensors[idx]
            n = t.name or f"tensor_{idx}"
            if n in self._used:
                n = f"{n}#{idx}"
            self._used.add(n)
            self.names[idx] = n
            self.tensors[n] = Tensor(n, tuple(int(d) for d in t.shape), const_value(t))
        return self.names[idx]

    def value(self, op: Any, k: int) -> np.ndarray:
        """Constant input ``k`` of ``op`` (refused when it is computed at run time)."""
        idx = op.inputs[k]
        if idx < 0:
            raise self.err(op, f"input {k} is missing")
        data = self.tensors[self.name(idx)].data
        if data is None:
            raise self.err(op, f"input {k} ('{self.name(idx)}') must be a constant")
        return data

    def joined_in(self, op: Any, k: int) -> str:
        """Input ``k`` of a joining op (MAXIMUM, MINIMUM, CONCATENATION: in int8 its inputs and output share
        one scale), by IR name. A constant that other operators read too (TFLite files store a repeated
        constant once, e.g. the -0.4 floor of every layer of openWakeWord's embedding) gets this op's own
        copy: one shared constant would tie every reader's scale into one quantization group."""
        name = self.name(op.inputs[k])
        data = self.tensors[name].data
        if data is None:
            return name
        if self._readers is None:
            self._readers = {}
            for o in self.sg.operators:
                for i in set(o.inputs):
                    self._readers[i] = self._readers.get(i, 0) + 1
        if self._readers.get(op.inputs[k], 0) < 2:
            return name
        return self.add_const(f"{name}/op{op.index}", data, data.dtype)

    def act_in(self, op: Any, k: int = 0) -> str:
        """Input ``k`` of ``op``: activation or constant operand, by IR name."""
        return self.name(op.inputs[k])

    def shape(self, idx_or_name: "int | str") -> tuple[int, ...]:
        """Shape of a tensor (TFLite index or IR name)."""
        n = self.name(idx_or_name) if isinstance(idx_or_name, int) else idx_or_name
        return self.tensors[n].shape

    def emit(self, op: Any, kind: str, inputs: list[str], output: str, attrs: Optional[dict] = None) -> str:
        """Append an IR op labelled with the source operator."""
        self.ops.append(Op(kind, list(inputs), [output], dict(attrs or {}), name=f"op{op.index}:{op.name}"))
        return output

    @staticmethod
    def act(opts: Optional[Table], field: int) -> str:
        """A fused activation option (refused when it is one the IR has no int8 form of)."""
        code = int(opts.scalar(field, "b", 0)) if opts is not None else 0
        if code not in ACT:
            raise UnsupportedModelError(f"fused activation code {code} is not supported")
        return ACT[code]

    def dynamic_hint(self) -> str:
        """``"; input 'x' is dynamic ..."`` for the first model input with a dynamic shape signature (the file
        then stores placeholder shapes the converter cannot work at), else ``""``: the end of a refusal."""
        for t in (self.sg.tensors[i] for i in self.sg.inputs):
            if t.shape_signature is not None and any(d < 0 for d in t.shape_signature):
                return (f"; input '{t.name}' is dynamic (shape signature {list(t.shape_signature)}) and the file stores "
                        f"the placeholder shape {list(t.shape)}: re-export the model with a fixed input shape")
        return ""

    def option(self, op: Any, field: int, fmt: str, default: "int | float | bool") -> "int | float | bool":
        """A scalar field of the operator's builtin options."""
        return op.options.scalar(field, fmt, default) if op.options is not None else default

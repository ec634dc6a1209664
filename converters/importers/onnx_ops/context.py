"""The state one ONNX import builds up, and the layout helpers every op handler shares.

Layout rule: an IR activation that stands for a 4-D ONNX tensor is NHWC (the ONNX tensor is
NCHW); every other rank keeps the ONNX layout. Handlers read ONNX shapes with :meth:`src_shape`,
map ONNX axes with :meth:`ir_axis`, and move between layouts with :meth:`to_src` /
:meth:`from_src` / :meth:`reshape`, which insert TRANSPOSE or RESHAPE ops as needed
(:func:`converters.ir.simplify` later cancels back-to-back transposes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from converters.importers.tensor_table import TensorTable
from converters.ir import (
    INDEX_KINDS, INDEX_SELECT_KINDS, INT_ARITH_KINDS, INT_GATHER_KINDS, TO_NCHW, TO_NHWC, Op, Tensor,
    perm_keeps_order, produces_integers,
)
from edge_runtime.errors import UnsupportedModelError

#: ONNX (NCHW) axis -> IR (NHWC) axis for 4-D tensors
AXIS4 = {0: 0, 1: 3, 2: 1, 3: 2}


def nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The IR shape of an ONNX tensor of ``shape``."""
    if len(shape) == 4:
        n, c, h, w = shape
        return (n, h, w, c)
    return tuple(shape)


#: IR ops whose output shape is the broadcast of their inputs' shapes.
ELEMENTWISE_BINARY = frozenset({"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW",
                                "FLOOR_DIV", "FLOOR_MOD", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER",
                                "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "SELECT_V2", "PRELU"})


def _one_element(ctx: "ImportContext", inputs: list[str]) -> bool:
    """Every input has one element and one of them is 1-D (a scalar broadcast with a (1,) constant)."""
    shapes = [ctx.tensors[i].shape for i in inputs if i in ctx.tensors]
    return (len(shapes) == len(inputs) and all(int(np.prod(s, dtype=np.int64)) == 1 for s in shapes)
            and any(len(s) == 1 for s in shapes))


def const_to_ir(arr: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand broadcast against an ONNX tensor of ``rank``, in IR layout."""
    arr = np.asarray(arr)
    if arr.ndim > rank:
        arr = arr.reshape(arr.shape[arr.ndim - rank:])
    if arr.size == 1:
        return arr.reshape((1,))
    full = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
    if rank == 4:
        full = full.transpose(TO_NHWC)
    # drop leading size-1 axes that broadcasting restores
    while full.ndim > 1 and full.shape[0] == 1:
        full = full[0]
    return np.ascontiguousarray(full)


@dataclass
class Pending:
    """A value a pattern handler deferred: ``desc`` names its node, ``tag`` the pattern, ``src`` the
    pattern's input; ``materialize`` (when set) emits the value's ops on first ordinary use."""

    desc: str
    tag: str
    src: str
    materialize: Optional[Callable[[], None]] = None
    data: dict = field(default_factory=dict)


class ImportContext(TensorTable):
    """Tensors, ops and constants of the graph being imported, with helpers for handlers."""

    def __init__(self, path: str, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
                 dispatch: Callable[["ImportContext", Any], None]) -> None:
        super().__init__()
        self.path = path
        self.consts = consts
        self.shapes = shapes
        self.dispatch = dispatch
        self.ops: list[Op] = []
        self.alias: dict[str, str] = {}
        #: values a pattern handler has deferred (Erf inside Gelu, HardSigmoid before a HardSwish Mul):
        #: name -> :class:`Pending`
        self.pending: dict[str, Pending] = {}
        #: how many ONNX nodes read each ONNX tensor (graph outputs count once)
        self.uses: dict[str, int] = {}
        self.opset = 13
        #: IR names of the integer model inputs (token ids, bytes, indices)
        self.int_inputs: set[str] = set()
        #: :meth:`is_int` of the IR tensors produced so far (an IR tensor's producer never changes)
        self._int_known: dict[str, bool] = {}

    # -- messages ---------------------------------------------------------
    def err(self, node: Any, msg: str) -> UnsupportedModelError:
        """A one-line refusal naming the node and its op."""
        return UnsupportedModelError(
            f"{self.path}: ONNX node '{node.name or node.output[0]}' ({node.op_type}): {msg}")

    def unsupported(self, node: Any, what_to_do: str) -> UnsupportedModelError:
        """The one-line refusal for an op type that cannot be converted (in this form)."""
        return UnsupportedModelError(
            f"{self.path}: unsupported ONNX op '{node.op_type}' in node '{node.name or node.output[0]}'; {what_to_do}")

    # -- names and tensors --------------------------------------------------
    def name(self, n: str) -> str:
        """The IR name of ONNX tensor ``n`` (after aliasing)."""
        while n in self.alias:
            n = self.alias[n]
        return n

    def is_const(self, n: str) -> bool:
        """True when ONNX tensor ``n`` is a known constant."""
        return self.name(n) in self.consts

    def const(self, node: Any, n: str) -> np.ndarray:
        """The value of constant input ``n``; refuses when it is computed at run time."""
        key = self.name(n)
        if key not in self.consts:
            raise self.err(node, f"input '{n}' must be a constant (an initializer or folded value)")
        return self.consts[key]

    def src_shape(self, node: Any, n: str) -> tuple[int, ...]:
        """The ONNX shape of tensor ``n`` (static; refuses otherwise)."""
        key = self.name(n)
        if key in self.consts:
            return tuple(np.asarray(self.consts[key]).shape)
        if n in self.shapes:
            return self.shapes[n]
        if key in self.shapes:
            return self.shapes[key]
        raise self.err(node, f"the shape of '{n}' is unknown; give static input shapes with --input-shape")

    def act(self, node: Any, n: str) -> str:
        """The IR activation for ONNX input ``n`` (refuses constants and unclaimed pattern parts)."""
        key = self.name(n)
        if key in self.pending:
            pend = self.pending.pop(key)
            if pend.materialize is None:
                raise self.err(node, f"'{n}' comes from {pend.desc}, which is only supported inside its usual "
                                     f"pattern ({pend.tag})")
            pend.materialize()
        if key not in self.tensors:
            if key in self.consts:
                raise self.err(node, f"input '{n}' is a constant where an activation is expected")
            raise self.err(node, f"input '{n}' is not produced by any supported node")
        return key

    def is_int(self, n: str) -> bool:
        """True when ONNX tensor ``n`` holds int32 index values: an integer input, or what reshapes, slices,
        constant-index gathers and concatenations with integer constants select from one
        (:func:`converters.ir.selects_integers`), or an ARG_MAX/ARG_MIN result, TopK's indices, and integer
        arithmetic on those (:func:`converters.ir.computes_integers`) and gathers of them by run-time positions
        (:func:`converters.ir.gathers_integers`)."""
        key = self.name(n)
        if key in self.int_inputs:
            return True
        if key in self._int_known:
            return self._int_known[key]
        op = self.producer(key)
        if op is None:
            return False  # not produced yet: not remembered
        if op.kind in INDEX_KINDS or op.kind not in INDEX_SELECT_KINDS + INT_ARITH_KINDS + INT_GATHER_KINDS:
            found = op.kind in INDEX_KINDS or (op.kind == "TOPK_V2" and key == op.outputs[1])
        else:
            ints = {i for i in op.inputs if i in self.tensors and not self.tensors[i].is_constant and self.is_int(i)}
            found = produces_integers(self, op, ints)
        self._int_known[key] = found
        return found

    def ir_shape(self, n: str) -> tuple[int, ...]:
        """The IR shape of activation ``n``."""
        return self.tensors[n].shape

    def output(self, node: Any, n: str, ir_shape: Optional[tuple[int, ...]] = None) -> str:
        """Register ONNX output ``n`` as an IR activation (IR shape from ONNX shape inference)."""
        shape = ir_shape if ir_shape is not None else nhwc(self.src_shape(node, n))
        self.tensors[n] = Tensor(n, tuple(int(d) for d in shape))
        return n

    def emit(self, kind: str, inputs: list[str], output: str, attrs: Optional[dict] = None,
             node: Any = None, shape: Optional[tuple[int, ...]] = None) -> str:
        """Append an op writing ``output`` (registered from ONNX shapes unless it exists or ``shape`` is given)."""
        if output not in self.tensors or shape is not None:
            if shape is None:
                self.output(node, output)
                if kind in ELEMENTWISE_BINARY and self.tensors[output].shape == () and _one_element(self, inputs):
                    # a 0-d ONNX result of a scalar and a one-element constant (IR constants are at least 1-D):
                    # the written op computes shape (1,), so the IR says so
                    self.tensors[output] = Tensor(output, (1,))
            else:
                self.tensors[output] = Tensor(output, tuple(int(d) for d in shape))
        label = (node.name or node.output[0]) if node is not None else output
        self.ops.append(Op(kind, list(inputs), [output], dict(attrs or {}), name=label))
        return output

    def producer(self, n: str) -> Optional[Op]:
        """The op writing IR tensor ``n``."""
        return next((op for op in reversed(self.ops) if n in op.outputs), None)

    def consumers(self, n: str) -> int:
        """How many ops read IR tensor ``n`` so far."""
        return sum(n in op.inputs for op in self.ops)

    # -- layout ---------------------------------------------------------
    @staticmethod
    def ir_axis(rank: int, axis: int) -> int:
        """ONNX axis -> IR axis for a tensor of ``rank``."""
        axis = int(axis) % rank if rank else 0
        return AXIS4[axis] if rank == 4 else axis

    def transpose(self, x: str, perm: tuple[int, ...], out: Optional[str] = None, node: Any = None) -> str:
        """TRANSPOSE ``x`` by ``perm`` (nothing when ``perm`` is the identity)."""
        perm = tuple(int(p) for p in perm)
        shape = self.ir_shape(x)
        new_shape = tuple(shape[p] for p in perm)
        if perm == tuple(range(len(perm))):
            if out is None:
                return x
            return self.emit("RESHAPE", [x], out, {}, node, shape=new_shape)
        dst = out or self.tmp(f"{x}/transposed", new_shape)
        kind = "RESHAPE" if perm_keeps_order(shape, perm) else "TRANSPOSE"
        return self.emit(kind, [x], dst, {"perm": perm} if kind == "TRANSPOSE" else {}, node, shape=new_shape)

    def to_src(self, x: str) -> str:
        """``x`` in ONNX layout (a TRANSPOSE to NCHW for 4-D activations)."""
        return self.transpose(x, TO_NCHW) if len(self.ir_shape(x)) == 4 else x

    def from_src(self, x_src: str, out: str, node: Any = None) -> str:
        """Write ONNX-layout ``x_src`` into IR tensor ``out`` (TRANSPOSE to NHWC for 4-D)."""
        if len(self.ir_shape(x_src)) == 4:
            return self.transpose(x_src, TO_NHWC, out, node)
        return self.emit("RESHAPE", [x_src], out, {}, node, shape=self.ir_shape(x_src))

    def reshape(self, x: str, src_shape: tuple[int, ...], out: Optional[str] = None, node: Any = None) -> str:
        """Reshape activation ``x`` to ONNX shape ``src_shape`` (element order as in ONNX)."""
        src_shape = tuple(int(d) for d in src_shape)
        xs = self.to_src(x)
        if len(src_shape) == 4:
            mid = self.tmp(f"{out or x}/src", src_shape)
            self.emit("RESHAPE", [xs], mid, {}, node, shape=src_shape)
            if out is None:
                return self.transpose(mid, TO_NHWC)
            return self.transpose(mid, TO_NHWC, out, node)
        dst = out or self.tmp(f"{x}/reshaped", src_shape)
        return self.emit("RESHAPE", [xs], dst, {}, node, shape=src_shape)

    def broadcast_operand(self, node: Any, n: str, rank: int) -> str:
        """Operand ``n`` of a broadcasting op whose output has ONNX ``rank``, in IR form."""
        if self.is_const(n):
            val = np.asarray(self.const(node, n))
            if val.dtype.kind != "f":
                val = val.astype(np.float32)
            return self.add_const(f"{n}/ir", const_to_ir(val, rank))
        return self.lift(node, self.act(node, n), self.src_shape(node, n), rank)

    def lift(self, node: Any, x: str, shape: tuple[int, ...], rank: int) -> str:
        """Activation ``x`` (ONNX shape ``shape``) reshaped to ``rank`` dimensions for broadcasting."""
        if len(shape) < rank:
            return self.reshape(x, (1,) * (rank - len(shape)) + tuple(shape), node=node)
        return x

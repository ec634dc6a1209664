"""Shared machinery of the binary family: broadcasting, chunking, int8 pair tables, type checks.

:class:`ElementwiseKernel` is the base of every op here. Its inputs are broadcast
(numpy/TFLite rules, aligned on the last axis) to the output shape; the op's
``compute`` runs on chunks of the output, with int64/bool work buffers from the
host workspace sized to ``workspace_limit``. Ops whose int8 result depends on the
pair of input values only (DIV, SQUARED_DIFFERENCE, comparisons, PRELU) run TFLM's
integer arithmetic once at prepare time on all 65,536 pairs (:func:`pair_table`)
and look results up at run time (:func:`pair_lookup`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.fixedpoint import quantize_multiplier
from edge_runtime.backends.micro.fixedpoint_binary import mbqm_array
from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
    activation_name,
    qparams,
)
from edge_runtime.errors import InputError
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel

I64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Integer range of the quantized types.
QRANGE = {"INT8": (-128, 127), "INT16": (-32768, 32767)}


def chunk_slices(shape: tuple[int, ...], max_elems: int) -> list[tuple[Any, ...]]:
    """Index tuples that cut ``shape`` into contiguous blocks of at most ``max_elems`` elements
    (whole trailing axes, a range of one axis, single indices before it)."""
    if not shape:
        return [()]
    k = len(shape)
    while k > 0 and int(np.prod(shape[k - 1:], dtype=np.int64)) <= max_elems:
        k -= 1
    if k == 0:
        return [tuple(slice(None) for _ in shape)]
    inner = int(np.prod(shape[k:], dtype=np.int64))
    rows = max(1, max_elems // max(inner, 1))
    steps = []
    for prefix in np.ndindex(*shape[:k - 1]):
        for s in range(0, shape[k - 1], rows):
            steps.append(prefix + (slice(s, min(s + rows, shape[k - 1])),))
    return steps


def block_size(shape: tuple[int, ...], index: tuple[Any, ...]) -> int:
    """Number of elements of ``shape`` selected by an index tuple of :func:`chunk_slices`."""
    n = 1
    for dim, ix in zip(shape, index + (slice(None),) * (len(shape) - len(index))):
        if isinstance(ix, slice):
            n *= len(range(*ix.indices(dim)))
    return n


def int8_grid() -> tuple[np.ndarray, np.ndarray]:
    """All 65,536 (a, b) int8 pairs as int64 arrays, ordered by ``(a & 0xFF) << 8 | (b & 0xFF)``."""
    grid = np.arange(1 << 16, dtype=np.int64)
    a = (grid >> 8) & 0xFF
    b = grid & 0xFF
    return np.where(a > 127, a - 256, a), np.where(b > 127, b - 256, b)


_TABLES: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_TABLES_KEPT = 32


def pair_table(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], dtype: Any,
               key: Optional[tuple] = None) -> np.ndarray:
    """The results of ``fn`` (vectorised on int64 arrays) for every int8 pair, as a read-only table.

    ``key`` (the op and every constant ``fn`` depends on) lets ops with the same parameters share
    one table (the last few are kept)."""
    if key is not None and key in _TABLES:
        _TABLES.move_to_end(key)
        return _TABLES[key]
    a, b = int8_grid()
    table = np.ascontiguousarray(fn(a, b)).astype(dtype)
    table.flags.writeable = False
    if key is not None:
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_KEPT:
            _TABLES.popitem(last=False)
    return table


def pair_lookup(table: np.ndarray, a_u8: np.ndarray, b_u8: np.ndarray, idx: np.ndarray, y: np.ndarray) -> None:
    """``y = table[(a << 8) | b]`` for the bytes of two int8 inputs (uint8 views); ``idx``: int64 buffer."""
    np.copyto(idx, a_u8, casting="unsafe")
    np.left_shift(idx, 8, out=idx)
    np.bitwise_or(idx, b_u8, out=idx)
    table.take(idx, out=y, mode="clip")


def refuse_zero_divisor(kind: str, name: str, divisor: np.ndarray) -> None:
    """One clear line when an int32 divisor holds a 0 (LiteRT fails on it too); no temporary array."""
    if not divisor.all():
        raise InputError(f"{kind} op '{name}': an int32 divisor is 0 (LiteRT fails too)")


def int_activation_range(ctx: OpContext, code: int) -> tuple[int, int]:
    """``CalculateActivationRange`` for int32 outputs."""
    name = activation_name(ctx, code)
    return {"NONE": (INT32_MIN, INT32_MAX), "RELU": (0, INT32_MAX), "RELU6": (0, 6),
            "RELU_N1_TO_1": (-1, 1)}[name]


def require_quantized(ctx: OpContext, t: TensorInfo, what: str) -> tuple[float, int]:
    """(scale as float32 -> float, zero point) of a per-tensor quantized tensor, else refuse."""
    q = t.quantization
    if q is None or q.scale.size == 0:
        raise ctx.fail(f"the {what} tensor '{t.name}' ({t.type_name}) has no quantization parameters")
    if q.scale.size > 1:
        raise ctx.fail(f"the {what} tensor '{t.name}' is quantized per channel; this op needs one scale")
    s, z = qparams(t)
    s = float(np.float32(s))
    if not s > 0 or not np.isfinite(s):
        raise ctx.fail(f"the {what} tensor '{t.name}' has scale {s}")
    return s, z


class ElementwiseKernel(Kernel):
    """Base of the binary family: inputs broadcast to the output, ``compute`` over output chunks.

    Subclasses set ``n_inputs`` (``None``: any number >= 2) and ``max_broadcast_rank``
    (the rank up to which TFLM's broadcasting gives correct results: 6, checked against
    tflite-micro; shapes that need broadcasting beyond it are refused), and implement
    ``prepare`` (type checks, constants; may fill ``self.temps``, name -> dtype of
    per-element work buffers, and ``self.byte_inputs``, positions of int8 inputs to view
    as uint8) and ``compute(ins, y, t)`` on one chunk.
    """

    n_inputs: Optional[int] = 2
    min_inputs: int = 2
    max_broadcast_rank: int = 6
    #: Input positions whose buffer the output may take over when the input dies here: the op
    #: reads every element of such an input before writing the same element of the output.
    inplace_inputs: tuple[int, ...] = (0, 1)
    inplace_ok = True

    @classmethod
    def op_memory(cls, model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
        """In place over the first input of the output's shape and type that ``inplace_inputs`` allows
        (and that no other position reads); no arena scratch."""
        if len(op.outputs) != 1 or op.outputs[0] < 0:
            return OpMemory()
        out = subgraph.tensors[op.outputs[0]]
        for pos in cls.inplace_inputs:
            if pos >= len(op.inputs) or op.inputs[pos] < 0:
                continue
            t = subgraph.tensors[op.inputs[pos]]
            others = [i for i, k in enumerate(op.inputs) if k == op.inputs[pos] and i not in cls.inplace_inputs]
            if (tuple(t.shape) == tuple(out.shape) and t.type_code == out.type_code and not t.is_constant
                    and not others):
                return OpMemory(inplace_input=pos)
        return OpMemory()

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        n = self.n_inputs if self.n_inputs is not None else len(ctx.op.inputs)
        if n < self.min_inputs or len(ctx.op.inputs) != n:
            raise ctx.fail(f"expected {n if self.n_inputs else f'at least {self.min_inputs}'} inputs, "
                           f"got {len(ctx.op.inputs)}")
        if len(ctx.op.outputs) != 1:
            raise ctx.fail(f"expected one output, got {len(ctx.op.outputs)}")
        self.ins: list[TensorInfo] = []
        for i in range(n):
            t = ctx.input(i)
            if t is None:
                raise ctx.fail(f"input {i} is missing")
            self.ins.append(t)
        self.out = ctx.output(0)
        self.shape = self._output_shape()
        self.temps: dict[str, np.dtype] = {}
        self.byte_inputs: tuple[int, ...] = ()
        self.prepare()
        self._plan_chunks()

    # -- prepare-time helpers ------------------------------------------------------------------------------

    def _output_shape(self) -> tuple[int, ...]:
        ctx, shapes = self.ctx, [tuple(t.shape) for t in self.ins]
        try:
            shape = tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            raise ctx.fail(f"input shapes {', '.join(map(str, shapes))} do not broadcast") from None
        out = tuple(self.out.shape)
        if shape != out:
            if int(np.prod(shape, dtype=np.int64)) == 1 and int(np.prod(out, dtype=np.int64)) == 1:
                return out  # single values: TFLM keeps the output's own shape
            raise ctx.fail(f"output shape {out} is not the broadcast shape {shape} of the inputs")
        same = all(s == shapes[0] for s in shapes)
        if not same and len(shape) > self.max_broadcast_rank:
            raise ctx.fail(f"broadcasting at rank {len(shape)} (TFLM's kernel handles up to rank "
                           f"{self.max_broadcast_rank})")
        return shape

    def require_types(self, allowed: tuple[str, ...], out_types: Optional[tuple[str, ...]] = None,
                      inputs: Optional[list[int]] = None) -> str:
        """Check that the inputs (``inputs``, default all) share one type among ``allowed`` and the output
        has the same type (or one of ``out_types``); return the input type."""
        pos = inputs if inputs is not None else list(range(len(self.ins)))
        first = self.ins[pos[0]]
        if first.type_name not in allowed:
            raise self.ctx.fail(f"input tensor '{first.name}' has type {first.type_name}; "
                                f"supported: {', '.join(allowed)}")
        for i in pos[1:]:
            if self.ins[i].type_name != first.type_name:
                raise self.ctx.fail(f"input {i} has type {self.ins[i].type_name}, input {pos[0]} "
                                    f"{first.type_name}; they must match")
        want = out_types if out_types is not None else (first.type_name,)
        if self.out.type_name not in want:
            raise self.ctx.fail(f"output tensor '{self.out.name}' has type {self.out.type_name}; "
                                f"expected {' or '.join(want)}")
        return first.type_name

    def prepare(self) -> None:
        """Op-specific checks and constants (TFLM's Prepare)."""
        raise NotImplementedError

    def _plan_chunks(self) -> None:
        per = sum(np.dtype(dt).itemsize for dt in self.temps.values())
        total = int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1
        max_elems = total if per == 0 else max(1, min(total, self.ctx.workspace_limit // per))
        self.slices = chunk_slices(self.shape, max(1, max_elems))
        size = max([block_size(self.shape, s) for s in self.slices] + [1])
        self.workspace = {name: ((size,), np.dtype(dt)) for name, dt in self.temps.items()}

    # -- binding and running -------------------------------------------------------------------------------

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Broadcast views of the inputs and chunk views of everything."""
        y = outputs[0]
        for i, x in enumerate(inputs):
            if x is None or not np.shares_memory(x, y):
                continue
            same = x.__array_interface__["data"][0] == y.__array_interface__["data"][0] and x.nbytes == y.nbytes
            if not (same and i in self.inplace_inputs):
                raise self.ctx.fail(f"the arena plan overlaps input {i} and the output in a way this op cannot run")
        views = []
        for i, (x, t) in enumerate(zip(inputs, self.ins)):
            x = x.reshape(t.shape) if x.shape != tuple(t.shape) else x
            if i in self.byte_inputs:
                x = x.view(np.uint8)
            if tuple(self.shape) != tuple(t.shape) and x.size == 1:
                x = x.reshape(())
            views.append(np.broadcast_to(x, self.shape))
        y = y.reshape(self.shape)
        self.steps = []
        for s in self.slices:
            s = (*s, Ellipsis)  # a view also of a 0-d output (y[()] would be a numpy scalar, not writable)
            yv = y[s]
            shape = yv.shape
            n = yv.size
            tv = {name: ws[name][:n].reshape(shape) for name in self.temps}
            self.steps.append((tuple(v[s] for v in views), yv, tv))

    def run(self) -> None:
        """Compute the op chunk by chunk."""
        compute = self.compute
        for ins, y, t in self.steps:
            compute(ins, y, t)

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """The op on one chunk: input views ``ins``, output view ``y``, work buffers ``t``."""
        raise NotImplementedError


class PairTableKernel(ElementwiseKernel):
    """Ops whose int8 path is a 65,536-entry table of (input 0, input 1) pairs."""

    table: Optional[np.ndarray] = None

    def use_table(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], dtype: Any,
                  key: Optional[tuple] = None) -> None:
        """Build (or reuse, see :func:`pair_table`) the table from ``fn``; ``compute_table`` then uses it."""
        self.table = pair_table(fn, dtype, None if key is None else (type(self).__name__, *key))
        self.temps = {"idx": I64}
        self.byte_inputs = (0, 1)

    @property
    def cache_bytes(self) -> int:
        """Bytes of the int8 result table."""
        return int(self.table.nbytes) if self.table is not None else 0

    def compute_table(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk through the pair table."""
        pair_lookup(self.table, ins[0], ins[1], t["idx"], y)


def scaled_input_fn(ctx: OpContext, t: TensorInfo, left_shift: int, what: str) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> MultiplyByQuantizedMultiplierSmallerThanOneExp((x - zp) << left_shift, scale)``: how the
    comparisons rescale a quantized input (the scale itself is the multiplier, which must be below 1)."""
    scale, zp = require_quantized(ctx, t, what)
    if scale >= 1.0:
        raise ctx.fail(f"the {what} tensor '{t.name}' has scale {scale}; quantized comparisons need scales below 1")
    m, s = quantize_multiplier(scale)

    def fn(x: np.ndarray) -> np.ndarray:
        return mbqm_array((np.asarray(x, np.int64) - zp) << left_shift, m, s)

    return fn


class ComparisonKernel(PairTableKernel):
    """EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS, LESS_EQUAL: bool output.

    int8 inputs are compared after rescaling each by its own scale (:func:`scaled_input_fn`,
    left shift 8); other types are compared as they are. TFLM also registers an int16 path
    for GREATER, but its results do not depend on the inputs in the tflite-micro build we
    check against (all True for inputs -5..4 against 1000), so micro refuses int16.
    """

    max_version = 4
    ufunc: Any = None
    types: tuple[str, ...] = ("FLOAT32", "INT32", "INT64", "INT8")

    def prepare(self) -> None:
        """Types; the int8 table."""
        kind = self.require_types(self.types, ("BOOL",))
        if kind == "INT8":
            fa = scaled_input_fn(self.ctx, self.ins[0], 8, "first input")
            fb = scaled_input_fn(self.ctx, self.ins[1], 8, "second input")
            ufunc = type(self).ufunc
            key = (*require_quantized(self.ctx, self.ins[0], "first input"),
                   *require_quantized(self.ctx, self.ins[1], "second input"))
            self.use_table(lambda a, b: ufunc(fa(a), fb(b)), np.bool_, key)

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """Compare one chunk."""
        if self.table is not None:
            self.compute_table(ins, y, t)
        else:
            type(self).ufunc(ins[0], ins[1], out=y)


class MinMaxKernel(ElementwiseKernel):
    """MAXIMUM / MINIMUM: raw values compared, no rescaling (as TFLM).

    TFLM picks ``a > b ? a : b`` (``a < b ? a : b``): a NaN in the second input wins, a NaN in the
    first loses. On floats that is ``ufunc(nan_ignoring(a, b), b)``: the NaN-ignoring pick
    (``fmax``/``fmin``) drops a NaN of ``a``, and the NaN-propagating one then takes ``b``'s NaN.
    """

    max_version = 4
    ufunc: Any = None
    nan_ignoring: Any = None

    def prepare(self) -> None:
        """Types: float32, int8, int16, int32, int64."""
        self.floats = self.require_types(("FLOAT32", "INT8", "INT16", "INT32", "INT64")) == "FLOAT32"

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        if self.floats:
            type(self).nan_ignoring(ins[0], ins[1], out=y)
            type(self).ufunc(y, ins[1], out=y)
        else:
            type(self).ufunc(ins[0], ins[1], out=y)


class LogicalKernel(ElementwiseKernel):
    """LOGICAL_AND / LOGICAL_OR on bool tensors."""

    ufunc: Any = None

    def prepare(self) -> None:
        """Types: bool only."""
        self.require_types(("BOOL",))

    def compute(self, ins: tuple[np.ndarray, ...], y: np.ndarray, t: dict[str, np.ndarray]) -> None:
        """One chunk."""
        type(self).ufunc(ins[0], ins[1], out=y)

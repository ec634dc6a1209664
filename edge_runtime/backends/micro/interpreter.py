"""The micro interpreter: prepare once (kernels, arena plan, one arena, views), then invoke.

Prepare:
0. weight decoders are folded (:mod:`edge_runtime.formats.tflite_fold`): DENSIFY and float16
   DEQUANTIZE of constants become float32/dense constants, as LiteRT computes them at prepare;
1. every op gets its kernel from the registry; an unknown op or an op version
   above what the kernel handles raises :class:`UnsupportedModelError` naming it;
2. the arena is planned by :func:`edge_runtime.arena.plan.plan_arena` with this
   backend's ``op_memory`` (or a plan given by the caller);
3. ONE numpy buffer of ``arena_bytes`` is allocated (16-byte aligned) and every
   activation becomes a view into it at its planned offset; constant tensors are
   read-only views over the memory-mapped model; each op's scratch is a view too;
4. one host workspace (the largest any kernel asks for, see
   :mod:`edge_runtime.backends.micro.kernels.base`) is allocated and shared;
5. each kernel binds its views, so ``invoke`` only runs numpy calls with ``out=``;
   at bind time kernels also widen their int8 weights once into cached float arrays
   and tile their requantization constants (``cache_bytes``: a fixed cost, reported);
   FULLY_CONNECTED and 16x8 CONV_2D ops that read one weight buffer share one widened
   copy (:mod:`edge_runtime.backends.micro.weight_cache`: an unrolled LSTM's steps);
6. ``invoke`` is a flat tuple of the kernels' bound ``run`` methods (RESHAPE and
   SQUEEZE that alias their input are left out: they have nothing to do).

Invoke copies the inputs into their arena views, runs the kernels in order, and
the outputs are read from their arena views.

Multi-subgraph models: every subgraph reachable from subgraph 0 through IF,
WHILE and CALL_ONCE is prepared the same way, in the same arena (one plan over
TFLM's global timeline, see :mod:`edge_runtime.arena.subgraphs`); control kernels
invoke the other subgraphs' prepared runs. Variable tensors and resource
variables live in a persistent buffer (:mod:`edge_runtime.backends.micro.state`),
kept across invocations and restored by :meth:`Interpreter.reset`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np

from edge_runtime.arena.persistent import persistent_layout
from edge_runtime.arena.subgraphs import reachable_subgraphs
from edge_runtime.errors import EdgeRuntimeError, UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import check_structure
from edge_runtime.formats.tflite_fold import file_op_index, fold_weight_decoders
from edge_runtime.backends.micro.kernels import REGISTRY, Kernel, OpContext
from edge_runtime.backends.micro.kernels.base import DEFAULT_WORKSPACE_LIMIT
from edge_runtime.backends.micro.memory_traits import op_memory_with_kernels
from edge_runtime.backends.micro.state import State
from edge_runtime.backends.micro.weight_cache import WeightCache

ALIGN = 16
#: Ops whose weights (input 1) may be stored sparse (TFLite SparsityParameters); see kernels/sparse.py.
SPARSE_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D")


def _aligned_buffer(nbytes: int, align: int = 64) -> np.ndarray:
    """A zeroed uint8 buffer of ``nbytes`` whose first byte is ``align``-aligned."""
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.__array_interface__["data"][0]) % align
    return raw[start:start + nbytes]


def check_supported(model: TFLiteModel, subgraph: int = 0) -> None:
    """Raise UnsupportedModelError for the first op (or op version) the micro kernels do not handle.

    Weight decoders (DENSIFY, float16 DEQUANTIZE of constants) are folded first, as at prepare."""
    model = fold_weight_decoders(model)
    sg = model.subgraphs[subgraph]
    for op in sg.operators:
        cls = REGISTRY.get(op.name)
        at = file_op_index(model, subgraph, op.index)  # as numbered in the file, before folding
        where = f"op {at}" if subgraph == 0 else f"subgraph {subgraph} op {at}"
        if cls is None:
            raise UnsupportedModelError(
                f"{model.path}: {where} is {op.name} (version {op.opcode.version}), which the micro backend "
                f"does not implement; supported ops: {', '.join(sorted(REGISTRY))}")
        if op.opcode.version > cls.max_version:
            raise UnsupportedModelError(
                f"{model.path}: {where} is {op.name} version {op.opcode.version}; the micro backend handles "
                f"{op.name} up to version {cls.max_version}")
    sparse_weights = {op.inputs[1] for op in sg.operators
                      if op.name in SPARSE_WEIGHT_OPS and len(op.inputs) > 1}
    read = {i for op in sg.operators for i in op.inputs if i >= 0}  # a folded DENSIFY's sparse input is unread
    for t in sg.tensors:
        if t.sparse and t.index in read and t.index not in sparse_weights:
            raise UnsupportedModelError(f"{model.path}: tensor '{t.name}' is sparse; the micro backend supports "
                                        f"sparse storage only for the weights of {', '.join(SPARSE_WEIGHT_OPS)}")


class SubgraphRun:
    """One prepared subgraph: its kernels' bound ``run`` methods and its input/output views."""

    def __init__(self, index: int, kernels: list[Kernel]) -> None:
        self.index = index
        self.kernels = kernels
        self.runs: tuple = ()
        self.input_views: list[np.ndarray] = []
        self.output_views: list[np.ndarray] = []

    def invoke(self) -> None:
        """Run every op of the subgraph once."""
        for run in self.runs:
            run()


class Interpreter:
    """A prepared model: one arena, persistent state, bound kernels. Not thread-safe (one arena).

    Every subgraph the entry subgraph runs (through IF, WHILE, CALL_ONCE) is prepared:
    its kernels are built and bound into the same arena (the plan covers all of them,
    as TFLM's does); control kernels invoke the other subgraphs' runs.
    """

    def __init__(self, model: TFLiteModel, plan: Any = None, *, subgraph: int = 0, in_place: bool = True,
                 planner: str = "best", workspace_limit: int = DEFAULT_WORKSPACE_LIMIT) -> None:
        if subgraph != 0:
            raise UnsupportedModelError(f"{model.path}: the micro backend runs a model from its entry subgraph 0")
        check_structure(model)  # a malformed model: ModelFormatError naming the tensor/op, before any kernel
        # DENSIFY / float16 DEQUANTIZE of weights -> constants. A plan given by the caller must be one of the
        # folded model (plan_arena cannot plan the unfolded one: its convolutions read no constant weights).
        model = fold_weight_decoders(model)
        self.model = model
        self.sg = sg = model.subgraphs[subgraph]
        self.order = reachable_subgraphs(model, subgraph)
        for index in self.order:
            check_supported(model, index)
        self.state = State(model, persistent_layout(model))
        for i in sg.inputs:
            if sg.tensors[i].data is not None:
                raise UnsupportedModelError(f"{model.path}: model input '{sg.tensors[i].name}' is a constant tensor "
                                            "(it has data in the file); an input must be an activation")
        self.runs: dict[int, SubgraphRun] = {}
        for index in self.order:
            g = model.subgraphs[index]
            self.runs[index] = SubgraphRun(index, [_prepared(model, g, op, workspace_limit) for op in g.operators])
        self.kernels: list[Kernel] = self.runs[subgraph].kernels
        if plan is None:
            from edge_runtime.arena.plan import plan_arena

            built = {(index, op.index): k for index in self.order
                     for op, k in zip(model.subgraphs[index].operators, self.runs[index].kernels)}
            plan = plan_arena(model, subgraph, in_place=in_place, planner=planner,
                              op_memory=op_memory_with_kernels(built, workspace_limit))  # not built again
        self.plan = plan
        _check_size(model, "arena", int(plan.arena_bytes))
        self.arena = _aligned_buffer(int(plan.arena_bytes))
        #: every tensor view by (subgraph, tensor): arena views and persistent variable views
        self.all_views: dict[tuple[int, int], np.ndarray] = {}
        for index in self.order:
            for t in model.subgraphs[index].tensors:
                if t.is_variable:
                    if t.nbytes > 0:
                        self.all_views[(index, t.index)] = self.state.variable(index, t.index)
                    continue
                if t.data is not None or not _plan_call(plan.has_tensor, t.index, index):
                    continue
                if t.dtype is None:
                    raise UnsupportedModelError(f"{model.path}: subgraph {index} tensor {t.index} ('{t.name}') is an "
                                                f"activation of type {t.type_name}, which the micro backend cannot hold")
                off = int(_plan_call(plan.tensor_offset, t.index, index))
                if off % ALIGN or off + t.nbytes > self.arena.size:
                    raise UnsupportedModelError(f"the arena plan puts tensor '{t.name}' at {off} (+{t.nbytes}), "
                                                f"outside the {self.arena.size}-byte arena or unaligned")
                self.all_views[(index, t.index)] = self.arena[off:off + t.nbytes].view(t.dtype).reshape(t.shape)
        #: the entry subgraph's arena views by tensor index
        self.views: dict[int, np.ndarray] = {t: v for (g, t), v in self.all_views.items()
                                             if g == subgraph and not sg.tensors[t].is_variable}
        for index in self.order:
            g, run = model.subgraphs[index], self.runs[index]
            run.input_views = [self._tensor(i, index) for i in g.inputs]
            run.output_views = [self._tensor(i, index) for i in g.outputs]
        # host workspace: the largest request of any kernel, each array 64-byte aligned
        all_kernels = [k for index in self.order for k in self.runs[index].kernels]
        need = 0
        for k in all_kernels:
            need = max(need, sum(_round64(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize)
                                 for shape, dt in k.workspace.values()))
        _check_size(model, "host workspace", need)
        self.workspace = _aligned_buffer(max(need, 64))
        #: widened constant weights shared by the kernels that read one buffer (see weight_cache.py)
        self.weight_cache = WeightCache()
        for k in all_kernels:
            attach = getattr(k, "attach", None)
            if attach is not None:
                attach(self)
        for index in self.order:
            g, run = model.subgraphs[index], self.runs[index]
            for k, op in zip(run.kernels, g.operators):
                ws: dict[str, np.ndarray] = {}
                pos = 0
                for name, (shape, dt) in k.workspace.items():
                    nb = int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
                    ws[name] = self.workspace[pos:pos + nb].view(dt).reshape(shape)
                    pos += _round64(nb)
                sc = _plan_call(plan.scratch, op.index, index)
                scratch = self.arena[sc[0]:sc[0] + sc[1]] if sc else None
                with _op_errors(model, op):
                    ins = [self._tensor(i, index) for i in op.inputs]
                    outs = [self._tensor(i, index) for i in op.outputs]
                    self._check_overlap(k, op, ins, outs, scratch)
                    k.bind(ins, outs, scratch, ws)
            run.runs = tuple(k.run for k in run.kernels if not getattr(k, "aliased", False))
        self._runs = self.runs[subgraph].runs
        # float kernels overflow to inf and give NaN as C does; numpy would also print a RuntimeWarning
        self._float = any(t.type_name in FLOAT_TYPES for index in self.order for t in model.subgraphs[index].tensors)
        self.input_views = self.runs[subgraph].input_views
        self.output_views = self.runs[subgraph].output_views

    def _check_overlap(self, k: Kernel, op, ins, outs, scratch) -> None:  # type: ignore[no-untyped-def]
        """Refuse a plan that overlaps an op's output with its input or scratch where the kernel cannot cope."""
        for o in outs:
            if o is None or o.size == 0:
                continue
            if scratch is not None and np.shares_memory(o, scratch):
                raise UnsupportedModelError(f"the arena plan overlaps op {op.index} ({op.name})'s output with its "
                                            "scratch buffer")
            for x in ins:
                if x is None or x.size == 0 or not np.shares_memory(o, x):
                    continue
                same_start = o.__array_interface__["data"][0] == x.__array_interface__["data"][0]
                if not (k.inplace_ok and same_start):
                    raise UnsupportedModelError(
                        f"the arena plan overlaps op {op.index} ({op.name})'s output with an input in a way its "
                        "kernel cannot run (only in-place at the same offset is supported)")

    def _tensor(self, index: int, subgraph: int = 0) -> Optional[np.ndarray]:
        if index < 0:
            return None
        t = self.model.subgraphs[subgraph].tensors[index]
        v = self.all_views.get((subgraph, index))
        if v is not None:
            return v
        if t.data is not None:
            # Sparse weights go to their kernel as the raw bytes; it decodes SparsityParameters itself.
            return t.data if t.sparse else t.array()
        if t.dtype is None and t.type_name in ("RESOURCE", "VARIANT"):
            return _HANDLE  # resolved when the model is prepared; never read or written
        if t.nbytes == 0 and t.dtype is not None:
            return np.zeros(t.shape, t.dtype)
        raise UnsupportedModelError(f"tensor '{t.name}' has no place in the arena plan")

    @property
    def cache_bytes(self) -> int:
        """Bytes of the per-op caches built at bind time (widened weights, tiled requantization constants),
        a weight widened once for several ops (:attr:`weight_cache`) counted once."""
        return int(sum(getattr(k, "cache_bytes", 0) for r in self.runs.values() for k in r.kernels)
                   + self.weight_cache.nbytes)

    @property
    def folded_weight_bytes(self) -> int:
        """Bytes of the constants decoded at load (DENSIFY / float16 DEQUANTIZE outputs; 0 for most models)."""
        return int(getattr(self.model, "decoded_bytes", 0))

    @property
    def workspace_bytes(self) -> int:
        """Bytes of the shared host workspace."""
        return int(self.workspace.size)

    @property
    def persistent_bytes(self) -> int:
        """Bytes of variable tensors and resource variables (TFLM's persistent tail)."""
        return self.state.persistent_bytes

    def set_input(self, index: int, value: np.ndarray) -> None:
        """Copy ``value`` into input ``index``'s arena view."""
        np.copyto(self.input_views[index], value)

    def invoke(self) -> None:
        """Run every op once.

        Set the inputs before every call: the plan reuses an input's bytes once its
        last reader has run. No array is allocated here; numpy itself allocates one
        transient iterator buffer (at most its ``bufsize``, 8192 elements, i.e. 64 KiB
        of int64) inside ufunc calls whose operands broadcast, freed before the call
        returns. Memory does not grow over invocations (tests/test_micro_memory.py).
        Variable tensors and resource variables keep their values between calls. A model with float
        tensors runs with numpy's floating-point warnings off: overflow to inf and NaN are results, as
        in tflite-micro's C, not messages.
        """
        if self._float:
            with np.errstate(all="ignore"):
                for run in self._runs:
                    run()
            return
        for run in self._runs:
            run()

    def reset(self) -> None:
        """Restore the state of a freshly loaded model: variables, resource variables, CALL_ONCE, and a zeroed
        arena (so even a graph that reads a tensor before writing it sees what a fresh model sees)."""
        self.state.reset()
        self.arena.fill(0)

    def output(self, index: int) -> np.ndarray:
        """Output ``index`` as a view into the arena (valid until the next invoke)."""
        return self.output_views[index]


#: Tensor types whose arithmetic can overflow to inf or give NaN.
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64"})

#: A plan or workspace beyond this is a corrupt model, not an edge model (formats/tflite_check.py bounds activations).
MAX_BUFFER_BYTES = 4 << 30


def _check_size(model: TFLiteModel, what: str, nbytes: int) -> None:
    if nbytes > MAX_BUFFER_BYTES:
        raise UnsupportedModelError(f"{model.path}: the model would need a {nbytes:,}-byte {what}; that is no edge "
                                    "model (corrupt shapes or options?)")


@contextmanager
def _op_errors(model: TFLiteModel, op: Any) -> Iterator[None]:
    """Turn an unexpected failure while preparing or binding an op into one clear error naming the op.

    The structural check and each kernel's own checks refuse what they know; a kernel that still
    trips over hostile parameters (an infinite multiplier, shapes that do not broadcast, a type
    numpy cannot view) must give the user one line, never a traceback.
    """
    try:
        yield
    except EdgeRuntimeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError, FloatingPointError,
            ArithmeticError, AttributeError, MemoryError) as exc:
        what = "it needs more memory than is available" if isinstance(exc, MemoryError) else \
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise UnsupportedModelError(f"{model.path}: op {op.index} ({op.name}) has parameters the micro backend "
                                    f"cannot prepare ({what}); the model is malformed") from None


def _prepared(model: TFLiteModel, g: Any, op: Any, workspace_limit: int) -> Kernel:
    """The kernel of ``op``, prepared (TFLM's Prepare), with unexpected failures as one clear error."""
    with _op_errors(model, op):
        return REGISTRY[op.name](OpContext(model, g, op, workspace_limit))


def _plan_call(method: Any, index: int, subgraph: int) -> Any:
    """Ask a plan about tensor/op ``index`` of ``subgraph`` (single-argument form for the entry subgraph)."""
    return method(index) if subgraph == 0 else method(index, subgraph)


_HANDLE = np.zeros(1, np.int32)
_HANDLE.flags.writeable = False


def _round64(n: int) -> int:
    return -(-n // 64) * 64

"""Build small .tflite models in tests (LiteRT's schema object API) and compare micro with its references.

- :class:`T` describes a tensor; :func:`build` writes a one-op model; :class:`ModelBuilder`
  writes anything larger (several ops, several subgraphs, variable tensors, custom ops).
- :func:`assert_exact` runs the model on micro (in-place planning on and off) and on
  tflite-micro, and requires ``np.array_equal`` on every output.
- :func:`assert_close` does the same for float models within a relative tolerance
  (reference: tflite-micro's float kernels, or LiteRT with ``ref="litert"``).

Tests that use these carry ``@pytest.mark.parity(OP, TYPE)`` marks; the conftest turns their
outcomes into the op parity table (``python -m benchmarks.op_parity``).
"""
from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.formats.tflite import TFLiteModel

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
import flatbuffers  # noqa: E402

#: Schema TensorType codes by numpy-style name.
TYPES = {"float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9,
         "float64": 10, "resource": 13, "uint32": 15, "uint16": 16}
NP_TYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8, "int64": np.int64,
            "bool": np.bool_, "int16": np.int16, "int8": np.int8, "float64": np.float64, "uint32": np.uint32,
            "uint16": np.uint16}


class _Lazy:
    """Import a reference runtime on first use; skip the test when it is not installed
    (tflite-micro's package exists for x86_64 only)."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(pytest.importorskip(self.module), name)


tflm = _Lazy("tflite_micro.python.tflite_micro.runtime")
litert = _Lazy("ai_edge_litert.interpreter")


class T:
    """A tensor of the model being built.

    ``scale``/``zp`` give quantization (per-channel when ``scale`` has several values, along
    ``axis``); ``data`` makes it a constant; ``variable`` makes it a variable (state) tensor.
    """

    def __init__(self, shape: Sequence[int], dtype: str = "int8", scale: Any = None, zp: Any = 0,
                 data: Optional[np.ndarray] = None, axis: int = 0, variable: bool = False,
                 name: Optional[str] = None, shape_signature: Optional[Sequence[int]] = None) -> None:
        self.shape, self.dtype, self.scale, self.zp, self.data, self.axis = shape, dtype, scale, zp, data, axis
        self.variable, self.name, self.shape_signature = variable, name, shape_signature


def opts(kind: str, **fields: Any) -> tuple[str, Any]:
    """Builtin options: ``opts("Conv2DOptions", padding=0, strideW=2, ...)``."""
    obj = getattr(schema, kind + "T")()
    for k, v in fields.items():
        setattr(obj, k, v)
    return kind, obj


class SubgraphBuilder:
    """One subgraph: add tensors and ops, then name its inputs and outputs."""

    def __init__(self, model: "ModelBuilder", name: str = "") -> None:
        self.model = model
        self.sg = schema.SubGraphT()
        self.sg.name = name
        self.sg.tensors = []
        self.sg.operators = []
        self.sg.inputs = np.zeros(0, np.int32)
        self.sg.outputs = np.zeros(0, np.int32)

    def tensor(self, t: T) -> int:
        """Add a tensor; return its index."""
        tt = schema.TensorT()
        tt.shape = np.array(t.shape, np.int32)
        if t.shape_signature is not None:
            tt.shapeSignature = np.array(t.shape_signature, np.int32)
        tt.type = TYPES[t.dtype]
        tt.name = t.name or f"t{len(self.sg.tensors)}"
        tt.buffer = 0
        tt.isVariable = bool(t.variable)
        if t.scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(t.scale, np.float32))
            q.zeroPoint = np.atleast_1d(np.asarray(t.zp, np.int64)) * np.ones(q.scale.size, np.int64)
            q.quantizedDimension = t.axis
            tt.quantization = q
        if t.data is not None:
            tt.buffer = self.model.buffer(np.ascontiguousarray(t.data).reshape(-1).view(np.uint8))
        self.sg.tensors.append(tt)
        return len(self.sg.tensors) - 1

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options: Optional[tuple[str, Any]] = None,
           version: int = 1, custom_options: Optional[bytes] = None) -> None:
        """Add an operator. ``name`` is a builtin (``"CONV_2D"``) or ``"custom:NAME"``; index -1 = omitted input."""
        o = schema.OperatorT()
        o.opcodeIndex = self.model.opcode(name, version)
        o.inputs = np.array(inputs, np.int32)
        o.outputs = np.array(outputs, np.int32)
        if options is not None:
            kind, obj = options
            o.builtinOptionsType = getattr(schema.BuiltinOptions, kind, None)
            if o.builtinOptionsType is None:
                o.builtinOptions2Type = getattr(schema.BuiltinOptions2, kind)
                o.builtinOptions2 = obj
            else:
                o.builtinOptions = obj
        if custom_options is not None:
            o.customOptions = np.frombuffer(custom_options, np.uint8)
        self.sg.operators.append(o)

    def io(self, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        """Name the subgraph's inputs and outputs."""
        self.sg.inputs = np.array(inputs, np.int32)
        self.sg.outputs = np.array(outputs, np.int32)


class ModelBuilder:
    """A whole model: subgraphs (the first is the entry), operator codes, buffers."""

    def __init__(self) -> None:
        self.m = schema.ModelT()
        self.m.version = 3
        self.m.buffers = [schema.BufferT()]
        self.m.operatorCodes = []
        self.m.subgraphs = []
        self._codes: dict[tuple[str, int], int] = {}

    def subgraph(self, name: str = "") -> SubgraphBuilder:
        """Start a new subgraph (index = number of subgraphs before it)."""
        s = SubgraphBuilder(self, name)
        self.m.subgraphs.append(s.sg)
        return s

    def buffer(self, data: np.ndarray) -> int:
        """Add a data buffer; return its index."""
        b = schema.BufferT()
        b.data = data
        self.m.buffers.append(b)
        return len(self.m.buffers) - 1

    def opcode(self, name: str, version: int) -> int:
        """Index of the operator code for ``name`` (builtin or ``custom:NAME``) and version."""
        key = (name, version)
        if key not in self._codes:
            oc = schema.OperatorCodeT()
            if name.startswith("custom:"):
                code = schema.BuiltinOperator.CUSTOM
                oc.customCode = name[len("custom:"):]
            else:
                code = getattr(schema.BuiltinOperator, name)
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self.m.operatorCodes.append(oc)
            self._codes[key] = len(self.m.operatorCodes) - 1
        return self._codes[key]

    def to_bytes(self) -> bytes:
        """The serialized model."""
        b = flatbuffers.Builder(4096)
        b.Finish(self.m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def write(self, path: Path) -> Path:
        """Write the model to ``path``; return it."""
        Path(path).write_bytes(self.to_bytes())
        return Path(path)


def build(path: Path, op_name: str, inputs: list[T], outputs: list[T], options: Optional[tuple[str, Any]] = None,
          version: int = 1, custom_options: Optional[bytes] = None) -> Path:
    """Write a one-op model; its non-constant inputs become the graph inputs, in order."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ins = [sg.tensor(t) for t in inputs]
    outs = [sg.tensor(t) for t in outputs]
    sg.op(op_name, ins, outs, options, version, custom_options)
    sg.io([i for i, t in zip(ins, inputs) if t.data is None and not t.variable], outs)
    return mb.write(path)


def random_input(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Random data of a type: the full range for 8/16-bit integers, N(0, 3) floats, small int32s, random bools."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = (int(info.min), int(info.max)) if dt.itemsize <= 2 else (-1000, 1000)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    return (rng.standard_normal(shape) * 3).astype(dt)


def random_inputs(path: Path, rng: np.random.Generator, n: int) -> list[list[np.ndarray]]:
    """``n`` random input sets for the model at ``path`` (shapes and types from micro's view of it)."""
    sg = TFLiteModel.open(str(path)).subgraphs[0]
    specs = [sg.tensors[i] for i in sg.inputs]
    return [[random_input(t.shape, t.dtype, rng) for t in specs] for _ in range(n)]


def tflm_arena_size(path: Path) -> int:
    """An arena large enough for tflite-micro to hold every tensor of the model, twice over, plus 1 MiB."""
    model = TFLiteModel.open(str(path))
    total = sum(t.nbytes for sg in model.subgraphs for t in sg.tensors if t.data is None)
    return 2 * total + (1 << 20)


def run_tflm(path: Path, input_sets: Iterable[Sequence[np.ndarray]], reset_each: bool = True,
             arena_size: Optional[int] = None) -> list[list[np.ndarray]]:
    """tflite-micro's outputs (all of them) for each input set."""
    ref = tflm.Interpreter.from_file(str(path), arena_size=arena_size or tflm_arena_size(path))
    n_out = len(TFLiteModel.open(str(path)).subgraphs[0].outputs)
    results = []
    for xs in input_sets:
        if reset_each:
            ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(np.require(x, requirements='C'), i)  # (keeps 0-d arrays 0-d)
        ref.invoke()
        results.append([np.array(ref.get_output(i)) for i in range(n_out)])
    return results


def run_micro(path: Path, input_sets: Iterable[Sequence[np.ndarray]], in_place: bool = True,
              reset_each: bool = True) -> list[list[np.ndarray]]:
    """micro's outputs (all of them) for each input set."""
    m = open_model(str(path), in_place=in_place)
    results = []
    for xs in input_sets:
        if reset_each and hasattr(m, "reset"):
            m.reset()
        results.append([np.array(o) for o in m.run(list(xs))])
    return results


def assert_exact(path: Path, input_sets: Optional[list[Sequence[np.ndarray]]] = None, n: int = 5, seed: int = 0,
                 reset_each: bool = True) -> None:
    """micro == tflite-micro (``np.array_equal``, every output, shapes and dtypes too), in-place on and off."""
    if input_sets is None:
        input_sets = random_inputs(path, np.random.default_rng(seed), n)
    expect = run_tflm(path, input_sets, reset_each)
    for in_place in (False, True):
        got = run_micro(path, input_sets, in_place, reset_each)
        for k, (g, e) in enumerate(zip(got, expect)):
            assert len(g) == len(e), f"{Path(path).name}: {len(g)} outputs vs tflite-micro {len(e)}"
            for j, (a, b) in enumerate(zip(g, e)):
                assert a.dtype == b.dtype and a.shape == b.shape, \
                    f"{Path(path).name} set {k} output {j}: {a.dtype}{a.shape} vs tflite-micro {b.dtype}{b.shape}"
                assert np.array_equal(a, b), (f"{Path(path).name} set {k} output {j} (in_place={in_place}): "
                                              f"{a.ravel()[:8]} vs tflite-micro {b.ravel()[:8]}")


def run_litert(path: Path, input_sets: Iterable[Sequence[np.ndarray]], reference_kernels: bool = False
               ) -> list[list[np.ndarray]]:
    """LiteRT (one thread; ``reference_kernels``: its BUILTIN_REF resolver): every output for each input set."""
    kw = {"experimental_op_resolver_type": litert.OpResolverType.BUILTIN_REF} if reference_kernels else {}
    it = litert.Interpreter(model_path=str(path), num_threads=1, **kw)
    it.allocate_tensors()
    out = []
    for xs in input_sets:
        for d, x in zip(it.get_input_details(), xs):
            it.set_tensor(d["index"], x)
        it.invoke()
        out.append([np.array(it.get_tensor(d["index"])) for d in it.get_output_details()])
    return out


def assert_close(path: Path, input_sets: Optional[list[Sequence[np.ndarray]]] = None, n: int = 5, seed: int = 0,
                 rtol: float = 1e-6, ref: str = "tflite-micro") -> None:
    """Float outputs within ``rtol`` of the largest reference value (reference: tflite-micro or LiteRT)."""
    if input_sets is None:
        input_sets = random_inputs(path, np.random.default_rng(seed), n)
    expect = run_tflm(path, input_sets) if ref == "tflite-micro" else run_litert(path, input_sets)
    got = run_micro(path, input_sets)
    for g, e in zip(got, expect):
        assert len(g) == len(e)
        for a, b in zip(g, e):
            assert a.shape == b.shape and a.dtype == b.dtype, f"{a.dtype}{a.shape} vs {ref} {b.dtype}{b.shape}"
            if a.dtype.kind == "f":
                scale = max(1.0, float(np.max(np.abs(b.astype(np.float64))))) if b.size else 1.0
                err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if b.size else 0.0
                assert err <= rtol * scale or np.array_equal(a, b, equal_nan=True), \
                    f"{Path(path).name}: max error {err} > {rtol} x {scale} against {ref}"
            else:
                assert np.array_equal(a, b), f"{Path(path).name}: {a.ravel()[:8]} vs {ref} {b.ravel()[:8]}"


def assert_missing(path: Path, input_sets: Optional[list[Sequence[np.ndarray]]] = None, seed: int = 0) -> None:
    """tflite-micro runs the model; micro refuses it with one clear UnsupportedModelError (a "missing" parity entry)."""
    from edge_runtime.errors import UnsupportedModelError

    if input_sets is None:
        input_sets = random_inputs(path, np.random.default_rng(seed), 1)
    run_tflm(path, input_sets[:1])
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(path))
    assert "\n" not in str(info.value)


class ModelFolder:
    """A test module's own folder of generated models, numbered so no two share a name.

    Each module keeps its own and calls :meth:`remove` from a module-scoped fixture when it is
    done. Another module may borrow its model generators afterwards (a later module reusing
    hypothesis strategies): :meth:`path` then makes the folder again, and it is removed at exit."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._count = itertools.count()
        atexit.register(self.remove)

    def path(self, op: str) -> Path:
        """A new file name for a model of ``op`` (the folder made again if it was removed)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / f"{op.lower()}_{next(self._count)}.tflite"

    def remove(self) -> None:
        """Delete the folder and every model in it."""
        shutil.rmtree(self.dir, ignore_errors=True)

"""Parity of micro's data-movement kernels with tflite-micro (bit-exact), over random shapes, options,
types and index inputs (constant and graph inputs where TFLM allows them), plus clean refusals."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import InputError, UnsupportedModelError
from edge_runtime.backends.micro import open_model
from edge_runtime.formats.tflite import TFLiteModel
from tflite_builder import T, build, opts, random_input, run_micro, tflm
from alloc_probe import traced_allocations

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
N_SETS = 3
ARENA = 1 << 20


def ex(n: int) -> Any:
    """Hypothesis settings with ``n`` examples."""
    return settings(max_examples=n, **SETTINGS)


def pm(op: str, types: Sequence[str], kind: Optional[str] = None) -> list:
    """One pytest param per type, marked as a parity comparison of ``op`` on that type."""
    args = (kind,) if kind else ()
    return [pytest.param(t, marks=pytest.mark.parity(op, t, *args), id=t) for t in types]


@st.composite
def quant(draw: Any, dt: str) -> dict:
    """Quantization of a tensor of type ``dt``: random int8 scale/zero point, symmetric int16, none else."""
    if dt == "int8":
        return dict(scale=draw(st.floats(2.0 ** -10, 2.0, width=32)), zp=draw(st.integers(-128, 127)))
    if dt == "int16":
        return dict(scale=draw(st.floats(2.0 ** -14, 0.5, width=32)), zp=0)
    return {}


def shapes(min_rank: int = 1, max_rank: int = 4, min_side: int = 1, max_side: int = 5) -> Any:
    """Tensor shapes."""
    return st.lists(st.integers(min_side, max_side), min_size=min_rank, max_size=max_rank).map(tuple)


def const(values: Any, dtype: str = "int32") -> T:
    """A constant tensor holding ``values``."""
    a = np.asarray(values, dtype=dtype)
    return T(a.shape, dtype, data=a)


def feeds(ins: Sequence[T], rng: np.random.Generator, n: int = N_SETS,
          special: Optional[dict[int, Callable[[np.random.Generator], np.ndarray]]] = None) -> list[list[np.ndarray]]:
    """``n`` input sets for the graph inputs among ``ins`` (non-constant tensors, in order); ``special`` gives
    the values of some of them by position in ``ins`` (index inputs)."""
    special = special or {}
    out = []
    for _ in range(n):
        xs = []
        for i, t in enumerate(ins):
            if t.data is not None:
                continue
            xs.append(np.asarray(special[i](rng) if i in special else random_input(t.shape, t.dtype, rng)))
        out.append(xs)
    return out


def run_tflm_big(path: Path, input_sets: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    """tflite-micro's outputs with an arena large enough for every generated model (the builder's
    ``run_tflm`` keeps the package's small default arena); 0-d inputs are passed as they are."""
    ref = tflm.Interpreter.from_file(str(path), arena_size=ARENA)
    n_out = len(TFLiteModel.open(str(path)).subgraphs[0].outputs)
    results = []
    for xs in input_sets:
        ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(np.require(x, requirements="C"), i)
        ref.invoke()
        results.append([np.array(ref.get_output(i)) for i in range(n_out)])
    return results


def assert_exact_big(path: Path, input_sets: list[list[np.ndarray]]) -> None:
    """As the builder's ``assert_exact`` (every output, dtype, shape and value; in-place planning on and
    off), against :func:`run_tflm_big`."""
    expect = run_tflm_big(path, input_sets)
    for in_place in (False, True):
        got = run_micro(path, input_sets, in_place)
        for k, (g, e) in enumerate(zip(got, expect)):
            assert len(g) == len(e), f"{len(g)} outputs vs tflite-micro {len(e)}"
            for j, (a, b) in enumerate(zip(g, e)):
                assert a.dtype == b.dtype and a.shape == b.shape, \
                    f"set {k} output {j}: {a.dtype}{a.shape} vs tflite-micro {b.dtype}{b.shape}"
                assert np.array_equal(a, b), (f"set {k} output {j} (in_place={in_place}): "
                                              f"{a.ravel()[:8]} vs tflite-micro {b.ravel()[:8]}")


def check(path: Path, op: str, ins: list[T], outs: list[T], options: Any = None, seed: int = 0,
          special: Optional[dict] = None, version: int = 1) -> None:
    """Build the one-op model and require micro == tflite-micro on a few input sets."""
    build(path, op, ins, outs, options, version)
    assert_exact_big(path, feeds(ins, np.random.default_rng(seed), special=special))


def refused(path: Path, op: str, ins: list[T], outs: list[T], options: Any = None, match: str = "") -> None:
    """micro refuses the model with one clean UnsupportedModelError line naming the op."""
    build(path, op, ins, outs, options)
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(path))
    msg = str(e.value)
    assert op in msg and "\n" not in msg and match in msg, msg


# ---------------------------------------------------------------------------- SPLIT / SPLIT_V

@pytest.mark.parametrize("dt", pm("SPLIT", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_split(tmp_path, dt, data):
    shape = list(data.draw(shapes(1, 5, 1, 4)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    n = data.draw(st.integers(1, 4))
    shape[axis] *= n
    q = data.draw(quant(dt))
    out = list(shape)
    out[axis] //= n
    neg = data.draw(st.booleans())
    ins = [const([axis - len(shape) if neg else axis]), T(shape, dt, **q)]
    check(tmp_path / "m.tflite", "SPLIT", ins, [T(out, dt, **q) for _ in range(n)], opts("SplitOptions", numSplits=n))


@pytest.mark.parametrize("dt", pm("SPLIT_V", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_split_v(tmp_path, dt, data):
    shape = list(data.draw(shapes(1, 5, 1, 4)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    shape[axis] = sum(sizes)
    q = data.draw(quant(dt))
    outs = []
    for s in sizes:
        o = list(shape)
        o[axis] = s
        outs.append(T(o, dt, **q))
    given_sizes = list(sizes)
    if data.draw(st.booleans()):  # one size left for TFLite to infer
        given_sizes[data.draw(st.integers(0, len(sizes) - 1))] = -1
    runtime_sizes = data.draw(st.booleans())
    size_t = T((len(sizes),), "int32") if runtime_sizes else const(given_sizes)
    ins = [T(shape, dt, **q), size_t, const([axis - len(shape) if data.draw(st.booleans()) else axis])]
    special = {1: lambda rng: np.array(given_sizes, np.int32)}
    check(tmp_path / "m.tflite", "SPLIT_V", ins, outs, opts("SplitVOptions", numSplits=len(sizes)), special=special)


def test_split_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "SPLIT", [T((1,), "int32"), T((2, 4), "float32")],
            [T((2, 2), "float32"), T((2, 2), "float32")], opts("SplitOptions", numSplits=2), "constant")
    refused(tmp_path / "b.tflite", "SPLIT", [const([1]), T((2, 4), "bool")],
            [T((2, 2), "bool"), T((2, 2), "bool")], opts("SplitOptions", numSplits=2), "BOOL")
    refused(tmp_path / "c.tflite", "SPLIT_V", [T((2, 4), "int64"), const([1, 3]), const([1])],
            [T((2, 1), "int64"), T((2, 3), "int64")], opts("SplitVOptions", numSplits=2), "INT64")
    refused(tmp_path / "d.tflite", "SPLIT_V", [T((2, 4), "float32"), const([1, 3]), const([1])],
            [T((2, 2), "float32"), T((2, 3), "float32")], opts("SplitVOptions", numSplits=2), "add up")


# ---------------------------------------------------------------------------- SLICE

@pytest.mark.parametrize("dt", pm("SLICE", ["float32", "int8", "int16", "int32", "bool"]))
@ex(85)
@given(data=st.data())
def test_slice(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 5))
    begin, size, out = [], [], []
    for n in shape:
        b = data.draw(st.integers(0, n - 1))
        s = data.draw(st.integers(1, n - b))
        begin.append(b)
        out.append(s)
        size.append(-1 if s == n - b and data.draw(st.booleans()) else s)
    it = data.draw(st.sampled_from(["int32", "int64"]))
    runtime = data.draw(st.sampled_from(["none", "begin", "both"]))
    q = data.draw(quant(dt))
    ins = [T(shape, dt, **q),
           T((len(shape),), it) if runtime != "none" else const(begin, it),
           T((len(shape),), it) if runtime == "both" else const(size, it)]
    special = {1: lambda rng: np.array(begin, it), 2: lambda rng: np.array(size, it)}
    check(tmp_path / "m.tflite", "SLICE", ins, [T(out, dt, **q)], special=special)


def test_slice_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "SLICE", [T((3, 4), "int64"), const([1, 1]), const([2, 3])], [T((2, 3), "int64")],
            match="INT64")
    refused(tmp_path / "b.tflite", "SLICE", [T((3, 4), "float32"), const([1, 1]), const([3, 3])],
            [T((2, 3), "float32")], match="do not fit")
    refused(tmp_path / "c.tflite", "SLICE", [T((1, 2, 1, 3, 4, 1), "float32"), const([0] * 6), const([-1] * 6)],
            [T((1, 2, 1, 3, 4, 1), "float32")], match="at most 5")


def test_slice_runtime_out_of_range_fails_at_invoke(tmp_path):
    p = tmp_path / "m.tflite"
    build(p, "SLICE", [T((3, 4), "float32"), T((2,), "int32"), const([2, 3])], [T((2, 3), "float32")])
    m = open_model(str(p))
    m.run([np.zeros((3, 4), np.float32), np.array([1, 1], np.int32)])
    with pytest.raises(InputError, match="SLICE"):
        m.run([np.zeros((3, 4), np.float32), np.array([2, 1], np.int32)])


@pytest.mark.parametrize("op,ins,outs,o,bad", [
    ("REVERSE_V2", [T((2, 3, 4), "float32"), T((2,), "int32")], [T((2, 3, 4), "float32")], None, [[0, 2]]),
    ("CUMSUM", [T((2, 3), "float32"), T((1,), "int32")], [T((2, 3), "float32")], opts("CumsumOptions"), [[2]]),
    ("MIRROR_PAD", [T((2, 3), "float32"), T((2, 2), "int32")], [T((4, 5), "float32")],
     opts("MirrorPadOptions", mode=0), [[[2, 0], [1, 1]]]),
    ("EMBEDDING_LOOKUP", [T((2,), "int32"), T((3, 4), "float32", data=np.ones((3, 4), np.float32))],
     [T((2, 4), "float32")], None, [[0, -1]]),
    ("BROADCAST_ARGS", [T((2,), "int32"), T((2,), "int32")], [T((2,), "int32")], None, [[2, 3], [3, 3]]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_runtime_indices_fail_at_invoke(tmp_path, op, ins, outs, o, bad):
    """A computed index input that TFLM's Eval rejects gives one InputError line naming the op."""
    p = tmp_path / "m.tflite"
    build(p, op, ins, outs, o)
    values = iter(bad)  # the int32 graph inputs' values, in order
    xs = [np.asarray(next(values), np.int32) if t.dtype == "int32" else np.ones(t.shape, np.float32)
          for t in ins if t.data is None]
    with pytest.raises(InputError, match=op) as e:
        open_model(str(p)).run(xs)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------- GATHER / GATHER_ND

@pytest.mark.parametrize("dt", pm("GATHER", ["float32", "int8"]))
@ex(85)
@given(data=st.data())
def test_gather(tmp_path, dt, data):
    shape = data.draw(shapes(1, 4, 1, 5))
    rank = len(shape)
    axis = data.draw(st.integers(0, rank - 1))
    batch = data.draw(st.integers(0, axis))
    cshape = tuple(shape[:batch]) + data.draw(shapes(0, 2, 1, 4))
    out = tuple(shape[:axis]) + cshape[batch:] + tuple(shape[axis + 1:])
    def coords(rng):
        return rng.integers(0, shape[axis], size=cshape).astype(np.int32)

    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    a = axis - rank if data.draw(st.booleans()) else axis
    b = batch - len(cshape) if batch < len(cshape) and data.draw(st.booleans()) else batch
    ins = [T(shape, dt, **q), T(cshape, "int32") if runtime else const(coords(np.random.default_rng(1)))]
    check(tmp_path / "m.tflite", "GATHER", ins, [T(out, dt, **q)], opts("GatherOptions", axis=a, batchDims=b),
          special={1: coords})


@pytest.mark.parametrize("dt", pm("GATHER_ND", ["float32", "int8"]))
@ex(85)
@given(data=st.data())
def test_gather_nd(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 4))
    nd = data.draw(st.integers(1, len(shape)))
    lead = data.draw(shapes(0, 2, 1, 4))
    ishape = lead + (nd,)
    out = lead + tuple(shape[nd:])

    def indices(rng):
        return np.stack([rng.integers(0, shape[j], size=lead) for j in range(nd)], axis=-1).astype(np.int32)

    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    ins = [T(shape, dt, **q), T(ishape, "int32") if runtime else const(indices(np.random.default_rng(2)))]
    check(tmp_path / "m.tflite", "GATHER_ND", ins, [T(out, dt, **q)], special={1: indices})


@pytest.mark.parity("GATHER_ND", "float32")
def test_gather_nd_checks_only_the_flat_position(tmp_path):
    """TFLM bounds-checks the flat offset of an index tuple, not each index: (0, 5) of a 3x4 input is (1, 1)."""
    p = tmp_path / "m.tflite"
    build(p, "GATHER_ND", [T((3, 4), "float32"), T((3, 2), "int32")], [T((3,), "float32")])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert_exact_big(p, [[x, np.array(i, np.int32)]
                         for i in ([[0, 5], [-1, 5], [2, 3]], [[1, -1], [0, 11], [2, 0]])])
    m = open_model(str(p))
    with pytest.raises(InputError, match="GATHER_ND"):
        m.run([x, np.array([[2, 4], [0, 0], [0, 0]], np.int32)])


def test_gather_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "GATHER", [T((3, 4), "int16"), const([1, 0])], [T((2, 4), "int16")],
            opts("GatherOptions", axis=0), "INT16")
    refused(tmp_path / "b.tflite", "GATHER", [T((3, 4), "float32"), const([1, 0], "int64")], [T((2, 4), "float32")],
            opts("GatherOptions", axis=0), "INT64")
    refused(tmp_path / "c.tflite", "GATHER_ND", [T((3, 4), "int32"), const([[1], [0]])], [T((2, 4), "int32")],
            match="INT32")
    refused(tmp_path / "d.tflite", "GATHER_ND", [T((3, 4), "float32"), const([[1, 0, 0]])], [T((1,), "float32")],
            match="depth")
    refused(tmp_path / "e.tflite", "GATHER", [T((3, 4), "float32"), const([3, 0])], [T((2, 4), "float32")],
            opts("GatherOptions", axis=0), "outside")
    refused(tmp_path / "f.tflite", "GATHER_ND", [T((3, 4), "float32"), const([[2, 4]])], [T((1,), "float32")],
            match="outside")
    refused(tmp_path / "g.tflite", "EMBEDDING_LOOKUP", [const([3]), T((3, 4), "float32")], [T((1, 4), "float32")],
            match="outside")


def test_gather_runtime_out_of_range_fails_at_invoke(tmp_path):
    p = tmp_path / "m.tflite"
    build(p, "GATHER", [T((3, 4), "float32"), T((2,), "int32")], [T((2, 4), "float32")], opts("GatherOptions", axis=0))
    m = open_model(str(p))
    with pytest.raises(InputError, match="GATHER"):
        m.run([np.zeros((3, 4), np.float32), np.array([3, 0], np.int32)])


# ---------------------------------------------------------------------------- PACK / UNPACK

@pytest.mark.parametrize("dt", pm("PACK", ["float32", "int8", "int16", "int32", "int64"]))
@ex(85)
@given(data=st.data())
def test_pack(tmp_path, dt, data):
    shape = data.draw(shapes(0, 4, 1, 4))
    n = data.draw(st.integers(1, 4))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    a = axis % (len(shape) + 1)
    q = data.draw(quant(dt))
    out = shape[:a] + (n,) + shape[a:]
    check(tmp_path / "m.tflite", "PACK", [T(shape, dt, **q) for _ in range(n)], [T(out, dt, **q)],
          opts("PackOptions", valuesCount=n, axis=axis))


@pytest.mark.parametrize("dt", pm("UNPACK", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_unpack(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 4))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = axis % len(shape)
    q = data.draw(quant(dt))
    out = shape[:a] + shape[a + 1:]
    check(tmp_path / "m.tflite", "UNPACK", [T(shape, dt, **q)], [T(out, dt, **q) for _ in range(shape[a])],
          opts("UnpackOptions", num=shape[a], axis=axis))


def test_pack_unpack_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "PACK", [T((3,), "bool"), T((3,), "bool")], [T((2, 3), "bool")],
            opts("PackOptions", valuesCount=2, axis=0), "BOOL")
    refused(tmp_path / "b.tflite", "PACK", [T((3,), "float32"), T((3,), "float32")], [T((3, 3), "float32")],
            opts("PackOptions", valuesCount=2, axis=0), "shape")
    refused(tmp_path / "c.tflite", "UNPACK", [T((2, 3), "int64")], [T((3,), "int64"), T((3,), "int64")],
            opts("UnpackOptions", num=2, axis=0), "INT64")


# ---------------------------------------------------------------------------- EXPAND_DIMS / SHAPE / FILL

@pytest.mark.parametrize("dt", pm("EXPAND_DIMS", ["float32", "int8", "int16"]))
@ex(70)
@given(data=st.data())
def test_expand_dims(tmp_path, dt, data):
    shape = data.draw(shapes(0, 5, 1, 4))
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    a = axis % (len(shape) + 1)
    q = data.draw(quant(dt))
    ax = const(axis) if data.draw(st.booleans()) else const([axis])
    check(tmp_path / "m.tflite", "EXPAND_DIMS", [T(shape, dt, **q), ax], [T(shape[:a] + (1,) + shape[a:], dt, **q)])


def test_expand_dims_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "EXPAND_DIMS", [T((2, 3), "int32"), const([1])], [T((2, 1, 3), "int32")],
            match="INT32")
    refused(tmp_path / "b.tflite", "EXPAND_DIMS", [T((2, 3), "float32"), T((1,), "int32")], [T((2, 1, 3), "float32")],
            match="constant")
    refused(tmp_path / "c.tflite", "EXPAND_DIMS", [T((2, 3), "float32"), const([1])], [T((2, 3, 1), "float32")],
            match="shape")


@pytest.mark.parametrize("dt", pm("SHAPE", ["float32", "int8", "int16", "int32", "int64", "bool", "uint8"]))
@ex(30)
@given(shape=shapes(0, 6, 1, 4))
def test_shape(tmp_path, dt, shape):
    check(tmp_path / "m.tflite", "SHAPE", [T(shape, dt)], [T((len(shape),), "int32")], opts("ShapeOptions", outType=2))


def test_shape_refusal(tmp_path):
    refused(tmp_path / "a.tflite", "SHAPE", [T((2, 3), "float32")], [T((2,), "int64")],
            opts("ShapeOptions", outType=4), "INT64")


@pytest.mark.parametrize("dt", pm("FILL", ["float32", "int8", "int32"]))
@ex(70)
@given(data=st.data())
def test_fill(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 5))
    dims_t = data.draw(st.sampled_from(["int32", "int64", "int16", "int8"]))
    q = data.draw(quant(dt))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    value = random_input((), dt, rng)
    runtime_value = data.draw(st.booleans())
    ins = [const(list(shape), dims_t), T((), dt, **q) if runtime_value else T((), dt, data=np.asarray(value), **q)]
    check(tmp_path / "m.tflite", "FILL", ins, [T(shape, dt, **q)], special={1: lambda r: random_input((), dt, r)})


def test_fill_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "FILL", [const([2, 3]), T((), "int16", data=np.array(1, np.int16))],
            [T((2, 3), "int16")], match="INT16")
    refused(tmp_path / "b.tflite", "FILL", [T((2,), "int32"), T((), "float32", data=np.array(1, np.float32))],
            [T((2, 3), "float32")], match="constant")
    refused(tmp_path / "c.tflite", "FILL", [const([3, 3]), T((), "float32", data=np.array(1, np.float32))],
            [T((2, 3), "float32")], match="dims")


# ---------------------------------------------------------------------------- BROADCAST_TO / BROADCAST_ARGS

ALL_TYPES = ["float32", "int8", "int16", "int32", "int64", "bool", "uint8"]


@pytest.mark.parametrize("dt", pm("BROADCAST_TO", ALL_TYPES))
@ex(70)
@given(data=st.data())
def test_broadcast_to(tmp_path, dt, data):
    target = data.draw(shapes(1, 5, 1, 4))
    k = data.draw(st.integers(0, len(target)))
    src = tuple(1 if data.draw(st.booleans()) else d for d in target[len(target) - k:])
    st_t = data.draw(st.sampled_from(["int32", "int64"]))
    q = data.draw(quant(dt))
    check(tmp_path / "m.tflite", "BROADCAST_TO", [T(src, dt, **q), const(list(target), st_t)], [T(target, dt, **q)])


def test_broadcast_to_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "BROADCAST_TO", [T((1, 3), "float32"), T((2,), "int32")], [T((2, 3), "float32")],
            match="constant")
    refused(tmp_path / "b.tflite", "BROADCAST_TO", [T((2, 3), "float32"), const([4, 3])], [T((4, 3), "float32")],
            match="broadcast")
    refused(tmp_path / "c.tflite", "BROADCAST_TO", [T((1, 3), "float32"), const([1, 1, 1, 1, 2, 3])],
            [T((1, 1, 1, 1, 2, 3), "float32")], match="at most 5")


@pytest.mark.parametrize("dt", pm("BROADCAST_ARGS", ["int32", "int64"]))
@ex(85)
@given(data=st.data())
def test_broadcast_args(tmp_path, dt, data):
    full = data.draw(shapes(1, 6, 1, 5))
    picks = []
    for _ in range(2):
        k = data.draw(st.integers(1, len(full)))
        picks.append([1 if data.draw(st.booleans()) else d for d in full[len(full) - k:]])
    runtime = data.draw(st.booleans())
    ins = [T((len(p),), dt) if runtime else const(p, dt) for p in picks]
    n = max(len(p) for p in picks)
    check(tmp_path / "m.tflite", "BROADCAST_ARGS", ins, [T((n,), dt)],
          special={0: lambda r: np.array(picks[0], dt), 1: lambda r: np.array(picks[1], dt)})


@pytest.mark.parity("SHAPE", "float32")
@pytest.mark.parity("BROADCAST_ARGS", "int32")
def test_shape_into_broadcast_args_chain(tmp_path):
    """The converter pattern: the shapes of two tensors, their broadcast shape (index inputs made by ops)."""
    from tflite_builder import ModelBuilder

    mb = ModelBuilder()
    sg = mb.subgraph("main")
    a, b = sg.tensor(T((4, 1, 3), "float32")), sg.tensor(T((5, 1), "float32"))
    sa, sb, o = sg.tensor(T((3,), "int32")), sg.tensor(T((2,), "int32")), sg.tensor(T((3,), "int32"))
    sg.op("SHAPE", [a], [sa], opts("ShapeOptions", outType=2))
    sg.op("SHAPE", [b], [sb], opts("ShapeOptions", outType=2))
    sg.op("BROADCAST_ARGS", [sa, sb], [o])
    sg.io([a, b], [o])
    p = mb.write(tmp_path / "m.tflite")
    assert_exact_big(p, feeds([T((4, 1, 3), "float32"), T((5, 1), "float32")], np.random.default_rng(0)))
    assert open_model(str(p)).run([np.zeros((4, 1, 3), np.float32), np.zeros((5, 1), np.float32)])[0].tolist() \
        == [4, 5, 3]


def test_broadcast_args_refusal(tmp_path):
    refused(tmp_path / "a.tflite", "BROADCAST_ARGS", [T((2,), "int16"), T((2,), "int16")], [T((2,), "int16")],
            match="INT16")


# ---------------------------------------------------------------------------- REVERSE_V2

@pytest.mark.parametrize("dt", pm("REVERSE_V2", ALL_TYPES))
@ex(70)
@given(data=st.data())
def test_reverse_v2(tmp_path, dt, data):
    shape = data.draw(shapes(1, 6, 1, 4))
    rank = len(shape)
    first = data.draw(st.integers(0, rank - 1))
    count = data.draw(st.integers(1, rank - first))
    axes = [a - rank if data.draw(st.booleans()) else a for a in range(first, first + count)]
    axes = data.draw(st.permutations(axes))
    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    ins = [T(shape, dt, **q), T((len(axes),), "int32") if runtime else const(axes)]
    check(tmp_path / "m.tflite", "REVERSE_V2", ins, [T(shape, dt, **q)],
          special={1: lambda r: np.array(axes, np.int32)})


def test_reverse_v2_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "REVERSE_V2", [T((2, 3, 4), "float32"), const([0, 2])], [T((2, 3, 4), "float32")],
            match="contiguous")
    refused(tmp_path / "c.tflite", "REVERSE_V2", [T((2, 3), "float32"), T((0,), "int32")], [T((2, 3), "float32")],
            match="no axis")
    refused(tmp_path / "d.tflite", "REVERSE_V2", [T((1, 2, 1, 2, 1, 2, 1), "float32"), const([1])],
            [T((1, 2, 1, 2, 1, 2, 1), "float32")], match="at most 6")
    refused(tmp_path / "b.tflite", "REVERSE_V2", [T((2, 3), "float16"), const([0])], [T((2, 3), "float16")],
            match="FLOAT16")


# ---------------------------------------------------------------------------- EMBEDDING_LOOKUP

@pytest.mark.parametrize("kind", pm("EMBEDDING_LOOKUP", ["float32", "int8"]) + [
    pytest.param("hybrid", marks=pytest.mark.parity("EMBEDDING_LOOKUP", "int8"), id="hybrid")])
@ex(85)
@given(data=st.data())
def test_embedding_lookup(tmp_path, kind, data):
    vshape = data.draw(shapes(2, 4, 1, 5))
    n = data.draw(st.integers(1, 6))
    def rows(r):
        return r.integers(0, vshape[0], size=(n,)).astype(np.int32)

    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    if kind == "hybrid":
        vq, vt, ot, oq = dict(scale=data.draw(st.floats(2.0 ** -10, 2.0, width=32)), zp=0), "int8", "float32", {}
    else:
        vt = ot = kind
        vq = oq = data.draw(quant(kind))
    table = random_input(vshape, vt, rng)
    runtime = data.draw(st.booleans())
    ins = [T((n,), "int32") if runtime else const(rows(rng)), T(vshape, vt, data=table, **vq)]
    check(tmp_path / "m.tflite", "EMBEDDING_LOOKUP", ins, [T((n,) + vshape[1:], ot, **oq)], special={0: rows})


def test_embedding_lookup_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "EMBEDDING_LOOKUP", [const([0]), T((3, 4), "int16")], [T((1, 4), "int16")],
            match="INT16")
    refused(tmp_path / "b.tflite", "EMBEDDING_LOOKUP", [const([0]), T((3, 4), "int8", scale=0.5, zp=3)],
            [T((1, 4), "float32")], match="zero point")


# ---------------------------------------------------------------------------- DYNAMIC_UPDATE_SLICE

@pytest.mark.parametrize("dt", pm("DYNAMIC_UPDATE_SLICE", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_dynamic_update_slice(tmp_path, dt, data):
    shape = data.draw(shapes(1, 6, 1, 4))
    ushape = tuple(data.draw(st.integers(1, d)) for d in shape)
    it = data.draw(st.sampled_from(["int32", "int64"]))
    def start(r):
        return np.array([r.integers(-2, d + 2) for d in shape], it)

    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    ins = [T(shape, dt, **q), T(ushape, dt, **q),
           T((len(shape),), it) if runtime else const(start(np.random.default_rng(data.draw(st.integers(0, 99)))), it)]
    check(tmp_path / "m.tflite", "DYNAMIC_UPDATE_SLICE", ins, [T(shape, dt, **q)], special={2: start})


def test_dynamic_update_slice_in_a_chain_runs_in_place(tmp_path):
    """The update writes into the operand's buffer when the operand dies there (a KV-cache step)."""
    from tflite_builder import ModelBuilder

    mb = ModelBuilder()
    sg = mb.subgraph("main")
    a, b = sg.tensor(T((4, 6), "float32")), sg.tensor(T((4, 6), "float32"))
    s = sg.tensor(T((4, 6), "float32"))
    u, i = sg.tensor(T((1, 6), "float32")), sg.tensor(T((2,), "int32"))
    o = sg.tensor(T((4, 6), "float32"))
    sg.op("ADD", [a, b], [s], opts("AddOptions", fusedActivationFunction=0))
    sg.op("DYNAMIC_UPDATE_SLICE", [s, u, i], [o])
    sg.io([a, b, u, i], [o])
    p = mb.write(tmp_path / "m.tflite")
    rng = np.random.default_rng(0)
    sets = [[random_input((4, 6), "float32", rng), random_input((4, 6), "float32", rng),
             random_input((1, 6), "float32", rng), np.array([k, 0], np.int32)] for k in range(5)]
    assert_exact_big(p, sets)


def test_dynamic_update_slice_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "DYNAMIC_UPDATE_SLICE", [T((3, 4), "bool"), T((1, 2), "bool"), const([0, 0])],
            [T((3, 4), "bool")], match="BOOL")
    refused(tmp_path / "b.tflite", "DYNAMIC_UPDATE_SLICE", [T((3, 4), "float32"), T((4, 2), "float32"), const([0, 0])],
            [T((3, 4), "float32")], match="larger")


# ---------------------------------------------------------------------------- CUMSUM

@pytest.mark.parametrize("dt", pm("CUMSUM", ["float32", "int8"]))
@ex(85)
@given(data=st.data())
def test_cumsum(tmp_path, dt, data):
    shape = data.draw(shapes(1, 4, 1, 6))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    runtime = data.draw(st.booleans())
    qi, qo = data.draw(quant(dt)), data.draw(quant(dt))
    if dt == "int8":  # keep the output scale where TFLM's rescaling is defined (and results are not all clamped)
        qo["scale"] = float(np.float32(qi["scale"] * data.draw(st.floats(0.5, 40.0))))
    ins = [T(shape, dt, **qi), T((1,), "int32") if runtime else const([axis])]
    o = opts("CumsumOptions", exclusive=data.draw(st.booleans()), reverse=data.draw(st.booleans()))
    check(tmp_path / "m.tflite", "CUMSUM", ins, [T(shape, dt, **qo)], o,
          special={1: lambda r: np.array([axis], np.int32)})


@pytest.mark.parity("CUMSUM", "int8")
@pytest.mark.parametrize("exclusive,reverse", [(False, False), (True, True)])
def test_cumsum_int8_long_axis_wraps_like_tflm(tmp_path, exclusive, reverse):
    """200 extreme values overflow TFLM's int32 accumulator (values << 20) several times; micro wraps alike."""
    p = tmp_path / "m.tflite"
    build(p, "CUMSUM", [T((3, 200), "int8", scale=0.05, zp=127), const([1])], [T((3, 200), "int8", scale=5.0, zp=-3)],
          opts("CumsumOptions", exclusive=exclusive, reverse=reverse))
    x = np.full((3, 200), -128, np.int8)
    x[1] = 127
    x[2] = np.random.default_rng(0).integers(-128, 128, 200)
    assert_exact_big(p, [[x]])


@pytest.mark.parity("CUMSUM", "float32")
@pytest.mark.parametrize("axis", [0, 1])
def test_cumsum_float32_long_axes_bit_exact(tmp_path, axis):
    """float32 sums accumulate one element at a time in float32, as TFLM's loop does (no pairwise sums)."""
    p = tmp_path / "m.tflite"
    build(p, "CUMSUM", [T((40, 1000), "float32"), const([axis])], [T((40, 1000), "float32")],
          opts("CumsumOptions", exclusive=True, reverse=axis == 1))
    x = (np.random.default_rng(1).standard_normal((40, 1000)) * 100).astype(np.float32)
    assert_exact_big(p, [[x]])


def test_cumsum_refusal(tmp_path):
    refused(tmp_path / "a.tflite", "CUMSUM", [T((3, 4), "int16"), const([0])], [T((3, 4), "int16")],
            opts("CumsumOptions"), "INT16")


# ---------------------------------------------------------------------------- MIRROR_PAD

@pytest.mark.parametrize("dt", pm("MIRROR_PAD", ["float32", "int8"]))
@ex(85)
@given(data=st.data())
def test_mirror_pad(tmp_path, dt, data):
    shape = data.draw(shapes(1, 4, 1, 5))
    mode = data.draw(st.sampled_from([0, 1]))
    limit = [d - 1 if mode == 0 else d for d in shape]
    pads = [[data.draw(st.integers(0, m)), data.draw(st.integers(0, m))] for m in limit]
    out = tuple(d + a + b for d, (a, b) in zip(shape, pads))
    it = data.draw(st.sampled_from(["int32", "int64"]))
    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    ins = [T(shape, dt, **q), T((len(shape), 2), it) if runtime else const(pads, it)]
    check(tmp_path / "m.tflite", "MIRROR_PAD", ins, [T(out, dt, **q)], opts("MirrorPadOptions", mode=mode),
          special={1: lambda r: np.array(pads, it)})


def test_mirror_pad_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "MIRROR_PAD", [T((3, 4), "int16"), const([[1, 1], [1, 1]])], [T((5, 6), "int16")],
            opts("MirrorPadOptions", mode=0), "INT16")
    refused(tmp_path / "b.tflite", "MIRROR_PAD", [T((3, 4), "float32"), const([[3, 0], [0, 0]])],
            [T((6, 4), "float32")], opts("MirrorPadOptions", mode=0), "outside")


# ---------------------------------------------------------------------------- PAD / PADV2

def _pads(data: Any, shape: Sequence[int]) -> tuple[list[list[int]], tuple[int, ...]]:
    pads = [[data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))] for _ in shape]
    return pads, tuple(d + a + b for d, (a, b) in zip(shape, pads))


@pytest.mark.parametrize("dt", pm("PAD", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_pad(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 4))
    pads, out = _pads(data, shape)
    if len(shape) == 4 and data.draw(st.booleans()):  # TFLM's image-style path (batch and channels unpadded)
        pads[0] = pads[3] = [0, 0]
        out = tuple(d + a + b for d, (a, b) in zip(shape, pads))
    qi = data.draw(quant(dt))
    qo = qi if data.draw(st.booleans()) else data.draw(quant(dt))
    check(tmp_path / "m.tflite", "PAD", [T(shape, dt, **qi), const(pads)], [T(out, dt, **qo)], version=2)


@pytest.mark.parametrize("dt", pm("PADV2", ["float32", "int8", "int16", "int32"]))
@ex(85)
@given(data=st.data())
def test_padv2(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 4))
    pads, out = _pads(data, shape)
    q = data.draw(quant(dt))
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    value = np.asarray(random_input((), dt, rng))
    kind = data.draw(st.sampled_from(["scalar", "vector", "runtime"]))
    if kind == "runtime":
        v = T((1,), dt, **q)
    else:
        v = T(() if kind == "scalar" else (1,), dt, data=value.reshape(() if kind == "scalar" else (1,)), **q)
    check(tmp_path / "m.tflite", "PADV2", [T(shape, dt, **q), const(pads), v], [T(out, dt, **q)],
          special={2: lambda r: random_input((1,), dt, r)})


def test_pad_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "PAD", [T((3, 4), "bool"), const([[1, 1], [0, 0]])], [T((5, 4), "bool")],
            match="BOOL")
    refused(tmp_path / "b.tflite", "PAD", [T((3, 4), "float32"), T((2, 2), "int32")], [T((5, 4), "float32")],
            match="constant")
    refused(tmp_path / "c.tflite", "PAD", [T((3, 4), "float32"), const([[1, 1], [0, 0]], "int64")],
            [T((5, 4), "float32")], match="INT64")
    refused(tmp_path / "d.tflite", "PAD", [T((1, 2, 1, 3, 4, 1), "float32"), const([[0, 0]] * 6)],
            [T((1, 2, 1, 3, 4, 1), "float32")], match="at most 5")
    refused(tmp_path / "e.tflite", "PADV2", [T((3, 4), "int8", scale=0.1, zp=2), const([[1, 1], [0, 0]]),
                                             T((), "int8", data=np.array(5, np.int8), scale=0.2, zp=2)],
            [T((5, 4), "int8", scale=0.1, zp=2)], match="scale")
    refused(tmp_path / "f.tflite", "PADV2", [T((3, 4), "float32"), const([[1, 1], [0, 0]])], [T((5, 4), "float32")],
            match="constant-value")


# ---------------------------------------------------------------------------- CONCATENATION

@pytest.mark.parametrize("dt", pm("CONCATENATION", ["float32", "int8", "int16", "int32", "int64", "bool"]))
@ex(85)
@given(data=st.data())
def test_concatenation(tmp_path, dt, data):
    shape = list(data.draw(shapes(1, 5, 1, 4)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = axis % len(shape)
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=10))
    q = data.draw(quant(dt))
    ins = []
    for s in sizes:
        shape[a] = s
        ins.append(T(tuple(shape), dt, **q))
    shape[a] = sum(sizes)
    check(tmp_path / "m.tflite", "CONCATENATION", ins, [T(tuple(shape), dt, **q)],
          opts("ConcatenationOptions", axis=axis, fusedActivationFunction=0), version=2)


def test_concatenation_refusals(tmp_path):
    """TFLM does not requantize in CONCATENATION: int8 inputs with another scale or zero point are refused."""
    o = opts("ConcatenationOptions", axis=1, fusedActivationFunction=0)
    refused(tmp_path / "a.tflite", "CONCATENATION",
            [T((3, 4), "int8", scale=0.1, zp=3), T((3, 2), "int8", scale=0.3, zp=3)],
            [T((3, 6), "int8", scale=0.1, zp=3)], o, "scale or zero point")
    refused(tmp_path / "b.tflite", "CONCATENATION",
            [T((3, 4), "int8", scale=0.1, zp=3), T((3, 2), "int8", scale=0.1, zp=0)],
            [T((3, 6), "int8", scale=0.1, zp=3)], o, "scale or zero point")
    refused(tmp_path / "c.tflite", "CONCATENATION", [T((1, 2), "float32")] * 11, [T((1, 22), "float32")], o,
            "at most 10")
    refused(tmp_path / "d.tflite", "CONCATENATION", [T((3, 4), "uint8"), T((3, 2), "uint8")], [T((3, 6), "uint8")], o,
            "UINT8")
    refused(tmp_path / "e.tflite", "CONCATENATION", [T((3, 4), "float32"), T((2, 2), "float32")],
            [T((3, 6), "float32")], o, "does not fit")
    refused(tmp_path / "f.tflite", "CONCATENATION", [T((3, 4), "float32"), T((3, 2), "float32")],
            [T((3, 6), "float32")], opts("ConcatenationOptions", axis=1, fusedActivationFunction=1), "activation")


# ---------------------------------------------------------------------------- STRIDED_SLICE

def _ss_axis(n: int, b: int, e: int, s: int, bm: bool, em: bool, shrink: bool) -> tuple[int, int]:
    """Start and length of one axis of a TFLite strided slice (written independently of the kernel)."""
    if bm:
        b = 0 if s > 0 else n - 1
    else:
        b = b + n if b < 0 else b
        b = max(0, min(n, b)) if s > 0 else max(-1, min(n - 1, b))
    if shrink:
        return b, 1
    if em:
        e = n if s > 0 else -1
    else:
        e = e + n if e < 0 else e
        e = max(0, min(n, e)) if s > 0 else max(-1, min(n - 1, e))
    return b, len(range(b, e, s))


@pytest.mark.parametrize("dt", pm("STRIDED_SLICE", ["float32", "int8", "int16", "int32", "bool"]))
@ex(100)
@given(data=st.data())
def test_strided_slice(tmp_path, dt, data):
    shape = data.draw(shapes(1, 4, 1, 6))
    rank = len(shape)
    mask = st.integers(0, (1 << rank) - 1)
    bm, em, sm = data.draw(mask), data.draw(mask), data.draw(mask)
    begin, end, strides, out = [], [], [], []
    for d, n in enumerate(shape):
        s = data.draw(st.sampled_from([-3, -2, -1, 1, 2, 3]))
        b, e = data.draw(st.integers(-n - 2, n + 2)), data.draw(st.integers(-n - 2, n + 2))
        shrink = bool(sm >> d & 1)
        if shrink:  # TFLM writes nothing for a shrunk axis with a negative stride
            s = abs(s)
        start, count = _ss_axis(n, b, e, s, bool(bm >> d & 1), bool(em >> d & 1), shrink)
        if shrink and not 0 <= start < n:  # TFLM leaves the output unwritten there
            sm &= ~(1 << d)
            start, count = _ss_axis(n, b, e, s, bool(bm >> d & 1), bool(em >> d & 1), False)
            shrink = False
        if count == 0:  # zero-size outputs are dynamic tensors for TFLM
            e, em = b + (1 if s > 0 else -1), em & ~(1 << d)
            start, count = _ss_axis(n, b, e, s, bool(bm >> d & 1), False, shrink)
            if count == 0:
                b, e, bm = 0, n, bm & ~(1 << d)
                s = abs(s)
                count = len(range(0, n, s))
        begin.append(b)
        end.append(e)
        strides.append(s)
        if not shrink:
            out.append(count)
    q = data.draw(quant(dt))
    # TFLM ignores these options; they must not change anything.
    ignored = {"ellipsisMask": data.draw(st.sampled_from([0, 0, 1])),
               "newAxisMask": data.draw(st.sampled_from([0, 0, 2])),
               "offset": data.draw(st.sampled_from([False, False, True]))}
    o = opts("StridedSliceOptions", beginMask=bm, endMask=em, shrinkAxisMask=sm, **ignored)
    check(tmp_path / "m.tflite", "STRIDED_SLICE", [T(shape, dt, **q), const(begin), const(end), const(strides)],
          [T(tuple(out), dt, **q)], o)


def test_strided_slice_refusals(tmp_path):
    o = opts("StridedSliceOptions")
    refused(tmp_path / "a.tflite", "STRIDED_SLICE",
            [T((1, 2, 1, 3, 4), "float32"), const([0] * 5), const([1, 2, 1, 3, 4]), const([1] * 5)],
            [T((1, 2, 1, 3, 4), "float32")], opts("StridedSliceOptions", ellipsisMask=1), "4-D")
    refused(tmp_path / "b.tflite", "STRIDED_SLICE",
            [T((3, 4), "float32"), T((2,), "int32"), const([3, 4]), const([1, 1])],
            [T((3, 4), "float32")], o, "constant")
    refused(tmp_path / "c.tflite", "STRIDED_SLICE",
            [T((3, 4), "float32"), const([0, 0], "int64"), const([3, 4], "int64"), const([1, 1], "int64")],
            [T((3, 4), "float32")], o, "INT64")
    refused(tmp_path / "d.tflite", "STRIDED_SLICE", [T((3, 4), "float32"), const([0, 0]), const([3, 4]), const([1, 0])],
            [T((3, 4), "float32")], o, "stride")
    refused(tmp_path / "e.tflite", "STRIDED_SLICE", [T((3, 4), "float32"), const([0, 0]), const([3, 4]), const([1, 2])],
            [T((3, 4), "float32")], o, "shape")
    refused(tmp_path / "f.tflite", "STRIDED_SLICE",
            [T((3, 4), "float32"), const([1, 0]), const([2, 4]), const([-1, 1])],
            [T((4,), "float32")], opts("StridedSliceOptions", shrinkAxisMask=1), "unwritten")


# ---------------------------------------------------------------------------- TRANSPOSE

@pytest.mark.parametrize("dt", pm("TRANSPOSE", ["float32", "int8", "int16"]))
@ex(85)
@given(data=st.data())
def test_transpose(tmp_path, dt, data):
    shape = data.draw(shapes(1, 5, 1, 4))
    perm = data.draw(st.permutations(range(len(shape))))
    q = data.draw(quant(dt))
    check(tmp_path / "m.tflite", "TRANSPOSE", [T(shape, dt, **q), const(perm)],
          [T(tuple(shape[p] for p in perm), dt, **q)], version=2)


def test_transpose_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "TRANSPOSE", [T((3, 4), "bool"), const([1, 0])], [T((4, 3), "bool")], match="BOOL")
    refused(tmp_path / "b.tflite", "TRANSPOSE", [T((3, 4), "float32"), T((2,), "int32")], [T((4, 3), "float32")],
            match="constant")
    refused(tmp_path / "c.tflite", "TRANSPOSE", [T((3, 4), "float32"), const([-1, 0])], [T((4, 3), "float32")],
            match="permutation")


def test_strided_slice_5d_runs_beyond_tflm(tmp_path):
    """TFLM's STRIDED_SLICE stops at 4-D; micro's plain view copy handles more (checked against numpy)."""
    p = tmp_path / "m.tflite"
    shape = (2, 3, 1, 4, 5)
    build(p, "STRIDED_SLICE", [T(shape, "float32"), const([1, 0, 0, -1, 4]), const([2, 3, 1, 0, 0]),
                               const([1, 2, 1, -2, -2])],
          [T((2, 1, 2, 2), "float32")], opts("StridedSliceOptions", shrinkAxisMask=1))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert np.array_equal(open_model(str(p)).run([x])[0], x[1, 0:3:2, 0:1, -1:0:-2, 4:0:-2])


def test_transpose_6d_runs_beyond_tflm():
    """TFLM's TRANSPOSE stops at 5-D; micro's is a numpy view and handles any rank (checked against numpy)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.tflite"
        perm = [5, 3, 1, 0, 2, 4]
        shape = (2, 1, 3, 2, 1, 2)
        build(p, "TRANSPOSE", [T(shape, "float32"), const(perm)], [T(tuple(shape[i] for i in perm), "float32")])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        assert np.array_equal(open_model(str(p)).run([x])[0], x.transpose(perm))


# ---------------------------------------------------------------------------- RESHAPE / SQUEEZE

@pytest.mark.parametrize("dt", pm("RESHAPE", ALL_TYPES))
@ex(70)
@given(data=st.data())
def test_reshape(tmp_path, dt, data):
    shape = data.draw(shapes(0, 5, 1, 4))
    n = int(np.prod(shape))
    out = list(data.draw(st.permutations(list(shape) + [1] * data.draw(st.integers(0, 2)))))
    kind = data.draw(st.sampled_from(["const", "runtime", "options"]))
    q = data.draw(quant(dt))
    assert int(np.prod(out)) == n
    if kind == "options":
        ins, o = [T(shape, dt, **q)], opts("ReshapeOptions", newShape=out)
    else:
        shown = list(out)
        if shown and data.draw(st.booleans()):
            shown[data.draw(st.integers(0, len(shown) - 1))] = -1
        ins, o = [T(shape, dt, **q), T((len(out),), "int32") if kind == "runtime" else const(shown)], None
    check(tmp_path / "m.tflite", "RESHAPE", ins, [T(tuple(out), dt, **q)], o,
          special={1: lambda r: np.array(out, np.int32)})


@pytest.mark.parametrize("dt", pm("SQUEEZE", ALL_TYPES))
@ex(70)
@given(data=st.data())
def test_squeeze(tmp_path, dt, data):
    shape = data.draw(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=6).map(tuple))
    ones = [i for i, d in enumerate(shape) if d == 1]
    dims = data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    gone = set(dims) if dims else set(ones)
    dims = [d - len(shape) if data.draw(st.booleans()) else d for d in dims]
    q = data.draw(quant(dt))
    out = tuple(d for i, d in enumerate(shape) if i not in gone)
    check(tmp_path / "m.tflite", "SQUEEZE", [T(shape, dt, **q)], [T(out, dt, **q)],
          opts("SqueezeOptions", squeezeDims=dims))


def test_reshape_squeeze_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "RESHAPE", [T((2, 3), "float32"), const([4, 2])], [T((4, 2), "float32")],
            match="number of elements")
    refused(tmp_path / "b.tflite", "RESHAPE", [T((2, 3), "float32"), const([3, 2])], [T((3, 2), "int32")],
            match="same type")
    refused(tmp_path / "c.tflite", "SQUEEZE", [T((2, 1, 3), "int8")], [T((2, 3, 2), "int8")],
            opts("SqueezeOptions", squeezeDims=[1]), "number of elements")


# ---------------------------------------------------------------------------- no allocation at invoke

def _memory_cases() -> dict[str, tuple]:
    """One model per op, on 64x64 float32 tensors (16 KiB) so that any array allocated at invoke shows;
    index inputs are graph inputs where the op accepts them (the run-time paths)."""
    S, f = (64, 64), "float32"
    return {
        "SPLIT": ([const([1]), T(S, f)], [T((64, 32), f)] * 2, opts("SplitOptions", numSplits=2), {}),
        "SLICE": ([T(S, f), T((2,), "int32"), const([32, 32])], [T((32, 32), f)], None,
                  {1: lambda r: np.array([3, 5], np.int32)}),
        "GATHER": ([T(S, f), T((40,), "int32")], [T((40, 64), f)], opts("GatherOptions", axis=0),
                   {1: lambda r: r.integers(0, 64, 40).astype(np.int32)}),
        "GATHER_ND": ([T(S, f), T((40, 2), "int32")], [T((40,), f)], None,
                      {1: lambda r: r.integers(0, 64, (40, 2)).astype(np.int32)}),
        "PACK": ([T(S, f), T(S, f)], [T((64, 2, 64), f)], opts("PackOptions", valuesCount=2, axis=1), {}),
        "REVERSE_V2": ([T(S, f), T((1,), "int32")], [T(S, f)], None, {1: lambda r: np.array([1], np.int32)}),
        "DYNAMIC_UPDATE_SLICE": ([T(S, f), T((8, 64), f), T((2,), "int32")], [T(S, f)], None,
                                 {2: lambda r: np.array([9, 0], np.int32)}),
        "CUMSUM": ([T(S, "int8", scale=0.1, zp=2), T((1,), "int32")], [T(S, "int8", scale=0.5, zp=-1)],
                   opts("CumsumOptions", exclusive=True, reverse=True), {1: lambda r: np.array([0], np.int32)}),
        "MIRROR_PAD": ([T(S, f), T((2, 2), "int32")], [T((66, 70), f)], opts("MirrorPadOptions", mode=0),
                       {1: lambda r: np.array([[1, 1], [3, 3]], np.int32)}),
        "EMBEDDING_LOOKUP": ([T((40,), "int32"), T(S, "int8", data=np.ones(S, np.int8), scale=0.5, zp=0)],
                             [T((40, 64), f)], None, {0: lambda r: r.integers(0, 64, 40).astype(np.int32)}),
        "BROADCAST_TO": ([T((1, 64), f), const([64, 64])], [T(S, f)], None, {}),
        "PADV2": ([T(S, f), const([[1, 1], [2, 2]]), T((1,), f)], [T((66, 68), f)], None, {}),
        "STRIDED_SLICE": ([T(S, f), const([60, 0]), const([0, 64]), const([-2, 3])], [T((30, 22), f)],
                          opts("StridedSliceOptions"), {}),
    }


@pytest.mark.parametrize("op", sorted(_memory_cases()))
def test_steady_state_invoke_does_not_allocate(tmp_path, op):

    ins, outs, o, special = _memory_cases()[op]
    p = tmp_path / "m.tflite"
    build(p, op, ins, outs, o)
    it = open_model(str(p)).interpreter
    xs = feeds(ins, np.random.default_rng(0), n=1, special=special)[0]

    def step() -> None:
        for i, x in enumerate(xs):
            it.set_input(i, x)
        it.invoke()

    # numpy fills its small caches once, under tracing; garbage left for the cycle collector would count as growth
    grown, peak = traced_allocations(step, 200, warmup=20, traced_warmup=200, gc_off=True)
    assert grown <= 4096, f"{op}: memory grew by {grown} bytes over 200 invokes"
    # MIRROR_PAD with computed paddings rebuilds its index with broadcasting adds, where numpy uses its
    # transient iterator buffer (<= 8192 int64 elements, freed within the call; see interpreter.invoke).
    bound = 64 * 1024 + 8192 if op == "MIRROR_PAD" else 8192
    assert peak <= bound, f"{op}: an invoke allocated {peak} bytes at its peak"

"""Parity of micro's data-movement kernels with tflite-micro (bit-exact), over random shapes, options,
types and index inputs (constant and graph inputs where TFLM allows them), plus clean refusals."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import UnsupportedModelError
from edge_runtime.backends.micro import open_model
from edge_runtime.formats.tflite import TFLiteModel
from tflite_builder import T, build, opts, random_input, run_micro, tflm

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
@ex(60)
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
@ex(60)
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
@ex(80)
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
    with pytest.raises(Exception, match="SLICE"):
        m.run([np.zeros((3, 4), np.float32), np.array([2, 1], np.int32)])


# ---------------------------------------------------------------------------- GATHER / GATHER_ND

@pytest.mark.parametrize("dt", pm("GATHER", ["float32", "int8"]))
@ex(120)
@given(data=st.data())
def test_gather(tmp_path, dt, data):
    shape = data.draw(shapes(1, 4, 1, 5))
    rank = len(shape)
    axis = data.draw(st.integers(0, rank - 1))
    batch = data.draw(st.integers(0, axis))
    cshape = tuple(shape[:batch]) + data.draw(shapes(0, 2, 1, 4))
    out = tuple(shape[:axis]) + cshape[batch:] + tuple(shape[axis + 1:])
    coords = lambda rng: rng.integers(0, shape[axis], size=cshape).astype(np.int32)
    runtime = data.draw(st.booleans())
    q = data.draw(quant(dt))
    a = axis - rank if data.draw(st.booleans()) else axis
    b = batch - len(cshape) if batch < len(cshape) and data.draw(st.booleans()) else batch
    ins = [T(shape, dt, **q), T(cshape, "int32") if runtime else const(coords(np.random.default_rng(1)))]
    check(tmp_path / "m.tflite", "GATHER", ins, [T(out, dt, **q)], opts("GatherOptions", axis=a, batchDims=b),
          special={1: coords})


@pytest.mark.parametrize("dt", pm("GATHER_ND", ["float32", "int8"]))
@ex(120)
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


def test_gather_refusals(tmp_path):
    refused(tmp_path / "a.tflite", "GATHER", [T((3, 4), "int16"), const([1, 0])], [T((2, 4), "int16")],
            opts("GatherOptions", axis=0), "INT16")
    refused(tmp_path / "b.tflite", "GATHER", [T((3, 4), "float32"), const([1, 0], "int64")], [T((2, 4), "float32")],
            opts("GatherOptions", axis=0), "INT64")
    refused(tmp_path / "c.tflite", "GATHER_ND", [T((3, 4), "int32"), const([[1], [0]])], [T((2, 4), "int32")],
            match="INT32")
    refused(tmp_path / "d.tflite", "GATHER_ND", [T((3, 4), "float32"), const([[1, 0, 0]])], [T((1,), "float32")],
            match="depth")


def test_gather_runtime_out_of_range_fails_at_invoke(tmp_path):
    p = tmp_path / "m.tflite"
    build(p, "GATHER", [T((3, 4), "float32"), T((2,), "int32")], [T((2, 4), "float32")], opts("GatherOptions", axis=0))
    m = open_model(str(p))
    with pytest.raises(Exception, match="GATHER"):
        m.run([np.zeros((3, 4), np.float32), np.array([3, 0], np.int32)])


# ---------------------------------------------------------------------------- PACK / UNPACK

@pytest.mark.parametrize("dt", pm("PACK", ["float32", "int8", "int16", "int32", "int64"]))
@ex(60)
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
@ex(60)
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
@ex(50)
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
@ex(20)
@given(shape=shapes(0, 6, 1, 4))
def test_shape(tmp_path, dt, shape):
    check(tmp_path / "m.tflite", "SHAPE", [T(shape, dt)], [T((len(shape),), "int32")], opts("ShapeOptions", outType=2))


def test_shape_refusal(tmp_path):
    refused(tmp_path / "a.tflite", "SHAPE", [T((2, 3), "float32")], [T((2,), "int64")],
            opts("ShapeOptions", outType=4), "INT64")


@pytest.mark.parametrize("dt", pm("FILL", ["float32", "int8", "int32"]))
@ex(40)
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

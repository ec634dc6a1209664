"""RANGE and REDUCE_PROD on micro against LiteRT's reference kernels (tflite-micro has neither op).

Every comparison is ``np.array_equal`` (values, dtype and shape) with LiteRT run with
``OpResolverType.BUILTIN_REF`` on one thread, on random shapes, axes, keep_dims, types,
quantization and values. Float32 products use values near 1 over many terms, so a product taken
in another order than LiteRT's row-major one gives other bits (checked); float32 RANGE steps by
0.1-like deltas, where LiteRT's running sum differs from ``start + i * delta`` (checked). Bad
values are refused in one line: at load for constants (UnsupportedModelError), at invoke for
values computed in the graph (InputError), as LiteRT refuses them.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import InputError, UnsupportedModelError
from tflite_builder import NP_TYPES, ModelFolder, T, build, opts, run_litert, run_micro

FOLDER = ModelFolder("micro_range_prod_")


@pytest.fixture(scope="module", autouse=True)
def _folder():  # type: ignore[no-untyped-def]
    yield
    FOLDER.remove()


def run_litert_ref(path, input_sets):  # type: ignore[no-untyped-def]
    """LiteRT's reference kernels (BUILTIN_REF, one thread): every output for each input set."""
    return run_litert(path, input_sets, reference_kernels=True)


def assert_equal_litert(path, input_sets) -> list:  # type: ignore[no-untyped-def]
    """micro == LiteRT reference (np.array_equal, dtype and shape too), in-place planning on and off."""
    expect = run_litert_ref(path, input_sets)
    for in_place in (False, True):
        got = run_micro(path, input_sets, in_place)
        for k, (g, e) in enumerate(zip(got, expect)):
            for a, b in zip(g, e):
                assert a.dtype == b.dtype and a.shape == b.shape, \
                    f"set {k}: {a.dtype}{a.shape} vs LiteRT {b.dtype}{b.shape}"
                assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), \
                    f"{path.name} set {k}: {a.ravel()[:6]} vs LiteRT {b.ravel()[:6]}"
    return expect


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


# ------------------------------------------------------------------------------------------ RANGE

def litert_count(start, limit, delta, dtype: str) -> int:  # type: ignore[no-untyped-def]
    """The element count LiteRT gives (a constant RANGE run on LiteRT itself)."""
    dt = NP_TYPES[dtype]
    p = build(FOLDER.path("RANGE"), "RANGE", [T([], dtype, data=np.array(v, dt)) for v in (start, limit, delta)],
              [T([1], dtype)])
    return int(run_litert_ref(p, [[]])[0][0].size)


def random_range(rng: np.random.Generator, dtype: str):  # type: ignore[no-untyped-def]
    if dtype == "float32":
        start = float(np.float32(rng.uniform(-20, 20)))
        delta = float(np.float32(rng.choice([0.1, 0.3, 0.7, 1.5, -0.1, -0.25, -1.1])))
        n = int(rng.integers(1, 60))
        limit = float(np.float32(start + delta * (n - rng.uniform(0.0, 0.9))))
        return start, limit, delta
    big = 2 ** 40 if dtype == "int64" else 0
    start = int(rng.integers(-1000, 1000)) + big
    delta = int(rng.choice([1, 2, 3, 7, -1, -4, -9]))
    limit = start + delta * int(rng.integers(0, 50)) + int(np.sign(delta)) * int(rng.integers(0, abs(delta)))
    return start, limit, delta


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_constant_range_equals_litert(dtype: str) -> None:
    rng = np.random.default_rng(1)
    dt = NP_TYPES[dtype]
    for _ in range(6):
        s, lim, d = random_range(rng, dtype)
        n = litert_count(s, lim, d, dtype)
        p = build(FOLDER.path("RANGE"), "RANGE", [T([], dtype, data=np.array(v, dt)) for v in (s, lim, d)],
                  [T([n], dtype)])
        (ref,), = assert_equal_litert(p, [[]])
        assert ref.size == n


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
def test_computed_range_equals_litert(dtype: str) -> None:
    """Start, limit and delta come from the graph (model inputs); the count must match the output shape."""
    rng = np.random.default_rng(2)
    dt = NP_TYPES[dtype]
    for _ in range(5):
        s, lim, d = random_range(rng, dtype)
        n = litert_count(s, lim, d, dtype)
        p = build(FOLDER.path("RANGE"), "RANGE", [T([], dtype), T([], dtype), T([], dtype)],
                  [T([n], dtype, shape_signature=[-1])])
        xs = [np.array(v, dt) for v in (s, lim, d)]
        (ref,), _ = assert_equal_litert(p, [xs, xs])
        assert ref.size == n


def test_float_range_is_a_running_sum_not_start_plus_i_delta() -> None:
    """LiteRT adds delta step by step in float32; micro must too (the closed form differs in the last bits)."""
    p = build(FOLDER.path("RANGE"), "RANGE", [T([], "float32", data=np.float32(v)) for v in (0.1, 2.0, 0.1)],
              [T([19], "float32")])
    (ref,), = assert_equal_litert(p, [[]])
    closed = np.float32(0.1) + np.arange(19, dtype=np.float32) * np.float32(0.1)
    assert not np.array_equal(ref, closed)


def test_range_refusals_are_one_line() -> None:
    f32 = "float32"
    const = [T([], f32, data=np.float32(v)) for v in (0.0, 1.0, 0.0)]
    with pytest.raises(UnsupportedModelError) as e:  # delta 0 (LiteRT fails at prepare too)
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", const, [T([1], f32)])))
    assert "delta is 0" in one_line(e.value)
    wrong_way = [T([], "int32", data=np.int32(v)) for v in (5, 1, 1)]
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", wrong_way, [T([1], "int32")])))
    assert "cannot reach" in one_line(e.value)
    ok = [T([], "int32", data=np.int32(v)) for v in (0, 10, 3)]
    with pytest.raises(UnsupportedModelError) as e:  # 4 elements, the model says 3
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", ok, [T([3], "int32")])))
    assert "4 elements" in one_line(e.value)
    mixed = [T([], "int32", data=np.int32(0)), T([], "int64", data=np.int64(4)), T([], "int32", data=np.int32(1))]
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", mixed, [T([4], "int32")])))
    one_line(e.value)
    with pytest.raises(UnsupportedModelError) as e:  # LiteRT 2.3 refuses int8 RANGE too
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", [T([], "int8", data=np.int8(v)) for v in (0, 4, 1)],
                             [T([4], "int8")])))
    assert "INT8" in one_line(e.value)
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(build(FOLDER.path("RANGE"), "RANGE", [T([1], "int32", data=np.int32([0]))] + ok[1:],
                             [T([4], "int32")])))
    assert "scalar" in one_line(e.value)


def test_computed_range_refusals_at_invoke_match_litert() -> None:
    """Values from the graph: delta 0 and a wrong direction fail the invoke in LiteRT and in micro (one
    line); a count other than the planned output size fails micro's invoke (its shapes are static)."""
    p = build(FOLDER.path("RANGE"), "RANGE", [T([], "float32")] * 3, [T([4], "float32", shape_signature=[-1])])
    m = open_model(str(p))
    good = [np.float32(v) for v in (0.0, 2.0, 0.5)]
    assert np.array_equal(m.run(good)[0], run_litert_ref(p, [good])[0][0])
    for bad, words in (((0.0, 2.0, 0.0), "delta is 0"), ((3.0, 2.0, 0.5), "cannot reach"),
                       ((0.0, 3.0, 0.5), "6 elements")):
        xs = [np.array(v, np.float32) for v in bad]
        with pytest.raises(InputError) as e:
            m.run(xs)
        assert words in one_line(e.value)
        if words != "6 elements":
            with pytest.raises(RuntimeError):
                run_litert_ref(p, [xs])
    assert np.array_equal(m.run(good)[0], np.arange(0, 2, 0.5, dtype=np.float32))  # still usable


# ------------------------------------------------------------------------------------ REDUCE_PROD

def prod_model(shape, axes, keep: bool, dtype: str, qin=None, qout=None):  # type: ignore[no-untyped-def]
    """A one-op REDUCE_PROD model; ``qin``/``qout`` = (scale, zero point) for quantized tensors."""
    rank = len(shape)
    resolved = sorted({a % rank for a in axes})
    out = [1 if d in resolved else s for d, s in enumerate(shape)] if keep else \
        [s for d, s in enumerate(shape) if d not in resolved]
    x = T(list(shape), dtype, scale=qin[0] if qin else None, zp=qin[1] if qin else 0)
    y = T(out, dtype, scale=qout[0] if qout else None, zp=qout[1] if qout else 0)
    ax = T([len(axes)], "int32", data=np.array(axes, np.int32))
    return build(FOLDER.path("REDUCE_PROD"), "REDUCE_PROD", [x, ax], [y], opts("ReducerOptions", keepDims=keep))


def random_axes(rng: np.random.Generator, rank: int) -> list[int]:
    k = int(rng.integers(1, rank + 1))
    axes = [int(a) for a in rng.choice(rank, size=k, replace=False)]
    axes = [a - rank if rng.random() < 0.3 else a for a in axes]  # negative forms
    if rng.random() < 0.2:
        axes.append(axes[0])  # a duplicate
    return axes


def random_shape(rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(s) for s in rng.integers(1, 7, size=int(rng.integers(1, 5))))


def values(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    if dtype == "float32":
        return (1.0 + rng.standard_normal(shape) * 0.2).astype(np.float32)
    info = np.iinfo(NP_TYPES[dtype])
    lo, hi = (int(info.min), int(info.max)) if dtype in ("int8", "int16") else (-5000, 5000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(NP_TYPES[dtype])


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64", "int8"])
def test_reduce_prod_equals_litert(dtype: str) -> None:
    """Float32, int32/int64 (wrapping products) and int8 without quantization, random shapes/axes/keep_dims."""
    rng = np.random.default_rng(3)
    for _ in range(8):
        shape = random_shape(rng)
        p = prod_model(shape, random_axes(rng, len(shape)), bool(rng.integers(0, 2)), dtype)
        assert_equal_litert(p, [[values(rng, shape, dtype)] for _ in range(2)])


@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_quantized_reduce_prod_equals_litert(dtype: str) -> None:
    """QuantizedReduceProd: the per-step 64-bit rescale, random scales and zero points (int16: zero points 0).

    Half the models get full-range inputs (products clamp at the type's limits); the other half get
    factors ``q - zp`` in {-2, -1, 1, 2} and an output scale set from the data, so the results spread
    inside the range and every rounding step shows."""
    rng = np.random.default_rng(4)
    dt = NP_TYPES[dtype]
    spread = 0
    for i in range(12):
        shape = random_shape(rng)
        axes = random_axes(rng, len(shape))
        keep = bool(rng.integers(0, 2))
        zin = int(rng.integers(-20, 21)) if dtype == "int8" else 0
        zout = int(rng.integers(-100, 100)) if dtype == "int8" else 0
        sin = float(np.float32(2.0 ** rng.uniform(-9, -1)))
        if i % 2:
            xs = [[values(rng, shape, dtype)] for _ in range(2)]
            sout = float(np.float32(2.0 ** rng.uniform(-12, 0)))
        else:
            xs = [[(zin + rng.choice([-2, -1, 1, 2], size=shape)).astype(dt)] for _ in range(2)]
            resolved = tuple(sorted({a % len(shape) for a in axes}))
            real = np.prod((xs[0][0].astype(np.float64) - zin) * sin, axis=resolved)
            sout = float(np.float32(max(float(np.median(np.abs(real))), 1e-30) / 20))
        p = prod_model(shape, axes, keep, dtype, (sin, zin), (sout, zout))
        got = assert_equal_litert(p, xs)
        info = np.iinfo(dt)
        spread += int(np.sum((got[0][0] > info.min) & (got[0][0] < info.max) & (got[0][0] != zout)))
    assert spread >= 10  # results inside the range, not only clamped ones


def test_float_product_keeps_litert_order_on_long_reductions() -> None:
    """Both float paths: few outputs over thousands of terms (buffered multiply.accumulate) and many
    outputs over a few terms (one vector multiply per term). Another order gives other bits."""
    rng = np.random.default_rng(5)
    for shape, axes, keep in (((3, 5000), [1], False), ((2, 3000, 2), [1, 0], True), ((1, 1500),
                              [0, 1], False), ((70, 6, 3), [1], False), ((6, 1, 80), [0, -2], True)):
        p = prod_model(shape, axes, keep, "float32")
        x = (1.0 + rng.standard_normal(shape) * 0.01).astype(np.float32)  # products stay normal
        (ref,), = assert_equal_litert(p, [[x]])
        assert np.all((ref > 1e-3) & (ref < 1e3))
        if x.size >= 3000:  # the reversed order is another product (so the check above can fail)
            rev = np.flip(x, axis=tuple(a % len(shape) for a in axes))
            (rref,), = run_micro(p, [[np.ascontiguousarray(rev)]])
            assert not np.array_equal(ref, rref)


def test_reduce_prod_refusals_are_one_line() -> None:
    cases = [
        (prod_model((2, 3), [1], False, "uint8"), "UINT8"),
        (prod_model((2, 3), [1], False, "int16", (0.01, 1), (0.01, 0)), "zero points 0"),
        (prod_model((2, 3), [1], False, "int8", (0.01, 0), None), "output is not"),
        (prod_model((2, 3), [1], False, "int8", None, (0.01, 0)), "output is"),
        (prod_model((2, 2), [1], False, "int8", (1.0, 0), (2.0 ** -30, 0)), "too large"),
    ]
    x, y = T([2, 3], "float32"), T([2], "float32")
    cases.append((build(FOLDER.path("REDUCE_PROD"), "REDUCE_PROD", [x, T([1], "int32")], [y]), "constant"))
    cases.append((build(FOLDER.path("REDUCE_PROD"), "REDUCE_PROD", [x, T([1], "int32", data=np.int32([2]))], [y]),
                  "out of range"))
    cases.append((build(FOLDER.path("REDUCE_PROD"), "REDUCE_PROD", [x, T([1], "int64", data=np.int64([1]))], [y]),
                  "INT64"))
    for path, words in cases:
        with pytest.raises(UnsupportedModelError) as e:
            open_model(str(path))
        assert words in one_line(e.value) and "REDUCE_PROD" in str(e.value)


# ------------------------------------------------------------------------------ the real models' ops

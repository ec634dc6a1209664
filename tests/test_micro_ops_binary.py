"""Parity of micro's binary-family kernels (and ADD/SUB/MUL) with tflite-micro, over random models.

Each hypothesis example builds a one-op model (random broadcast shapes up to rank 6,
random scales, zero points and fused activations) and compares micro (in-place
planning on and off) with tflite-micro on several random input sets, bit for bit
(float32 included: these kernels are single IEEE operations). Unsupported types and
shapes must be refused with a one-line UnsupportedModelError naming the op.
"""
from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflite_builder import NP_TYPES, T, assert_exact, build, opts, random_input, run_tflm
from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError

EXAMPLES = int(os.environ.get("MICRO_BINARY_EXAMPLES", "80"))  # models per op and type; SETS input sets each
SETS = 5
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_DIR = Path(tempfile.mkdtemp(prefix="micro_binary_"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_COUNTER = itertools.count()

Feed = Callable[[list[np.ndarray], np.random.Generator], list[np.ndarray]]


def _path(op: str) -> Path:
    return _DIR / f"{op}_{next(_COUNTER)}.tflite"


def parity(op: str, types: list[str], kind: Optional[str] = None) -> Any:
    """Parametrize a test over ``types``, each carrying its parity mark."""
    marks = [pytest.param(t, marks=pytest.mark.parity(op, t, *([kind] if kind else [])), id=t) for t in types]
    return pytest.mark.parametrize("dtype", marks)


# ---------------------------------------------------------------------------------------------- strategies

@st.composite
def broadcast_shapes(draw: Any, n: int = 2, max_rank: int = 6, same: bool = False) -> tuple[list[tuple], tuple]:
    """``n`` input shapes that broadcast together, and their broadcast shape."""
    rank = draw(st.integers(1, max_rank))  # (tflite-micro's Python wrapper cannot set rank-0 inputs)
    top = 5 if rank <= 3 else (3 if rank <= 5 else 2)
    full = draw(st.lists(st.integers(1, top), min_size=rank, max_size=rank))
    if same or draw(st.integers(0, 4)) == 0:
        shapes = [tuple(full)] * n
    else:
        shapes = []
        for _ in range(n):
            drop = draw(st.integers(0, rank)) if draw(st.booleans()) else 0
            shapes.append(tuple(d if draw(st.booleans()) else 1 for d in full[drop:]) or (1,))
    return shapes, tuple(np.broadcast_shapes(*shapes))


def scales() -> Any:
    """Quantization scales in [0.001, 0.99]: log-uniform, or short decimals as converters often write."""
    return st.one_of(st.floats(-3.0, -0.05).map(lambda e: float(np.float32(10.0 ** e))),
                     st.integers(1, 99).map(lambda k: k / 100), st.integers(1, 99).map(lambda k: k / 1000))


def zero_points(dtype: str) -> Any:
    return st.integers(-128, 127) if dtype == "int8" else st.just(0)


@st.composite
def qtensor(draw: Any, shape: tuple, dtype: str, **kw: Any) -> T:
    """A tensor of ``dtype``, quantized (random scale and zero point) for int8/int16."""
    if dtype in ("int8", "int16"):
        return T(shape, dtype, scale=draw(scales()), zp=draw(zero_points(dtype)), **kw)
    return T(shape, dtype, **kw)


def _inputs(path: Path, ins: list[T], rng: np.random.Generator, feed: Optional[Feed]) -> list[list[np.ndarray]]:
    sets = []
    for _ in range(SETS):
        xs = [random_input(t.shape, NP_TYPES[t.dtype], rng) for t in ins if t.data is None]
        sets.append(feed(xs, rng) if feed else xs)
    return sets


def _check(op: str, ins: list[T], out: T, options: Any = None, feed: Optional[Feed] = None, seed: int = 0) -> None:
    p = build(_path(op), op, ins, [out], options)
    sets = _inputs(p, ins, np.random.default_rng(seed), feed)
    try:
        assert_exact(p, sets)
    except AssertionError:
        print("failing model:", [(t.shape, t.dtype, t.scale, t.zp) for t in ins], (out.shape, out.scale, out.zp))
        raise


def _small_values(xs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Half the time, values from a small set (so that equal values and ties occur)."""
    if rng.integers(0, 2):
        return xs
    out = []
    for x in xs:
        if x.dtype == np.bool_ or x.dtype == np.int8 or x.dtype == np.int16:
            out.append(x)
        else:
            out.append(rng.integers(-3, 4, size=x.shape).astype(x.dtype))
    return out


def _nonzero(pos: int, zero: int = 0) -> Feed:
    """Replace input ``pos`` values equal to ``zero`` (a divisor's zero) by ``zero + 1``."""
    def feed(xs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        if pos >= len(xs):  # a constant input
            return xs
        x = xs[pos].copy()
        x[x == zero] = zero + 1 if zero < 127 else zero - 1
        xs[pos] = x
        return xs
    return feed


def _maybe_constant(data: Any, t: T, avoid: Optional[int] = None) -> T:
    """A third of the time, make ``t`` a constant tensor with random values (never ``avoid``)."""
    if data.draw(st.integers(0, 2)) == 0:
        x = random_input(t.shape, NP_TYPES[t.dtype], np.random.default_rng(data.draw(st.integers(0, 99))))
        if avoid is not None:
            x[x == avoid] = avoid + 1 if avoid < 127 else avoid - 1
        t.data = x
    return t


def _refused(op: str, ins: list[T], out: T, options: Any = None) -> None:
    p = build(_path(op), op, ins, [out], options)
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(p))
    msg = str(e.value)
    assert "\n" not in msg and op in msg, msg


# ------------------------------------------------------------------------------------------ ADD / SUB / MUL

ARITH_OPTS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions"}


def _wide_int32(xs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Half the time, int32 values over the whole range (wrapping arithmetic)."""
    if rng.integers(0, 2):
        return [rng.integers(-2**31, 2**31, size=x.shape, dtype=np.int64).astype(np.int32) for x in xs]
    return xs


def _arith(op: str, dtype: str, data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    act = data.draw(st.sampled_from([0, 1, 2, 3]))
    zero = dtype == "int16" and op == "MUL"
    a, b = (data.draw(qtensor(s, dtype)) for s in (sa, sb))
    y = data.draw(qtensor(so, dtype))
    if zero:
        a.zp = b.zp = y.zp = 0
    elif dtype == "int16":  # int16 ADD/SUB take any zero points
        a.zp, b.zp, y.zp = (data.draw(st.integers(-300, 300)) for _ in range(3))
    _maybe_constant(data, b)
    feed = _wide_int32 if dtype == "int32" else None
    _check(op, [a, b], y, opts(ARITH_OPTS[op], fusedActivationFunction=act), feed, data.draw(st.integers(0, 99)))


@parity("ADD", ["int8", "int16", "int32", "float32"])
@SETTINGS
@given(data=st.data())
def test_add(dtype: str, data: Any) -> None:
    _arith("ADD", dtype, data)


@parity("SUB", ["int8", "int16", "int32", "float32"])
@SETTINGS
@given(data=st.data())
def test_sub(dtype: str, data: Any) -> None:
    _arith("SUB", dtype, data)


@parity("MUL", ["int8", "int16", "int32", "float32"])
@SETTINGS
@given(data=st.data())
def test_mul(dtype: str, data: Any) -> None:
    _arith("MUL", dtype, data)


# ------------------------------------------------------------------------------------------------- DIV

@parity("DIV", ["int8", "int32", "float32"])
@SETTINGS
@given(data=st.data())
def test_div(dtype: str, data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    act = data.draw(st.sampled_from([0, 1, 2, 3]))
    a, b = (data.draw(qtensor(s, dtype)) for s in (sa, sb))
    y = data.draw(qtensor(so, dtype))
    if dtype == "int8":  # keep the output multiplier in TFLM's range (micro refuses the rest)
        y.scale = max(y.scale, a.scale / b.scale / 2.0 ** 22)
    divisor_zero = int(b.zp) if dtype == "int8" else 0
    _maybe_constant(data, b, divisor_zero if dtype != "float32" else None)
    feed = _nonzero(1, divisor_zero) if dtype != "float32" else None
    _check("DIV", [a, b], y, opts("DivOptions", fusedActivationFunction=act), feed, data.draw(st.integers(0, 99)))


@pytest.mark.parity("DIV", "int8")
def test_div_int8_all_pairs() -> None:
    """Every int8 (dividend, divisor) pair for a few quantizations, including TFLM's out-of-range shifts."""
    values = np.arange(-128, 128, dtype=np.int8)
    for s1, s2, so, z1, z2, zo in [(0.1, 0.1, 0.3, 3, 3, -2), (0.05, 0.2, 0.01, 0, -5, 7), (0.02, 0.02, 0.02, 0, 0, 0),
                                   (0.013, 0.07, 0.11, 20, -9, 4), (0.99, 0.09, 0.005, -128, 127, -128)]:
        p = build(_path("DIV"), "DIV", [T((8, 1), scale=s1, zp=z1), T((1, 256), scale=s2, zp=z2)],
                  [T((8, 256), scale=so, zp=zo)], opts("DivOptions", fusedActivationFunction=0))
        divisors = values.copy()
        divisors[divisors == z2] = z2 + 1 if z2 < 127 else z2 - 1  # division by zero is undefined in TFLM
        assert_exact(p, [[values[i:i + 8].reshape(8, 1), divisors.reshape(1, 256)] for i in range(0, 256, 8)])


# ------------------------------------------------------------------------------------- FLOOR_DIV / FLOOR_MOD

def _floor(op: str, data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    def feed(xs: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        xs = _small_values(xs, rng)
        xs[1] = np.where(xs[1] == 0, np.float32(1.5), xs[1]).astype(np.float32)
        return xs
    _check(op, [T(sa, "float32"), T(sb, "float32")], T(so, "float32"), None, feed, data.draw(st.integers(0, 99)))


@pytest.mark.parity("FLOOR_DIV", "float32")
@SETTINGS
@given(data=st.data())
def test_floor_div(data: Any) -> None:
    _floor("FLOOR_DIV", data)


@pytest.mark.parity("FLOOR_MOD", "float32")
@SETTINGS
@given(data=st.data())
def test_floor_mod(data: Any) -> None:
    _floor("FLOOR_MOD", data)


# --------------------------------------------------------------------------- MAXIMUM / MINIMUM / SQUARED_DIFFERENCE

def _plain(op: str, dtype: str, data: Any, feed: Optional[Feed] = None, same_quant: bool = False) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    a, b = (data.draw(qtensor(s, dtype)) for s in (sa, sb))
    y = data.draw(qtensor(so, dtype))
    if same_quant and dtype in ("int8", "int16"):
        b.scale, b.zp, y.scale, y.zp = a.scale, a.zp, a.scale, a.zp
    _maybe_constant(data, b)
    _check(op, [a, b], y, None, feed, data.draw(st.integers(0, 99)))


@parity("MAXIMUM", ["int8", "int16", "int32", "int64", "float32"])
@SETTINGS
@given(data=st.data())
def test_maximum(dtype: str, data: Any) -> None:
    _plain("MAXIMUM", dtype, data, _small_values, same_quant=True)


@parity("MINIMUM", ["int8", "int16", "int32", "int64", "float32"])
@SETTINGS
@given(data=st.data())
def test_minimum(dtype: str, data: Any) -> None:
    _plain("MINIMUM", dtype, data, _small_values, same_quant=True)


@parity("SQUARED_DIFFERENCE", ["int8", "int16", "int32", "float32"])
@SETTINGS
@given(data=st.data())
def test_squared_difference(dtype: str, data: Any) -> None:
    _plain("SQUARED_DIFFERENCE", dtype, data)


# ------------------------------------------------------------------------------------------------ comparisons

COMPARISONS = ["EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL"]
COMPARE_TYPES = {op: ["int8", "int32", "int64", "float32"] + (["bool"] if op in ("EQUAL", "NOT_EQUAL") else [])
                 for op in COMPARISONS}


def _compare(op: str, dtype: str, data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    a, b = (data.draw(qtensor(s, dtype)) for s in (sa, sb))
    if dtype == "int8":
        a.scale, b.scale = min(a.scale, 0.9), min(b.scale, 0.9)
        if data.draw(st.booleans()):
            b.scale, b.zp = a.scale, a.zp  # equal quantization: ties between equal values
    _maybe_constant(data, b)
    _check(op, [a, b], T(so, "bool"), None, _small_values, data.draw(st.integers(0, 99)))


def _comparison_test(op: str) -> Any:
    @parity(op, COMPARE_TYPES[op])
    @SETTINGS
    @given(data=st.data())
    def test(dtype: str, data: Any) -> None:
        _compare(op, dtype, data)
    test.__name__ = f"test_{op.lower()}"
    return test


test_equal = _comparison_test("EQUAL")
test_not_equal = _comparison_test("NOT_EQUAL")
test_greater = _comparison_test("GREATER")
test_greater_equal = _comparison_test("GREATER_EQUAL")
test_less = _comparison_test("LESS")
test_less_equal = _comparison_test("LESS_EQUAL")


# ------------------------------------------------------------------------------------- logic and selection

@pytest.mark.parity("LOGICAL_AND", "bool")
@SETTINGS
@given(data=st.data())
def test_logical_and(data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    _check("LOGICAL_AND", [T(sa, "bool"), T(sb, "bool")], T(so, "bool"), None, None, data.draw(st.integers(0, 99)))


@pytest.mark.parity("LOGICAL_OR", "bool")
@SETTINGS
@given(data=st.data())
def test_logical_or(data: Any) -> None:
    (sa, sb), so = data.draw(broadcast_shapes())
    _check("LOGICAL_OR", [T(sa, "bool"), T(sb, "bool")], T(so, "bool"), None, None, data.draw(st.integers(0, 99)))


@parity("SELECT_V2", ["int8", "int16", "float32"])
@SETTINGS
@given(data=st.data())
def test_select_v2(dtype: str, data: Any) -> None:
    (sc, sx, sy), so = data.draw(broadcast_shapes(n=3))
    x = data.draw(qtensor(sx, dtype))
    y = T(sy, dtype, scale=x.scale, zp=x.zp) if x.scale is not None else T(sy, dtype)
    out = T(so, dtype, scale=x.scale, zp=x.zp) if x.scale is not None else T(so, dtype)
    _check("SELECT_V2", [T(sc, "bool"), x, y], out, None, None, data.draw(st.integers(0, 99)))


# --------------------------------------------------------------------------------------------- ADD_N, PRELU

@parity("ADD_N", ["int8", "float32"])
@SETTINGS
@given(data=st.data())
def test_add_n(dtype: str, data: Any) -> None:
    (shape,), _ = data.draw(broadcast_shapes(n=1, same=True))
    n = data.draw(st.integers(2, 5))
    first = data.draw(qtensor(shape, dtype))
    ins = [T(shape, dtype, scale=first.scale, zp=first.zp) if first.scale is not None else T(shape, dtype)
           for _ in range(n)]
    y = data.draw(qtensor(shape, dtype))
    if dtype == "int8":  # TFLM needs the output multiplier 2 * s / (2**20 * s_out) below 1
        y.scale = max(y.scale, float(np.float32(first.scale * 2.0 ** -19 * 1.01)))
    _check("ADD_N", ins, y, None, None, data.draw(st.integers(0, 99)))


@parity("PRELU", ["int8", "int16", "float32"])
@SETTINGS
@given(data=st.data())
def test_prelu(dtype: str, data: Any) -> None:
    max_rank = 4 if dtype == "float32" else 6
    (sx,), _ = data.draw(broadcast_shapes(n=1, max_rank=max_rank, same=True))
    drop = data.draw(st.integers(0, len(sx) - 1))
    sa = tuple(d if data.draw(st.booleans()) else 1 for d in sx[drop:])  # alpha broadcasts to the input
    so = tuple(sx)
    x = data.draw(qtensor(sx, dtype))
    alpha = _maybe_constant(data, data.draw(qtensor(sa, "float32" if dtype == "float32" else "int8")))
    y = data.draw(qtensor(so, dtype))
    _check("PRELU", [x, alpha], y, None, None, data.draw(st.integers(0, 99)))


# ------------------------------------------------------------------------------------------------ refusals

def q8(shape: tuple, dtype: str = "int8") -> T:
    return T(shape, dtype, scale=0.1, zp=0)


REFUSED = {
    "DIV": ([q8((2, 3), "int16"), q8((2, 3), "int16")], q8((2, 3), "int16"), opts("DivOptions")),
    "FLOOR_DIV": ([q8((2, 3)), q8((2, 3))], q8((2, 3)), None),
    "FLOOR_MOD": ([q8((2, 3)), q8((2, 3))], q8((2, 3)), None),  # (int32 runs: LiteRT's kernel, beyond TFLM's)
    "MAXIMUM": ([T((2, 3), "bool"), T((2, 3), "bool")], T((2, 3), "bool"), None),
    "MINIMUM": ([T((2, 3), "float32"), T((2, 3), "int32")], T((2, 3), "float32"), None),
    "SQUARED_DIFFERENCE": ([T((2, 3), "int64"), T((2, 3), "int64")], T((2, 3), "int64"), None),
    "EQUAL": ([q8((2, 3), "int16"), q8((2, 3), "int16")], T((2, 3), "bool"), None),
    "NOT_EQUAL": ([T((2, 3), "float32"), T((2, 3), "float32")], T((2, 3), "float32"), None),
    "GREATER": ([q8((2, 3), "int16"), q8((2, 3), "int16")], T((2, 3), "bool"), None),
    "GREATER_EQUAL": ([T((2, 3), "bool"), T((2, 3), "bool")], T((2, 3), "bool"), None),
    "LESS": ([T((2, 3), "float32"), T((3, 2), "float32")], T((2, 3), "bool"), None),
    "LESS_EQUAL": ([T((1, 2, 1, 2, 1, 2, 1), "float32"), T((2, 1, 2, 1, 2, 1, 2), "float32")],
                   T((2, 2, 2, 2, 2, 2, 2), "bool"), None),
    "LOGICAL_AND": ([q8((2, 3)), q8((2, 3))], q8((2, 3)), None),
    "LOGICAL_OR": ([T((2, 3), "float32"), T((2, 3), "float32")], T((2, 3), "float32"), None),
    "SELECT_V2": ([T((2, 3), "bool"), T((2, 3), "int32"), T((2, 3), "int32")], T((2, 3), "int32"), None),
    "ADD_N": ([q8((2, 3)), T((2, 3), "int8", scale=0.2, zp=0)], q8((2, 3)), None),
    "PRELU": ([T((1, 2, 2, 2, 3), "float32"), T((3,), "float32")], T((1, 2, 2, 2, 3), "float32"), None),
    "ADD": ([T((2, 3), "int64"), T((2, 3), "int64")], T((2, 3), "int64"), opts("AddOptions")),
    "SUB": ([T((1, 2, 1, 2, 1, 2, 1), "float32"), T((2, 1, 2, 1, 2, 1, 2), "float32")],
            T((2, 2, 2, 2, 2, 2, 2), "float32"), opts("SubOptions")),
    "MUL": ([T((2, 3), "int16", scale=0.1, zp=3), q8((2, 3), "int16")], q8((2, 3), "int16"), opts("MulOptions")),
}


@pytest.mark.parametrize("op", sorted(REFUSED))
def test_unsupported_is_refused(op: str) -> None:
    ins, out, options = REFUSED[op]
    _refused(op, ins, out, options)


CHUNKED = {
    "ADD": ([T((3, 5, 700), "int16", scale=0.001, zp=5), T((5, 1), "int16", scale=0.002)],
            T((3, 5, 700), "int16", scale=0.0025, zp=-3), opts("AddOptions", fusedActivationFunction=1)),
    "DIV": ([T((3, 5, 700), scale=0.05, zp=3), T((5, 700), scale=0.02, zp=-128)], T((3, 5, 700), scale=0.3, zp=1),
            opts("DivOptions", fusedActivationFunction=0)),
    "SQUARED_DIFFERENCE": ([T((3, 5, 700), "int16", scale=0.001), T((1, 700), "int16", scale=0.003)],
                           T((3, 5, 700), "int16", scale=0.02), None),
    "PRELU": ([T((3, 5, 700), "int16", scale=0.001), T((700,), scale=0.01, zp=4)], T((3, 5, 700), "int16", scale=0.002),
              None),
    "ADD_N": ([T((3, 5, 700), scale=0.05, zp=3)] * 3, T((3, 5, 700), scale=0.1, zp=-2), None),
    "FLOOR_DIV": ([T((3, 5, 700), "float32"), T((5, 1), "float32")], T((3, 5, 700), "float32"), None),
    "LESS": ([T((3, 5, 700), scale=0.05, zp=3), T((3, 1, 700), scale=0.07, zp=-1)], T((3, 5, 700), "bool"), None),
}


@pytest.mark.parametrize("op", sorted(CHUNKED))
def test_chunked_workspace(op: str) -> None:
    """With the smallest workspace the ops run in many chunks; results stay those of tflite-micro."""
    ins, out, options = CHUNKED[op]
    p = build(_path(op), op, ins, [out], options)
    rng = np.random.default_rng(3)
    sets = _inputs(p, ins, rng, _nonzero(1, -128) if op == "DIV" else None)
    if op == "FLOOR_DIV":
        sets = [[x, np.where(y == 0, np.float32(1), y)] for x, y in sets]
    expect = run_tflm(p, sets)
    for in_place in (False, True):
        m = open_model(str(p), in_place=in_place, workspace_limit=4096)
        for xs, e in zip(sets, expect):
            assert np.array_equal(m.run(list(xs))[0], e[0]), f"{op} (in_place={in_place})"

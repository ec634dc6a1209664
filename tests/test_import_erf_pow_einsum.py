"""Erf on its own, Pow with constant (array) exponents, LpNormalization p=1, the one-operand / implicit /
``...`` Einsum forms and MatMul with a 1-D operand: through import, int8 (SQNR against onnxruntime on the float
model) and tflite-micro (the micro backend bit-exact with it), on random shapes and on values over each op's
domain. check_onnx calibrates on 24 samples and measures 8 held-out ones: where a result has few values per
sample, a held-out one can pass the calibrated range, so those SQNR floors are 20 dB (a wrong lowering gives
well under 10)."""
from __future__ import annotations

import math
import os
import zlib

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import check_onnx, make_model

from converters.calibrate import float_session, run_float
from converters.importers.onnx import import_onnx
from converters.importers.onnx_ops.einsum import parse
from converters.importers.onnx_ops.erf import erf_reference
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

RNG = np.random.default_rng(11)
n = helper.make_node


@pytest.fixture(autouse=True)
def _rng_per_test(request):  # type: ignore[no-untyped-def]
    """Each test draws its shapes and values from its own seed, whichever tests run before it."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.nodeid.encode()) + SALT)
    yield


#: added to every test's seed (set EDGE_TEST_SALT to try other draws)
SALT = int(os.environ.get("EDGE_TEST_SALT", "0"))


def vi(name: str, shape) -> object:  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def c(name: str, arr) -> object:  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def shape(rank: int, lo: int = 3, hi: int = 8) -> tuple[int, ...]:
    """A random shape with batch 1 (check_onnx feeds batches of one)."""
    return (1,) + tuple(int(d) for d in RNG.integers(lo, hi, rank - 1))


def ops_of(graph) -> list[str]:  # type: ignore[no-untyped-def]
    return [op.kind for op in graph.ops]


def assert_exact(ch) -> None:  # type: ignore[no-untyped-def]
    assert ch.tflm_ran and ch.micro_exact is True, "micro is not bit-exact with tflite-micro"


# -- Erf --------------------------------------------------------------------------------------------------
def test_erf_form_is_within_4e5_of_erf_over_the_real_line():
    x = np.linspace(-12, 12, 48001)
    want = np.array([math.erf(v) for v in x])
    assert np.abs(erf_reference(x).astype(np.float64) - want).max() < 4e-5


@pytest.mark.parametrize("low,high,min_db", [(-3.5, 3.5, 30.0), (-40.0, 40.0, 20.0), (-0.5, 0.5, 25.0)])
def test_erf_alone(tmp_path, low, high, min_db):
    s = shape(4)
    model = make_model([n("Erf", ["x"], ["y"], name="lonely_erf")], [vi("x", s)], [vi("y", s)])
    ch = check_onnx(model, tmp_path, s, low=low, high=high, min_sqnr=min_db)
    assert ops_of(ch.graph)[-1] == "TANH"
    assert_exact(ch)


def test_erf_gelu_with_sum_is_one_gelu(tmp_path):
    """onnx's Gelu function body adds 1 with Sum, not Add: still the one-LOGISTIC GELU, no standalone erf."""
    s = (1, 6, 9)
    nodes = [n("Div", ["x", "sqrt2"], ["d"]), n("Erf", ["d"], ["e"]), n("Sum", ["e", "one"], ["p"]),
             n("Mul", ["x", "p"], ["m"]), n("Mul", ["m", "half"], ["y"])]
    model = make_model(nodes, [vi("x", s)], [vi("y", s)], [c("sqrt2", np.sqrt(2.0)), c("one", 1.0), c("half", 0.5)])
    ch = check_onnx(model, tmp_path, s, low=-4, high=4, min_sqnr=30.0, atol=2e-3)
    kinds = ops_of(ch.graph)
    assert kinds.count("LOGISTIC") == 1 and "TANH" not in kinds
    assert_exact(ch)


def test_erf_whose_gelu_pattern_breaks_off_is_the_standalone_erf(tmp_path):
    s = (1, 12)
    nodes = [n("Mul", ["x", "r2"], ["d"]), n("Erf", ["d"], ["e"]), n("Add", ["e", "one"], ["p"]),
             n("Relu", ["p"], ["y"])]
    model = make_model(nodes, [vi("x", s)], [vi("y", s)], [c("r2", 1 / np.sqrt(2.0)), c("one", 1.0)])
    ch = check_onnx(model, tmp_path, s, low=-3, high=3, min_sqnr=30.0)
    assert "TANH" in ops_of(ch.graph)
    assert_exact(ch)


# -- Pow ---------------------------------------------------------------------------------------------------
def _pow(tmp_path, s, e, low, high, min_db, atol=1e-4):  # type: ignore[no-untyped-def]
    model = make_model([n("Pow", ["x", "e"], ["y"], name="pow")], [vi("x", s)],
                       [vi("y", np.broadcast_shapes(s, np.shape(e)))], [c("e", e)])
    ch = check_onnx(model, tmp_path, s, low=low, high=high, min_sqnr=min_db, atol=atol)
    assert_exact(ch)
    return ch


def test_pow_integer_array_exponents_take_negative_bases(tmp_path):
    s = shape(3)
    e = RNG.integers(0, 6, s[1:]).astype(np.float32)
    e.flat[:3] = [0, 5, 3]
    ch = _pow(tmp_path, s, e, -2.0, 2.0, 20.0)  # (one int8 scale for values from x^0 to x^5)
    assert "LOG" not in ops_of(ch.graph)  # exact products


def test_pow_broadcast_integer_row(tmp_path):
    s = shape(3)
    _pow(tmp_path, s, np.arange(1, s[-1] + 1, dtype=np.float32) % 5 + 1, 0.5, 1.6, 30.0)


@pytest.mark.parametrize("rank", [3, 4])
def test_pow_real_array_exponents_on_positive_bases(tmp_path, rank):
    s = shape(rank)
    e = RNG.uniform(-1.5, 2.5, s[1:]).astype(np.float32)
    _pow(tmp_path, s, e, 0.3, 3.0, 25.0)


def test_pow_scalar_exponent_with_zero_bases(tmp_path):
    """Bases under MIN_BASE count as MIN_BASE: 0 ** 1.7 gives (1/128) ** 1.7 = 2.6e-4."""
    _pow(tmp_path, shape(3), np.array([1.7], np.float32), 0.0, 4.0, 28.0, atol=3e-4)


def test_pow_small_exponent_gives_zero_at_zero(tmp_path):
    """0 ** 0.4 is 0: bases below MIN_BASE follow the line from 0 to MIN_BASE ** e (the floor alone gave
    (1/128) ** 0.4 = 0.14 there). The float graph is checked against onnxruntime on the same inputs."""
    from converters.calibrate import float_session, run_float

    s = shape(3)
    ch = _pow(tmp_path, s, np.array([0.4], np.float32), 0.0, 4.0, 25.0, atol=0.05)
    x = np.zeros(s, np.float32)
    x.flat[1::3] = 1.0
    got = run_float(float_session(ch.graph), ch.graph, ch.graph.to_ir_layout(ch.graph.inputs[0], x))
    y = np.asarray(got[ch.graph.outputs[0]])
    assert np.all(y[y < 0.5] == 0.0) and np.allclose(y[y >= 0.5], 1.0, atol=1e-5)


def test_pow_scalar_integer_four(tmp_path):
    _pow(tmp_path, shape(3), np.array(4.0, np.float32), -1.5, 1.5, 30.0)


def test_pow_odd_exponents_beyond_the_products_keep_the_sign(tmp_path):
    s = (1, 3, 4)
    e = np.array([9, 10, 11, 2], np.float32)
    ch = _pow(tmp_path, s, e, -1.3, 1.3, 25.0)
    assert "SELECT_V2" in ops_of(ch.graph)


# -- LpNormalization p=1 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,axis", [(2, 1), (3, -1), (4, 1), (4, 2)])
def test_l1_normalization(tmp_path, rank, axis):
    s = shape(rank)
    model = make_model([n("LpNormalization", ["x"], ["y"], name="l1", axis=axis, p=1)], [vi("x", s)], [vi("y", s)])
    # (20 dB: with 24 calibration samples of a short row, held-out ratios can pass the calibrated range)
    assert_exact(check_onnx(model, tmp_path, s, low=-2.0, high=2.0, min_sqnr=20.0))


def test_l1_normalization_of_a_zero_row_is_zero():
    model = make_model([n("LpNormalization", ["x"], ["y"], name="l1", axis=-1, p=1)], [vi("x", (1, 3, 4))],
                       [vi("y", (1, 3, 4))])
    g = import_onnx(model)
    x = np.array([[[1, -3, 0, 4], [0, 0, 0, 0], [2, 2, 2, 2]]], np.float32)
    got = run_float(float_session(g), g, x)[g.outputs[0]]
    want = x / np.maximum(np.abs(x).sum(-1, keepdims=True), 1.0)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_lp_normalization_p3_is_refused_in_one_line():
    model = make_model([n("LpNormalization", ["x"], ["y"], name="l3", axis=1, p=3)], [vi("x", (1, 4))],
                       [vi("y", (1, 4))])
    with pytest.raises(UnsupportedModelError, match=r"l3.*p=3 is not supported"):
        import_onnx(model)


# -- Einsum ------------------------------------------------------------------------------------------------
def test_parse_spells_out_ellipsis_and_implicit_output():
    assert parse("i,i", [1, 1]) == (["i", "i"], "")
    assert parse("...ii ->...i", [3]) == (["0ii"], "0i")
    assert parse("ij->ji", [2]) == (["ij"], "ji")
    assert parse("ba,ac", [2, 2]) == (["ba", "ac"], "bc")
    assert parse("...ij,...jk", [4, 3]) == (["01ij", "1jk"], "01ik")
    assert parse("->", [0]) == ([""], "")
    for eq, ranks in (("ij->q", [2]), ("ij", [3]), ("i,j", [1]), ("ij->ii", [2])):
        with pytest.raises(ValueError):
            parse(eq, ranks)


ONE_OPERAND = {  # equation: input rank
    "bij->bji": 3, "bij->bi": 3, "abij->ajib": 4, "...ii->...i": 4, "bcii->bc": 4, "bi->": 2, "bij": 3,
}


@pytest.mark.parametrize("eq", sorted(ONE_OPERAND))
def test_einsum_one_operand(tmp_path, eq):
    rank = ONE_OPERAND[eq]
    s = shape(rank)
    if "ii" in eq:
        s = s[:-1] + (s[-2],)
    terms, out = parse(eq, [rank])
    size = dict(zip(terms[0], s))
    model = make_model([n("Einsum", ["x"], ["y"], name="es", equation=eq)], [vi("x", s)],
                       [vi("y", [size[ch] for ch in out])], opset=13)
    summed = len(out) < len(set(terms[0]))  # a sum has fewer values, and a wider spread, than its input
    assert_exact(check_onnx(model, tmp_path, s, low=-2.0, high=2.0, min_sqnr=20.0 if summed else 30.0))


TWO_OPERANDS = {  # equation: (live input rank, constant operand shape from the sizes)
    "bki,i": "i", "bij,j->bi": "j", "bij,jk->k": "jk", "bij,bjk": "bjk", "b...j,kj->b...k": "kj",
    "b...j,...jj->b...j": "...jj",
}


@pytest.mark.parametrize("eq", sorted(TWO_OPERANDS))
def test_einsum_two_operands_constant_second(tmp_path, eq):
    lhs = eq.split("->")[0].split(",")[0]
    rank = 4 if "..." in lhs else len(lhs)
    s = shape(rank)
    second = TWO_OPERANDS[eq]
    terms, out = parse(eq, [rank, len(second) - 1 if "..." in second else len(second)])
    size = dict(zip(terms[0], s))
    for ch in terms[1]:
        size.setdefault(ch, 16)  # (enough output values that 8 held-out samples measure the SQNR)
    w = RNG.standard_normal([size[ch] for ch in terms[1]]).astype(np.float32)
    model = make_model([n("Einsum", ["x", "w"], ["y"], name="es", equation=eq)], [vi("x", s)],
                       [vi("y", [size[ch] for ch in out])], [c("w", w)], opset=13)
    assert_exact(check_onnx(model, tmp_path, s, low=-1.0, high=1.0, min_sqnr=20.0))


def test_einsum_refusals_are_one_line():
    for eq, shapes in (("ij->q", [(2, 3)]), ("ij,jk,kl->il", [(2, 3), (3, 3), (3, 2)]), ("bi,bi->b", [(1, 3), (2, 3)])):
        names = [f"x{k}" for k in range(len(shapes))]
        model = make_model([n("Einsum", names, ["y"], name="bad_einsum", equation=eq)],
                           [vi(nm, s) for nm, s in zip(names, shapes)], [vi("y", [2])], opset=13)
        with pytest.raises((UnsupportedModelError, ModelFormatError)) as info:
            import_onnx(model)
        assert "bad_einsum" in str(info.value) and "\n" not in str(info.value)


# -- MatMul with a 1-D operand -----------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape,w_shape,vector_left", [((1, 16, 5), (5,), False), ((1, 3, 8, 5), (5,), False),
                                                          ((1, 4, 16), (4,), True), ((1, 2, 4, 8), (4,), True)])
def test_matmul_with_a_vector_operand(tmp_path, x_shape, w_shape, vector_left):
    w = RNG.standard_normal(w_shape).astype(np.float32)
    ins = ["w", "x"] if vector_left else ["x", "w"]
    out = np.matmul(*(np.zeros(w_shape), np.zeros(x_shape)) if vector_left else (np.zeros(x_shape), np.zeros(w_shape)))
    model = make_model([n("MatMul", ins, ["y"], name="mv")], [vi("x", x_shape)], [vi("y", out.shape)], [c("w", w)])
    assert_exact(check_onnx(model, tmp_path, x_shape, low=-1.0, high=1.0, min_sqnr=20.0))

"""Float TFLite importer: LiteRT builtins TFLite Micro has no kernel for, written as ops it has.

Each op is built in a small float32 model with seeded random shapes, axes (negative ones too) and
attributes (``tests/tflite_builder.py``), converted to int8 by ``convert_model`` and measured by
:func:`benchmarks.tflite_op_breadth.measure_case`: SQNR of our int8 .tflite on LiteRT against the float
model on LiteRT (reference: LiteRT's float kernels, each input from a zero recurrent state), exact match
for index outputs, and micro == tflite-micro (``np.array_equal``) on the written .tflite. What is not
supported is refused in one line naming the operator and the reason.
"""
from __future__ import annotations

import tempfile
from typing import Any, Callable

import numpy as np
import pytest

from converters.importers.tflite import import_tflite
from edge_runtime.errors import UnsupportedModelError

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
breadth = pytest.importorskip("benchmarks.tflite_op_breadth")
Case, Net, opts = breadth.Case, breadth.Net, tb.opts


def _measure(case: Any, min_db: float = 30.0) -> dict:
    with tempfile.TemporaryDirectory() as work:
        row = breadth.measure_case(case, work)
    assert row.get("ok"), row.get("error") or row
    assert row["micro"] == "equal", f"{case.name}: micro vs tflite-micro: {row['micro']}"
    assert "db_error" not in row and "db" in row, row
    assert row["db"] >= min_db, f"{case.name}: SQNR {row['db']} dB < {min_db} against LiteRT float"
    return row


def _const_int(n: Any, v: Any) -> int:
    return n.c(np.asarray(v, np.int32), "int32")


def _model(tmp_path: Any, build: Callable[[Any], None]) -> str:
    mb = tb.ModelBuilder()
    build(mb.subgraph("main"))
    return str(mb.write(tmp_path / "m.tflite"))


def _refusal(tmp_path: Any, build: Callable[[Any], None], *words: str) -> None:
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(_model(tmp_path, build))
    msg = str(e.value)
    assert "\n" not in msg and "operator" in msg, msg
    for w in words:
        assert w in msg, msg


# ---------------------------------------------------------------- TILE, POW, REDUCE_PROD
@pytest.mark.parametrize("seed", [0, 1])
def test_tile_random_shapes(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 5))
    shape = [int(v) for v in rng.integers(1, 4, rank)]
    mult = [int(v) for v in rng.integers(1, 4, rank)]
    mult[int(rng.integers(rank))] = 2  # at least one tiled axis

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t([s * m for s, m in zip(shape, mult)])
        n.op("TILE", [x, _const_int(n, mult)], [y])
        n.done(y)
    _measure(Case(f"tile_{seed}", "TILE", build))


@pytest.mark.parametrize("e", [2.0, 3.0, 0.5, -0.5, -1.0])
def test_pow_constant_exponents(e):
    shape = [int(v) for v in np.random.default_rng(int(e * 10) % 7).integers(2, 5, 3)]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t(shape)
        n.op("POW", [x, n.c(np.array(e, np.float32))], [y])
        n.done(y)
    _measure(Case(f"pow_{e:g}", "POW", build, "positive"), min_db=25.0)


def test_pow_refusals(tmp_path):
    def exponent(value: np.ndarray) -> Callable[[Any], None]:
        def build(sg: Any) -> None:
            n = Net(sg)
            x = n.x([2, 3])
            y = n.t([2, 3])
            n.op("POW", [x, n.c(value)], [y])
            n.done(y)
        return build
    _refusal(tmp_path, exponent(np.array(1.7, np.float32)), "POW", "exponent 1.7 is not supported")
    _refusal(tmp_path, exponent(np.array([2.0, 3.0, 2.0], np.float32)), "POW", "varies per element")


@pytest.mark.parametrize("axes,keep", [([-1], False), ([0, 2], True)])
def test_reduce_prod(axes, keep):
    shape = [3, 2, 4]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        red = {a % 3 for a in axes}
        out = [1 if d in red else s for d, s in enumerate(shape)] if keep else [s for d, s in enumerate(shape)
                                                                                 if d not in red]
        y = n.t(out)
        n.op("REDUCE_PROD", [x, _const_int(n, axes)], [y], opts("ReducerOptions", keepDims=keep))
        n.done(y)
    _measure(Case(f"reduce_prod_{len(axes)}", "REDUCE_PROD", build, "near1"))


# ---------------------------------------------------------------- indices: ONE_HOT, EMBEDDING_LOOKUP, RANGE
@pytest.mark.parametrize("axis", [-1, 0])
def test_one_hot_from_integer_input(axis):
    depth, count = 5, 4

    def build(sg: Any) -> None:
        n = Net(sg)
        ids = n.x([count], "int32")
        y = n.t([count, depth] if axis == -1 else [depth, count])
        n.op("ONE_HOT", [ids, _const_int(n, depth), n.c(np.array(1.5, np.float32)), n.c(np.array(-0.5, np.float32))],
             [y], opts("OneHotOptions", axis=axis))
        n.done(y)
    _measure(Case(f"one_hot_{axis}", "ONE_HOT", build, f"int:{depth}"))


def test_embedding_lookup_and_range():
    rng = np.random.default_rng(3)
    table = (rng.standard_normal((9, 6)) * 0.5).astype(np.float32)

    def build(sg: Any) -> None:
        n = Net(sg)
        ids = n.x([4], "int32")
        e = n.t([4, 6])
        n.op("EMBEDDING_LOOKUP", [ids, n.c(table)], [e])
        r = n.t([6])
        n.op("RANGE", [n.c(np.array(0.0, np.float32)), n.c(np.array(3.0, np.float32)),
                       n.c(np.array(0.5, np.float32))], [r])
        y = n.t([4, 6])
        n.op("ADD", [e, r], [y], opts("AddOptions"))
        n.done(y)
    _measure(Case("embedding_range", "EMBEDDING_LOOKUP", build, "int:9"))


# ---------------------------------------------------------------- SELECT, SIGN, RELU_0_TO_1, LRN
def test_select_sign_relu_0_to_1():
    shape = [2, 3, 5]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        m = n.t(shape, "bool")
        n.op("GREATER", [x, n.c(np.array([0.3], np.float32))], [m])
        s = n.t(shape)
        n.op("SELECT", [m, x, n.c(np.full(shape, -0.25, np.float32))], [s])
        g = n.t(shape)
        n.op("SIGN", [x], [g])
        r = n.t(shape)
        n.op("RELU_0_TO_1", [x], [r])
        n.done(s, g, r)
    _measure(Case("select_sign_relu01", "SELECT", build), min_db=25.0)


@pytest.mark.parametrize("radius,beta", [(2, 0.75), (1, 0.5)])
def test_local_response_normalization(radius, beta):
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 3, 4, 7])
        y = n.t([1, 3, 4, 7])
        n.op("LOCAL_RESPONSE_NORMALIZATION", [x], [y],
             opts("LocalResponseNormalizationOptions", radius=radius, bias=1.0, alpha=0.3, beta=beta))
        n.done(y)
    _measure(Case(f"lrn_{radius}", "LOCAL_RESPONSE_NORMALIZATION", build))


def test_lrn_unsupported_beta_is_refused(tmp_path):
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 2, 2, 4])
        y = n.t([1, 2, 2, 4])
        n.op("LOCAL_RESPONSE_NORMALIZATION", [x], [y],
             opts("LocalResponseNormalizationOptions", radius=1, bias=1.0, alpha=0.1, beta=0.6))
        n.done(y)
    _refusal(tmp_path, build, "LOCAL_RESPONSE_NORMALIZATION", "beta=0.6")


# ---------------------------------------------------------------- slices and scatters
@pytest.mark.parametrize("seed", [0, 1])
def test_dynamic_update_slice_random(seed):
    rng = np.random.default_rng(seed + 10)
    shape = [int(v) for v in rng.integers(2, 6, 3)]
    upd = [int(rng.integers(1, s + 1)) for s in shape]
    start = [int(rng.integers(0, s + 2)) for s in shape]  # past the end too: clamped as LiteRT does

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        u = n.t(upd)
        n.op("SLICE", [x, _const_int(n, [0] * 3), _const_int(n, upd)], [u])
        u2 = n.t(upd)
        n.op("MUL", [u, n.c(np.array([-1.5], np.float32))], [u2], opts("MulOptions"))
        y = n.t(shape)
        n.op("DYNAMIC_UPDATE_SLICE", [x, u2, _const_int(n, start)], [y])
        n.done(y)
    _measure(Case(f"dus_{seed}", "DYNAMIC_UPDATE_SLICE", build))


def test_reverse_sequence_scatter_nd_and_diagonals():
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([3, 4, 2])
        r = n.t([3, 4, 2])
        n.op("REVERSE_SEQUENCE", [x, _const_int(n, [4, 1, 3])], [r], opts("ReverseSequenceOptions", seqDim=1,
                                                                          batchDim=0))
        s = n.t([5, 4, 2])
        n.op("SCATTER_ND", [_const_int(n, [[4], [0], [2]]), x, _const_int(n, [5, 4, 2])], [s])
        d = n.t([3, 4, 2, 2])
        n.op("MATRIX_DIAG", [x], [d])
        m = n.t([3, 4, 2])
        n.op("MATRIX_SET_DIAG", [x, n.c(np.full((3, 2), 0.7, np.float32))], [m])
        n.done(r, s, d, m)
    _measure(Case("copies", "REVERSE_SEQUENCE", build))


@pytest.mark.parametrize("op", ["SEGMENT_SUM", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_PROD"])
def test_segment_reductions(op):
    ids = [0, 0, 1, 2, 2, 2] if op == "SEGMENT_SUM" else [1, 0, 2, 0, 1, 2]

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([6, 2])
        y = n.t([3, 2])
        ins = [x, _const_int(n, ids)] + ([] if op == "SEGMENT_SUM" else [_const_int(n, [3])])
        n.op(op, ins, [y])
        n.done(y)
    _measure(Case(op.lower(), op, build, "near1" if op.endswith("PROD") else "normal"), min_db=25.0)


def test_topk_k1_and_refusals(tmp_path):
    def build(k: int) -> Callable[[Any], None]:
        def b(sg: Any) -> None:
            n = Net(sg)
            x = n.x([3, 7])
            v, i = n.t([3, k]), n.t([3, k], "int32")
            n.op("TOPK_V2", [x, _const_int(n, k)], [v, i])
            n.done(v, i)
        return b
    row = _measure(Case("topk1", "TOPK_V2", build(1)))
    assert row["exact"] >= 0.9
    _refusal(tmp_path, build(8), "TOPK_V2", "k=[8] must be one value in [1, 7]")  # k > 1: tests/test_import_topk.py

    def segment_gap(sg: Any) -> None:
        n = Net(sg)
        x = n.x([3, 2])
        y = n.t([3, 2])
        n.op("UNSORTED_SEGMENT_MAX", [x, _const_int(n, [0, 2, 0]), _const_int(n, [3])], [y])
        n.done(y)
    _refusal(tmp_path, segment_gap, "UNSORTED_SEGMENT_MAX", "segment 1 is empty")


# ---------------------------------------------------------------- recurrent
@pytest.mark.parametrize("time_major", [False, True])
def test_unidirectional_sequence_rnn(time_major):
    rng = np.random.default_rng(5)
    batch, steps, size, hidden = 2, 3, 4, 5
    w, r, b = (rng.standard_normal(s).astype(np.float32) * k for s, k in (((hidden, size), 0.5),
                                                                         ((hidden, hidden), 0.3), ((hidden,), 0.1)))

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([steps, batch, size] if time_major else [batch, steps, size])
        h = sg.tensor(tb.T([batch, hidden], "float32", variable=True, name="h"))
        y = n.t([steps, batch, hidden] if time_major else [batch, steps, hidden])
        n.op("UNIDIRECTIONAL_SEQUENCE_RNN", [x, n.c(w), n.c(r), n.c(b), h], [y],
             opts("SequenceRNNOptions", timeMajor=time_major, fusedActivationFunction=4))
        n.done(y)
    _measure(Case("rnn", "UNIDIRECTIONAL_SEQUENCE_RNN", build))


@pytest.mark.parametrize("merge", [True, False])
def test_bidirectional_sequence_lstm(merge):
    name = f"bidirectional_sequence_lstm_{'merged' if merge else 'split'}"
    case = next(c for c in breadth.all_cases() if c.name == name)
    _measure(case, min_db=25.0)


def test_svdf_memory_one_and_stateful_refusal(tmp_path):
    _measure(next(c for c in breadth.all_cases() if c.name == "svdf_rank2_memory1"))
    stateful = next(c for c in breadth.all_cases() if c.name == "svdf_rank2_memory5")
    _refusal(tmp_path, stateful.build, "SVDF", "memory size 5", "stateful")

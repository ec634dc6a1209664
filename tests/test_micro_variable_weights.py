"""Layers whose weights or bias are not constant data: micro runs them as tflite-micro does.

TFLM reads the weights of FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV from the
tensor at invoke time, so they may be a model input, another op's output (RESHAPE, DEQUANTIZE of
int8 weights) or an IF subgraph argument (openWakeWord's ``hey_jarvis_v0.1.tflite``). Every check
here compares micro with tflite-micro with ``np.array_equal`` (float32 included: the variable-weight
path adds the float32 products in TFLM's loop order), except the whole hey_jarvis model, whose
constant float FULLY_CONNECTED layers run on micro's BLAS path (within 1e-6 of tflite-micro, as the
"close" float entries of the parity table).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alloc_probe import traced_allocations  # noqa: E402
from tflite_builder import (  # noqa: E402
    ModelBuilder, ModelFolder, T, assert_close, assert_exact, opts, run_micro, run_tflm,
)

from edge_runtime.backends.micro import open_model  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

SAME, VALID = 0, 1
ACTS = [0, 1, 2, 3]  # NONE, RELU, RELU_N1_TO_1, RELU6
FOLDER = ModelFolder("micro_varw_")


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Any:
    yield
    FOLDER.remove()


# ----------------------------------------------------------------------------- model building

def _merged(t: T) -> tuple[tuple[int, ...], int]:
    """Shape (and quantized axis) of a 2-D tensor that RESHAPE turns into ``t`` (channel axis kept)."""
    shape = tuple(t.shape)
    if len(shape) == 1:
        return (shape[0], 1), 0
    if t.axis == 0:
        return (shape[0], int(np.prod(shape[1:]))), 0
    return (int(np.prod(shape[:-1])), shape[-1]), 1


def _feed(mb: ModelBuilder, sg: Any, t: T, src: str, graph_inputs: list[int], rng: np.random.Generator) -> int:
    """Add tensor ``t`` as: a constant (``t.data``), a model input ("input"), the output of a RESHAPE of
    a model input ("reshape") or, for float weights, of a DEQUANTIZE of constant int8 weights ("dequantize")."""
    if t.data is not None:
        return sg.tensor(t)
    if src == "input":
        i = sg.tensor(t)
        graph_inputs.append(i)
        return i
    out = sg.tensor(t)
    if src == "dequantize":
        q = rng.integers(-127, 128, t.shape).astype(np.int8)
        c = sg.tensor(T(t.shape, "int8", scale=0.03, zp=0, data=q))
        sg.op("DEQUANTIZE", [c], [out])
        return out
    shape, axis = _merged(t)
    s = sg.tensor(T(shape, t.dtype, scale=t.scale, zp=t.zp, axis=axis))
    graph_inputs.append(s)
    new_shape = sg.tensor(T((len(t.shape),), "int32", data=np.array(t.shape, np.int32)))
    sg.op("RESHAPE", [s, new_shape], [out])
    return out


def _model(op: str, ins: list[Optional[T]], srcs: list[str], y: T, options: tuple[str, Any], version: int,
           seed: int) -> Path:
    """One ``op`` whose inputs ``ins`` (None = omitted) come from ``srcs``; x is always a model input."""
    rng = np.random.default_rng(seed)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    graph_inputs: list[int] = []
    idx = [-1 if t is None else _feed(mb, sg, t, s, graph_inputs, rng) for t, s in zip(ins, srcs)]
    while idx[-1] == -1:  # an omitted bias is left out (tflite-micro's int8 DEPTHWISE_CONV_2D crashes on -1)
        idx.pop()
    out = sg.tensor(y)
    sg.op(op, idx, [out], options, version)
    sg.io(graph_inputs, [out])
    return mb.write(FOLDER.path(op))


def _quant(rng: np.random.Generator, dtype: str, cout: int, terms: int, per_channel: bool,
           waxis: int) -> dict[str, Any]:
    """Scales and zero points of input, weights, bias and output for ``dtype`` (float32: none)."""
    if dtype == "float32":
        return {"x": {}, "w": {}, "b": {}, "y": {}, "wt": "float32", "bt": "float32"}
    sx = float(rng.uniform(0.01, 0.1)) if dtype == "int8" else float(rng.uniform(1e-4, 1e-3))
    zx = int(rng.integers(-20, 20)) if dtype == "int8" else 0
    ws = rng.uniform(0.002, 0.02, cout if per_channel else 1).astype(np.float32)
    sy = float(sx * float(ws.max()) * 127 * np.sqrt(terms) * rng.uniform(0.3, 2.0))
    zy = int(rng.integers(-20, 20)) if dtype == "int8" else 0
    return {"x": {"scale": sx, "zp": zx}, "w": {"scale": ws, "zp": 0, "axis": waxis},
            "b": {"scale": (sx * ws.astype(np.float64)).astype(np.float32), "zp": 0},
            "y": {"scale": sy, "zp": zy}, "wt": "int8", "bt": "int32" if dtype == "int8" else "int64"}


def _bias(rng: np.random.Generator, q: dict[str, Any], cout: int, src: str, bt: Optional[str] = None) -> Optional[T]:
    """The bias: absent, constant, or fed from ``src``."""
    kind = rng.choice(["none", "const", "var"])
    bt = bt or q["bt"]
    if kind == "none":
        return None
    data = None
    if kind == "const":
        data = (rng.standard_normal(cout).astype(np.float32) if bt == "float32"
                else rng.integers(-1000, 1000, cout).astype(np.dtype(bt)))
    return T((cout,), bt, data=data, **q["b"])


def fc_model(dtype: str, src: str, seed: int) -> Path:
    """FULLY_CONNECTED with random rows, depth, units, activation; weights from ``src``."""
    rng = np.random.default_rng(seed)
    rows, k, units = int(rng.integers(1, 4)), int(rng.integers(1, 25)), int(rng.integers(1, 9))
    q = _quant(rng, dtype, units, k, bool(rng.integers(0, 2)), 0)
    ins = [T((rows, k), dtype, **q["x"]), T((units, k), q["wt"], **q["w"]), _bias(rng, q, units, src)]
    o = opts("FullyConnectedOptions", fusedActivationFunction=int(rng.choice(ACTS)))
    return _model("FULLY_CONNECTED", ins, ["input", src, src], T((rows, units), dtype, **q["y"]), o, 1, seed)


def _out_size(size: int, k: int, s: int, d: int, pad: int) -> int:
    eff = (k - 1) * d + 1
    return (size + s - 1) // s if pad == SAME else (size - eff + s) // s


def conv_model(op: str, dtype: str, src: str, seed: int) -> Path:
    """CONV_2D / DEPTHWISE_CONV_2D with random geometry (stride, dilation, padding, depth multiplier)."""
    rng = np.random.default_rng(seed)
    dw = op == "DEPTHWISE_CONV_2D"
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 7)), int(rng.integers(1, 7))
    cin, kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw, dh, dwf = (int(v) for v in rng.integers(1, 3, 4))
    pad = int(rng.choice([SAME, VALID]))
    if _out_size(h, kh, sh, dh, pad) < 1 or _out_size(w, kw, sw, dwf, pad) < 1:
        pad = SAME
    oh, ow = _out_size(h, kh, sh, dh, pad), _out_size(w, kw, sw, dwf, pad)
    mult = int(rng.integers(1, 3))
    cout = cin * mult if dw else int(rng.integers(1, 5))
    terms = kh * kw * (1 if dw else cin)
    q = _quant(rng, dtype, cout, terms, bool(rng.integers(0, 2)), 3 if dw else 0)
    wshape = (1, kh, kw, cout) if dw else (cout, kh, kw, cin)
    ins = [T((n, h, w, cin), dtype, **q["x"]), T(wshape, q["wt"], **q["w"]), _bias(rng, q, cout, src)]
    act = int(rng.choice(ACTS))
    if dw:
        o = opts("DepthwiseConv2DOptions", padding=pad, strideW=sw, strideH=sh, depthMultiplier=mult,
                 dilationWFactor=dwf, dilationHFactor=dh, fusedActivationFunction=act)
        version = {"float32": 1, "int8": 3, "int16": 5}[dtype]
    else:
        o = opts("Conv2DOptions", padding=pad, strideW=sw, strideH=sh, dilationWFactor=dwf, dilationHFactor=dh,
                 fusedActivationFunction=act)
        version = {"float32": 1, "int8": 3, "int16": 4}[dtype]
    return _model(op, ins, ["input", src, src], T((n, oh, ow, cout), dtype, **q["y"]), o, version, seed)


def transpose_conv_model(dtype: str, src: str, seed: int) -> Path:
    """TRANSPOSE_CONV with random geometry (any output size whose forward convolution gives the input)."""
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
    cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pad = int(rng.choice([SAME, VALID]))

    def out_size(i: int, s: int, k: int) -> int:
        lo = (i - 1) * s + (1 if pad == SAME else k)
        return int(rng.integers(lo, lo + s))

    ho, wo = out_size(h, sh, kh), out_size(w, sw, kw)
    q = _quant(rng, dtype, cout, cin * min(kh, sh) * min(kw, sw) + 1, bool(rng.integers(0, 2)), 0)
    bt = None if dtype != "int16" else str(rng.choice(["int64", "int16"]))
    ins = [T((4,), "int32", data=np.array([n, ho, wo, cout], np.int32)), T((cout, kh, kw, cin), q["wt"], **q["w"]),
           T((n, h, w, cin), dtype, **q["x"]), _bias(rng, q, cout, src, bt)]
    o = opts("TransposeConvOptions", padding=pad, strideW=sw, strideH=sh,
             fusedActivationFunction=int(rng.choice([0, 1, 3])))
    return _model("TRANSPOSE_CONV", ins, ["input", src, "input", src], T((n, ho, wo, cout), dtype, **q["y"]), o, 3,
                  seed)


# ----------------------------------------------------------------------------- parity with tflite-micro

SOURCES = ["input", "reshape"]


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("dtype", ["float32", "int8", "int16"])
@pytest.mark.parametrize("seed", range(4))
def test_fully_connected_variable_weights_match_tflm(dtype: str, src: str, seed: int) -> None:
    """micro == tflite-micro (np.array_equal) for weights fed as a model input or by a RESHAPE."""
    assert_exact(fc_model(dtype, src, seed), n=3, seed=seed)


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("dtype", ["float32", "int8", "int16"])
@pytest.mark.parametrize("op", ["CONV_2D", "DEPTHWISE_CONV_2D"])
@pytest.mark.parametrize("seed", range(3))
def test_conv_variable_filter_matches_tflm(op: str, dtype: str, src: str, seed: int) -> None:
    """micro == tflite-micro (np.array_equal) for a filter fed as a model input or by a RESHAPE."""
    assert_exact(conv_model(op, dtype, src, 100 + seed), n=2, seed=seed)


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("dtype", ["float32", "int8", "int16"])
@pytest.mark.parametrize("seed", range(3))
def test_transpose_conv_variable_filter_matches_tflm(dtype: str, src: str, seed: int) -> None:
    """micro == tflite-micro (np.array_equal) for a TRANSPOSE_CONV filter from a model input or a RESHAPE."""
    assert_exact(transpose_conv_model(dtype, src, 200 + seed), n=2, seed=seed)


@pytest.mark.parametrize("op", ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"])
def test_float_weights_from_dequantize_match_tflm(op: str) -> None:
    """float weights computed by a DEQUANTIZE of int8 constants (not folded: TFLM runs it) are bit-exact."""
    for seed in range(2):
        p = fc_model("float32", "dequantize", 300 + seed) if op == "FULLY_CONNECTED" \
            else conv_model(op, "float32", "dequantize", 300 + seed)
        assert_exact(p, n=2, seed=seed)


def test_float_padding_skips_taps_like_tflm() -> None:
    """TFLM skips taps outside the input: +inf and -inf weights on the top-left tap leave the outputs of
    the first row and column finite (0 * inf would be NaN there); the others are NaN (inf - inf)."""
    from tflite_builder import build

    rng = np.random.default_rng(4)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    w[:, 0, 0, 0], w[:, 0, 0, 1] = np.inf, -np.inf
    x = (rng.random((1, 4, 4, 2)) + 0.5).astype(np.float32)
    p = build(FOLDER.path("conv_inf"), "CONV_2D",
              [T((1, 4, 4, 2), "float32"), T((3, 3, 3, 2), "float32"), T((3,), "float32", data=np.ones(3, np.float32))],
              [T((1, 4, 4, 3), "float32")], opts("Conv2DOptions", padding=SAME, strideW=1, strideH=1))
    expect = run_tflm(p, [[x, w]])[0][0]
    for in_place in (False, True):
        got = run_micro(p, [[x, w]], in_place)[0][0]
        assert np.array_equal(got, expect, equal_nan=True), f"{got.ravel()[:8]} vs tflite-micro {expect.ravel()[:8]}"
    assert np.all(np.isfinite(expect[0, 0])) and np.all(np.isfinite(expect[0, :, 0]))
    assert np.all(np.isnan(expect[0, 1:, 1:]))


def test_weights_through_if_subgraph_match_tflm() -> None:
    """FULLY_CONNECTED weights passed as IF arguments (the hey_jarvis pattern), both branches."""
    rng = np.random.default_rng(5)
    k, units = 12, 5
    wdata = rng.standard_normal((units, k)).astype(np.float32)
    bdata = rng.standard_normal(units).astype(np.float32)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    c = sg.tensor(T((), "bool", name="cond"))
    x = sg.tensor(T((1, k), "float32", name="x"))
    w = sg.tensor(T((units, k), "float32", data=wdata, name="w"))
    b = sg.tensor(T((units,), "float32", data=bdata, name="b"))
    y = sg.tensor(T((1, units), "float32", name="y"))
    sg.op("IF", [c, x, w, b], [y], opts("IfOptions", thenSubgraphIndex=1, elseSubgraphIndex=2))
    sg.io([c, x], [y])
    for name, act in (("then", 0), ("else", 3)):
        br = mb.subgraph(name)
        bx = br.tensor(T((1, k), "float32"))
        bw = br.tensor(T((units, k), "float32"))
        bb = br.tensor(T((units,), "float32"))
        by = br.tensor(T((1, units), "float32"))
        br.op("FULLY_CONNECTED", [bx, bw, bb], [by], opts("FullyConnectedOptions", fusedActivationFunction=act))
        br.io([bx, bw, bb], [by])
    p = mb.write(FOLDER.path("if_fc"))
    sets = [[np.array(flag), rng.standard_normal((1, k)).astype(np.float32)] for flag in (True, False, True)]
    assert_exact(p, sets)


# ----------------------------------------------------------------------------- refusals, allocation

def test_hybrid_variable_weights_refused_in_one_line_naming_the_subgraph() -> None:
    """float input with non-constant int8 weights: TFLM refuses it too; micro's message names subgraph and op."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    c = sg.tensor(T((), "bool"))
    x = sg.tensor(T((1, 4), "float32"))
    w = sg.tensor(T((3, 4), "int8", scale=0.1, zp=0))
    y = sg.tensor(T((1, 3), "float32"))
    sg.op("IF", [c, x, w], [y], opts("IfOptions", thenSubgraphIndex=1, elseSubgraphIndex=1))
    sg.io([c, x, w], [y])
    br = mb.subgraph("branch")
    bx, bw = br.tensor(T((1, 4), "float32")), br.tensor(T((3, 4), "int8", scale=0.1, zp=0))
    by = br.tensor(T((1, 3), "float32"))
    br.op("FULLY_CONNECTED", [bx, bw, -1], [by], opts("FullyConnectedOptions"))
    br.io([bx, bw], [by])
    p = mb.write(FOLDER.path("hybrid"))
    with pytest.raises(Exception):
        run_tflm(p, [[np.array(True), np.zeros((1, 4), np.float32), np.zeros((3, 4), np.int8)]])
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(p))
    msg = str(info.value)
    assert "\n" not in msg
    assert "subgraph 1 op 0 (FULLY_CONNECTED v1)" in msg and "hybrid" in msg, msg


@pytest.mark.parametrize("make", [lambda: fc_model("float32", "input", 1), lambda: fc_model("int8", "input", 2),
                                  lambda: conv_model("CONV_2D", "int8", "input", 101),
                                  lambda: conv_model("DEPTHWISE_CONV_2D", "float32", "input", 102),
                                  lambda: transpose_conv_model("float32", "input", 201),
                                  lambda: svdf_model("int8", "input", 400),
                                  lambda: _lstm_with_inputs("int8", 501, 3)[1]],
                         ids=["fc_f32", "fc_i8", "conv_i8", "dw_f32", "tconv_f32", "svdf_i8", "lstm_i8"])
def test_variable_weights_invoke_does_not_allocate(make: Any) -> None:
    """Steady state: the weights and bias are copied into preallocated workspace, nothing grows."""
    m = open_model(str(make()))
    it = m.interpreter
    xs = [np.ones(t.shape, t.dtype) for t in m.inputs]

    def step() -> None:
        for i, x in enumerate(xs):
            it.set_input(i, x)
        it.invoke()

    n = 40 if m.interpreter.model.subgraphs[0].operators[0].name.startswith("UNIDIRECTIONAL") else 150  # (slow traced)
    growth, peak = traced_allocations(step, n, warmup=10, traced_warmup=10)
    assert growth <= 4096, f"memory grew by {growth} bytes over {n} invokes"
    assert peak <= 16 * 1024, f"an invoke allocated {peak} bytes at its peak"


# ----------------------------------------------------------------------------- openWakeWord (PyPI wheel)

def _wakeword(name: str) -> Path:
    """The model from the pinned wheel on PyPI (downloaded once into the cache; 5 MB). Where tflite-micro, the
    reference, cannot run (the emulated ARM roots) the test skips; a failed download fails under CI=true."""
    import os

    pytest.importorskip("tflite_micro")
    from benchmarks._pypi_models import FetchError, PypiModel, fetch

    try:
        return fetch(PypiModel("wyoming-openwakeword", "1.8.2", f"wyoming_openwakeword/models/{name}.tflite"))
    except FetchError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {exc}")
        pytest.skip(str(exc))


def test_hey_jarvis_runs_on_micro_close_to_tflm() -> None:
    """The whole model (IF whose branch gets the FC weights as arguments) against tflite-micro: its
    constant float FULLY_CONNECTED layers in subgraph 0 use micro's BLAS path, so within 1e-6."""
    p = _wakeword("hey_jarvis_v0.1")
    rng = np.random.default_rng(0)
    sets = [[(rng.standard_normal((1, 16, 96)) * 3).astype(np.float32)] for _ in range(6)]
    assert_close(p, sets, rtol=1e-6)


def test_hey_jarvis_branch_with_real_weights_is_bit_exact(tmp_path: Path) -> None:
    """Subgraph 2 of hey_jarvis (every layer's weights are arguments) as a model of its own, fed the
    model's real weights: micro == tflite-micro with np.array_equal."""
    from tflite_builder import schema
    import flatbuffers

    from edge_runtime.formats.tflite import TFLiteModel

    p = _wakeword("hey_jarvis_v0.1")
    m = schema.ModelT.InitFromPackedBuf(p.read_bytes(), 0)
    m.subgraphs = [m.subgraphs[2]]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    q = tmp_path / "hey_jarvis_branch.tflite"
    q.write_bytes(bytes(b.Output()))
    sg0 = TFLiteModel.open(str(p)).subgraphs[0]
    if_op = next(op for op in sg0.operators if op.name == "IF")
    weights = [sg0.tensors[i].array() for i in if_op.inputs[2:12]]
    rng = np.random.default_rng(1)
    sets = [[(rng.standard_normal((1, 16, 96)) * 3).astype(np.float32), *weights,
             rng.random((1, 1)).astype(np.float32)] for _ in range(4)]
    expect = run_tflm(q, sets)
    got = run_micro(q, sets)
    for g, e in zip(got, expect):
        assert np.array_equal(g[0], e[0]), f"{g[0]} vs tflite-micro {e[0]}"


# ----------------------------------------------------------------------------- SVDF

def svdf_model(kind: str, src: str, seed: int, state_type: str = "int16") -> Path:
    """One SVDF whose feature weights, time weights and bias are each constant or fed from ``src``
    (the float kernel gets a bias: tflite-micro's float SVDF dereferences a missing one)."""
    rng = np.random.default_rng(seed)
    b, n_in, units, rank, mem = (int(v) for v in (rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 6),
                                                  rng.integers(1, 4), rng.integers(1, 6)))
    filters = units * rank
    fixed = rng.random(3) < 0.4  # which of wf, wt, bias stay constant (at least one is fed)
    fixed[int(rng.integers(0, 3))] = False

    def maybe(t: T, k: int, data: np.ndarray) -> T:
        if fixed[k]:
            t.data = data
        return t

    if kind == "float32":
        x = T([b, n_in], "float32")
        wf = maybe(T([filters, n_in], "float32"), 0, rng.standard_normal((filters, n_in)).astype(np.float32))
        wt = maybe(T([filters, mem], "float32"), 1, rng.standard_normal((filters, mem)).astype(np.float32))
        bias = maybe(T([units], "float32"), 2, rng.standard_normal(units).astype(np.float32))
        state, out = T([b, filters * mem], "float32", variable=True), T([b, units], "float32")
    else:
        st_s, wt_s = (0.02, 0.001) if state_type == "int16" else (0.5, 0.004)
        x = T([b, n_in], "int8", scale=0.05, zp=int(rng.integers(-10, 10)))
        wf = maybe(T([filters, n_in], "int8", scale=0.01), 0,
                   rng.integers(-127, 128, (filters, n_in)).astype(np.int8))
        wt = maybe(T([filters, mem], state_type, scale=wt_s), 1,
                   rng.integers(-100, 100, (filters, mem)).astype(state_type))
        bias = maybe(T([units], "int32", scale=float(np.float32(st_s) * np.float32(wt_s))), 2,
                     rng.integers(-5000, 5000, units).astype(np.int32))
        state = T([b, filters * mem], state_type, scale=st_s, zp=0 if state_type == "int16" else 3, variable=True)
        out = T([b, units], "int8", scale=0.05, zp=int(rng.integers(-10, 10)))
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    graph_inputs: list[int] = []
    idx = [_feed(mb, sg, t, "input" if k == 0 else src, graph_inputs, rng) for k, t in enumerate([x, wf, wt, bias])]
    y = sg.tensor(out)
    sg.op("SVDF", idx + [sg.tensor(state)], [y], opts("SVDFOptions", rank=rank,
                                                     fusedActivationFunction=int(rng.choice([0, 1, 3]))))
    sg.io(graph_inputs, [y])
    return mb.write(FOLDER.path("svdf"))


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("kind,state_type", [("float32", "float32"), ("int8", "int16"), ("int8", "int8")])
@pytest.mark.parametrize("seed", range(3))
def test_svdf_variable_weights_match_tflm(kind: str, state_type: str, src: str, seed: int) -> None:
    """SVDF weights / bias from a model input or a RESHAPE, the state carried over 4 invocations:
    micro == tflite-micro (np.array_equal)."""
    p = svdf_model(kind, src, 400 + seed, state_type)
    from tflite_builder import random_inputs

    assert_exact(p, random_inputs(p, np.random.default_rng(seed), 4), reset_each=False)


# ----------------------------------------------------------------------------- UNIDIRECTIONAL_SEQUENCE_LSTM

LSTM_PARAMS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 15)  # the eight gate matrices and the four biases


def _lstm_with_inputs(kind: str, seed: int, n_var: int) -> tuple[Path, Path, list[int]]:
    """An LSTM (the recurrent tests' generator) and the same model with ``n_var`` of its weights / biases
    turned into model inputs; returns both paths and those op input positions."""
    import flatbuffers
    from test_micro_ops_recurrent import _lstm_model
    from tflite_builder import schema

    rng = np.random.default_rng(seed)
    c = dict(b=int(rng.integers(1, 3)), t=int(rng.integers(1, 4)), i=int(rng.integers(1, 6)),
             s=int(rng.integers(1, 6)), time_major=bool(rng.integers(0, 2)), cell_clip=0.0, seed=seed)
    const = _lstm_model(FOLDER.path("lstm_const"), kind, c)
    m = schema.ModelT.InitFromPackedBuf(const.read_bytes(), 0)
    sg = m.subgraphs[0]
    positions = sorted(int(p) for p in rng.choice(LSTM_PARAMS, n_var, replace=False))
    for pos in positions:
        sg.tensors[int(sg.operators[0].inputs[pos])].buffer = 0
    sg.inputs = np.array(list(sg.inputs) + [int(sg.operators[0].inputs[p]) for p in positions], np.int32)
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    var = FOLDER.path("lstm_var")
    var.write_bytes(bytes(b.Output()))
    return const, var, positions


@pytest.mark.parametrize("kind", ["float32", "int8", "int16"])
@pytest.mark.parametrize("seed", range(3))
def test_lstm_variable_weights(kind: str, seed: int) -> None:
    """Gate weights / biases fed as model inputs (other values in the second of 3 invocations), the state
    carried over: int8 and 16x8 micro == tflite-micro (np.array_equal); float32 within 1e-6 of tflite-micro
    (as the constant float LSTM) and, on the first invocation, identical to micro's run of the model
    with those values constant."""
    from edge_runtime.formats.tflite import TFLiteModel
    from tflite_builder import random_input

    const, var, positions = _lstm_with_inputs(kind, 500 + seed, 1 + seed * 2)
    sg = TFLiteModel.open(str(const)).subgraphs[0]
    values = [sg.tensors[sg.operators[0].inputs[p]].array() for p in positions]
    other = [(v * 0.5).astype(v.dtype) if v.dtype.kind == "f" else v // 2 for v in values]
    rng = np.random.default_rng(seed)
    x = sg.tensors[sg.inputs[0]]
    xs = [random_input(x.shape, x.dtype, rng) for _ in range(3)]
    sets = [[xs[0], *values], [xs[1], *other], [xs[2], *values]]
    if kind != "float32":
        assert_exact(var, sets, reset_each=False)
        return
    got = run_micro(var, sets, reset_each=False)
    assert np.array_equal(got[0][0], run_micro(const, [[xs[0]]])[0][0])
    for g, e in zip(got, run_tflm(var, sets, reset_each=False)):
        assert float(np.max(np.abs(g[0] - e[0]))) <= 1e-6 * max(1.0, float(np.max(np.abs(e[0])))), \
            f"{g[0].ravel()[:4]} vs tflite-micro {e[0].ravel()[:4]}"

"""Grouped CONV_2D and FULLY_CONNECTED with offset (non-zero zero point) int8 weights: micro runs them
as tflite-micro does.

- grouped CONV_2D (filter depth = input channels / groups, not a DEPTHWISE op): tflite-micro's reference
  convolution runs it for float32, int8 (per-channel) and 16x8; micro routes it to the general kernel
  (:class:`VariableWeights`) and must match with ``np.array_equal`` (float32 included: TFLM's loop order).
- FULLY_CONNECTED with per-tensor int8 weights of zero point != 0 (int8 and int16 inputs, constant or
  not): TFLM's reference FC adds the filter offset; micro must match with ``np.array_equal``.
- TFLM runs int8 CONV_2D / DEPTHWISE_CONV_2D weights and per-channel FC weights with a zero point != 0
  but ignores it (the results are those of zero point 0): micro refuses them with one line.

Every comparison is with tflite-micro (``run_tflm``), in-place planning on and off (``assert_exact``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alloc_probe import traced_allocations  # noqa: E402
from tflite_builder import (  # noqa: E402
    ModelBuilder, ModelFolder, T, assert_exact, assert_missing, build, opts, random_inputs, run_tflm,
)

from edge_runtime.backends.micro import open_model  # noqa: E402
from edge_runtime.backends.micro.kernels.conv import Conv2D  # noqa: E402
from edge_runtime.backends.micro.kernels.fully_connected import FullyConnected  # noqa: E402
from edge_runtime.backends.micro.kernels.variable_weights import VariableWeights  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

FOLDER = ModelFolder("micro_grouped_")
SAME, VALID = 0, 1


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Any:
    yield
    FOLDER.remove()


def _out_size(n: int, k: int, s: int, d: int, padding: int) -> int:
    eff = (k - 1) * d + 1
    return (n + s - 1) // s if padding == SAME else (n - eff + s) // s


def grouped_conv_model(dtype: str, seed: int, groups: int = 0, w_zp: int = 0, per_channel: bool = True,
                       batch: int = 0) -> Path:
    """One CONV_2D with random geometry; ``groups`` (and ``batch``) 0 draws it (2, 3, 4 or the input channels)."""
    rng = np.random.default_rng(seed)
    g = groups or int(rng.choice([2, 3, 4, -1]))
    fin = int(rng.integers(1, 4))
    if g == -1:  # as many groups as input channels (filter depth 1), still a CONV_2D
        g, fin = int(rng.integers(2, 6)), 1
    cin, cout = g * fin, g * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    dh, dw = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if sh == sw == 1 else (1, 1)
    padding = int(rng.integers(0, 2))
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(4, 9)), int(rng.integers(4, 9))
    n = batch or n
    if _out_size(h, kh, sh, dh, padding) < 1 or _out_size(w, kw, sw, dw, padding) < 1:
        padding = SAME  # (a VALID window larger than the input)
    ho, wo = _out_size(h, kh, sh, dh, padding), _out_size(w, kw, sw, dw, padding)
    act = int(rng.choice([0, 1, 3]))
    if dtype == "int16" and act == 3:
        act = 1  # (RELU6 at a 16-bit output scale leaves a handful of values)
    wshape = (cout, kh, kw, fin)
    if dtype == "float32":
        x = T((n, h, w, cin), "float32")
        wt = T(wshape, "float32", data=rng.standard_normal(wshape).astype(np.float32))
        b = T((cout,), "float32", data=rng.standard_normal(cout).astype(np.float32))
        y = T((n, ho, wo, cout), "float32")
    else:
        in_scale = float(rng.uniform(0.01, 0.1))
        x = T((n, h, w, cin), dtype, scale=in_scale, zp=int(rng.integers(-20, 20)) if dtype == "int8" else 0)
        ws = rng.uniform(0.002, 0.02, cout) if per_channel else np.full(cout, rng.uniform(0.002, 0.02))
        wt = T(wshape, "int8", scale=list(ws) if per_channel else float(ws[0]),
               zp=[0] * cout if per_channel else w_zp, data=rng.integers(-127, 128, wshape).astype(np.int8))
        bt = "int32" if dtype == "int8" else "int64"
        b = T((cout,), bt, scale=list(ws * in_scale), zp=[0] * cout,
              data=rng.integers(-2000, 2000, cout).astype(bt))
        y = T((n, ho, wo, cout), dtype, scale=float(rng.uniform(0.05, 0.5) * (1 if dtype == "int8" else 4)),
              zp=int(rng.integers(-10, 10)) if dtype == "int8" else 0)
    return build(FOLDER.path(f"conv_{dtype}_{seed}"), "CONV_2D", [x, wt, b], [y],
                 opts("Conv2DOptions", padding=padding, strideW=sw, strideH=sh, dilationWFactor=dw,
                      dilationHFactor=dh, fusedActivationFunction=act), version=3 if dtype != "int16" else 4)


def offset_fc_model(dtype: str, seed: int, constant: bool = True, per_channel: bool = False,
                    zp: int = 0) -> Path:
    """One FULLY_CONNECTED with int8 weights of non-zero zero point (random unless ``zp``)."""
    rng = np.random.default_rng(seed)
    rows, k, units = int(rng.integers(1, 6)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    zp = zp or int(rng.choice([v for v in range(-128, 128) if v]))
    in_scale = float(rng.uniform(0.01, 0.1))
    ws = rng.uniform(0.002, 0.02, units) if per_channel else np.full(units, rng.uniform(0.002, 0.02))
    data = rng.integers(-128, 128, (units, k)).astype(np.int8)
    wt = T((units, k), "int8", scale=list(ws) if per_channel else float(ws[0]),
           zp=[zp] * units if per_channel else zp, data=data if constant else None)
    bt = "int32" if dtype == "int8" else "int64"
    b = T((units,), bt, scale=list(ws * in_scale) if per_channel else float(ws[0] * in_scale),
          data=rng.integers(-5000, 5000, units).astype(bt))
    x = T((rows, k), dtype, scale=in_scale, zp=int(rng.integers(-20, 20)) if dtype == "int8" else 0)
    y = T((rows, units), dtype, scale=float(rng.uniform(0.5, 2.0) * (1 if dtype == "int8" else 4)),
          zp=int(rng.integers(-10, 10)) if dtype == "int8" else 0)
    act = int(rng.choice([0, 1, 3]))
    if dtype == "int16" and act == 3:
        act = 1
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ins = [sg.tensor(t) for t in (x, wt, b)]
    out = sg.tensor(y)
    sg.op("FULLY_CONNECTED", ins, [out], opts("FullyConnectedOptions", fusedActivationFunction=act),
          version=4 if dtype == "int8" else 7)
    sg.io([ins[0]] + ([] if constant else [ins[1]]), [out])
    return mb.write(FOLDER.path(f"fc_{dtype}_{seed}_{constant}_{per_channel}"))


def _kernel(path: Path) -> Any:
    return open_model(str(path)).interpreter.kernels[0]


# ----------------------------------------------------------------------------- parity with tflite-micro

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", ["float32", "int8", "int16"])
def test_grouped_conv_exact(dtype: str, seed: int) -> None:
    """Random grouped CONV_2D (groups 2, 3, 4 or the input channels; strides, dilations, paddings,
    activations, per-channel scales): micro == tflite-micro, bit for bit, in place on and off."""
    p = grouped_conv_model(dtype, 100 * seed + len(dtype))
    assert isinstance(_kernel(p), VariableWeights)
    assert_exact(p, n=3, seed=seed)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_offset_fc_constant_weights_exact(dtype: str, seed: int) -> None:
    """FULLY_CONNECTED, constant per-tensor int8 weights with zero point != 0: micro == tflite-micro."""
    assert_exact(offset_fc_model(dtype, 300 + seed), n=3, seed=seed)


@pytest.mark.parametrize("seed", range(4))
def test_offset_fc_variable_weights_exact(seed: int) -> None:
    """The same with the weights a model input (TFLM reads them and their offset at every invoke)."""
    assert_exact(offset_fc_model("int8", 400 + seed, constant=False), n=3, seed=seed)


def test_extreme_weight_zero_points() -> None:
    """Zero points -128 and 127 (offsets 128 and -127: weight + offset spans [-255, 255])."""
    for i, zp in enumerate((-128, 127)):
        assert_exact(offset_fc_model("int8", 500 + i, zp=zp), n=3, seed=i)


def test_symmetric_layers_keep_their_kernels() -> None:
    """Plain CONV_2D and symmetric FULLY_CONNECTED still run on the dense kernels (unchanged paths)."""
    rng = np.random.default_rng(7)
    x = T((1, 6, 6, 4), "int8", scale=0.05, zp=2)
    w = T((5, 3, 3, 4), "int8", scale=[0.01] * 5, zp=[0] * 5, data=rng.integers(-127, 128, (5, 3, 3, 4)).astype(np.int8))
    y = T((1, 6, 6, 5), "int8", scale=0.2, zp=-1)
    p = build(FOLDER.path("plain_conv"), "CONV_2D", [x, w], [y], opts("Conv2DOptions", padding=SAME, strideW=1,
                                                                     strideH=1), version=3)
    assert type(_kernel(p)) is Conv2D
    fx = T((2, 8), "int8", scale=0.05, zp=2)
    fw = T((3, 8), "int8", scale=0.01, zp=0, data=rng.integers(-127, 128, (3, 8)).astype(np.int8))
    fy = T((2, 3), "int8", scale=0.2, zp=-1)
    p = build(FOLDER.path("plain_fc"), "FULLY_CONNECTED", [fx, fw], [fy], opts("FullyConnectedOptions"), version=4)
    assert type(_kernel(p)) is FullyConnected


# ----------------------------------------------------------------------------- refusals

def _dw_offset_model() -> Path:
    rng = np.random.default_rng(11)
    x = T((1, 5, 5, 4), "int8", scale=0.05, zp=3)
    w = T((1, 3, 3, 4), "int8", scale=0.01, zp=5, data=rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8))
    y = T((1, 5, 5, 4), "int8", scale=0.3, zp=-2)
    return build(FOLDER.path("dw_offset"), "DEPTHWISE_CONV_2D", [x, w], [y],
                 opts("DepthwiseConv2DOptions", padding=SAME, strideW=1, strideH=1, depthMultiplier=1), version=3)


@pytest.mark.parametrize("make", [lambda: grouped_conv_model("int8", 600, groups=1, w_zp=5, per_channel=False),
                                  lambda: grouped_conv_model("int8", 601, groups=2, w_zp=-3, per_channel=False),
                                  _dw_offset_model,
                                  lambda: offset_fc_model("int8", 602, per_channel=True, zp=4),
                                  lambda: offset_fc_model("int8", 603, constant=False, per_channel=True, zp=4)],
                         ids=["conv", "grouped_conv", "depthwise", "fc_per_channel", "fc_per_channel_variable"])
def test_ignored_weight_zero_points_are_refused(make: Any) -> None:
    """tflite-micro runs these but ignores the weight zero point (its results are those of zero point 0):
    micro refuses them with one line naming the zero point."""
    p = make()
    assert_missing(p)
    with pytest.raises(UnsupportedModelError, match="zero point"):
        open_model(str(p))


def test_groups_not_dividing_output_channels_refused() -> None:
    """A filter depth that does not divide the input channels into groups that divide the output
    channels: one line naming the shapes."""
    rng = np.random.default_rng(12)
    x = T((1, 5, 5, 6), "float32")
    w = T((4, 3, 3, 2), "float32", data=rng.standard_normal((4, 3, 3, 2)).astype(np.float32))  # 3 groups, 4 outputs
    y = T((1, 5, 5, 4), "float32")
    p = build(FOLDER.path("bad_groups"), "CONV_2D", [x, w], [y], opts("Conv2DOptions", padding=SAME, strideW=1,
                                                                     strideH=1))
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(p))
    msg = str(info.value)
    assert "\n" not in msg and "grouped convolution" in msg and "(4, 3, 3, 2)" in msg, msg


# ----------------------------------------------------------------------------- steady state

@pytest.mark.parametrize("make", [lambda: grouped_conv_model("int8", 700, groups=3),
                                  lambda: grouped_conv_model("float32", 701, groups=2),
                                  lambda: offset_fc_model("int8", 703),
                                  lambda: offset_fc_model("int8", 704, constant=False),
                                  lambda: grouped_conv_model("int16", 705, groups=2)],
                         ids=["conv_i8", "conv_f32", "fc_i8", "fc_i8_variable", "conv_16x8"])
def test_invoke_does_not_allocate(make: Any) -> None:
    """Steady state: the windows, sums and weights live in the planner's workspace; nothing grows (16x8
    included: its output stage clamps with the clip ufunc, not ``np.clip``, whose wrapper allocated)."""
    m = open_model(str(make()))
    it = m.interpreter
    xs = [np.ones(t.shape, t.dtype) for t in m.inputs]

    def step() -> None:
        for i, x in enumerate(xs):
            it.set_input(i, x)
        it.invoke()

    growth, peak = traced_allocations(step, 100, warmup=10, traced_warmup=10)
    assert growth <= 4096, f"memory grew by {growth} bytes over 100 invokes"
    assert peak <= 16 * 1024, f"an invoke allocated {peak} bytes at its peak"


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_grouped_conv_in_row_chunks_exact(dtype: str) -> None:
    """A small workspace limit splits the output rows into chunks: still equal to tflite-micro."""
    p = grouped_conv_model(dtype, 800, groups=3)
    ref = run_tflm(p, random_inputs(p, np.random.default_rng(1), 2))
    xs = random_inputs(p, np.random.default_rng(1), 2)
    for in_place in (False, True):
        m = open_model(str(p), workspace_limit=4096, in_place=in_place)
        k = m.interpreter.kernels[0]
        assert isinstance(k, VariableWeights) and k.rows < k.rows_total
        for x, e in zip(xs, ref):
            assert np.array_equal(m.run(x)[0], e[0])


# ----------------------------------------------------------------------------- converter: TFLite import

@pytest.mark.parametrize("seed", range(2))
def test_float_tflite_grouped_conv_imports(seed: int, tmp_path: Path) -> None:
    """A float .tflite with a grouped CONV_2D imports (one CONV_2D per group and a CONCATENATION): the
    float graph equals LiteRT on the float file, and the int8 model keeps its SQNR (LiteRT, QDQ ONNX)."""
    from test_import_ops_common import check_tflite

    p = grouped_conv_model("float32", 900 + seed, groups=(2, 3)[seed], batch=1)
    checked = check_tflite(str(p), tmp_path, min_sqnr=25.0, tflm=False)
    kinds = [op.kind for op in checked.graph.ops]
    assert kinds.count("CONV_2D") == (2, 3)[seed] and "CONCATENATION" in kinds, kinds


def test_float_tflite_grouped_conv_bad_groups_refused(tmp_path: Path) -> None:
    """Groups that do not divide the filters: the importer refuses in one line naming the depths."""
    from converters.importers.tflite import import_tflite

    rng = np.random.default_rng(13)
    x = T((1, 5, 5, 6), "float32")
    w = T((4, 3, 3, 2), "float32", data=rng.standard_normal((4, 3, 3, 2)).astype(np.float32))
    y = T((1, 5, 5, 4), "float32")
    p = build(tmp_path / "bad.tflite", "CONV_2D", [x, w], [y], opts("Conv2DOptions", padding=SAME, strideW=1,
                                                                  strideH=1))
    with pytest.raises(UnsupportedModelError) as info:
        import_tflite(str(p))
    msg = str(info.value)
    assert "\n" not in msg and "filter depth 2" in msg and "input depth 6" in msg, msg


def test_the_c_generator_refuses_both_forms_in_one_line(tmp_path: Path) -> None:
    """`edge-convert export --format c` does not generate these two forms yet: one line naming the op and
    the form (it raised AttributeError once micro took them)."""
    from converters.codegen.emit import generate_c

    cases = [(grouped_conv_model("int8", 800, groups=2), r"^op CONV_2D \(op 0\): grouped convolutions .*not supported"
                                                         r" by the C generator yet$"),
             (offset_fc_model("int8", 801), r"^op FULLY_CONNECTED \(op 0\): int8 weights with a non-zero zero point"
                                            r" are not supported by the C generator yet$")]
    for k, (path, message) in enumerate(cases):
        with pytest.raises(UnsupportedModelError, match=message):
            generate_c(path, tmp_path / f"c{k}")

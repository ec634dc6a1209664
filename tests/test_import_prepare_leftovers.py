"""Small ONNX refusals taken in the prepare pass and the precision policy:

- MaxUnpool with a constant ``output_shape`` (onnx's shape inference leaves its output unknown; prepare gives it
  that shape), against onnxruntime (indices name elements of ``output_shape``, as in onnxruntime and PyTorch);
- SpaceToDepth read at opset 28 with ``mode="CRD"`` (written in opset-22 ops by prepare) or ``mode="DCR"``
  (dropped: the default), against onnxruntime and the onnx reference;
- LpPool with p = 3 and 4: ABS/MUL power chains, a float island on a profile with an OS (int8 on a
  microcontroller), against onnxruntime float; micro == tflite-micro on every written file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_import_ops_common import check_onnx, make_model
from tflite_builder import run_micro, run_tflm

from edge_runtime.errors import ModelFormatError, UnsupportedModelError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from converters.importers.prepare import prepare_onnx_model  # noqa: E402


def _vi(name: str, shape: "tuple[int, ...] | None") -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None if shape is None else list(shape))


# ---------------------------------------------------------------- MaxUnpool with output_shape
def _unpool_model(out_shape: tuple[int, ...], seed: int = 0) -> object:
    """X [1, 2, 3, 3] unpooled (kernel 2, stride 2: inferred 6x6) into ``out_shape``; constant indices, one
    distinct element of each channel's output plane per X element."""
    rng = np.random.default_rng(seed)
    plane = int(np.prod(out_shape[2:]))
    idx = np.stack([rng.choice(plane, 9, replace=False) + c * plane for c in range(2)]).reshape(1, 2, 3, 3)
    inits = [numpy_helper.from_array(idx.astype(np.int64), "i"),
             numpy_helper.from_array(np.array(out_shape, np.int64), "shape")]
    node = helper.make_node("MaxUnpool", ["x", "i", "shape"], ["y"], name="unpool", kernel_shape=[2, 2],
                            strides=[2, 2])
    return make_model([node], [_vi("x", (1, 2, 3, 3))], [_vi("y", (None,) * 4)], inits, opset=22)


def test_max_unpool_constant_output_shape_is_static() -> None:
    """prepare gives the output the constant output_shape (it was refused as 'no static shape')."""
    m = prepare_onnx_model(_unpool_model((1, 2, 7, 7)), source="unpool")
    out = m.graph.output[0].type.tensor_type.shape
    assert [d.dim_value for d in out.dim] == [1, 2, 7, 7]


def test_max_unpool_output_shape_converts(tmp_path: Path) -> None:
    """Reference: onnxruntime (float IR) and onnxruntime on the original (int8 SQNR); micro == tflite-micro."""
    c = check_onnx(_unpool_model((1, 2, 7, 7), seed=3), tmp_path, (1, 2, 3, 3), min_sqnr=35.0)
    assert c.graph.op_counts().get("GATHER") == 1
    assert c.micro_exact is True


def test_max_unpool_bad_output_shape_is_one_line() -> None:
    """An output_shape of the wrong rank stays unknown and is refused in one line naming the node."""
    node = helper.make_node("MaxUnpool", ["x", "i", "shape"], ["y"], name="unpool", kernel_shape=[2, 2],
                            strides=[2, 2])
    inits = [numpy_helper.from_array(np.zeros((1, 1, 2, 2), np.int64), "i"),
             numpy_helper.from_array(np.array([1, 1, 5], np.int64), "shape")]
    m = helper.make_model(helper.make_graph([node], "g", [_vi("x", (1, 1, 2, 2))], [_vi("y", None)], inits),
                          opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises((UnsupportedModelError, ModelFormatError)) as e:
        prepare_onnx_model(m, source="bad")
    assert "unpool" in str(e.value) or "MaxUnpool" in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- SpaceToDepth at opset 28
def _s2d_model(shape: tuple[int, ...], mode: "str | None", bs: int = 2) -> object:
    kw = {} if mode is None else {"mode": mode}
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], name="s2d", blocksize=bs, **kw)
    n, c, h, w = shape
    g = helper.make_graph([node], "g", [_vi("x", shape)], [_vi("y", (n, c * bs * bs, h // bs, w // bs))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 28)])


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_space_to_depth_mode_prepared_means_the_same(mode: str) -> None:
    """The prepared opset-22 model passes onnx's full check and, run by onnxruntime, equals the onnx reference
    on the opset-28 original exactly (a batch of 2 kept by --input-shape)."""
    from onnx.reference import ReferenceEvaluator

    m = _s2d_model((2, 3, 4, 6), mode)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 6)).astype(np.float32)
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    p = prepare_onnx_model(m, {"x": (2, 3, 4, 6)}, source="s2d")
    onnx.checker.check_model(p, full_check=True)
    assert all(a.name != "mode" for n in p.graph.node for a in n.attribute)
    got = ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(got, want)


def test_space_to_depth_crd_converts(tmp_path: Path) -> None:
    """Reference: onnxruntime on the opset-28 original; micro == tflite-micro."""
    c = check_onnx(_s2d_model((1, 3, 4, 6), "CRD"), tmp_path, (1, 3, 4, 6), min_sqnr=35.0)
    assert c.graph.op_counts().get("SPACE_TO_DEPTH") == 1
    assert c.micro_exact is True


def test_space_to_depth_unknown_mode_is_one_line() -> None:
    """A mode the importer does not know is still refused in one line naming the attribute and the node."""
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(_s2d_model((1, 3, 4, 6), "XYZ"), source="s2d")
    assert "'mode'" in str(e.value) and "s2d" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- LpPool p = 3, 4
def _lp_model(p: int, path: Path, relu: bool = False) -> str:
    """LpPool of x [1, 4, 9, 9] (after a ReLU with ``relu``, so some windows are all zero)."""
    if relu:
        node = helper.make_node("LpPool", ["r"], ["y"], name="lp", p=p, kernel_shape=[2, 2], strides=[2, 2])
        nodes, out = [helper.make_node("Relu", ["x"], ["r"]), node], (1, 4, 4, 4)
    else:
        node = helper.make_node("LpPool", ["x"], ["y"], name="lp", p=p, kernel_shape=[3, 3], strides=[2, 2],
                                pads=[1, 1, 1, 1])
        nodes, out = [node], (1, 4, 5, 5)
    m = make_model(nodes, [_vi("x", (1, 4, 9, 9))], [_vi("y", out)], opset=18)
    onnx.save(m, str(path))
    return str(path)


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))


@pytest.mark.parametrize("p,relu", [(3, False), (4, False), (3, True)])
def test_lp_pool_high_p_float_island_with_an_os(p: int, relu: bool, tmp_path: Path) -> None:
    """p = 3 (root exp(log(max(s, 1e-18)) / 3)) and p = 4 (SQRT twice): the whole chain float on rpi4-4gb, int8
    on stm32h743; after a ReLU (all-zero windows: LOG(0) would make calibration refuse the model) p = 3 gives 0
    there. Reference: onnxruntime float on the values the int8 model receives (its dequantized input)."""
    import edge_runtime
    from converters.pipeline import convert_model
    from edge_runtime.formats.tflite import TFLiteModel

    path = _lp_model(p, tmp_path / "lp.onnx", relu)
    rng = np.random.default_rng(p)
    np.savez(tmp_path / "c.npz", x=rng.standard_normal((16, 1, 4, 9, 9)).astype(np.float32))
    held = rng.standard_normal((16, 1, 4, 9, 9)).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    db = {}
    for prof in ("rpi4-4gb", "stm32h743"):
        convert_model(path, prof, str(tmp_path / "c.npz"), str(tmp_path / prof), report_samples=2)
        tfl = next((tmp_path / prof).glob("*.tflite"))
        sg = TFLiteModel.open(str(tfl)).subgraphs[0]
        kinds = [op.name for op in sg.operators]
        assert ("LOG" in kinds and "EXP" in kinds) if p == 3 else kinds.count("SQRT") == 2
        pool = next(op for op in sg.operators if op.name == "AVERAGE_POOL_2D")
        assert sg.tensors[pool.outputs[0]].type_name == ("FLOAT32" if prof == "rpi4-4gb" else "INT8")
        mm = edge_runtime.load(str(tfl), backend="micro")
        si, so = mm.inputs[0], mm.outputs[0]
        qs = [np.clip(np.round(x.transpose(0, 2, 3, 1) / si.scale) + si.zero_point, -128, 127).astype(np.int8)
              for x in held]
        seen = [((q.astype(np.float32) - si.zero_point) * np.float32(si.scale)).transpose(0, 3, 1, 2) for q in qs]
        ref = np.stack([sess.run(None, {"x": x})[0].transpose(0, 2, 3, 1) for x in seen])
        got = np.stack([(mm.run(q)[0].astype(np.float32) - so.zero_point) * so.scale for q in qs])
        db[prof] = _sqnr(ref, got.reshape(ref.shape))
        if relu:
            assert np.any(ref == 0) and np.all(got.reshape(ref.shape)[ref == 0] == 0)
        for u, v in zip(run_tflm(tfl, [[q] for q in qs[:4]]), run_micro(tfl, [[q] for q in qs[:4]])):
            assert np.array_equal(u[0], v[0])  # micro == tflite-micro
    # measured (standard-normal input): p=3 rpi4-4gb 48.0 dB, stm32h743 9.1 dB; p=4 52.0 and 9.8 dB;
    # p=3 after a ReLU: 46.7 and 12.7 dB
    assert db["rpi4-4gb"] > 40.0 and db["rpi4-4gb"] > db["stm32h743"] + 20.0, db


def test_lp_pool_other_p_is_one_line(tmp_path: Path) -> None:
    """p = 5 is refused in one line naming the node and p."""
    from converters.importers.onnx import import_onnx

    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(_lp_model(5, tmp_path / "lp5.onnx"))
    assert "lp" in str(e.value) and "p=5" in str(e.value) and "\n" not in str(e.value)

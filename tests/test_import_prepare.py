"""The ONNX prepare pass (converters/importers/prepare.py) and ``--input-shape``.

Models are built with ``onnx.helper``; the reference for every rewrite is onnxruntime running the
original model: the prepared model must compute the same outputs, with static shapes, one opset
(>= 13), no Constant/If/shape-arithmetic nodes left. Refusals are one line naming the construct.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.importers.prepare import (inline_constant_ifs, parse_input_shape, parse_input_shapes,
                                          prepare_onnx, prepare_onnx_model)
from edge_runtime.errors import ConfigError, ModelFormatError, UnsupportedModelError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)
SHAPE_OPS = {"Shape", "Gather", "Cast", "Concat", "ConstantOfShape", "Range", "Expand", "Unsqueeze", "Constant", "If"}


def _run(model_or_path, x: np.ndarray, name: str = "x") -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {name: x})


def _model(nodes, inputs, outputs, inits=(), opset: int = 13, ir: int = 7):  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


def _w(name: str, *shape: int) -> "onnx.TensorProto":
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _i64(name: str, values) -> "onnx.TensorProto":  # type: ignore[no-untyped-def]
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _vi(name: str, dims) -> "onnx.ValueInfoProto":  # type: ignore[no-untyped-def]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def _static(model) -> bool:  # type: ignore[no-untyped-def]
    g = model.graph
    vis = list(g.input) + list(g.value_info) + list(g.output)
    known = {v.name: v for v in vis}
    outs = [o for n in g.node for o in n.output if o]
    return all(o in known and all(d.HasField("dim_value") for d in known[o].type.tensor_type.shape.dim) for o in outs)


# ---------------------------------------------------------------- --input-shape parsing
def test_parse_input_shape() -> None:
    assert parse_input_shape("input=1x3x224x224") == ("input", (1, 3, 224, 224))
    assert parse_input_shape("a=b=1,49,10") == ("a=b", (1, 49, 10))
    assert parse_input_shapes(["x=1x2", "y=3"]) == {"x": (1, 2), "y": (3,)}
    assert parse_input_shapes(None) is None
    for bad in ("input", "=1x3", "input=", "input=1xax3", "input=0x3"):
        with pytest.raises(ConfigError, match="NAME=DIMS"):
            parse_input_shape(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_input_shapes(["x=1", "x=2"])


# ---------------------------------------------------------------- opset upgrade
def _opset9_upsample_bn() -> "onnx.ModelProto":
    """Opset 9: Conv, BatchNormalization (v9), Upsample (scales as input, removed in opset 10)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Upsample", ["r", "scales"], ["y"], mode="nearest"),
    ]
    inits = [_w("w", 4, 3, 3, 3), _w("b", 4), numpy_helper.from_array(np.full(4, 1.2, np.float32), "g"), _w("be", 4),
             _w("mu", 4), numpy_helper.from_array(np.full(4, 0.7, np.float32), "var"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    return _model(nodes, [_vi("x", ["N", 3, 6, 6])], [_vi("y", ["N", 4, 12, 12])], inits, opset=9, ir=4)


def test_old_opset_is_upgraded_and_computes_the_same() -> None:
    m = _opset9_upsample_bn()
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    want = _run(m, x)[0]
    p = prepare_onnx_model(m, source="old.onnx")
    assert max(o.version for o in p.opset_import if o.domain in ("", "ai.onnx")) == 13
    ops = [n.op_type for n in p.graph.node]
    assert "Upsample" not in ops and "Resize" in ops
    assert _static(p)
    np.testing.assert_allclose(_run(p, x)[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,opset,mode,scales", [
    ("Upsample", 9, "linear", (1, 1, 2, 2)), ("Upsample", 9, "nearest", (1, 1, 3, 2)),
    ("Resize", 10, "linear", (1, 1, 2, 1.5)), ("Resize", 10, "nearest", (1, 1, 2, 3)),
    ("Resize", 10, "nearest", (1, 1, 0.5, 0.75)), ("Resize", 10, "linear", (1, 1, 0.5, 0.5)),
])
def test_upgraded_resize_keeps_its_coordinate_rule(op: str, opset: int, mode: str, scales: tuple) -> None:
    """Before opset 11, Upsample/Resize map coordinates as x / scale; onnx's version converter leaves
    Resize-11's half_pixel default, so the prepare pass sets the original rule back: onnxruntime
    gives identical outputs on the original and the upgraded model."""
    nodes = [helper.make_node(op, ["x", "scales"], ["y"], mode=mode)]
    m = _model(nodes, [_vi("x", [1, 2, 6, 8])], [_vi("y", None)],
               [numpy_helper.from_array(np.array(scales, np.float32), "scales")], opset=opset, ir=5)
    x = RNG.standard_normal((1, 2, 6, 8)).astype(np.float32)
    p = prepare_onnx_model(m)
    assert [nd.op_type for nd in p.graph.node] == ["Resize"]
    np.testing.assert_allclose(_run(p, x)[0], _run(m, x)[0], rtol=1e-6, atol=1e-6)


def test_opset7_model_is_upgraded() -> None:
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
             helper.make_node("Dropout", ["g"], ["d"], ratio=0.5),
             helper.make_node("Relu", ["d"], ["y"])]
    inits = [_w("w", 4, 6), _w("b", 4)]
    x = RNG.standard_normal((1, 6)).astype(np.float32)
    # IR 3 lists initializers among the inputs; some old files do not: both are accepted
    for inputs in ([_vi("x", [1, 6]), _vi("w", [4, 6]), _vi("b", [4])], [_vi("x", [1, 6])]):
        m = _model(nodes, inputs, [_vi("y", [1, 4])], inits, opset=7, ir=3)
        p = prepare_onnx_model(m)
        assert [n.op_type for n in p.graph.node] == ["Gemm", "Relu"]
        np.testing.assert_allclose(_run(p, x)[0], np.maximum(x @ numpy_helper.to_array(inits[0]).T
                                                             + numpy_helper.to_array(inits[1]), 0), rtol=1e-5, atol=1e-6)


def test_failed_upgrade_names_the_op_in_one_line() -> None:
    """onnx's Scan 8->9 adapter refuses a Scan with sequence_lens: the error names Scan and its node."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])], "body",
        [_vi("s_in", [4]), _vi("x_t", [4])], [_vi("s_out", [4]), _vi("y_t", [4])])
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Scan", ["seq", "s0", "r"], ["s", "y"], name="scan1", body=body, num_scan_inputs=1)]
    m = _model(nodes, [helper.make_tensor_value_info("seq", TensorProto.INT32, [1]), _vi("s0", [1, 4]),
                       _vi("x", [1, 3, 4])], [_vi("y", [1, 3, 4])], opset=8, ir=3)
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(m, source="scan.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "opset 8 to 9" in msg and "'Scan'" in msg and "scan1" in msg and "re-export" in msg


@pytest.mark.parametrize("opset,ir,problem", [(5, 3, "opset 5 is outside"), (99, 10, "opset 99 is outside"),
                                              (13, 2, "IR version 2 is too old")])
def test_unsupported_versions_are_one_line(opset: int, ir: int, problem: str) -> None:
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])], opset=opset, ir=ir)
    with pytest.raises(UnsupportedModelError, match=problem) as e:
        prepare_onnx_model(m, source="v.onnx")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- dynamic shapes
def _conv_model(in_dims, name: str = "x") -> "onnx.ModelProto":  # type: ignore[no-untyped-def]
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: runs for any H, W."""
    nodes = [helper.make_node("Conv", [name, "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    return _model(nodes, [_vi(name, in_dims)], [_vi("y", [in_dims[0], 5])],
                  [_w("w", 8, 3, 3, 3), _w("b", 8), _w("fw", 5, 8), _w("fb", 5)])


def test_dynamic_batch_becomes_one() -> None:
    p = prepare_onnx_model(_conv_model(["batch", 3, 8, 8]))
    assert [d.dim_value for d in p.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 8, 8]
    assert [d.dim_value for d in p.graph.output[0].type.tensor_type.shape.dim] == [1, 5]
    assert _static(p)


def test_other_dynamic_dims_need_input_shape_and_the_error_lists_every_input() -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    m = _model(nodes, [_vi("a", ["N", 3, "H", "W"]), _vi("b", [1, 3, "H", "W"])], [_vi("y", ["N", 3, "H", "W"])])
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(m, source="dyn.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "a[1x3xHxW]" in msg and "b[1x3xHxW]" in msg and "--input-shape" in msg
    p = prepare_onnx_model(m, {"a": (1, 3, 5, 7), "b": (1, 3, 5, 7)})
    assert [d.dim_value for d in p.graph.output[0].type.tensor_type.shape.dim] == [1, 3, 5, 7]


def test_input_shape_fixes_spatial_dims_and_is_checked() -> None:
    m = _conv_model(["N", 3, "H", "W"])
    x = RNG.standard_normal((1, 3, 12, 10)).astype(np.float32)
    p = prepare_onnx_model(m, {"x": (1, 3, 12, 10)})
    assert _static(p)
    np.testing.assert_allclose(_run(p, x)[0], _run(m, x)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown input.*the model's inputs are: x"):
        prepare_onnx_model(_conv_model(["N", 3, "H", "W"]), {"image": (1, 3, 8, 8)})
    with pytest.raises(ConfigError, match="rank 3 but input 'x' has rank 4"):
        prepare_onnx_model(_conv_model(["N", 3, "H", "W"]), {"x": (1, 8, 8)})
    with pytest.raises(ConfigError, match="contradicts"):
        prepare_onnx_model(_conv_model(["N", 3, 8, 8]), {"x": (1, 4, 8, 8)})


def test_data_dependent_shape_is_refused_naming_the_node() -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="find"),
             helper.make_node("Cast", ["nz"], ["y"], to=TensorProto.FLOAT)]
    m = _model(nodes, [_vi("x", [1, 4])], [_vi("y", [2, "K"])])
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(m, source="nz.onnx")
    assert "'find' (NonZero)" in str(e.value) and "no static shape" in str(e.value) and "\n" not in str(e.value)


def test_custom_domain_op_is_refused_naming_it() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Gelu", ["r"], ["g"], domain="com.microsoft", name="ms_gelu"),
             helper.make_node("Relu", ["g"], ["y"])]
    g = helper.make_graph(nodes, "m", [_vi("x", [1, 4])], [_vi("y", [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(m, source="ms.onnx")
    assert "'ms_gelu' (com.microsoft.Gelu)" in str(e.value) and "standard ONNX" in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- constant folding
def _shape_arithmetic_model() -> "onnx.ModelProto":
    """Every shape-arithmetic op the issue names, computing a reshape target and a broadcast bias."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]),
        n("Shape", ["c"], ["s"]),
        n("Gather", ["s", "i0"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "ax0"], ["batch1"]),
        n("Concat", ["batch1", "minus1"], ["flat_shape"], axis=0),
        n("Gather", ["s", "i1"], ["ch"], axis=0),
        n("Cast", ["ch"], ["ch_f"], to=TensorProto.FLOAT),
        n("Range", ["zero_f", "ch_f", "one_f"], ["ramp"]),
        n("Reshape", ["ramp", "ramp_shape"], ["ramp4"]),
        n("Expand", ["ramp4", "s"], ["bias"]),
        n("ConstantOfShape", ["s"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
        n("Mul", ["c", "ones"], ["c1"]),
        n("Add", ["c1", "bias"], ["c2"]),
        n("Reshape", ["c2", "flat_shape"], ["y"]),
    ]
    inits = [_w("w", 4, 3, 1, 1), _w("b", 4), _i64("i0", 0), _i64("i1", 1), _i64("ax0", [0]), _i64("minus1", [-1]),
             numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
             numpy_helper.from_array(np.array(1, np.float32), "one_f"), _i64("ramp_shape", [1, -1, 1, 1])]
    return _model(nodes, [_vi("x", ["N", 3, 4, 4])], [_vi("y", ["N", 64])], inits)


def test_shape_arithmetic_folds_away() -> None:
    m = _shape_arithmetic_model()
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    p = prepare_onnx_model(m)
    ops = [nd.op_type for nd in p.graph.node]
    assert not SHAPE_OPS & set(ops), ops
    assert "Conv" in ops and len(ops) <= 3 and _static(p)
    np.testing.assert_allclose(_run(p, x)[0], _run(m, x)[0], rtol=1e-5, atol=1e-5)


def _if_model() -> "onnx.ModelProto":
    """If on (channels > 2): a constant condition once shapes are static; the taken branch is a Relu."""
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [_vi("t", [1, 3, 4, 4])])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["e"])], "else", [], [_vi("e", [1, 3, 4, 4])])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i1"], ["c"], axis=0),
             helper.make_node("Greater", ["c", "two"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)]
    return _model(nodes, [_vi("x", ["N", 3, 4, 4])], [_vi("y", ["N", 3, 4, 4])], [_i64("i1", 1), _i64("two", 2)])


def test_if_with_constant_condition_is_inlined() -> None:
    m = _if_model()
    x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
    p = prepare_onnx_model(m)
    assert [nd.op_type for nd in p.graph.node] == ["Relu"]
    np.testing.assert_allclose(_run(p, x)[0], _run(m, x)[0])


def test_inline_constant_ifs_takes_the_right_branch() -> None:
    """The fallback inliner (for when the folding library leaves an If): both condition values."""
    for cond, kept in ((True, "Relu"), (False, "Sigmoid")):
        m = _if_model()
        g = m.graph
        del g.node[:3]
        g.initializer.append(numpy_helper.from_array(np.array(cond), "cond"))
        inline_constant_ifs(m)
        assert [nd.op_type for nd in g.node] == [kept, "Identity"]
        x = RNG.standard_normal((1, 3, 4, 4)).astype(np.float32)
        want = np.maximum(x, 0) if cond else 1 / (1 + np.exp(-x))
        np.testing.assert_allclose(_run(m, x)[0], want, rtol=1e-5, atol=1e-6)


def test_constant_of_shape_weights_become_initializers_and_convert(tmp_path: Path) -> None:
    """The issue's traceback: an opset-11 SqueezeNet-style model whose conv weights come from
    ConstantOfShape and Constant nodes. After prepare every Conv weight is an initializer, and the
    whole conversion runs and matches the float model."""
    from converters.pipeline import convert_model

    n = helper.make_node
    wv = (RNG.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    nodes = [
        n("Constant", [], ["wshape"], value=numpy_helper.from_array(np.array([8, 3, 3, 3], np.int64))),
        n("ConstantOfShape", ["wshape"], ["w0"], value=numpy_helper.from_array(np.array([0.05], np.float32))),
        n("Constant", [], ["wd"], value=numpy_helper.from_array(wv)),
        n("Add", ["w0", "wd"], ["w"]),
        n("Constant", [], ["b"], value_floats=[0.1] * 8),
        n("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["c"], ["r"]),
        n("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        n("GlobalAveragePool", ["mp"], ["gp"]),
        n("Flatten", ["gp"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", ["N", 3, 8, 8])], [_vi("y", ["N", 8])], opset=11, ir=6)
    p = prepare_onnx_model(m)
    conv = next(nd for nd in p.graph.node if nd.op_type == "Conv")
    assert {conv.input[1], conv.input[2]} <= {i.name for i in p.graph.initializer}
    assert "Constant" not in {nd.op_type for nd in p.graph.node}
    path = tmp_path / "sq.onnx"
    onnx.save(m, str(path))
    x = RNG.standard_normal((48, 1, 3, 8, 8)).astype(np.float32)
    res = convert_model(path, "rpi4-4gb", x[:32], tmp_path / "out", held_out=x[32:])
    assert res.report["held_out"]["tflite"]["output_sqnr_db"] > 25


# ---------------------------------------------------------------- external data
def _save_external(m, path: Path, location: str) -> None:  # type: ignore[no-untyped-def]
    from onnx.external_data_helper import convert_model_to_external_data

    convert_model_to_external_data(m, all_tensors_to_one_file=True, location=location, size_threshold=0)
    onnx.save(m, str(path))


def test_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    m = _conv_model([1, 3, 8, 8])
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = _run(m, x)[0]
    _save_external(m, tmp_path / "ext.onnx", "ext.weights")
    assert (tmp_path / "ext.weights").stat().st_size > 1000
    p = prepare_onnx(tmp_path / "ext.onnx")
    np.testing.assert_allclose(_run(p, x)[0], want, rtol=1e-6, atol=1e-6)


def _external_with_location(tmp_path: Path, location: str) -> Path:
    m = _conv_model([1, 3, 8, 8])
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    _save_external(m, tmp_path / "tmp.onnx", "w.bin")  # writes tmp_path/w.bin, outside model/
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(m, str(model_dir / "m.onnx"))
    return model_dir / "m.onnx"


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    for loc, problem in (("../w.bin", "outside the model's folder"), (str(tmp_path / "w.bin"), "outside"),
                         ("sub/../../w.bin", "outside"), ("missing.bin", "missing")):
        with pytest.raises(ModelFormatError, match=problem) as e:
            prepare_onnx(_external_with_location(tmp_path, loc))
        assert "\n" not in str(e.value)
    path = _external_with_location(tmp_path, "link.bin")
    os.symlink(tmp_path / "w.bin", path.parent / "link.bin")
    with pytest.raises(ModelFormatError, match="links outside the model's folder"):
        prepare_onnx(path)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="no such file"):
        prepare_onnx(tmp_path / "nope.onnx")
    (tmp_path / "g.onnx").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelFormatError, match="not a valid ONNX model"):
        prepare_onnx(tmp_path / "g.onnx")


# ---------------------------------------------------------------- CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converters.cli", "convert", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_input_shape(tmp_path: Path) -> None:
    """Without --input-shape: exit 1, one line naming the input and the flag; with it: converted."""
    path = tmp_path / "dyn.onnx"
    onnx.save(_conv_model(["N", 3, "H", "W"], name="image"), str(path))
    calib = tmp_path / "calib.npy"
    np.save(calib, RNG.standard_normal((16, 1, 3, 12, 12)).astype(np.float32))
    r = _cli(str(path), "--profile", "rpi4-4gb", "--calib", str(calib), "-o", str(tmp_path / "o1"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "image[1x3xHxW]" in r.stderr and "--input-shape" in r.stderr
    r = _cli(str(path), "--profile", "rpi4-4gb", "--calib", str(calib), "-o", str(tmp_path / "o2"),
             "--input-shape", "image=1x3x12x12")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o2" / "dyn_int8.tflite").is_file()
    r = _cli(str(path), "--profile", "rpi4-4gb", "--calib", str(calib), "--input-shape", "image=1x3xbig")
    assert r.returncode == 1 and "NAME=DIMS" in r.stderr and "Traceback" not in r.stderr
    assert "--input-shape NAME=DIMS" in subprocess.run([sys.executable, "-m", "converters.cli", "convert", "--help"],
                                                       capture_output=True, text=True, timeout=60).stdout


def test_fixed_batch_above_one_is_set_to_one_and_named_when_it_breaks() -> None:
    """A fixed batch of 4 becomes 1; when a constant of batch 4 then no longer fits, the error says so."""
    ok = prepare_onnx_model(_conv_model([4, 3, 8, 8]))
    assert [d.dim_value for d in ok.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 8, 8]
    nodes = [helper.make_node("Concat", ["x", "extra"], ["y"], name="append_batch4", axis=1)]
    m = _model(nodes, [_vi("x", [4, 6])], [_vi("y", [4, 8])], [_w("extra", 4, 2)])
    with pytest.raises(ModelFormatError) as e:
        prepare_onnx_model(m, source="b4.onnx")
    assert "x (4) was set to 1" in str(e.value) and "\n" not in str(e.value)
    p = prepare_onnx_model(m, {"x": (4, 6)})
    assert [d.dim_value for d in p.graph.output[0].type.tensor_type.shape.dim] == [4, 8]


def test_unexpected_errors_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a conversion step is one UnsupportedModelError line naming the step (no traceback);
    EDGE_RUNTIME_DEBUG=1 lets the original exception through."""
    import converters.writers.tflite as writer
    from converters.pipeline import convert_model

    path = tmp_path / "m.onnx"
    onnx.save(_conv_model([1, 3, 8, 8]), str(path))
    x = RNG.standard_normal((8, 1, 3, 8, 8)).astype(np.float32)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise IndexError("tuple index out of range")

    monkeypatch.setattr(writer, "write_tflite", broken)
    monkeypatch.delenv("EDGE_RUNTIME_DEBUG", raising=False)
    with pytest.raises(UnsupportedModelError) as e:
        convert_model(path, "rpi4-4gb", x, tmp_path / "o")
    msg = str(e.value)
    assert "\n" not in msg and "writing the int8 models failed (IndexError: tuple index out of range)" in msg
    monkeypatch.setenv("EDGE_RUNTIME_DEBUG", "1")
    with pytest.raises(IndexError):
        convert_model(path, "rpi4-4gb", x, tmp_path / "o")


# ---------------------------------------------------------------- folding skipped when nothing can fold
def _fixed(name: str, *shape: int) -> "onnx.TensorProto":
    """Weights that depend only on the name, so rebuilt models are identical."""
    gen = np.random.default_rng(sum(map(ord, name)))
    return numpy_helper.from_array((gen.standard_normal(shape) * 0.3).astype(np.float32), name)


def _plain_cnn() -> "onnx.ModelProto":
    """Conv-Clip-Conv-Clip-pool-Gemm with each Clip's bounds in its own initializers (equal values, as
    torch exports ReLU6): onnxslim would only merge those bounds, whose values alone reach the converter."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("Clip", ["c1", "lo1", "hi1"], ["r1"]),
             n("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
             n("Clip", ["c2", "lo2", "hi2"], ["r2"]),
             n("GlobalAveragePool", ["r2"], ["p"]), n("Flatten", ["p"], ["f"]),
             n("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    bounds = [numpy_helper.from_array(np.array(v, np.float32), k)
              for k, v in (("lo1", 0.0), ("hi1", 6.0), ("lo2", 0.0), ("hi2", 6.0))]
    inits = [_fixed("w1", 8, 3, 3, 3), _fixed("b1", 8), _fixed("w2", 6, 8, 1, 1), _fixed("b2", 6), _fixed("wf", 5, 6), _fixed("bf", 5)]
    return _model(nodes, [_vi("x", ["N", 3, 8, 8])], [_vi("y", ["N", 5])], inits + bounds)


def _without_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    import converters.importers.prepare as prep

    monkeypatch.setattr(prep, "nothing_to_fold", lambda model: False)


def _canonical(model) -> tuple:  # type: ignore[no-untyped-def]
    """Nodes with Clip bounds as values, the initializers other nodes read, the graph inputs and outputs."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = [(nd.op_type, nd.name, tuple(nd.output), tuple(a.SerializeToString() for a in nd.attribute),
              tuple(repr(inits[i].tolist()) if nd.op_type == "Clip" and k and i else i for k, i in enumerate(nd.input)))
             for nd in model.graph.node]
    read = {i for nd in model.graph.node if nd.op_type != "Clip" for i in nd.input}
    return (nodes, sorted(t.SerializeToString() for t in model.graph.initializer if t.name in read),
            [v.SerializeToString() for v in model.graph.input], [v.SerializeToString() for v in model.graph.output])


def test_nothing_to_fold_gives_what_onnxslim_gives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from converters.importers.prepare import nothing_to_fold
    from converters.pipeline import convert_model

    m = _plain_cnn()
    assert nothing_to_fold(m)
    fast = prepare_onnx_model(_plain_cnn())
    path = tmp_path / "plain.onnx"
    onnx.save(m, str(path))
    x = RNG.standard_normal((16, 1, 3, 8, 8)).astype(np.float32)
    a = convert_model(path, "rpi4-4gb", x, tmp_path / "a")
    _without_skip(monkeypatch)
    slim = prepare_onnx_model(_plain_cnn())
    assert _canonical(fast) == _canonical(slim)
    b = convert_model(path, "rpi4-4gb", x, tmp_path / "b")
    assert Path(a.tflite_path).read_bytes() == Path(b.tflite_path).read_bytes()
    assert Path(a.onnx_path).read_bytes() == Path(b.onnx_path).read_bytes()


def _mutated(kind: str) -> "onnx.ModelProto":
    m = _plain_cnn()
    g = m.graph
    n = helper.make_node
    if kind == "constant subgraph":  # b1 = b1a + b1b: foldable
        g.initializer.extend([_fixed("b1a", 8), _fixed("b1b", 8)])
        g.node.insert(0, n("Add", ["b1a", "b1b"], ["b1s"]))
        g.node[1].input[2] = "b1s"
    elif kind == "conv + constant add":  # onnxslim fuses it into the bias
        g.initializer.append(_fixed("shift", 1, 8, 1, 1))
        g.node.insert(1, n("Add", ["c1", "shift"], ["c1s"]))
        g.node[2].input[0] = "c1s"
    elif kind == "batchnorm":
        g.initializer.extend([_fixed("s", 8), _fixed("t", 8), _fixed("mu", 8),
                              numpy_helper.from_array(np.ones(8, np.float32), "var")])
        g.node.insert(1, n("BatchNormalization", ["c1", "s", "t", "mu", "var"], ["c1s"]))
        g.node[2].input[0] = "c1s"
    elif kind == "identity":
        g.node.insert(1, n("Identity", ["c1"], ["c1s"]))
        g.node[2].input[0] = "c1s"
    elif kind == "equal biases":  # onnxslim ties equal small constants that a Conv reads
        g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(g.initializer[1]), "b1copy"))
        g.initializer.append(_fixed("w1b", 8, 3, 3, 3))
        g.node.insert(1, n("Conv", ["x", "w1b", "b1copy"], ["c1b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        g.node.insert(2, n("Add", ["c1", "c1b"], ["c1s"]))
        g.node[3].input[0] = "c1s"
    elif kind == "dead node":
        g.node.append(n("Relu", ["c1"], ["unused"]))
    elif kind == "order":  # a deeper node before a shallower one: onnxslim's sort moves it
        g.initializer.append(_fixed("w3", 6, 3, 1, 1))
        g.initializer.append(_fixed("b3", 6))
        g.node.insert(4, n("Conv", ["x", "w3", "b3"], ["side"], kernel_shape=[1, 1]))
        g.node.insert(5, n("Add", ["r2", "side"], ["r2s"]))
        g.node[6].input[0] = "r2s"
    elif kind == "same node twice":
        g.node.insert(1, n("Clip", ["c1", "lo1", "hi1"], ["r1b"]))
        g.node.insert(2, n("Add", ["r1", "r1b"], ["r1s"]))
        g.node[4].input[0] = "r1s"
    return m


@pytest.mark.parametrize("kind", ["constant subgraph", "conv + constant add", "batchnorm", "identity",
                                  "equal biases", "dead node", "order", "same node twice"])
def test_graph_onnxslim_would_change_is_folded(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything onnxslim folds, fuses, removes, ties or reorders sends the graph through onnxslim,
    and the result is what onnxslim gives."""
    from converters.importers.prepare import nothing_to_fold

    m = _mutated(kind)
    assert not nothing_to_fold(m)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = prepare_onnx_model(_mutated(kind))
    np.testing.assert_allclose(_run(got, x)[0], _run(m, x)[0], rtol=1e-4, atol=1e-5)
    _without_skip(monkeypatch)
    assert got.graph.SerializeToString() == prepare_onnx_model(_mutated(kind)).graph.SerializeToString()
    if kind in ("constant subgraph", "identity", "dead node"):
        ops = [nd.op_type for nd in got.graph.node]
        assert ops.count("Add") == 0 and "Identity" not in ops and len(ops) == 7, ops


def test_nothing_to_fold_imports_no_onnxslim() -> None:
    """The digits CNN prepares without onnxslim (which loads sympy) and exactly as onnxslim leaves it."""
    code = ("import sys, onnx\n"
            "from converters.importers.prepare import prepare_onnx\n"
            "import converters.importers.prepare as p\n"
            "a = prepare_onnx('converters/data/digits_cnn.onnx')\n"
            "print(sorted(m for m in ('onnxslim', 'sympy') if m in sys.modules))\n"
            "p.nothing_to_fold = lambda m: False\n"
            "b = prepare_onnx('converters/data/digits_cnn.onnx')\n"
            "print('onnxslim' in sys.modules, a.graph.SerializeToString() == b.graph.SerializeToString())\n")
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["[]", "True True"]

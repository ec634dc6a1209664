"""ONNX-ML (``ai.onnx.ml``) ops in real scikit-learn exports (scouting round 3, ``benchmarks/real_models_onnx.py``).

- surfaces-surrogates' models are skl2onnx pipelines ``Scaler -> Cast -> MLP``: the Scaler used to be refused
  ("ops outside the standard ONNX domain"), so the whole MLP was. ``Scaler`` and ``LinearRegressor`` are plain
  arithmetic and are now rewritten into standard ops (Cast/Sub/Mul, Cast/MatMul/Add) before import.
- onnxruntime's own ``datasets/logreg_iris.onnx`` holds only ONNX-ML nodes and declares no default-domain
  opset: it was refused as "ONNX opset 0 is outside the supported range". Every other ONNX-ML op (trees,
  linear classifiers, ZipMap...) is now refused in one line naming it, before the opset check.

Rewrites are checked against onnxruntime on the original model; the converted model against float onnxruntime
(held-out SQNR on LiteRT) and micro against tflite-micro (``np.array_equal``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import micro_available
from onnx import TensorProto, helper, numpy_helper

from converters.importers.prepare import prepare_onnx_model
from converters.pipeline import convert_model
from converters.report import TFLiteRunner
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

ML = "ai.onnx.ml"


def _model(nodes: list, inp: Any, out: Any, inits: list, default_opset: int | None = 17) -> onnx.ModelProto:
    opsets = [helper.make_opsetid(ML, 1)] + ([helper.make_opsetid("", default_opset)] if default_opset else [])
    m = helper.make_model(helper.make_graph(nodes, "m", [inp], [out], inits), opset_imports=opsets)
    m.ir_version = 8
    return m


def _scaler_mlp(rng: np.random.Generator, features: int, offset: list[float], scale: list[float]) -> onnx.ModelProto:
    """skl2onnx's MLPRegressor-behind-StandardScaler layout: Scaler -> Cast -> MatMul/Add/Relu x2 -> MatMul/Add."""
    def w(n: str, *s: int) -> Any:
        return numpy_helper.from_array((rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32), n)

    b = lambda n, k: numpy_helper.from_array(rng.normal(0, 0.1, k).astype(np.float32), n)  # noqa: E731
    nodes = [helper.make_node("Scaler", ["input"], ["scaled"], domain=ML, offset=offset, scale=scale),
             helper.make_node("Cast", ["scaled"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["a2"]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("MatMul", ["r2", "w3"], ["m3"]), helper.make_node("Add", ["m3", "b3"], ["y"])]
    inits = [w("w1", features, 32), b("b1", 32), w("w2", 32, 16), b("b2", 16), w("w3", 16, 1), b("b3", 1)]
    return _model(nodes, helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, features]),
                  helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1]), inits)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rows(rng: np.random.Generator, n: int, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows around the scaler's mean: two correlated clusters of z-scores mapped back to raw units."""
    f = len(offset)
    mix = rng.normal(0, 0.6, (f, f))
    z = rng.normal(0, 1, (n, f)) @ mix + np.where(rng.random((n, 1)) < 0.5, -0.8, 0.8)
    return (offset + z / scale).astype(np.float32)


@pytest.mark.parametrize("per_feature", [True, False])
def test_scaler_rewrite_equals_onnxruntime(per_feature: bool) -> None:
    rng = np.random.default_rng(11 + per_feature)
    f = 5
    offset = list(rng.uniform(-20, 80, f)) if per_feature else [3.5]
    scale = list(rng.uniform(0.02, 3.0, f)) if per_feature else [0.25]
    model = _scaler_mlp(rng, f, offset, scale)
    prepared = prepare_onnx_model(onnx.load_from_string(model.SerializeToString()), source="scaler.onnx")
    assert all(n.domain in ("", "ai.onnx") for n in prepared.graph.node)
    x = _rows(rng, 16, np.resize(np.float32(offset), f), np.resize(np.float32(scale), f))
    # reference: onnxruntime on the original model (its own ai.onnx.ml Scaler kernel); the prepared model has batch 1
    got = np.concatenate([_ort(prepared, x[k:k + 1]) for k in range(len(x))])
    np.testing.assert_allclose(got, _ort(model, x), rtol=1e-5, atol=1e-5)


def test_scaler_mlp_converts_and_micro_equals_tflite_micro(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    f = 6
    # raw features of similar spread: the int8 input is quantized per tensor, before the scaler
    offset, scale = rng.uniform(-3, 3, f).astype(np.float32), rng.uniform(0.5, 2.0, f).astype(np.float32)
    path = tmp_path / "surrogate.onnx"
    onnx.save(_scaler_mlp(rng, f, list(offset), list(scale)), str(path))
    data = _rows(rng, 96, offset, scale)[:, None]  # [n, 1, f]
    res = convert_model(str(path), "rpi4-4gb", data[:64], str(tmp_path / "out"), formats=("tflite",),
                        report_samples=4)
    held = data[64:]
    ref = np.stack([_ort(onnx.load(str(path)), x) for x in held]).astype(np.float64)  # float onnxruntime
    lite = TFLiteRunner(res.tflite_path)
    got = np.stack([lite.run(res.graph.to_ir_layout(res.graph.inputs[0], x))[0] for x in held]).reshape(ref.shape)
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))
    # the same MLP fed pre-scaled rows (no Scaler) measures 19.9 dB; a wrong offset/scale rewrite is below 5 dB
    assert sqnr > 17, f"held-out SQNR {sqnr:.1f} dB vs float onnxruntime"
    if not micro_available():
        pytest.skip("micro backend not installed")
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    import edge_runtime

    tflm = runtime.Interpreter.from_file(res.tflite_path)
    micro = edge_runtime.load(res.tflite_path, backend="micro")
    for x in held[:4]:
        q = TFLiteRunner._q(res.graph.to_ir_layout(res.graph.inputs[0], x), lite.inp).reshape(lite.inp["shape"])
        tflm.set_input(q, 0)
        tflm.invoke()
        assert np.array_equal(np.asarray(micro.run(q)[0]), tflm.get_output(0)), "micro != tflite-micro"


@pytest.mark.parametrize("intercepts", [True, False])
def test_linear_regressor_rewrite_equals_onnxruntime(intercepts: bool) -> None:
    rng = np.random.default_rng(3)
    f, targets = 7, 2
    attrs: dict[str, Any] = {"coefficients": list(rng.normal(0, 1, targets * f)), "targets": targets}
    if intercepts:
        attrs["intercepts"] = list(rng.normal(0, 1, targets))
    model = _model([helper.make_node("LinearRegressor", ["X"], ["Y"], domain=ML, **attrs)],
                   helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, f]),
                   helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, targets]), [], default_opset=None)
    prepared = prepare_onnx_model(onnx.load_from_string(model.SerializeToString()), source="linreg.onnx")
    x = rng.normal(0, 2, (4, f)).astype(np.float32)
    got = np.concatenate([_ort(prepared, x[k:k + 1]) for k in range(len(x))])  # the prepared model has batch 1
    np.testing.assert_allclose(got, _ort(model, x), rtol=1e-5, atol=1e-5)  # reference: onnxruntime, original


def test_linear_regressor_post_transform_is_refused() -> None:
    model = _model([helper.make_node("LinearRegressor", ["X"], ["Y"], domain=ML, coefficients=[1.0, 2.0],
                                     post_transform="PROBIT")],
                   helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2]),
                   helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1]), [])
    with pytest.raises(UnsupportedModelError, match="post_transform PROBIT"):
        prepare_onnx_model(model, source="probit.onnx")


def test_scaler_without_scale_is_one_line() -> None:
    model = _model([helper.make_node("Scaler", ["X"], ["Y"], domain=ML, offset=[1.0])],
                   helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2]),
                   helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2]), [])
    with pytest.raises(ModelFormatError, match="needs both 'offset' and 'scale'"):
        prepare_onnx_model(model, source="scaler.onnx")


def test_ml_only_classifier_is_refused_by_name_not_by_opset() -> None:
    """logreg_iris's layout: LinearClassifier -> Normalizer, only the ai.onnx.ml opset declared."""
    nodes = [helper.make_node("LinearClassifier", ["X"], ["label", "scores"], domain=ML, classlabels_ints=[0, 1, 2],
                              coefficients=list(np.linspace(-1, 1, 6)), intercepts=[0.1, 0.2, 0.3]),
             helper.make_node("Normalizer", ["scores"], ["probabilities"], domain=ML, norm="L1")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 2])],
                          [helper.make_tensor_value_info("label", TensorProto.INT64, [3]),
                           helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [3, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(ML, 1)])
    model.ir_version = 3
    with pytest.raises(UnsupportedModelError) as err:
        prepare_onnx_model(model, source="logreg.onnx")
    msg = str(err.value)
    assert "ai.onnx.ml.LinearClassifier" in msg and "opset" not in msg and "\n" not in msg


def test_tree_ensemble_is_refused_in_one_line(tmp_path: Path) -> None:
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["Y"], domain=ML, n_targets=1,
                            nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
                            nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0],
                            nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0],
                            target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0],
                            target_weights=[-1.0, 1.0])
    model = _model([node], helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3]),
                   helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1]), [])
    path = tmp_path / "trees.onnx"
    onnx.save(model, str(path))
    calib = np.random.default_rng(0).normal(size=(8, 1, 3)).astype(np.float32)
    with pytest.raises(UnsupportedModelError) as err:
        convert_model(str(path), "rpi4-4gb", calib, str(tmp_path / "out"), formats=("tflite",), report_samples=2)
    msg = str(err.value)
    assert "ai.onnx.ml.TreeEnsembleRegressor" in msg and "classical-ML" in msg and "\n" not in msg

"""Issue #18 (converter speed), the import and fit phases.

Import: ONNX's strict shape inference runs on a copy of the model without the large float weights' bytes
(``converters/importers/infer_payloads.py``); the inferred model must be the one full inference gives, byte for
byte, on models whose shapes depend on tensor values (float Resize scales, float Range bounds, int64 Reshape
shapes) and on models with missing (symbolic) shapes, and the importer must prepare the same model.

Fit: an OS profile's fit reports the micro backend's in-place arena, which depends on the micro kernels' traits
(the convolutions' in-place line buffers), so the kernels cannot be skipped for it: the fit must equal the plan
made with those traits, which differs from the kernel-free (conservative) plan on the MLPerf models.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

from converters.importers import infer_payloads
from converters.importers.infer_payloads import MIN_BYTES, infer_shapes_light, large_float_initializers
from converters.importers.prepare import prepare_onnx, prepare_onnx_model
from edge_runtime.errors import UnsupportedModelError

STRICT = dict(check_type=True, strict_mode=True, data_prop=True)
DIGITS = Path(__file__).resolve().parent.parent / "converters" / "data" / "digits_cnn.onnx"


def _model(batch: "int | str" = 1) -> onnx.ModelProto:
    """Conv (big float weights) -> Resize (float scales) -> Reshape (int64 shape) -> MatMul (big float weights),
    plus Range with float bounds (its length comes from the values) and a big int64 Gather index table."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((32, 4, 3, 3)).astype(np.float32), "conv_w"),  # 4,608 B
        numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "conv_b"),  # 128 B: kept
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((2048, 10)).astype(np.float32), "fc_w"),  # 81,920 B
        numpy_helper.from_array(np.array(0.0, np.float32), "start"),
        numpy_helper.from_array(np.array(10.0, np.float32), "limit"),
        numpy_helper.from_array(np.array(2.5, np.float32), "delta"),
        numpy_helper.from_array(np.arange(1000, dtype=np.int64) % 4, "idx"),  # 8,000 B int64: kept
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["logits"]),
        helper.make_node("Range", ["start", "limit", "delta"], ["steps"]),
        helper.make_node("Gather", ["steps", "idx"], ["picked"], axis=0),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("picked", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _full_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the importer run ONNX's inference on the whole model, as before the cut."""
    monkeypatch.setattr(infer_payloads, "infer_shapes_light", shape_inference.infer_shapes)


def test_light_inference_equals_full_inference_on_value_driven_shapes() -> None:
    m = _model()
    before = m.SerializeToString()
    assert large_float_initializers(m) == [0, 4]  # the int64 table and the small float tensors keep their bytes
    full, light = shape_inference.infer_shapes(m, **STRICT), infer_shapes_light(m, **STRICT)
    assert light.SerializeToString() == full.SerializeToString()
    assert m.SerializeToString() == before  # the caller's model is not touched
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in light.graph.output}
    assert shapes == {"logits": [1, 10], "picked": [1000]}  # (2048 = 32 * 8 * 8 from the float scales)


def test_light_inference_equals_full_inference_with_missing_shapes() -> None:
    m = _model(batch="N")  # a symbolic batch: Conv/Resize outputs keep "N", Reshape's output a fresh unknown
    full, light = shape_inference.infer_shapes(m, **STRICT), infer_shapes_light(m, **STRICT)
    assert light.SerializeToString() == full.SerializeToString()
    dims = {vi.name: vi.type.tensor_type.shape.dim for vi in light.graph.value_info}
    assert dims["c"][0].dim_param == "N" and not dims["flat"][0].HasField("dim_value")


def test_importer_does_not_send_large_weights_to_shape_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails on the old importer, which gave ONNX's inference the whole model (81,920 weight bytes)."""
    seen: list[int] = []
    real = shape_inference.infer_shapes

    def recording(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("strict_mode"):  # the importer's own inference (constant folding runs onnxslim's first)
            seen.append(max((t.ByteSize() for t in model.graph.initializer if t.data_type == TensorProto.FLOAT),
                            default=0))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(shape_inference, "infer_shapes", recording)
    light = prepare_onnx_model(_model(), source="m.onnx").SerializeToString()
    assert seen and max(seen) <= MIN_BYTES, seen  # (the 81,920-byte MatMul weights are not sent)
    monkeypatch.undo()
    _full_inference(monkeypatch)
    assert prepare_onnx_model(_model(), source="m.onnx").SerializeToString() == light


def _prepared(monkeypatch: pytest.MonkeyPatch, full: bool, make: Callable[[], onnx.ModelProto]) -> "bytes | str":
    """The prepared model's bytes (or the refusal's message), with the light or (``full``) the whole inference."""
    with monkeypatch.context() as mp:
        if full:
            mp.setattr(infer_payloads, "infer_shapes_light", shape_inference.infer_shapes)
        try:
            return make().SerializeToString()
        except UnsupportedModelError as exc:
            return str(exc)


def test_importer_same_prepared_models_and_same_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits CNN, a model with a symbolic batch (fixed by --input-shape) and one whose shapes stay unknown
    prepare to the same bytes, or are refused with the same message, either way."""
    def nonzero() -> onnx.ModelProto:
        m = _model()
        m.graph.node.append(helper.make_node("NonZero", ["flat"], ["nz"]))
        m.graph.output.append(helper.make_tensor_value_info("nz", TensorProto.INT64, None))
        return prepare_onnx_model(m, source="nz.onnx")

    cases = {
        "digits": lambda: prepare_onnx(DIGITS),
        "symbolic batch": lambda: prepare_onnx_model(_model("N"), {"x": (1, 4, 4, 4)}, source="n.onnx"),
        "NonZero": nonzero,
    }
    for name, make in cases.items():
        light, full = _prepared(monkeypatch, False, make), _prepared(monkeypatch, True, make)
        assert light == full, name
    assert "no static shape" in _prepared(monkeypatch, False, nonzero)


def _tflite_fit(path: Path) -> tuple[int, int, int]:
    """(OS-profile fit's arena, the plan with the micro kernels' traits, the kernel-free conservative plan)."""
    from converters.fit import fit_model
    from device_profiles import load_profile
    from edge_runtime.arena.op_memory import conservative_op_memory
    from edge_runtime.arena.plan import plan_arena
    from edge_runtime.formats.tflite import TFLiteModel

    model = TFLiteModel.open(str(path))
    return (fit_model(path, load_profile("rpi4-4gb")).arena_bytes, plan_arena(model, in_place=True).arena_bytes,
            plan_arena(model, in_place=True, op_memory=conservative_op_memory).arena_bytes)


@pytest.mark.parametrize("name, arena, conservative", [("vww_96_int8.tflite", 43392, 55296),
                                                       ("kws_ref_model.tflite", 8064, 16000)])
def test_os_profile_fit_needs_the_micro_kernels_traits(mlperf_models: Path, name: str, arena: int,
                                                       conservative: int) -> None:
    """A fit that skipped the micro kernels for an OS profile (conservative traits: no in-place convolutions)
    would report a larger arena: the kernels' traits are part of what an OS profile's fit needs."""
    assert _tflite_fit(mlperf_models / name) == (arena, arena, conservative)

"""The torch model zoo (tests/fixtures/zoo) through ``convert_model`` for a Pi profile.

For each (model, opset) in CASES the model is exported at test time with
``torch.onnx.export(..., dynamo=False)`` into a temporary directory and converted; then:

- the int8 .tflite runs on LiteRT and the QDQ .onnx on onnxruntime, and each one's output SQNR
  against the float model (onnxruntime on the exported .onnx) on held-out inputs from the
  calibration distribution is above the model's floor (``ZooModel.sqnr_floor_db``, justified in
  ``tests/fixtures/zoo/export.py``) and at least ORT's own ``quantize_static`` (QDQ, per-channel,
  same calibration set) minus 1 dB;
- the .tflite runs on micro bit-exactly against tflite-micro.

CASES: opsets 11, 13 and 17 for four models, one opset for every other family (and opset 9 for the
U-Net's Upsample), to stay within a few minutes; ``python -m benchmarks.import_zoo`` runs every
model at every opset with ORT's numbers beside ours.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_runtime.errors import UnsupportedModelError

torch = pytest.importorskip("torch")
from fixtures.zoo import MODELS, export_onnx, harness  # noqa: E402

CALIB, HELD_OUT = 32, 16
FULL_MATRIX = ("mobilenet_v2", "mobilenet_v3", "shufflenet", "resnet")
CASES = [(name, opset) for name in FULL_MATRIX for opset in (11, 13, 17)] + [
    ("squeezenet", 11), ("ghostnet", 17), ("efficientnet_lite", 13), ("regnet", 11), ("unet", 17), ("ssd", 13),
    ("gru_kws", 17), ("transformer", 11), ("mobilevit", 17), ("mobilenet_v2_dynbatch", 11), ("lstm_kws_dynseq", 13),
    ("unet", 9),  # Upsample before opset 11: the upgraded Resize must keep its coordinate rule
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.mark.slow
@pytest.mark.parametrize("name,opset", CASES, ids=[f"{n}-op{o}" for n, o in CASES])
def test_zoo_model_converts_runs_everywhere_and_keeps_quality(workdir: Path, name: str, opset: int) -> None:
    d = workdir / f"{name}_op{opset}"
    d.mkdir()
    harness.assert_converts_and_keeps_quality(name, export_onnx(name, opset, d), str(d), CALIB, HELD_OUT)


def test_dynamic_sequence_length_needs_input_shape(workdir: Path) -> None:
    """The LSTM exported with a dynamic time axis: without --input-shape one line names the input, its
    dims and the flag; the prepare pass with it gives static shapes everywhere."""
    from converters.importers.prepare import prepare_onnx
    from converters.pipeline import import_model

    path = export_onnx("lstm_kws_dynseq", 13, workdir)
    with pytest.raises(UnsupportedModelError) as e:
        import_model(path)
    msg = str(e.value)
    assert "\n" not in msg and "input[1xtimex10]" in msg and "--input-shape" in msg
    model = prepare_onnx(path, MODELS["lstm_kws_dynseq"].input_shapes)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 49, 10]
    assert all(d.HasField("dim_value") for vi in model.graph.value_info for d in vi.type.tensor_type.shape.dim)


def test_every_zoo_model_prepares_at_every_opset(workdir: Path) -> None:
    """Whatever the importer supports, the prepare pass takes every zoo export to static shapes with
    no Constant, If or shape-arithmetic node left, at opsets 11, 13 and 17."""
    from converters.importers.prepare import prepare_onnx

    leftovers = {"Constant", "If", "Shape", "ConstantOfShape", "Range", "Expand", "Cast"}
    d = workdir / "prepare"
    d.mkdir()
    for name, spec in MODELS.items():
        if spec.large:
            continue
        for opset in (11, 13, 17):
            model = prepare_onnx(export_onnx(name, opset, d), spec.input_shapes)
            ops = {n.op_type for n in model.graph.node}
            assert not ops & leftovers, (name, opset, ops & leftovers)
            assert [o.name for o in model.graph.output] == list(spec.outputs)
            assert os.path.getsize(os.path.join(d, f"{name}_op{opset}.onnx")) > 0

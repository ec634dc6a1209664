"""The torch model zoo exported with torch's default exporter (``dynamo=True``), through ``convert_model``.

Since torch 2.9 ``torch.onnx.export`` goes through ``torch.export`` and onnxscript by default, so this
is what a user's plain export call writes: another opset (18-20), other node patterns
(``LayerNormalization``, ``Split`` with ``num_outputs``, axes as inputs, decomposed GELU and
attention). Every non-large zoo model, at the exporter's own default opset, must then hold what
``tests/test_import_zoo.py`` asks of the older exporter's models:

- int8 .tflite on LiteRT and QDQ .onnx on onnxruntime above the model's SQNR floor against the float
  model on onnxruntime (held-out inputs), and the .tflite at least ORT ``quantize_static``'s SQNR
  (QDQ, per-channel, the same calibration set) minus 1 dB;
- micro bit-exact with tflite-micro on the int8 .tflite.
"""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript", reason="torch's dynamo exporter needs onnxscript")
from fixtures.zoo import MODELS, export_onnx, harness  # noqa: E402

CALIB, HELD_OUT = 32, 16
NAMES = [name for name, spec in MODELS.items() if not spec.large and not spec.dynamic_axes]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_dynamo_export_converts_runs_everywhere_and_keeps_quality(tmp_path: Path, name: str) -> None:
    import onnx

    path = export_onnx(name, None, tmp_path, dynamo=True)
    assert onnx.load(path, load_external_data=False).opset_import[0].version >= 18  # the new exporter's opsets
    harness.assert_converts_and_keeps_quality(name, path, str(tmp_path), CALIB, HELD_OUT)

"""``edge-convert export --format tflm``: checked with tflite-micro's Python interpreter.

For each MLPerf Tiny int8 model: ``model_ops.h`` registers exactly the model's ops (one ``Add*``
call per distinct op, ``MicroMutableOpResolver<N>`` with N the count); ``model_data.cc`` holds the
exported .tflite byte for byte, 16-byte aligned, with our offline plan embedded; the arena constant
is at least TFLM's head for the exported model, and tflite-micro runs that model in an arena of
exactly ``kTensorArenaSize`` bytes with outputs equal to the micro backend's.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main as edge_convert
from converters.codegen.tflm import resolver_method
from converters.offline_plan import read_offline_plan, run_tflm, tflm_available
from edge_runtime.backends.micro.interpreter import Interpreter
from edge_runtime.formats.tflite import TFLiteModel

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8", "str_ww_ref_model"]

#: MicroMutableOpResolver methods of tflite-micro for the ops these models use
#: (tensorflow/lite/micro/micro_mutable_op_resolver.h).
TFLM_METHODS = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
                "FULLY_CONNECTED": "AddFullyConnected", "AVERAGE_POOL_2D": "AddAveragePool2D",
                "MAX_POOL_2D": "AddMaxPool2D", "ADD": "AddAdd", "RESHAPE": "AddReshape", "SOFTMAX": "AddSoftmax",
                "QUANTIZE": "AddQuantize", "DEQUANTIZE": "AddDequantize", "RELU6": "AddRelu6",
                "L2_NORMALIZATION": "AddL2Normalization", "BATCH_MATMUL": "AddBatchMatMul",
                "STRIDED_SLICE": "AddStridedSlice", "TRANSPOSE_CONV": "AddTransposeConv"}


@pytest.fixture(scope="module")
def needs_tflm() -> None:
    """Skip when the tflite-micro Python package is missing."""
    if not tflm_available():
        pytest.skip("the tflite-micro Python package is not importable (x86_64 Linux only)")


def test_resolver_method_names() -> None:
    for op, method in TFLM_METHODS.items():
        assert resolver_method(op) == method


@pytest.mark.parametrize("stem", MODELS)
def test_tflm_export(stem: str, mlperf_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     needs_tflm: None) -> None:
    src = mlperf_models / f"{stem}.tflite"
    out = tmp_path / "tflm"
    assert edge_convert(["export", str(src), "--profile", "stm32h743", "--format", "tflm", "-o", str(out),
                         "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    model = TFLiteModel.open(src)
    ops = {op.name for op in model.main.operators}

    header = (out / "model_ops.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", header)
    assert sorted(calls) == sorted(TFLM_METHODS[o] for o in ops)
    assert f"constexpr int kModelOpCount = {len(ops)};" in header

    exported = out / manifest["tflite"]
    cc = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[]" in cc
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", cc))
    assert data == exported.read_bytes()
    assert f"g_model_data_len = {len(data)};" in cc
    assert read_offline_plan(TFLiteModel.open(exported)) is not None

    arena = int(re.search(r"kTensorArenaSize = (\d+);", (out / "model_config.h").read_text()).group(1))
    spec = model.main.tensors[model.main.inputs[0]]
    x = np.random.default_rng(3).integers(-128, 128, size=(5,) + tuple(spec.shape), dtype=np.int8)
    free = run_tflm(exported, x)  # tflite-micro sizing the arena itself
    assert arena >= free.head_bytes
    fixed = run_tflm(exported, x, arena_size=arena)  # in exactly kTensorArenaSize bytes
    it = Interpreter(model)
    ref = []
    for row in x:
        it.set_input(0, row)
        it.invoke()
        ref.append(it.output(0).copy())
    assert np.array_equal(fixed.outputs.reshape(len(x), -1), np.stack(ref).reshape(len(x), -1))
    assert (out / "README.md").exists() and "RegisterModelOps" in (out / "README.md").read_text()


def test_export_c_cli_and_budget(mlperf_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format c writes the project; a model over the profile's budget exits 3 after writing it."""
    src = mlperf_models / "kws_ref_model.tflite"
    assert edge_convert(["export", str(src), "--profile", "nrf52840", "--format", "c", "-o", str(tmp_path / "c")]) == 0
    assert "arena 8," in capsys.readouterr().out
    for f in ("model.c", "model.h", "Makefile", "manifest.json", "board/link.ld", "kernels/conv.c"):
        assert (tmp_path / "c" / f).exists(), f
    small = tmp_path / "tiny.yaml"
    from device_profiles import load_profile

    prof = load_profile("nrf52840").model_dump()
    prof.update(name="tiny", ram_bytes=4096, inference_ram_budget_bytes=4096)
    import yaml

    small.write_text(yaml.safe_dump(prof))
    assert edge_convert(["export", str(src), "--profile", str(small), "--format", "c", "-o", str(tmp_path / "t")]) == 3
    assert "does not fit profile tiny" in capsys.readouterr().err


def test_convert_for_a_microcontroller_writes_tflite_only_with_the_plan(tmp_path: Path) -> None:
    """``convert --profile <mcu>`` (default --format): no ONNX, and the .tflite carries the offline plan."""
    data = Path(__file__).resolve().parents[1] / "converters" / "data"
    out = tmp_path / "o"
    assert edge_convert(["convert", str(data / "digits_cnn.onnx"), "--profile", "stm32h743",
                         "--calib", str(data / "digits_calib.npz"), "-o", str(out)]) == 0
    assert not list(out.glob("*.onnx"))
    (tfl,) = out.glob("*_int8.tflite")
    assert read_offline_plan(TFLiteModel.open(tfl)) is not None

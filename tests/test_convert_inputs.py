"""Converter input handling: calibration data forms, calibration methods, bad input, budgets, imports."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.calibration_data import CalibrationDataError, open_calibration, synthetic_images
from converters.cli import main as edge_convert
from converters.pipeline import convert_model
from edge_runtime.errors import ModelFormatError, UnsupportedModelError
from helpers import board_variant

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "converters" / "data"
MODEL = DATA / "digits_cnn.onnx"
CALIB = DATA / "digits_calib.npz"


# -- calibration data --------------------------------------------------------
def test_npy_is_memory_mapped_and_batch_dim_optional(tmp_path):
    arr = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    np.save(tmp_path / "a.npy", arr)
    cs = open_calibration(tmp_path / "a.npy", (1, 1, 8, 8))
    assert len(cs) == 7
    assert all(isinstance(it[1], np.memmap) for it in cs._items)
    got = np.stack(list(cs))
    np.testing.assert_array_equal(got[:, 0], arr)
    np.save(tmp_path / "b.npy", arr[:, None])  # with the batch dimension
    assert len(open_calibration(tmp_path / "b.npy", (1, 1, 8, 8))) == 7
    assert [b.shape for b in cs.batches(3)] == [(3, 1, 1, 8, 8), (3, 1, 1, 8, 8), (1, 1, 1, 8, 8)]


def test_directory_of_int8_bin_files_is_dequantized(tmp_path):
    q = np.arange(-5, 5, dtype=np.int8).reshape(1, 10)
    for i in range(3):
        (q + i).tofile(tmp_path / f"s{i}.bin")
    (tmp_path / "labels.csv").write_text("not a sample\n")
    cs = open_calibration(tmp_path, (1, 10), bin_scale=0.5, bin_zero_point=2)
    vals = list(cs)
    assert len(vals) == 3
    np.testing.assert_allclose(vals[1], (q.astype(np.float32) + 1 - 2) * 0.5)
    with pytest.raises(CalibrationDataError, match="scale and zero point"):
        open_calibration(tmp_path, (1, 10))


def test_npz_and_limit(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((5, 1, 8, 8), np.float32), y=np.arange(5))
    assert len(open_calibration(tmp_path / "c.npz", (1, 1, 8, 8), limit=2)) == 2


def test_wrong_shape_and_empty_sets_are_clear_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(CalibrationDataError, match=r"shape \(4, 3, 8, 8\).*expects \(1, 1, 8, 8\)"):
        open_calibration(tmp_path / "bad.npy", (1, 1, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="empty"):
        open_calibration(tmp_path / "empty", (1, 1, 8, 8))
    np.save(tmp_path / "zero.npy", np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(CalibrationDataError, match="empty"):
        open_calibration(tmp_path / "zero.npy", (1, 1, 8, 8))
    with pytest.raises(CalibrationDataError, match="not found"):
        open_calibration(tmp_path / "missing", (1, 1, 8, 8))
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.wav").write_bytes(b"RIFF")
    with pytest.raises(CalibrationDataError, match="preprocessor"):
        open_calibration(tmp_path / "media", (1, 49, 10, 1))


def test_media_files_go_through_the_preprocessor(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.wav").write_bytes(b"RIFF")
    cs = open_calibration(tmp_path, (1, 4), preprocessor=lambda p: np.full((4,), float(Path(p).stem)))
    np.testing.assert_array_equal(np.stack(list(cs))[:, 0, 0], [0.0, 1.0])


def test_synthetic_images_are_structured_and_deterministic():
    a, b = synthetic_images(4, 32, 32, seed=1), synthetic_images(4, 32, 32, seed=1)
    assert np.array_equal(a, b) and a.shape == (4, 32, 32, 3) and a.min() >= 0 and a.max() <= 1
    # neighbouring pixels are correlated, unlike white noise
    dx = np.abs(np.diff(a, axis=2)).mean()
    assert dx < 0.5 * np.abs(a - a.mean()).mean()


# -- calibration methods -------------------------------------------------------
def _actual_mse(v: np.ndarray, lo: float, hi: float) -> float:
    from converters.quantize import qparams_from_range

    qp = qparams_from_range(lo, hi)
    return float(np.mean((qp.dequantize(qp.quantize(v)) - v) ** 2))


def test_mse_range_beats_minmax_and_percentile_on_heavy_tailed_data():
    from converters.calibration_histograms import BINS
    from converters.calibration_histograms import mse_range as _mse_range
    from converters.calibration_histograms import percentile_range as _percentile_range

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.laplace(0, 1, 200_000), rng.normal(30, 1, 5)])  # heavy tail plus a few outliers
    lo, hi = float(v.min()), float(v.max())
    hist = np.histogram(v, bins=BINS, range=(lo, hi))[0]
    mlo, mhi = _mse_range(hist, lo, hi)
    plo, phi = _percentile_range(hist, lo, hi)
    assert mhi < hi and mlo >= lo  # it clips
    e_mse, e_min, e_pct = _actual_mse(v, mlo, mhi), _actual_mse(v, lo, hi), _actual_mse(v, plo, phi)
    assert e_mse < 0.9 * e_min, (e_mse, e_min)
    assert e_mse <= e_pct * 1.01, (e_mse, e_pct)


def test_calibration_methods_all_convert(tmp_path):
    from converters.calibrate import calibrate
    from converters.importers.onnx import import_onnx

    g = import_onnx(MODEL)
    data = open_calibration(CALIB, g.source_shape(g.inputs[0]), limit=16)
    r_min = calibrate(g, data, "minmax")
    r_mse = calibrate(g, data, "mse")
    r_pct = calibrate(g, data, "percentile")
    assert set(r_min) == set(r_mse) == set(r_pct) == set(g.activations())
    for t in r_min:
        assert r_mse[t][0] >= r_min[t][0] - 1e-6 and r_mse[t][1] <= r_min[t][1] + 1e-6
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrate(g, data, "entropy-ish")


# -- bad models ----------------------------------------------------------------
def _onnx_with(op_type: str, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    n1 = helper.make_node("Relu", ["x"], ["r"], name="relu0")
    n2 = helper.make_node(op_type, ["r"], ["y"], name="my_strange_node")
    g = helper.make_graph([n1, n2], "g", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_unsupported_onnx_op_names_op_and_node(tmp_path):
    p = _onnx_with("RandomUniformLike", tmp_path / "random.onnx")  # (Erf, used before, converts since H11)
    with pytest.raises(UnsupportedModelError,
                       match=r"unsupported ONNX op 'RandomUniformLike' in node 'my_strange_node'"):
        convert_model(p, "rpi4-4gb", np.zeros((2, 1, 4), np.float32), tmp_path / "out")


def test_garbage_and_missing_models_are_clear_errors(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\xffnot a model" * 10)
    with pytest.raises(ModelFormatError, match="not a valid ONNX model"):
        convert_model(bad, "rpi4-4gb", CALIB, tmp_path / "o")
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"garbage bytes")
    with pytest.raises(ModelFormatError):
        convert_model(fake, "rpi4-4gb", CALIB, tmp_path / "o")
    with pytest.raises(ModelFormatError, match="no such file"):
        convert_model(tmp_path / "nope.onnx", "rpi4-4gb", CALIB, tmp_path / "o")


def test_cli_errors_are_one_line_no_traceback(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 3), np.float32))
    rc = edge_convert(["convert", str(MODEL), "--profile", "rpi4-4gb", "--calib", str(tmp_path / "bad.npy"),
                       "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "calibration data has shape (4, 3, 3)" in err and "Traceback" not in err
    rc = edge_convert(["convert", str(MODEL), "--profile", "no-such-board", "--calib", str(CALIB)])
    assert rc == 1 and "unknown device profile 'no-such-board'" in capsys.readouterr().err


# -- budgets and accelerators --------------------------------------------------
def _tiny_profile(tmp_path: Path) -> Path:
    return board_variant(tmp_path, "nrf52840", "tiny-test-board", inference_ram_budget_bytes=2048,
                         model_flash_budget_bytes=8192)


def test_over_budget_exits_3_with_how_much_and_what_helps(tmp_path, capsys):
    rc = edge_convert(["convert", str(MODEL), "--profile", str(_tiny_profile(tmp_path)), "--calib", str(CALIB),
                       "-o", str(tmp_path / "o"), "--format", "tflite"])
    out = capsys.readouterr()
    assert rc == 3  # does not fit (2 is a usage error)
    assert "does not fit profile tiny-test-board" in out.err
    assert "B over the flash budget" in out.err and "B over the inference budget" in out.err
    assert "It fits these profiles:" in out.err and "nrf52840" in out.err
    assert (tmp_path / "o" / "digits_cnn_int8.tflite").exists()
    assert not (tmp_path / "o" / "digits_cnn_int8.onnx").exists()


def test_edge_tpu_coverage_finds_first_unsupported_op_and_split(tmp_path):
    from device_profiles import load_profile
    from device_profiles.schema import Accelerator
    from converters.fit import accelerator_coverage, fit_model
    from edge_runtime.formats.tflite import TFLiteModel

    res = convert_model(MODEL, "coral-usb-rpi4", CALIB, tmp_path, formats=("tflite",))
    rep = fit_model(res.tflite_path, load_profile("coral-usb-rpi4"))
    cov = rep.accelerators[0]
    assert cov.ops_on_accelerator == cov.ops_total and not cov.split  # every op is on the Edge TPU list
    model = TFLiteModel.open(res.tflite_path)
    names = [op.name for op in model.main.operators]
    tpu = Accelerator(name="Coral Edge TPU", kind="tflite_delegate", library="libedgetpu.so.1",
                      supported_ops=[n for n in set(names) if n != "ADD"])
    cov = accelerator_coverage(model, tpu)
    first = names.index("ADD")
    assert cov.first_cpu_op == first and cov.ops_on_accelerator == first
    assert cov.split and "graph splits" in cov.warning and "ADD" in cov.warning


# -- dependencies ---------------------------------------------------------------
def test_converters_never_import_tensorflow_or_torch():
    """No module in converters/ imports TensorFlow or PyTorch. The one exception the [COMPRESS] issue
    makes: `edge-convert distill` imports torch inside its function, never at module level."""
    banned = {"tensorflow", "torch", "tf_keras", "keras"}
    lazy_torch_allowed = ROOT / "converters" / "compress" / "distill.py"
    for py in (ROOT / "converters").rglob("*.py"):
        tree = ast.parse(py.read_text(), filename=str(py))
        module_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                top = m.split(".")[0]
                if top == "torch" and py == lazy_torch_allowed and id(node) not in module_level:
                    continue
                assert top not in banned, f"{py} imports {m}"
    r = subprocess.run([sys.executable, "-c", "import sys, converters.compress.distill, converters.cli;"
                        "sys.exit(1 if 'torch' in sys.modules else 0)"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "importing the distill module must not import torch: " + r.stderr
    code = ("import sys, numpy as np; from converters.pipeline import convert_model; import tempfile;"
            f"convert_model(r'{MODEL}', 'rpi4-4gb', r'{CALIB}', tempfile.mkdtemp(), limit=8);"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('torch','tensorflow')]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wav_calibration_through_the_kws_preset(tmp_path, shared):
    """.wav files become every 1 s MFCC window the kws preset produces (edge_runtime.preprocess)."""
    import shutil

    wav = shared / "models" / "mlperf_tiny" / "data" / "audio" / "short_wav_easy10s.wav"
    shutil.copy(wav, tmp_path / "a.wav")
    from converters.calibration_data import preprocessor_from_config

    pre = preprocessor_from_config("kws", "input_1", (1, 49, 10, 1))
    cs = open_calibration(tmp_path, (1, 49, 10, 1), preprocessor=pre)
    assert len(cs) == 10  # 10 s of audio, one window per second
    x = np.stack(list(cs))
    assert x.dtype == np.float32 and x.max() <= 30 and x.min() >= -130  # MFCCs in the model's real range
    res = convert_model(shared / "models" / "mlperf_tiny" / "models" / "kws_ref_model_float32.tflite", "rpi4-4gb",
                        tmp_path, tmp_path / "out", preprocess="kws", formats=("tflite",))
    assert res.report["calibration"]["samples"] == 10


def test_dead_channel_bias_fits_int32_and_keeps_its_value():
    """A channel with ~zero weights and a real bias: the weight scale is raised so the bias survives."""
    from converters.ir import Graph, Op, Tensor
    from converters.quantize import BIAS_LIMIT, plan_quantization

    w = np.random.default_rng(0).standard_normal((4, 1, 1, 3)).astype(np.float32)
    w[2] = 1e-30  # dead channel, as BatchNorm folding leaves in MobileNet
    b = np.array([0.1, -0.2, 0.5, 0.0], np.float32)
    g = Graph("t", {"x": Tensor("x", (1, 2, 2, 3)), "w": Tensor("w", w.shape, w), "b": Tensor("b", (4,), b),
                    "y": Tensor("y", (1, 2, 2, 4))},
              [Op("CONV_2D", ["x", "w", "b"], ["y"], {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0)})],
              ["x"], ["y"])
    plan = plan_quantization(g, {"x": (-1.0, 1.0), "y": (0.0, 3.0)})
    qb = plan.biases["b"]
    assert np.all(np.abs(qb.values.astype(np.int64)) <= BIAS_LIMIT)
    np.testing.assert_allclose(qb.values * qb.scales.astype(np.float64), b, atol=1e-4)
    assert plan.weights["w"].scales[2] > 1e-12 and np.all(plan.weights["w"].values[2] == 0)

"""Calibration data on which the float model itself produces NaN or inf (Sqrt or Log of a negative or zero
value): one CalibrationDataError naming the sample, the first such tensor and the op producing it, through
the API and the CLI (exit code 1, as other calibration errors), never "cannot convert float NaN to integer".
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters.calibrate import calibrate
from converters.calibration_data import CalibrationDataError
from converters.pipeline import convert_model, import_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

N = 8


def _model(path: Path, unary: str) -> Path:
    """x [1, N] -> ``unary`` -> y -> MatMul -> z (a NaN or inf in y spreads to z)."""
    w = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    nodes = [helper.make_node(unary, ["x"], ["y"]), helper.make_node("MatMul", ["y", "w"], ["z"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, N])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _positive(n: int = 6) -> np.ndarray:
    return (np.random.default_rng(1).random((n, 1, N)) + 0.5).astype(np.float32)


@pytest.mark.parametrize("bad_index", [0, 4])
def test_sqrt_of_a_negative_value_names_sample_tensor_and_op(tmp_path, bad_index):
    src = _model(tmp_path / "sqrt.onnx", "Sqrt")
    c = _positive()
    c[bad_index, 0, 3] = -1.0
    with pytest.raises(CalibrationDataError) as e:
        convert_model(src, "rpi4-4gb", c, tmp_path / "o", plot=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"calibration sample {bad_index} makes tensor 'y' (SQRT) NaN"), msg
    assert not (tmp_path / "o" / "sqrt_int8.tflite").exists()


@pytest.mark.parametrize("method", ["minmax", "auto"])
def test_log_of_zero_is_infinite_in_calibrate(tmp_path, method):
    graph = import_model(_model(tmp_path / "log.onnx", "Log"))
    c = _positive()
    c[2, 0, 0] = 0.0
    with pytest.raises(CalibrationDataError, match=r"^calibration sample 2 makes tensor 'y' \(LOG\) infinite"):
        calibrate(graph, c, method)


def test_finite_data_still_calibrates(tmp_path):
    graph = import_model(_model(tmp_path / "sqrt.onnx", "Sqrt"))
    ranges = calibrate(graph, _positive(), "minmax")
    assert all(np.isfinite(lo) and np.isfinite(hi) for lo, hi in ranges.values())


def test_cli_says_it_in_one_line_with_exit_code_1(tmp_path):
    src = _model(tmp_path / "sqrt.onnx", "Sqrt")
    c = _positive()
    c[1, 0, 5] = -4.0
    np.save(tmp_path / "c.npy", c)
    r = subprocess.run([sys.executable, "-m", "converters.cli", "convert", str(src), "--profile", "rpi4-4gb",
                        "--calib", str(tmp_path / "c.npy"), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, r.stderr
    assert "calibration sample 1 makes tensor 'y' (SQRT) NaN" in errors[0]
    assert "converter bug" not in r.stderr

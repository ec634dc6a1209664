"""[HARDEN] the converter and LiteRT on hostile input: one clear line, never a traceback or a crash.

Converter: NaN/Inf in calibration data or in weights, implausible calibration values, a single sample,
bad output folders. LiteRT: the three mutations that used to segfault it past the structural checks
(an operator input index of -1, an option value of INT_MIN, builtin code 9 changed to 49); each load runs
in a subprocess, so a crash would show as a signal.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "converters" / "data" / "digits_cnn.onnx"


def _convert(tmp_path: Path, calib, out: "Path | str", model: Path = MODEL) -> subprocess.CompletedProcess:
    c = tmp_path / "calib.npy"
    np.save(c, calib)
    return subprocess.run([sys.executable, "-m", "converters.cli", "convert", str(model), "--profile", "rpi4-4gb",
                           "--calib", str(c), "-o", str(out), "--format", "tflite"],
                          capture_output=True, text=True, timeout=300)


def _one_error_line(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and all(w in errors[0] for w in words), r.stderr


def _calib(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_calibration_values(tmp_path, bad):
    c = _calib()
    c[3, 0, 2, 2] = bad
    _one_error_line(_convert(tmp_path, c, tmp_path / "o"), "calibration sample 3", "NaN or infinite")


def test_implausible_values_and_a_single_sample_are_warned_about(tmp_path):
    c = _calib()
    c[0, 0, 0, 0] = 1e30
    r = _convert(tmp_path, c, tmp_path / "o")
    assert "reaches 1e+30 in magnitude" in r.stderr and "Traceback" not in r.stderr
    r = _convert(tmp_path, _calib(1), tmp_path / "o2")
    assert r.returncode in (0, 3) and "only 1 calibration sample" in r.stderr


def test_non_finite_weights(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    m = onnx.load(str(MODEL))
    w = m.graph.initializer[0]
    arr = numpy_helper.to_array(w).copy()
    arr.reshape(-1)[0] = np.nan
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    bad = tmp_path / "nan_weights.onnx"
    onnx.save(m, str(bad))
    _one_error_line(_convert(tmp_path, _calib(), tmp_path / "o", bad), "NaN or infinite", "constant")


def test_bad_output_folders(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    _one_error_line(_convert(tmp_path, _calib(), f), "exists and is not a folder")
    _one_error_line(_convert(tmp_path, _calib(), f / "sub"), "a parent of this path is a file")
    _one_error_line(_convert(tmp_path, _calib(), "/proc/no/such/dir"), "cannot create the output folder")


LOAD = r"""
import sys, edge_runtime
from edge_runtime.errors import EdgeRuntimeError
import numpy as np
try:
    with edge_runtime.load(sys.argv[1], backend="litert") as m:
        m.run([np.zeros(s.shape, s.dtype) for s in m.inputs])
    print("ok")
except EdgeRuntimeError as exc:
    print("error:", exc)
"""


def _mutant(mlperf_models: Path, tmp_path: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    import fuzz_structure as fz

    m = fz.unpack_tflite((mlperf_models / "kws_ref_model.tflite").read_bytes())
    change(m)
    p = tmp_path / f"{name}.tflite"
    p.write_bytes(fz.pack_tflite(m))
    return p


def _set_first_option(m):  # type: ignore[no-untyped-def]
    op = next(o for o in m.subgraphs[0].operators if hasattr(o.builtinOptions, "strideW"))
    op.builtinOptions.strideW = -(2**31)  # an int32 option field


def _code_9_to_49(m):  # type: ignore[no-untyped-def]
    oc = next((c for c in m.operatorCodes if c.builtinCode == 9), m.operatorCodes[0])
    oc.builtinCode = oc.deprecatedBuiltinCode = 49


@pytest.mark.parametrize("name,change", [
    ("input_index_minus_1", lambda m: m.subgraphs[0].operators[0].inputs.__setitem__(0, -1)),
    ("option_int_min", _set_first_option),
    ("code_9_to_49", _code_9_to_49),
])
def test_litert_never_crashes_on_the_mutations_that_used_to_segfault_it(mlperf_models, tmp_path, name, change):
    pytest.importorskip("ai_edge_litert")
    p = _mutant(mlperf_models, tmp_path, name, change)
    r = subprocess.run([sys.executable, "-c", LOAD, str(p)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, f"{name}: the load died (exit {r.returncode}): {r.stderr[-500:]}"
    assert r.stdout.startswith(("ok", "error:")), r.stdout


def test_max_frame_bytes_is_bounded(tmp_path):
    from edge_runtime.daemon.config import load_config
    from edge_runtime.errors import ConfigError

    p = tmp_path / "d.yaml"
    p.write_text("model: {path: m.tflite}\npipeline: {max_frame_bytes: 1000000000000}\n")
    with pytest.raises(ConfigError, match="max_frame_bytes"):
        load_config(p)

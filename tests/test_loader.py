"""Loader: format detection by content, structural checks, backend choice, and bad input (issue section 8)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime.errors import BackendUnavailableError, ConfigError, EdgeRuntimeError, ModelFormatError
from edge_runtime.loader import choose_backend
from edge_runtime.model_file import inspect_model_file, sniff_format

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delegate.tflite_builder import add_mul_fc_model, add_mul_fc_reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "edge_runtime.cli"]


@pytest.fixture()
def small_tflite(tmp_path: Path) -> tuple[Path, dict]:
    data, consts = add_mul_fc_model()
    p = tmp_path / "amf.tflite"
    p.write_bytes(data)
    return p, consts


def _load_error(path: Path | str, **kw) -> EdgeRuntimeError:
    with pytest.raises(EdgeRuntimeError) as ei:
        edge_runtime.load(path, **kw)
    return ei.value


def test_sniff_format_by_content(small_tflite):
    p, _ = small_tflite
    assert sniff_format(p.read_bytes()[:64]) == "tflite"
    assert sniff_format(b"\x08\x07\x12\x04test") == "onnx"
    assert sniff_format(b"#!/bin/sh\n") is None


def test_missing_file_is_one_clear_error(tmp_path):
    err = _load_error(tmp_path / "nope.tflite")
    assert isinstance(err, ModelFormatError) and "no such file" in str(err)


def test_directory_is_rejected(tmp_path):
    err = _load_error(tmp_path)
    assert isinstance(err, ModelFormatError) and "is a directory" in str(err)


def test_empty_file_is_rejected(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    err = _load_error(p)
    assert "empty" in str(err)


@pytest.mark.parametrize("keep", [4, 8, 100, 500, 900])
def test_truncated_tflite_is_rejected(small_tflite, tmp_path, keep):
    p, _ = small_tflite
    t = tmp_path / f"trunc{keep}.tflite"
    t.write_bytes(p.read_bytes()[:keep])
    err = _load_error(t)
    assert isinstance(err, ModelFormatError)
    assert str(t) in str(err)


def test_garbage_bytes_are_rejected(tmp_path):
    p = tmp_path / "garbage.tflite"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    err = _load_error(p)
    assert isinstance(err, ModelFormatError) and "garbage.tflite" in str(err)


def test_tflite_renamed_onnx_names_the_mismatch(small_tflite, tmp_path):
    p, _ = small_tflite
    r = tmp_path / "model.onnx"
    r.write_bytes(p.read_bytes())
    err = _load_error(r)
    assert isinstance(err, ModelFormatError)
    assert "file name says ONNX (.onnx)" in str(err) and "content is a TFLite model" in str(err)
    assert "rename it to .tflite" in str(err)


def test_onnx_renamed_tflite_names_the_mismatch(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "relu.tflite"
    p.write_bytes(m.SerializeToString())
    err = _load_error(p)
    assert "file name says TFLite (.tflite) but the content is an ONNX model" in str(err)
    # Under its right name it loads.
    q = tmp_path / "relu.onnx"
    q.write_bytes(m.SerializeToString())
    with edge_runtime.load(q) as model:
        x = np.array([[-1, 2, -3, 4]], np.float32)
        assert np.array_equal(model.run(x)[0], np.maximum(x, 0))  # reference: numpy


def test_corrupted_offsets_are_caught_before_native_code(small_tflite, tmp_path):
    p, _ = small_tflite
    data = bytearray(p.read_bytes())
    data[0:4] = (len(data) + 1000).to_bytes(4, "little")  # root table offset past the end
    c = tmp_path / "corrupt.tflite"
    c.write_bytes(bytes(data))
    err = _load_error(c)
    assert "outside" in str(err) or "truncated" in str(err)


def test_operator_reading_unwritten_tensor_is_rejected(tmp_path):
    from delegate.tflite_builder import Op, T, build_model

    tensors = [T("a", (1, 4)), T("b", (1, 4)), T("y", (1, 4)), T("orphan", (1, 4))]
    data = build_model(tensors, [Op("ADD", [0, 3], [2])], inputs=[0, 1], outputs=[2])
    p = tmp_path / "orphan.tflite"
    p.write_bytes(data)
    err = _load_error(p)
    assert "before anything writes it" in str(err) and "orphan" in str(err)


def test_inspect_model_file_returns_parsed_tflite(small_tflite):
    p, _ = small_tflite
    mf = inspect_model_file(p)
    assert mf.format == "tflite" and mf.size == p.stat().st_size
    assert mf.tflite.op_counts() == {"ADD": 1, "MUL": 1, "FULLY_CONNECTED": 1}


def test_choose_backend_rules():
    assert choose_backend("onnx") == "onnx"
    assert choose_backend("tflite") == ("litert" if importlib.util.find_spec("ai_edge_litert") else
                                        "tflite" if importlib.util.find_spec("tflite_runtime") else "micro")
    with pytest.raises(ConfigError, match="runs .onnx models"):
        choose_backend("tflite", "onnx")
    with pytest.raises(ConfigError, match="unknown backend"):
        choose_backend("tflite", "tensorrt")


def test_micro_backend_missing_gives_clear_error(small_tflite, monkeypatch):
    p, _ = small_tflite
    # Simulate an installation without the micro backend: importing it fails.
    monkeypatch.setitem(sys.modules, "edge_runtime.backends.micro", None)
    err = _load_error(p, backend="micro")
    assert isinstance(err, BackendUnavailableError) and "micro backend" in str(err)


def test_unknown_option_is_a_config_error(small_tflite):
    p, _ = small_tflite
    err = _load_error(p, thread=2)
    assert isinstance(err, ConfigError) and "thread" in str(err)


def test_load_runs_model_against_numpy(small_tflite):
    p, consts = small_tflite
    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(-4, 5, size=(1, 8)).astype(np.float32) for _ in range(3))
    with edge_runtime.load(p) as m:
        assert [s.name for s in m.inputs] == ["a", "b", "c"]
        y = m.run({"a": a, "b": b, "c": c})[0]
    # reference: numpy; integer-valued data make every float sum exact
    assert np.array_equal(y, add_mul_fc_reference(a, b, c, consts["W"], consts["bias"]))


# -- the CLI: one line, no traceback ------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDGE_RUNTIME_DEBUG": ""}
    env.pop("EDGE_RUNTIME_DEBUG")
    return subprocess.run(CLI + list(args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "renamed"])
def test_cli_bad_model_prints_one_error_line(case, small_tflite, tmp_path):
    p, _ = small_tflite
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 8), np.float32))
    target = {"missing": tmp_path / "missing.tflite", "directory": tmp_path}.get(case)
    if case == "empty":
        target = tmp_path / "e.tflite"
        target.write_bytes(b"")
    elif case == "truncated":
        target = tmp_path / "t.tflite"
        target.write_bytes(p.read_bytes()[:300])
    elif case == "renamed":
        target = tmp_path / "r.onnx"
        target.write_bytes(p.read_bytes())
    r = _cli("run", str(target), "--input", str(x))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("edge-runtime: error:")]
    assert len(errors) == 1, r.stderr
    assert str(target) in errors[0]


def test_cli_run_batches_leading_dimension_and_saves(small_tflite, tmp_path):
    p, consts = small_tflite
    rng = np.random.default_rng(5)
    n = 7
    a, b, c = (rng.integers(-4, 5, size=(n, 1, 8)).astype(np.float32) for _ in range(3))
    x = tmp_path / "x.npz"
    np.savez(x, a=a, b=b, c=c)
    y = tmp_path / "y.npy"
    r = _cli("run", str(p), "--input", str(x), "--output", str(y))
    assert r.returncode == 0, r.stderr
    out = np.load(y)
    assert out.shape == (n, 1, 4)
    ref = np.stack([add_mul_fc_reference(a[i], b[i], c[i], consts["W"], consts["bias"]) for i in range(n)])
    assert np.array_equal(out, ref)  # reference: numpy


def test_cli_run_wrong_input_shape_is_clear(small_tflite, tmp_path):
    p, _ = small_tflite
    x = tmp_path / "x.npz"
    np.savez(x, a=np.zeros((1, 9), np.float32), b=np.zeros((1, 8), np.float32), c=np.zeros((1, 8), np.float32))
    r = _cli("run", str(p), "--input", str(x))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "input 'a' has shape (1, 9), the model expects (1, 8)" in r.stderr


def test_cli_run_bad_input_file_is_clear(small_tflite, tmp_path):
    p, _ = small_tflite
    x = tmp_path / "x.npy"
    x.write_bytes(b"not numpy at all")
    r = _cli("run", str(p), "--input", str(x))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not a readable .npy/.npz file" in r.stderr


def test_cli_bench_json(small_tflite):
    import json

    p, _ = small_tflite
    r = _cli("bench", str(p), "--runs", "5", "--warmup", "1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["backend"] in ("litert", "tflite") and d["runs"] == 5
    assert d["p90_ms"] >= d["median_ms"] > 0 and d["peak_rss_mib"] > 1 and d["load_ms"] > 0

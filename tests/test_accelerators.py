"""Accelerator selection and CPU fallback, proven with a real external delegate built from C (issue section 5).

The delegate (tests/delegate/edge_test_delegate.c) is compiled with gcc into a temp
dir, loaded through ai_edge_litert's real interpreter via the device profile, and
its exported counters are read with ctypes from the same path.
"""
from __future__ import annotations

import ctypes
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import edge_runtime
from device_profiles.schema import CPU, Accelerator, DeviceProfile
from edge_runtime.backends.accelerators import ONNX_EP, TFLITE_DELEGATE, candidates
from edge_runtime.errors import AcceleratorUnavailableError, ConfigError, UnsupportedModelError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delegate.tflite_builder import add_mul_fc_model, add_mul_fc_reference, edgetpu_model  # noqa: E402

DELEGATE_C = Path(__file__).resolve().parent / "delegate" / "edge_test_delegate.c"
COUNTERS = ["edge_delegate_created", "edge_delegate_nodes_claimed", "edge_delegate_partitions",
            "edge_delegate_invocations", "edge_delegate_ops_run"]


@pytest.fixture(scope="session")
def delegate_lib(tmp_path_factory) -> str:
    """The test delegate, compiled once per session into its own directory (never rebuilt in place)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (scripts/setup.sh installs it)")
    out = tmp_path_factory.mktemp("delegate") / "libedge_test_delegate.so"
    r = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out), str(DELEGATE_C), "-lm"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return str(out)


def counters(lib: str) -> dict[str, int]:
    """The delegate's process-wide counters, read through the same path the interpreter loaded."""
    so = ctypes.CDLL(lib)
    return {n: ctypes.c_int64.in_dll(so, n).value for n in COUNTERS}


def make_profile(accelerators: list[Accelerator], name: str = "test-board") -> DeviceProfile:
    """A small x86-64 test board."""
    return DeviceProfile(
        name=name, display_name="Test board", arch="x86_64",
        cpu=CPU(model="test", cores=2, clock_mhz=2000, simd=["avx2"]),
        ram_bytes=2 << 30, storage_bytes=8 << 30, inference_ram_budget_bytes=1 << 30,
        model_flash_budget_bytes=1 << 30, python=True, backends=["litert", "onnx"],
        accelerators=accelerators, default_threads=1,
    )


@pytest.fixture()
def amf(tmp_path) -> tuple[Path, dict]:
    data, consts = add_mul_fc_model(units=4, depth=8)
    p = tmp_path / "amf.tflite"
    p.write_bytes(data)
    return p, consts


def _inputs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-4, 5, size=(1, 8)).astype(np.float32) for _ in range(3)]


def _reference(x: list[np.ndarray], consts: dict) -> np.ndarray:
    return add_mul_fc_reference(*x, consts["W"], consts["bias"])


def test_delegate_from_profile_runs_all_nodes_and_stays_exact(delegate_lib, amf, tmp_path):
    p, consts = amf
    prof = make_profile([Accelerator(name="Test NPU", kind="tflite_delegate", library=delegate_lib,
                                     options={"ops": "ADD,MUL,FULLY_CONNECTED"})])
    yaml_path = tmp_path / "board.yaml"
    yaml_path.write_text(yaml.safe_dump(prof.model_dump()))
    before = counters(delegate_lib)
    runs = 5
    with edge_runtime.load(p, profile=str(yaml_path), require_accelerator=True) as m:
        assert m.info["accelerator"].startswith("Test NPU") and m.info["fallback_reason"] is None
        assert m.info["node_placement"] == {"Test NPU": 3, "builtin kernels": 0} and m.info["cpu_ops"] == {}
        for seed in range(runs):
            x = _inputs(seed)
            y = m.run(x)[0]
            assert np.array_equal(y, _reference(x, consts))  # reference: numpy (exact integer sums)
    with edge_runtime.load(p, accelerator="none") as cpu:
        assert cpu.info["accelerator"] is None
        x = _inputs(0)
        assert np.array_equal(cpu.run(x)[0], _reference(x, consts))  # reference: LiteRT CPU == numpy
    after = counters(delegate_lib)
    assert after["edge_delegate_created"] - before["edge_delegate_created"] == 1
    assert after["edge_delegate_nodes_claimed"] - before["edge_delegate_nodes_claimed"] == 3
    assert after["edge_delegate_partitions"] - before["edge_delegate_partitions"] == 1
    assert after["edge_delegate_invocations"] - before["edge_delegate_invocations"] == runs
    assert after["edge_delegate_ops_run"] - before["edge_delegate_ops_run"] == 3 * runs


@pytest.mark.parametrize("ops,claimed,resolver", [("ADD", 1, "default"), ("MUL,FULLY_CONNECTED", 2, "default"),
                                                  ("ADD,FULLY_CONNECTED", 2, "reference")])
def test_delegate_partial_claim_shares_graph_with_cpu(delegate_lib, amf, ops, claimed, resolver, caplog):
    p, consts = amf
    before = counters(delegate_lib)
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        m = edge_runtime.load(p, accelerator=delegate_lib, accelerator_options={"ops": ops},
                              require_accelerator=True, op_resolver=resolver)
    with m:
        x = _inputs(7)
        assert np.array_equal(m.run(x)[0], _reference(x, consts))  # reference: numpy
        info = dict(m.info)
    after = counters(delegate_lib)
    assert after["edge_delegate_nodes_claimed"] - before["edge_delegate_nodes_claimed"] == claimed
    assert after["edge_delegate_ops_run"] - before["edge_delegate_ops_run"] == claimed
    # the placement read from LiteRT's node list equals what the delegate itself counted; with the
    # default resolver LiteRT's XNNPACK delegate then takes what the test delegate left
    name = next(k for k in info["node_placement"] if k.startswith(delegate_lib) or "edge_test_delegate" in k)
    rest = {k: n for k, n in info["node_placement"].items() if k != name}
    assert info["node_placement"][name] == claimed and sum(rest.values()) == 3 - claimed
    assert info["delegate_partitions"][name] == after["edge_delegate_partitions"] - before["edge_delegate_partitions"]
    assert set(info["ops_by_placement"][name]) == set(ops.split(","))
    if resolver == "reference":
        assert rest == {"builtin kernels": 3 - claimed} and info["delegated_nodes"] == claimed
    else:
        assert info["delegated_nodes"] == 3 and rest["builtin kernels"] == 0
    warned = [r.getMessage() for r in caplog.records if "runs mostly on the CPU" in r.getMessage()]
    assert (len(warned) == 1) == (claimed == 1), warned  # 1 of 3 nodes placed: the warning names the rest
    if warned:
        assert "MUL" in warned[0] and "FULLY_CONNECTED" in warned[0]


def test_missing_delegate_falls_back_with_one_log_line(amf, caplog):
    p, consts = amf
    prof = make_profile([Accelerator(name="Coral Edge TPU", kind="tflite_delegate", library="libedgetpu.so.1")])
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        m = edge_runtime.load(p, profile=prof)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_runtime"]
    assert len(lines) == 1
    assert "Coral Edge TPU" in lines[0] and "libedgetpu.so.1" in lines[0] and "CPU" in lines[0]
    assert "cannot load the library" in lines[0]
    assert m.info["accelerator"] is None and "libedgetpu.so.1" in m.info["fallback_reason"]
    x = _inputs(1)
    assert np.array_equal(m.run(x)[0], _reference(x, consts))  # reference: numpy


def test_require_accelerator_turns_fallback_into_error(amf):
    p, _ = amf
    prof = make_profile([Accelerator(name="VeriSilicon NPU", kind="tflite_delegate", library="libvx_delegate.so")])
    with pytest.raises(AcceleratorUnavailableError, match="libvx_delegate.so"):
        edge_runtime.load(p, profile=prof, require_accelerator=True)
    with pytest.raises(AcceleratorUnavailableError, match="no accelerator configured"):
        edge_runtime.load(p, require_accelerator=True)


def test_delegate_that_refuses_to_start_reports_its_message(delegate_lib, amf, caplog):
    p, _ = amf
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        m = edge_runtime.load(p, accelerator=delegate_lib, accelerator_options={"fail_create": "1"})
    assert "creation refused (fail_create=1)" in m.info["fallback_reason"]
    with pytest.raises(AcceleratorUnavailableError, match="creation refused"):
        edge_runtime.load(p, accelerator=delegate_lib, accelerator_options={"fail_create": "1"},
                          require_accelerator=True)


def test_library_that_is_not_a_delegate(amf):
    import ctypes.util

    p, _ = amf
    libm = ctypes.util.find_library("m")  # e.g. libm.so.6: loads fine, exports no plugin entry points
    assert libm is not None
    with pytest.raises(AcceleratorUnavailableError, match="not a TFLite external delegate"):
        edge_runtime.load(p, accelerator=libm, require_accelerator=True)


def test_edgetpu_model_without_delegate_names_the_cause(tmp_path):
    p = tmp_path / "model_edgetpu.tflite"
    p.write_bytes(edgetpu_model())
    with pytest.raises(UnsupportedModelError) as ei:
        edge_runtime.load(p)
    msg = str(ei.value)
    assert "edgetpu-custom-op" in msg and "Edge TPU" in msg and "libedgetpu.so.1" in msg
    prof = make_profile([Accelerator(name="Coral Edge TPU", kind="tflite_delegate", library="libedgetpu.so.1")])
    with pytest.raises(UnsupportedModelError, match="cannot load the library"):
        edge_runtime.load(p, profile=prof)


def test_onnx_execution_provider_fallback(tmp_path, caplog):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    p = tmp_path / "relu.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    prof = make_profile([Accelerator(name="Jetson GPU", kind="onnx_ep", provider="TensorrtExecutionProvider")])
    with caplog.at_level(logging.WARNING, logger="edge_runtime"):
        m = edge_runtime.load(p, profile=prof)
    assert m.info["providers"] == ["CPUExecutionProvider"]
    assert "TensorrtExecutionProvider" in m.info["fallback_reason"]
    assert sum("TensorrtExecutionProvider" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(AcceleratorUnavailableError, match="not in this onnxruntime build"):
        edge_runtime.load(p, profile=prof, require_accelerator=True)


def test_candidates_from_option():
    prof = make_profile([
        Accelerator(name="Arm NN", kind="tflite_delegate", library="libarmnnDelegate.so",
                    options={"backends": "GpuAcc,CpuAcc"}),
        Accelerator(name="Jetson GPU", kind="onnx_ep", provider="CUDAExecutionProvider"),
    ])
    auto = candidates(prof, TFLITE_DELEGATE, "auto")
    assert [a.library for a in auto] == ["libarmnnDelegate.so"] and auto[0].options == {"backends": "GpuAcc,CpuAcc"}
    assert candidates(prof, TFLITE_DELEGATE, "none") == []
    assert [a.provider for a in candidates(prof, ONNX_EP, "jetson gpu")] == ["CUDAExecutionProvider"]
    assert candidates(None, TFLITE_DELEGATE, "/opt/lib/libfoo.so")[0].library == "/opt/lib/libfoo.so"
    with pytest.raises(ConfigError, match="unknown accelerator 'tpu'"):
        candidates(prof, TFLITE_DELEGATE, "tpu")


def test_cli_require_accelerator(amf, tmp_path):
    p, _ = amf
    x = tmp_path / "x.npz"
    np.savez(x, *_inputs(2))
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", str(p), "--input", str(x),
                        "--accelerator", "/nonexistent/libnpu.so", "--require-accelerator"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "an accelerator is required" in r.stderr and "libnpu.so" in r.stderr


def test_bench_json_reports_delegate_placement(delegate_lib, amf, tmp_path):
    """`bench --json` carries the LiteRT placement: the test delegate's nodes, XNNPACK's, the builtin kernels'."""
    p, _ = amf
    prof = make_profile([Accelerator(name="Test NPU", kind="tflite_delegate", library=delegate_lib,
                                     options={"ops": "FULLY_CONNECTED"})])
    yaml_path = tmp_path / "board.yaml"
    yaml_path.write_text(yaml.safe_dump(prof.model_dump()))
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "bench", str(p), "--runs", "3", "--json",
                        "--profile", str(yaml_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    place = res["node_placement"]
    ours = "Test NPU"
    assert place[ours] == 1 and sum(place.values()) == 3 and res["delegated_nodes"] == 3 - place["builtin kernels"]
    assert res["delegate_partitions"][ours] == 1 and "node list" in res["placement_source"]
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "bench", str(p), "--runs", "3", "--json",
                        "--op-resolver", "reference"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["node_placement"] == {"builtin kernels": 3} and res["delegated_nodes"] == 0

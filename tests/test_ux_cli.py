"""[UX] scripting and health: exit codes, --version, --json, dequantized outputs, honest bench notes, degraded health.

References: LiteRT run directly (for `run --json --dequantize`), the /healthz text.
"""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from test_daemon_support import DaemonProc


def _cli(prog: str, *args: str) -> subprocess.CompletedProcess:
    mod = "edge_runtime.cli" if prog == "edge-runtime" else "converters.cli"
    return subprocess.run([sys.executable, "-m", mod, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("prog", ["edge-runtime", "edge-convert"])
def test_version_usage_exit_code_and_documented_codes(prog: str) -> None:
    r = _cli(prog, "--version")
    assert r.returncode == 0 and r.stdout.startswith(prog + " ")
    r = _cli(prog, "run" if prog == "edge-runtime" else "convert", "--no-such-flag")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = _cli(prog, "--help")
    assert "3 does not fit the profile, or the quality target is not met" in r.stdout


def test_run_json_dequantized_equals_litert(tmp_path: Path, kws01, mlperf_models: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model = mlperf_models / "kws_ref_model.tflite"
    x = kws01[0][:3]
    np.save(tmp_path / "x.npy", x)
    r = _cli("edge-runtime", "run", str(model), "--input", str(tmp_path / "x.npy"), "--json", "--dequantize",
             "--backend", "litert")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    out = doc["outputs"][0]
    it = Interpreter(model_path=str(model))
    it.allocate_tensors()
    d = it.get_output_details()[0]
    scale, zp = d["quantization"]
    for i in range(3):
        it.set_tensor(it.get_input_details()[0]["index"], x[i])
        it.invoke()
        want = (it.get_tensor(d["index"]).astype(np.float32) - zp) * np.float32(scale)
        assert np.allclose(np.array(out["values"][i], np.float32), want, atol=1e-7)
    assert out["scale"] == pytest.approx(scale) and out["zero_point"] == zp and out["dtype"] == "float32"


def test_features_json(tmp_path: Path, shared: Path) -> None:
    wavs = sorted((shared / "models").rglob("*.wav"))
    if not wavs:
        pytest.skip("no wav file in ../shared")
    r = _cli("edge-runtime", "features", "kws", "--wav", str(wavs[0]), "--json")
    if r.returncode != 0 and "sample rate" in r.stderr:
        pytest.skip("the first wav is not 16 kHz")
    doc = json.loads(r.stdout)
    assert doc["windows"] == len(doc["features"]) == len(doc["window_ends_s"]) > 0


def test_stream_has_no_conflicting_p_alias() -> None:
    r = _cli("edge-runtime", "stream", "--help")
    assert "--preset" in r.stdout and "-p," not in r.stdout


def test_bench_with_a_microcontroller_profile_says_it_timed_the_host(mlperf_models: Path) -> None:
    r = _cli("edge-runtime", "bench", str(mlperf_models / "kws_ref_model.tflite"), "--profile", "nrf52840",
             "--runs", "2", "--json")
    doc = json.loads(r.stdout)
    assert "not on nrf52840" in doc["note"] and doc["timed_on"].startswith("this host")


def test_healthz_degraded_when_the_mqtt_sink_is_down(tmp_path: Path, mlperf_models: Path) -> None:
    pytest.importorskip("paho.mqtt")
    cfg = {"model": {"path": str(mlperf_models / "kws_ref_model.tflite"), "backend": "litert"},
           "source": {"type": "tcp", "port": 0}, "health": {"listen": "127.0.0.1:0"},
           "sinks": [{"type": "mqtt", "host": "127.0.0.1", "port": 1, "topic": "t"}]}
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump(cfg))
    d = DaemonProc(["--config", str(p)])
    try:
        info = d.wait_ready()
        with urllib.request.urlopen(f"http://{info['health']}/healthz", timeout=10) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and body.startswith("degraded: sink(s) not connected: mqtt://127.0.0.1:1"), body
        assert d.metrics()["edge_runtime_degraded"] == 1
        d.stop()
    finally:
        d.kill()


def test_per_device_configs_in_a_bundle_resolve_from_the_bundle_root(tmp_path: Path, mlperf_models: Path) -> None:
    pytest.importorskip("cryptography")
    from converters.fleet.archive import pack_bundle
    from converters.fleet.keys import Signer, keygen
    from edge_runtime.bundle import install_bundle, load_public_key
    from edge_runtime.daemon.config import load_config

    priv, pub, _ = keygen(tmp_path / "k")
    cfg = b"model: {path: models/kws.tflite, backend: litert}\nsource: {type: tcp, port: 0}\n" \
          b"health: {listen: '127.0.0.1:0'}\n"
    files = {"models/kws.tflite": (mlperf_models / "kws_ref_model.tflite").read_bytes(), "device.yaml": cfg,
             "devices/cam-02.yaml": cfg}
    b = pack_bundle(tmp_path / "b.tar.gz", files, fleet="f", group="g", profile="rpi5", signer=Signer(priv),
                    device_config="device.yaml", device_configs={"cam-02": "devices/cam-02.yaml"})
    root = tmp_path / "root"
    install_bundle(b, root, load_public_key(pub))
    c = load_config(root / "current" / "devices" / "cam-02.yaml")
    assert Path(c.model.path).resolve() == (root / "current" / "models" / "kws.tflite").resolve()
    d = DaemonProc(["--bundle-root", str(root), "--pubkey", str(pub), "--device-id", "cam-02"])
    try:
        assert d.wait_ready()["model"].endswith("models/kws.tflite")
        assert d.stop() == 0
    finally:
        d.kill()


def test_stream_default_policy_finds_each_word_once(shared: Path) -> None:
    m = shared / "models" / "mlperf_tiny"
    r = _cli("edge-runtime", "stream", str(m / "models" / "str_ww_ref_model.tflite"), "--preset", "sww", "--wav",
             str(m / "data" / "audio" / "short_wav_easy10s.wav"), "--truth",
             str(m / "data" / "audio" / "sww_short_test.json"), "--json")
    doc = json.loads(r.stdout)
    assert doc["policy"] == "smoothed" and len(doc["detections"]) == 3
    assert doc["score"]["true_positives"] == 3 and doc["score"]["false_positives"] == 0


def test_qdq_onnx_specs_carry_scale_and_run_quantize_works(tmp_path: Path) -> None:
    """The converter's own QDQ ONNX states its int8 I/O quantization, so spec.quantize really quantizes.

    Reference: the int8 TFLite model converted from the same float model in the same run (LiteRT).
    """
    import edge_runtime

    root = Path(__file__).resolve().parents[1]
    calib = tmp_path / "c.npy"
    x = np.random.default_rng(1).random((8, 1, 8, 8)).astype(np.float32)
    np.save(calib, x)
    r = subprocess.run([sys.executable, "-m", "converters.cli", "convert", str(root / "converters/data/digits_cnn.onnx"),
                        "--profile", "rpi4-4gb", "--calib", str(calib), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    onnx_m = edge_runtime.load(tmp_path / "o" / "digits_cnn_int8.onnx", backend="onnx")
    tfl_m = edge_runtime.load(tmp_path / "o" / "digits_cnn_int8.tflite", backend="litert")
    si, ti = onnx_m.inputs[0], tfl_m.inputs[0]
    assert si.dtype == np.int8 and si.scale == pytest.approx(ti.scale) and si.zero_point == ti.zero_point
    assert onnx_m.outputs[0].scale == pytest.approx(tfl_m.outputs[0].scale)
    q = si.quantize(x[0:1])
    assert q.dtype == np.int8 and int(np.abs(q.astype(int)).max()) > 1  # quantized, not cast to 0/1
    np.save(tmp_path / "x.npy", x[0:1])
    r = _cli("edge-runtime", "run", str(tmp_path / "o" / "digits_cnn_int8.onnx"), "--input", str(tmp_path / "x.npy"),
             "--quantize", "--dequantize", "--json")
    got = np.array(json.loads(r.stdout)["outputs"][0]["values"], np.float32)
    want = tfl_m.outputs[0].dequantize(tfl_m.run(ti.quantize(x[0:1].transpose(0, 2, 3, 1)))[0])
    assert int(got.argmax()) == int(want.argmax())

"""The simulated sensor firmware (python -m firmware_sim.sensor): payloads, framing, fault accounting.

References: the source data itself (WAV samples read with the stdlib ``wave`` module, the
.npy image), an independent decode of the captured byte stream with FrameDecoder, and
LiteRT (``edge_runtime.load(...).run``) for results of images sent line by line.
"""
from __future__ import annotations

import json
import socket
import threading
import wave

import numpy as np
import pytest

import edge_runtime
from edge_runtime.daemon import framing
from test_daemon_support import DaemonProc, run_sensor


class Capture:
    """A TCP server that records everything one client sends."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.data = bytearray()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        conn, _ = self.srv.accept()
        while chunk := conn.recv(65536):
            self.data += chunk
        conn.close()

    def frames(self) -> list[framing.Frame]:
        self.t.join(30)
        self.srv.close()
        return list(framing.FrameDecoder().feed(bytes(self.data)))


def test_wav_is_sent_in_chunks_of_the_audio(tmp_path):
    sr = 16000
    audio = (np.sin(2 * np.pi * 440 * np.arange(sr) / sr) * 12000).astype("<i2")
    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(audio.tobytes())
    cap = Capture()
    summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{cap.port}", "--wav", str(path), "--chunk-ms", "20",
                              "--count", "10", "--no-results"])
    assert cp.returncode == 0, cp.stderr.decode()
    frames = cap.frames()
    assert frames[0].kind == framing.HELLO and frames[0].payload == framing.DEVICE_HELLO
    data = [f for f in frames if f.kind == framing.DATA]
    assert [f.seq for f in data] == list(range(10))
    with wave.open(str(path), "rb") as w:
        ref = w.readframes(3200)
    assert b"".join(f.payload for f in data) == ref
    assert summary["frames_sent"] == 10 and summary["results_received"] == 0


def test_synthetic_imu_frames():
    cap = Capture()
    summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{cap.port}", "--imu", "--count", "5", "--window", "32",
                              "--rate", "100000", "--no-results"])
    assert cp.returncode == 0, cp.stderr.decode()
    data = [f for f in cap.frames() if f.kind == framing.DATA]
    assert len(data) == 5
    x = np.frombuffer(b"".join(f.payload for f in data), dtype="<i2").reshape(5 * 32, 6)
    # accelerometer z carries gravity (1 g = 2048 steps); x and y swing around zero
    assert np.all(np.abs(x[:, 2] - 2048) < 200) and np.abs(x[:, 0].mean()) < 700


def test_fault_accounting_matches_an_independent_decode(tmp_path):
    x = np.random.default_rng(3).integers(-128, 128, (300, 490), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    cap = Capture()
    report = tmp_path / "r.json"
    summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{cap.port}", "--npy", str(tmp_path / "x.npy"),
                              "--corrupt", "0.01", "--burst", "8", "--faults", "flip,drop,garbage",
                              "--garbage-between", "0.1", "--seed", "5", "--no-results", "--report", str(report)])
    assert cp.returncode == 0, cp.stderr.decode()
    rep = json.loads(report.read_text())
    good = [f for f in cap.frames() if f.kind == framing.DATA]
    assert [f.seq for f in good] == rep["intact_seqs"]
    assert all(f.payload == x[f.seq].tobytes() for f in good)
    assert 0 < summary["frames_corrupted"] < 300 and 299 in rep["intact_seqs"]  # the last frame is sent clean
    assert summary["bytes_corrupted"] > 0.005 * summary["bytes_sent"]


def test_image_line_by_line_through_the_daemon(tmp_path, mlperf_models):
    path = mlperf_models / "pretrainedResnet_quant.tflite"
    imgs = np.random.default_rng(4).integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)
    np.save(tmp_path / "img.npy", imgs)
    ref = edge_runtime.load(path, backend="litert").run(imgs)[0]
    np.save(tmp_path / "ref.npy", np.stack([ref] * 4))
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--sink", "reply", "--health", "127.0.0.1:0"])
    try:
        d.wait_ready()
        summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{d.tcp_port}", "--image", str(tmp_path / "img.npy"),
                                  "--count", "4", "--expect", str(tmp_path / "ref.npy")])
        m = d.metrics()
        assert d.stop() == 0
    finally:
        d.kill()
    assert cp.returncode == 0, cp.stderr.decode()
    assert summary["frames_sent"] == 4 * 32 and summary["results_received"] == 4 and summary["mismatches"] == 0
    assert m["edge_runtime_frames_received_total"] == 128 and m["edge_runtime_results_total"] == 4


@pytest.mark.parametrize("args, message", [
    (["--imu", "--faults", "flip,melt"], "unknown kind(s) ['melt']"),
    (["--imu", "--corrupt", "1.5"], "--corrupt must be in [0, 1)"),
    (["--wav", "/nonexistent.wav"], "not a readable WAV file"),
])
def test_bad_arguments_are_one_clear_error(args, message):
    import subprocess
    import sys

    from test_daemon_support import ROOT, env_for_subprocess

    cp = subprocess.run([sys.executable, "-m", "firmware_sim.sensor", "--port", "tcp://127.0.0.1:1", *args],
                        cwd=ROOT, capture_output=True, env=env_for_subprocess(), timeout=60)
    err = cp.stderr.decode()
    assert cp.returncode != 0 and message in err and "Traceback" not in err, err

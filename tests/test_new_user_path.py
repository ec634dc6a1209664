"""[UX] The README's new-user path, command by command: PyTorch -> ONNX -> convert -> run -> serve with MQTT ->
fleet bundle -> install -> readable by an unprivileged service user -> serve from the bundle.

References: results arrive over a real Mosquitto broker started here; `run` output equals LiteRT's own.
The service user's access is checked with `setpriv` as uid 65534 (nobody) reading every installed file
(the test's Python lives under /root, which nobody cannot enter, so the daemon itself runs as root here).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.daemon import framing
from test_daemon_mqtt import Broker, MOSQUITTO
from test_daemon_support import DaemonProc, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "new_user"


def _cli(prog: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    mod = {"edge-runtime": "edge_runtime.cli", "edge-convert": "converters.cli"}[prog]
    r = subprocess.run([sys.executable, "-m", mod, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, f"{prog} {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r


class _Sub:
    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.msgs: list[dict] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        ok = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p=None: (c.subscribe(topic, qos=1), ok.set())
        # results are JSON objects; the status topic's retained "online"/"offline" are not
        self.c.on_message = lambda c, u, m: self.msgs.append(json.loads(m.payload)) if m.payload[:1] == b"{" \
            else None
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ok.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _send(port: int, x: np.ndarray, n: int) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(framing.encode_frame(framing.DATA, i, x.tobytes()) for i in range(n)))
    s.close()


def test_new_user_path(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("paho.mqtt")
    if MOSQUITTO is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mosquitto is not installed, and CI=true")
        pytest.skip("mosquitto is not installed")
    work = tmp_path / "work"
    # 1. PyTorch -> ONNX
    r = subprocess.run([sys.executable, str(EXAMPLE / "export_model.py"), str(work)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # 2. convert for a Pi
    _cli("edge-convert", "convert", "model.onnx", "--profile", "rpi4-4gb", "--calib", "calib.npy", "-o", "out",
         cwd=work)
    model = work / "out" / "model_int8.tflite"
    # 3. run it (float inputs quantized with the model's scale, outputs dequantized)
    r = _cli("edge-runtime", "run", str(model), "--input", "x.npy", "--quantize", "--dequantize", "--json",
             cwd=work)
    doc = json.loads(r.stdout)
    probs = np.array(doc["outputs"][0]["values"], np.float32).reshape(4, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
    broker = Broker(tmp_path)
    broker.start()
    sub = _Sub(broker.port, "#")
    try:
        # 4. serve with MQTT
        d = DaemonProc(["--model", str(model), "--source", "tcp://127.0.0.1:0",
                        "--sink", f"mqtt://127.0.0.1:{broker.port}/cnn"])
        try:
            d.wait_ready()
            from edge_runtime.backends.micro import open_model

            spec = open_model(str(model)).inputs[0]
            xq = spec.quantize(np.load(work / "x.npy")[0])
            _send(d.tcp_port, xq, 3)
            wait_until(lambda: len(sub.msgs) >= 3, what="3 results over MQTT")
            assert d.stop() == 0
        finally:
            d.kill()
        # 5. a fleet bundle, signed
        (work / "fleet.yaml").write_text((EXAMPLE / "fleet.yaml").read_text().replace("port: 1883",
                                                                                     f"port: {broker.port}"))
        _cli("edge-convert", "fleet", "keygen", "-o", "keys", cwd=work)
        _cli("edge-convert", "fleet", "build", "fleet.yaml", "-o", "dist", "--sign-key", "keys/fleet.key", cwd=work)
        bundle = work / "dist" / "pi4.tar.gz"
        # 6. install where a service user can read it
        root = Path(tempfile.mkdtemp(prefix="edge-runtime-bundles-"))
        os.chmod(root, 0o755)
        try:
            _cli("edge-runtime", "verify", str(bundle), "--pubkey", "keys/fleet.pub", "--install", str(root), cwd=work)
            if os.geteuid() == 0 and shutil.which("setpriv"):
                for f in (root / "current").rglob("*"):
                    if f.is_file():
                        rr = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
                                             str(f)], capture_output=True)
                        assert rr.returncode == 0, f"nobody cannot read {f}: {rr.stderr.decode()}"
            # 7. serve from the installed bundle
            shutil.copy(work / "keys" / "fleet.pub", root / "fleet.pub")
            before = len(sub.msgs)
            d = DaemonProc(["--bundle-root", str(root), "--pubkey", str(root / "fleet.pub")])
            try:
                info = d.wait_ready()
                _send(int(info["source"].rsplit(":", 1)[1]), xq, 2)
                wait_until(lambda: len(sub.msgs) >= before + 2, what="results from the bundle's daemon")
                assert sub.msgs[-1]["device_id"] == "pi4-01"
                assert d.stop() == 0
            finally:
                d.kill()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    finally:
        sub.close()
        broker.stop()
        broker.remove()

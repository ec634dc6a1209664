"""[UX] MQTT to a production-style broker: Mosquitto with TLS and password authentication, started here.

Certificates are made in the test with `cryptography` (a CA and a server certificate for 127.0.0.1);
the password file with `mosquitto_passwd`. Checked: results arrive on the device's topic with its id
in every payload; the status topic holds a retained "online", and the broker publishes the retained
"offline" last will when the daemon is killed; a wrong password is refused and /healthz says degraded.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_runtime.daemon import framing
from test_daemon_mqtt import MOSQUITTO, _free_port
from test_daemon_support import DaemonProc, env_for_subprocess, wait_until

pytest.importorskip("paho.mqtt")
x509 = pytest.importorskip("cryptography.x509")


def _certs(d: Path) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def key_pem(k):  # type: ignore[no-untyped-def]
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-runtime test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key_pem(key))


@pytest.fixture
def tls_broker():
    passwd_tool = shutil.which("mosquitto_passwd")
    if MOSQUITTO is None or passwd_tool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mosquitto (with mosquitto_passwd) is not installed, and CI=true")
        pytest.skip("mosquitto is not installed")
    d = Path(tempfile.mkdtemp(prefix="edge-runtime-mqtt-tls-"))
    os.chmod(d, 0o755)
    _certs(d)
    subprocess.run([passwd_tool, "-c", "-b", str(d / "passwd"), "device", "s3cret"], check=True,
                   capture_output=True)
    for f in d.iterdir():
        os.chmod(f, 0o644)
    port = _free_port()
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
        f"allow_anonymous false\npassword_file {d}/passwd\nlog_dest none\n")
    p = subprocess.Popen([MOSQUITTO, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    end = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if p.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"mosquitto did not start: {p.stderr.read().decode()}")
            time.sleep(0.05)
    yield {"port": port, "dir": d}
    p.terminate()
    p.wait(20)
    shutil.rmtree(d, ignore_errors=True)


class _Sub:
    def __init__(self, port: int, ca: Path, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self.msgs: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{os.getpid()}")
        self.c.username_pw_set("device", "s3cret")
        self.c.tls_set(ca_certs=str(ca))
        ready = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p=None: ([c.subscribe(t, qos=1) for t in topics], ready.set())
        self.c.on_message = lambda c, u, m: self._add(m)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert ready.wait(10)
        time.sleep(0.3)

    def _add(self, m) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), bool(m.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.msgs if t == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _config(tmp_path: Path, model: Path, port: int, ca: Path, password_env: str) -> Path:
    cfg = {"model": {"path": str(model), "backend": "litert"}, "source": {"type": "tcp", "port": 0},
           "health": {"listen": "127.0.0.1:0"},
           "sinks": [{"type": "mqtt", "host": "127.0.0.1", "port": port, "device_id": "cam-07",
                      "username": "device", "password_env": password_env, "tls": {"ca_file": str(ca)},
                      "keepalive_s": 5}]}
    p = tmp_path / "device.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_tls_password_device_topic_and_last_will(tmp_path, tls_broker, kws01, mlperf_models):
    ca = tls_broker["dir"] / "ca.pem"
    sub = _Sub(tls_broker["port"], ca, ["edge-runtime/cam-07/results", "edge-runtime/cam-07/status"])
    env = {**env_for_subprocess(), "MQTT_PASSWORD": "s3cret"}
    d = DaemonProc(["--config", str(_config(tmp_path, mlperf_models / "kws_ref_model.tflite", tls_broker["port"],
                                            ca, "MQTT_PASSWORD"))], env=env)
    try:
        d.wait_ready()
        wait_until(lambda: sub.on("edge-runtime/cam-07/status")[-1:] == [b"online"], what="online status")
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=10)
        x = kws01[0]
        s.sendall(b"".join(framing.encode_frame(framing.DATA, i, x[i].tobytes()) for i in range(20)))
        wait_until(lambda: len(sub.on("edge-runtime/cam-07/results")) == 20, what="20 results over TLS")
        recs = [json.loads(p) for p in sub.on("edge-runtime/cam-07/results")]
        assert all(r["device_id"] == "cam-07" for r in recs) and sorted(r["seq"] for r in recs) == list(range(20))
        d.p.send_signal(signal.SIGKILL)  # a crash: the broker publishes the last will
        wait_until(lambda: sub.on("edge-runtime/cam-07/status")[-1:] == [b"offline"], timeout=30,
                   what="the offline last will")
        s.close()
    finally:
        d.kill()
        sub.close()
    late = _Sub(tls_broker["port"], ca, ["edge-runtime/cam-07/status"])  # retained: a late subscriber sees it
    try:
        wait_until(lambda: late.on("edge-runtime/cam-07/status") == [b"offline"], what="retained status")
    finally:
        late.close()


def test_wrong_password_is_refused_and_health_says_degraded(tmp_path, tls_broker, mlperf_models):
    ca = tls_broker["dir"] / "ca.pem"
    env = {**env_for_subprocess(), "MQTT_PASSWORD": "wrong"}
    d = DaemonProc(["--config", str(_config(tmp_path, mlperf_models / "kws_ref_model.tflite", tls_broker["port"],
                                            ca, "MQTT_PASSWORD"))], env=env)
    try:
        info = d.wait_ready()
        wait_until(lambda: "connection refused" in d.stderr, what="the refusal in the log")
        with urllib.request.urlopen(f"http://{info['health']}/healthz", timeout=10) as r:
            assert r.read().decode().startswith("degraded: sink(s) not connected")
        assert d.stop() == 0
    finally:
        d.kill()


def test_password_never_in_the_config_file(tmp_path, mlperf_models):
    from edge_runtime.daemon.config import load_config
    from edge_runtime.errors import ConfigError

    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump({"model": {"path": str(mlperf_models / "kws_ref_model.tflite")},
                                 "sinks": [{"type": "mqtt", "username": "u", "password": "plain"}]}))
    with pytest.raises(ConfigError, match="password"):
        load_config(p)

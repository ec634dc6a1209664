"""The device agent without a broker: wave hashing, signed announcements, resumable downloads,
the /healthz gate, the install state machine (commit, roll back, crash before commit), config."""
from __future__ import annotations

import os
import time
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from converters.fleet.archive import pack_bundle
from converters.fleet.keys import Signer, keygen
from edge_runtime.agent import announce, download
from edge_runtime.agent.config import AgentConfig, load_agent_config
from edge_runtime.agent.core import Agent
from edge_runtime.agent.health import gate
from edge_runtime.agent.signed import seal
from edge_runtime.agent.wave import bucket, in_wave
from edge_runtime.bundle import current_release, load_public_key, verify_bundle
from edge_runtime.errors import BundleError, ConfigError
from test_daemon_mqtt_tls import tls_broker  # noqa: F401  (the TLS + password Mosquitto fixture)

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("ak")
    priv, pub, _ = keygen(d)
    other_priv, other_pub, _ = keygen(d, "other")
    return {"priv": priv, "pub": pub, "key": load_public_key(pub), "signer": Signer(priv),
            "other": Signer(other_priv)}


class Files:
    """A loopback HTTP server for files, with Range support that can be switched off."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.log: list[tuple[str, str]] = []
        self.health = (200, b"ok\n")
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                srv.log.append((self.path, self.headers.get("Range", "")))
                if self.path == "/healthz":
                    code, body = srv.health
                    self.send_response(code)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = srv.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                rng = self.headers.get("Range", "")
                if rng and srv.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    data = data[start:]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files():  # type: ignore[no-untyped-def]
    f = Files()
    yield f
    f.close()


def test_wave_membership_is_stable_proportional_and_only_widens() -> None:
    ids = [f"dev-{i}" for i in range(10_000)]
    for pct in (1, 10, 25, 50):
        n = sum(in_wave("f", "g", d, pct) for d in ids)
        assert abs(n / len(ids) * 100 - pct) < 1.5, (pct, n)
    ten = {d for d in ids if in_wave("f", "g", d, 10)}
    assert ten <= {d for d in ids if in_wave("f", "g", d, 25)}
    assert all(in_wave("f", "g", d, 100) for d in ids[:100])
    assert bucket("f", "g", "dev-1") == bucket("f", "g", "dev-1") != bucket("f", "other", "dev-1")


def _ann(keys: dict, signer: Any = None, **kw: Any) -> bytes:
    p = announce.payload("f", "g", kw.pop("release", 2), kw.pop("seq", 1), "a" * 64, kw.pop("url", "http://h/b.tgz"),
                         "b" * 64, 10, None, kw.pop("percent", 100.0))
    p.update(kw)
    return seal(p, signer if signer is not None else keys["signer"])


def test_announcements_are_verified(keys: dict) -> None:
    a = announce.parse(_ann(keys), keys["key"], "f", "g")
    assert (a.release, a.seq, a.percent) == (2, 1, 100.0)
    with pytest.raises(BundleError, match="wrong key"):
        announce.parse(_ann(keys, keys["other"]), keys["key"], "f", "g")
    with pytest.raises(BundleError, match="this device is in f/h"):
        announce.parse(_ann(keys), keys["key"], "f", "h")
    with pytest.raises(BundleError, match="unsigned"):
        announce.parse(seal({"type": "x"}, None), keys["key"], "f", "g")
    tampered = _ann(keys).replace(b'"percent": 100.0', b'"percent": 50.0')
    with pytest.raises(BundleError, match="changed after signing"):
        announce.parse(tampered, keys["key"], "f", "g")
    with pytest.raises(BundleError, match="http"):
        announce.parse(_ann(keys, url="file:///etc/passwd"), keys["key"], "f", "g")


def test_download_resumes_checks_hash_and_restarts_without_range(files: Files, tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    files.files["/b"] = data
    d = tmp_path / "dl"
    d.mkdir()
    (d / f"{sha}.part").write_bytes(data[:123_456])  # what a killed download leaves
    got = download.fetch(files.url + "/b", d, sha, len(data))
    assert got.read_bytes() == data and files.log[-1] == ("/b", "bytes=123456-")
    assert not (d / f"{sha}.part").exists()
    got.unlink()
    files.ranges = False  # a server that ignores Range: start again from zero
    (d / f"{sha}.part").write_bytes(b"\0" * 1000)
    assert download.fetch(files.url + "/b", d, sha, len(data)).read_bytes() == data
    files.files["/evil"] = data[:-1] + b"\x00"
    with pytest.raises(BundleError, match="does not match the announced sha256"):
        download.fetch(files.url + "/evil", d, "c" * 64, len(data))
    assert not list(d.glob("*.part"))
    with pytest.raises(download.DownloadError, match="404"):
        download.fetch(files.url + "/missing", d, "d" * 64, 5, retries=1)


def test_health_gate(files: Files) -> None:
    ok, _ = gate(files.url + "/healthz", commit_after_s=0.2, timeout_s=5, interval_s=0.05)
    assert ok
    files.health = (503, b"unhealthy: model failed\n")
    ok, why = gate(files.url + "/healthz", commit_after_s=0.2, timeout_s=5, interval_s=0.05, max_unhealthy=3)
    assert not ok and "3 times in a row" in why and "model failed" in why
    files.health = (200, b"degraded: queue full\n")  # degraded is not ok: no commit
    ok, why = gate(files.url + "/healthz", commit_after_s=0.1, timeout_s=5, interval_s=0.05, max_unhealthy=2)
    assert not ok and "degraded" in why
    ok, why = gate("http://127.0.0.1:9/healthz", commit_after_s=0.1, timeout_s=0.5, interval_s=0.1)
    assert not ok and "within 0.5 s" in why and "unreachable" in why


def _bundle(tmp: Path, keys: dict, release: int, model: bytes) -> tuple[Path, str]:
    p = pack_bundle(tmp / f"r{release}.tar.gz", {"models/m.tflite": model, "device.yaml": b"model: {path: x}\n"},
                    fleet="f", group="g", profile="rpi5", signer=keys["signer"], build_time=1000 + release,
                    release=release, device_config="device.yaml")
    return p, verify_bundle(p, keys["key"]).manifest_sha256


def _agent(tmp: Path, keys: dict, files: Files, healthy: dict) -> Agent:
    cfg = AgentConfig(device_id="dev-1", fleet="f", group="g", pubkey=str(keys["pub"]),
                      install_root=str(tmp / "root"), state_dir=str(tmp / "state"),
                      health={"url": files.url + "/healthz", "commit_after_s": 0.1, "timeout_s": 3,
                              "interval_s": 0.05, "max_unhealthy": 2})
    reports: list[dict] = []

    def reload() -> None:
        model = (tmp / "root" / "current" / "models" / "m.tflite").read_bytes()
        files.health = (200, b"ok\n") if healthy.get(model[:4], True) else (503, b"broken\n")

    a = Agent(cfg, report=reports.append, reload=reload)
    a.reports = reports  # type: ignore[attr-defined]
    return a


def _announce_bundle(keys: dict, files: Files, path: Path, msha: str, release: int, seq: int = 1) -> bytes:
    import hashlib

    data = path.read_bytes()
    files.files[f"/{path.name}"] = data
    return seal(announce.payload("f", "g", release, seq, msha, f"{files.url}/{path.name}",
                                 hashlib.sha256(data).hexdigest(), len(data), None, 100.0), keys["signer"])


def test_agent_commits_good_rolls_back_bad_and_ignores_replays(tmp_path: Path, keys: dict, files: Files) -> None:
    healthy = {b"BAD!": False}
    agent = _agent(tmp_path, keys, files, healthy)
    p1, m1 = _bundle(tmp_path, keys, 1, b"GOOD" * 100)
    p2, m2 = _bundle(tmp_path, keys, 2, b"BAD!" * 100)
    a1 = agent.offer(_announce_bundle(keys, files, p1, m1, 1))
    assert a1 is not None and agent.handle(a1) == "committed"
    good = current_release(tmp_path / "root")
    a2 = agent.offer(_announce_bundle(keys, files, p2, m2, 2))
    assert a2 is not None and agent.handle(a2) == "rolled_back"
    assert current_release(tmp_path / "root") == good and agent.state.committed == 1
    states = [r["state"] for r in agent.reports]  # type: ignore[attr-defined]
    assert states == ["downloading", "installing", "installed", "checking", "committed",
                      "downloading", "installing", "installed", "checking", "rolled_back"]
    assert "broken" in agent.reports[-1]["reason"]  # type: ignore[attr-defined]
    # the same announcement again: not retried; an older one: ignored, status unchanged
    assert agent.handle(agent.offer(_announce_bundle(keys, files, p2, m2, 2))).startswith("skipped: release 2 failed")
    assert agent.offer(_announce_bundle(keys, files, p1, m1, 1)) is None
    last = agent.reports[-1]  # type: ignore[attr-defined]
    assert last["state"] == "rolled_back" and "replayed" in last["note"]
    # a bundle whose manifest is not the announced one is refused
    p3, _m3 = _bundle(tmp_path, keys, 3, b"GOOD" * 101)
    assert agent.handle(agent.offer(_announce_bundle(keys, files, p3, "e" * 64, 3))) == "failed"
    assert "not the announced" in agent.state.failed["3"]


def test_agent_killed_before_commit_finishes_the_health_check_on_restart(tmp_path: Path, keys: dict,
                                                                         files: Files) -> None:
    healthy = {b"BAD!": False}
    agent = _agent(tmp_path, keys, files, healthy)
    p1, m1 = _bundle(tmp_path, keys, 1, b"GOOD" * 100)
    p2, m2 = _bundle(tmp_path, keys, 2, b"BAD!" * 100)
    agent.handle(agent.offer(_announce_bundle(keys, files, p1, m1, 1)))
    good = current_release(tmp_path / "root")
    agent.health_check = lambda: "killed"  # type: ignore[method-assign]  # the process dies after installing
    assert agent.handle(agent.offer(_announce_bundle(keys, files, p2, m2, 2))) == "killed"
    assert current_release(tmp_path / "root") != good
    restarted = _agent(tmp_path, keys, files, healthy)
    assert restarted.state.pending is not None and restarted.state.pending["release"] == 2
    restarted.run(threading.Event(), max_seconds=0.1, poll_s=0.05)
    assert current_release(tmp_path / "root") == good and "2" in restarted.state.failed
    assert restarted.state.pending is None and restarted.state.committed == 1


def test_agent_config_and_cli_errors(tmp_path: Path, keys: dict) -> None:
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump({"device_id": "d1", "fleet": "f", "group": "g", "install_root": "b",
                                 "state_dir": "s"}))
    with pytest.raises(ConfigError, match="field 'pubkey': required"):
        load_agent_config(p)
    p.write_text(yaml.safe_dump({"device_id": "d1", "fleet": "f", "group": "g", "install_root": "b",
                                 "state_dir": "s", "pubkey": "k.pub", "health": {"commit_after": 3}}))
    with pytest.raises(ConfigError, match="health.commit_after"):
        load_agent_config(p)
    p.write_text(yaml.safe_dump({"device_id": "d1", "fleet": "f", "group": "g", "install_root": "b",
                                 "state_dir": "s", "pubkey": "k.pub"}))
    cfg = load_agent_config(p)
    assert cfg.install_root == str(tmp_path / "b") and cfg.pubkey == str(tmp_path / "k.pub")
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "agent", "--config", str(p), "--once",
                        "--max-seconds", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "k.pub" in r.stderr and "Traceback" not in r.stderr


def test_agent_retries_a_download_when_the_server_comes_back(tmp_path: Path, keys: dict, files: Files) -> None:
    agent = _agent(tmp_path, keys, files, {})
    p1, m1 = _bundle(tmp_path, keys, 1, b"GOOD" * 100)
    ann = _announce_bundle(keys, files, p1, m1, 1)
    data = files.files.pop(f"/{p1.name}")  # not on the server yet
    agent.cfg.download.retries = 0
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop, 20, 0.05))
    t.start()
    try:
        assert agent.offer(ann) is not None
        deadline = time.monotonic() + 10
        while "download_failed" not in [r["state"] for r in agent.reports]:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        files.files[f"/{p1.name}"] = data
        while agent.state.committed != 1:
            assert time.monotonic() < deadline, agent.log
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
    assert [r["state"] for r in agent.reports][:2] == ["downloading", "download_failed"]  # type: ignore[attr-defined]


def test_agent_and_publisher_over_tls_with_a_password(tmp_path: Path, keys: dict, files: Files, tls_broker) -> None:
    """Against a Mosquitto that requires TLS and a password: the agent gets a signed announcement,
    commits, and its retained status reaches the publisher's status board; a wrong password gets nothing."""
    from converters.fleet.publish import Announcer, Staged
    from converters.fleet.status import StatusBoard
    from edge_runtime.agent.config import MqttSettings
    from edge_runtime.agent.mqtt_link import AgentLink

    d, port = tls_broker["dir"], tls_broker["port"]
    (tmp_path / "pass").write_text("s3cret\n")
    mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{port}", username="device", password_file=str(tmp_path / "pass"),
                        tls={"ca_file": str(d / "ca.pem")})
    agent = _agent(tmp_path, keys, files, {})
    link = AgentLink(mqtt.url, mqtt.topic_prefix, "f", "g", "dev-1", auth=mqtt.auth())
    agent._report = link.report
    board = StatusBoard(mqtt.url, auth=mqtt.auth())
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop, 30, 0.05))
    try:
        link.start(agent.offer)
        assert link.connected.wait(10) and board.subscribed.wait(10)
        t.start()
        p1, m1 = _bundle(tmp_path, keys, 1, b"GOOD" * 100)
        files.files[f"/{p1.name}"] = p1.read_bytes()
        import hashlib

        st = Staged("f", "g", 1, m1, f"{files.url}/{p1.name}", hashlib.sha256(p1.read_bytes()).hexdigest(),
                    p1.stat().st_size, None, ["dev-1"], 0)
        Announcer(board.client, "edge-runtime/fleet", keys["signer"]).announce(st, 100)
        end = time.monotonic() + 20
        while (board.state_of("f", "g", "dev-1") or {}).get("state") != "committed":
            assert time.monotonic() < end, agent.log
            board.wait(0.2)
        wrong = MqttSettings(url=mqtt.url, username="device", password_env="EDGE_TEST_WRONG_PW",
                             tls={"ca_file": str(d / "ca.pem")})
        os.environ["EDGE_TEST_WRONG_PW"] = "nope"
        intruder = StatusBoard(wrong.url, auth=wrong.auth())
        try:
            assert not intruder.subscribed.wait(2) and not intruder.devices
        finally:
            intruder.close()
    finally:
        os.environ.pop("EDGE_TEST_WRONG_PW", None)
        stop.set()
        if t.is_alive():
            t.join(10)
        link.stop()
        board.close()

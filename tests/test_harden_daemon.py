"""[HARDEN] the daemon under idle, slow and greedy peers: devices still get through, memory stays bounded,
a config never deletes a file, and dropped samples are answered with a NACK.

Reference for results: the daemon's own RESULT frames (their sequence numbers); counters from /metrics.
"""
from __future__ import annotations

import os
import resource
import socket
import time

import numpy as np
import pytest
import yaml

from edge_runtime.daemon import framing
from test_daemon_support import DaemonProc, env_for_subprocess, wait_until


@pytest.fixture(scope="module")
def kws(kws01, mlperf_models):
    return kws01[0][:50], mlperf_models / "kws_ref_model.tflite"


def _config(tmp_path, model, **sections) -> str:
    cfg = {"model": {"path": str(model), "backend": "litert"}, "health": {"listen": "127.0.0.1:0"},
           "source": {"type": "tcp", "host": "127.0.0.1", "port": 0}, "sinks": [{"type": "reply"}]}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    p = tmp_path / "device.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _read_frames(s: socket.socket, want: int, timeout: float) -> list[framing.Frame]:
    dec = framing.FrameDecoder()
    out: list[framing.Frame] = []
    s.settimeout(0.2)
    end = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        out += [f for f in dec.feed(data) if f.kind in (framing.RESULT, framing.NACK)]
    return out


def test_health_unix_path_never_deletes_a_regular_file(tmp_path, kws):
    x, model = kws
    victim = tmp_path / "important.txt"
    victim.write_text("keep me")
    d = DaemonProc(["--config", _config(tmp_path, model, health={"listen": f"unix:{victim}"})])
    assert d.p.wait(60) == 1
    d.kill()
    assert victim.read_text() == "keep me"
    assert "exists and is not a socket; refusing to replace it" in d.stderr


def test_stale_health_socket_is_replaced_and_removed_on_exit(tmp_path, kws):
    x, model = kws
    path = tmp_path / "h.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed daemon leaves it
    d = DaemonProc(["--config", _config(tmp_path, model, health={"listen": f"unix:{path}"})])
    try:
        d.wait_ready()
        assert path.exists()
        assert d.stop() == 0
    finally:
        d.kill()
    assert not path.exists()


def test_device_gets_through_idle_connections_and_slow_health_clients(tmp_path, kws):
    """200 idle data connections and 300 slow health clients, 256 file descriptors: a device is answered in 1 s."""
    x, model = kws
    env = env_for_subprocess()
    d = DaemonProc(["--config", _config(tmp_path, model)], env=env)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        info = d.wait_ready()
        resource.prlimit(d.p.pid, resource.RLIMIT_NOFILE, (256, hard))
        host, hport = info["health"].rsplit(":", 1)
        idle = []
        for _ in range(200):
            try:
                idle.append(socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5))
            except OSError:
                pass
        slow = []
        for _ in range(300):
            try:
                c = socket.create_connection((host, int(hport)), timeout=5)
                c.sendall(b"GET /metr")  # never finishes its request line
                slow.append(c)
            except OSError:
                pass
        time.sleep(1.2)  # past evict_after_s: the idle ones may now be replaced
        t0 = time.monotonic()
        dev = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        dev.sendall(framing.encode_frame(framing.DATA, 7, x[0].tobytes()))
        frames = _read_frames(dev, 1, timeout=5)
        elapsed = time.monotonic() - t0
        assert frames and frames[0].kind == framing.RESULT and frames[0].seq == 7, d.stderr
        assert elapsed < 1.0, f"answered after {elapsed:.2f} s"
        for c in idle + slow + [dev]:
            c.close()
        m = d.metrics()
        assert m["edge_runtime_connections_evicted_total"] >= 1
        assert m["edge_runtime_health_refused_total"] + m["edge_runtime_health_timeouts_total"] >= 250
        assert d.stop() == 0
    finally:
        d.kill()
    assert "Traceback" not in d.stderr and len(d.stderr) < 200_000, d.stderr[-2000:]


def test_idle_connections_are_closed(tmp_path, kws):
    x, model = kws
    d = DaemonProc(["--config", _config(tmp_path, model, source={"idle_timeout_s": 0.5})])
    try:
        d.wait_ready()
        c = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        c.settimeout(5)
        t0 = time.monotonic()
        assert c.recv(100) == b""  # closed by the daemon
        assert 0.3 < time.monotonic() - t0 < 3
        wait_until(lambda: d.counter("connections_idle_closed") == 1, what="idle close counted")
        assert d.stop() == 0
    finally:
        d.kill()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_unfinished_frames_stay_within_the_configured_bound(tmp_path, kws):
    """190 connections each sending 1 MiB of a frame that never ends: RSS stays within the bound."""
    x, model = kws
    bound = 16 << 20
    d = DaemonProc(["--config", _config(tmp_path, model, source={"max_connections": 200},
                                        pipeline={"max_frame_bytes": 1 << 20, "max_buffered_bytes": bound})])
    try:
        d.wait_ready()
        base = _rss(d.p.pid)
        junk = bytes([0x5A]) * (1 << 20)  # no 0x00: one long unfinished frame
        conns = []
        for _ in range(190):
            try:
                c = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
                c.sendall(b"\x00" + junk)
                conns.append(c)
            except OSError:
                pass
        wait_until(lambda: d.counter("connections_memory_closed") >= 100, timeout=60, what="memory closes")
        peak = _rss(d.p.pid)
        for c in conns:
            c.close()
        assert peak - base < bound + (48 << 20), f"RSS grew {(peak - base) >> 20} MiB"
        est = d.metrics()["edge_runtime_memory_estimate_bytes"]
        assert est >= bound  # the bound is part of the start-up estimate
        assert d.stop() == 0
    finally:
        d.kill()


def test_wrong_size_and_dropped_frames_get_a_nack(tmp_path, kws):
    x, model = kws
    d = DaemonProc(["--config", _config(tmp_path, model, pipeline={"queue_size": 1, "overload": "drop_newest",
                                                                   "max_batch_size": 1})])
    try:
        d.wait_ready()
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
        s.sendall(framing.encode_frame(framing.DATA, 1, b"\x01\x02\x03"))
        frames = _read_frames(s, 1, timeout=5)
        assert frames[0].kind == framing.NACK and frames[0].seq == 1
        reason, text = framing.decode_nack_payload(frames[0].payload)
        assert reason == framing.NACK_BAD_SIZE and "3 bytes" in text
        wait_until(lambda: "does not fit the model input" in d.stderr, what="a log line for the wrong-size frame")
        n = 2000
        s.sendall(b"".join(framing.encode_frame(framing.DATA, 2 + i, x[i % len(x)].tobytes()) for i in range(n)))
        frames = _read_frames(s, n, timeout=60)
        kinds = {f.seq: f.kind for f in frames}
        nacks = [f for f in frames if f.kind == framing.NACK]
        assert len(kinds) == n, f"{len(kinds)} of {n} frames answered"
        assert nacks and all(framing.decode_nack_payload(f.payload)[0] == framing.NACK_OVERLOAD for f in nacks)
        assert d.counter("nacks_sent") == len(nacks) + 1
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()

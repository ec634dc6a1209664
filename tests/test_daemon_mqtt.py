"""The MQTT sink against a real Mosquitto broker that this test starts on 127.0.0.1.

The broker is stopped for 10 s mid-run; every result must arrive once it is back
(QoS 1: duplicates only for messages in flight at the disconnect), and the metrics
must show the counts. Reference for the count of results: the sequence numbers sent.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_runtime.daemon import framing
from test_daemon_support import DaemonProc

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """Mosquitto with persistence, so a subscriber's session survives a restart."""

    def __init__(self, tmp_path) -> None:
        self.port = _free_port()
        # mosquitto started as root drops to its own user, which cannot enter pytest's private
        # tmp_path: keep its persistence folder in a world-accessible temporary folder
        self.dir = Path(tempfile.mkdtemp(prefix="edge-runtime-mosquitto-"))
        os.chmod(self.dir, 0o777)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {self.dir}/\nlog_dest none\nmax_queued_messages 100000\n")
        self.p = None

    def start(self) -> None:
        self.p = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.p.poll() is not None:
                    raise AssertionError(f"mosquitto exited: {self.p.stderr.read().decode()}")
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(20)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mosquitto is not installed, and CI=true (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
    b.remove()


class Subscriber:
    """A QoS 1 subscriber with a persistent session that records every sequence number received."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.seqs: list[int] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}",
                             clean_session=False)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.subscribed = threading.Event()
        # the broker persists this session (clean_session=False, persistence on), so results the daemon
        # publishes after a restart but before this client is back are queued for it; subscribing
        # again on every connect is harmless and covers a session the broker did not keep
        self.c.on_connect = lambda c, u, f, rc, p=None: (c.subscribe(topic, qos=1), self.subscribed.set())
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.subscribed.wait(10)
        time.sleep(0.3)  # let SUBACK arrive

    def _on_message(self, client, userdata, msg) -> None:
        rec = json.loads(msg.payload)
        with self.lock:
            self.seqs.append(rec["seq"])

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _stream(port: int, x: np.ndarray, n: int, rate: float, stop: threading.Event) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = time.perf_counter()
    for i in range(n):
        if stop.is_set():
            break
        s.sendall(framing.encode_frame(framing.DATA, i, x[i % len(x)].tobytes()))
        t += 1.0 / rate
        d = t - time.perf_counter()
        if d > 0:
            time.sleep(d)
    s.close()


def _daemon(tmp_path, model, broker, buffer: int) -> DaemonProc:
    cfg = tmp_path / f"device-{buffer}.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"path": str(model), "backend": "litert"},
        "source": {"type": "tcp", "port": 0}, "health": {"listen": "127.0.0.1:0"},
        "sinks": [{"type": "mqtt", "host": "127.0.0.1", "port": broker.port, "topic": "kws/results",
                   "offline_buffer": buffer, "max_inflight": 10, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}]}))
    return DaemonProc(["--config", str(cfg)])


def _wait(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_broker_outage_of_10s_loses_nothing_within_the_buffer(tmp_path, broker, kws01, mlperf_models):
    x = kws01[0][:100]
    n, rate = 560, 40.0  # 14 s of results; the broker is down from 2 s to 12 s (about 400 results)
    sub = Subscriber(broker.port, "kws/results")
    d = _daemon(tmp_path, mlperf_models / "kws_ref_model.tflite", broker, buffer=1000)
    stop = threading.Event()
    try:
        d.wait_ready()
        _wait(lambda: d.counter("mqtt_connects") >= 1, 20, "the daemon to connect to the broker")
        sender = threading.Thread(target=_stream, args=(d.tcp_port, x, n, rate, stop))
        sender.start()
        time.sleep(2.0)
        broker.stop()
        time.sleep(10.0)
        during = d.metrics()
        broker.start()
        sender.join(60)
        _wait(lambda: len(set(sub.seqs)) == n, 60, f"all {n} results at the subscriber")
        _wait(lambda: d.metrics()["edge_runtime_mqtt_pending"] == 0, 30, "the daemon's buffer to empty")
        m = d.metrics()
        assert d.stop() == 0, d.stderr
    finally:
        stop.set()
        d.kill()
        sub.close()
    print(f"\nMQTT outage: {n} results, buffered during the outage {during['edge_runtime_mqtt_pending']:.0f}, "
          f"received {len(sub.seqs)} ({len(set(sub.seqs))} distinct, {len(sub.seqs) - len(set(sub.seqs))} duplicates); "
          f"published {m['edge_runtime_mqtt_published_total']:.0f}, acked {m['edge_runtime_mqtt_acked_total']:.0f}, "
          f"dropped {m['edge_runtime_mqtt_dropped_total']:.0f}, disconnects {m['edge_runtime_mqtt_disconnects_total']:.0f}, "
          f"connects {m['edge_runtime_mqtt_connects_total']:.0f}")
    assert during["edge_runtime_mqtt_connected"] == 0 and during["edge_runtime_mqtt_pending"] > 300
    assert sorted(set(sub.seqs)) == list(range(n))
    assert len(sub.seqs) - n <= 10  # QoS 1 duplicates: at most the messages in flight (max_inflight) at the cut
    assert m["edge_runtime_results_total"] == n
    assert m["edge_runtime_mqtt_acked_total"] == n and m["edge_runtime_mqtt_dropped_total"] == 0
    assert m["edge_runtime_mqtt_disconnects_total"] >= 1 and m["edge_runtime_mqtt_connects_total"] >= 2
    assert m["edge_runtime_mqtt_published_total"] >= n


def test_offline_buffer_overflow_drops_the_oldest_and_counts_them(tmp_path, broker, kws01, mlperf_models):
    x = kws01[0][:100]
    sub = Subscriber(broker.port, "kws/results")
    d = _daemon(tmp_path, mlperf_models / "kws_ref_model.tflite", broker, buffer=20)
    try:
        d.wait_ready()
        _wait(lambda: d.counter("mqtt_connects") >= 1, 20, "the daemon to connect to the broker")
        broker.stop()
        _wait(lambda: d.metrics()["edge_runtime_mqtt_connected"] == 0, 20, "the daemon to notice")
        stop = threading.Event()
        _stream(d.tcp_port, x, 100, 1000.0, stop)  # 100 results while the broker is down
        _wait(lambda: d.counter("results") == 100, 30, "100 results")
        broker.start()
        _wait(lambda: d.metrics()["edge_runtime_mqtt_pending"] == 0, 30, "the buffer to empty")
        _wait(lambda: len(set(sub.seqs)) >= 20, 30, "the buffered results at the subscriber")
        time.sleep(0.5)
        m = d.metrics()
        assert d.stop() == 0
    finally:
        d.kill()
        sub.close()
    assert m["edge_runtime_mqtt_dropped_total"] == 80
    assert sorted(set(sub.seqs)) == list(range(80, 100))  # the newest 20 (the buffer) survive

"""Where results go: JSON Lines, back to the device, or MQTT.

A sink's ``emit`` never blocks the event loop for long: the JSON Lines sink writes
one line, the reply sink queues a frame on the link, the MQTT sink appends to a
bounded buffer that the paho network thread empties.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Optional

import numpy as np

from edge_runtime.daemon import framing
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.daemon.postprocess import Post
from edge_runtime.errors import ConfigError

log = logging.getLogger("edge_runtime.daemon")


@dataclass
class Result:
    """One answered request."""

    seq: int
    link: Optional[Link]
    outputs: list[np.ndarray]
    post: Post
    latency_s: float
    model_version: str

    def record(self) -> dict[str, Any]:
        """The JSON object written by the JSON Lines and MQTT sinks."""
        rec: dict[str, Any] = {
            "seq": self.seq,
            "source": self.link.name if self.link is not None else None,
            "raw": self.outputs[0].reshape(-1).tolist(),
            "label": self.post.label,
            "label_index": self.post.label_index,
            "score": None if self.post.score is None else round(self.post.score, 6),
        }
        if len(self.outputs) > 1:
            rec["raw_extra"] = [o.reshape(-1).tolist() for o in self.outputs[1:]]
        if self.post.topk is not None:
            rec["topk"] = self.post.topk
        rec["latency_ms"] = round(self.latency_s * 1e3, 3)
        rec["model_version"] = self.model_version
        return rec


class Sink:
    """Base class of sinks."""

    wants_json = False

    async def start(self) -> None:
        """Open files or connections."""

    def emit(self, result: Result, line: Optional[bytes]) -> None:
        """Deliver one result (``line`` is its JSON encoding when ``wants_json``)."""
        raise NotImplementedError

    def emit_batch(self, results: list[Result], lines: Optional[list[bytes]]) -> None:
        """Deliver the results of one batch (default: one ``emit`` each)."""
        for i, r in enumerate(results):
            self.emit(r, lines[i] if lines is not None else None)

    def drain(self, timeout: float) -> bool:
        """Block until everything emitted is delivered or ``timeout`` passes; True when all delivered."""
        return True

    def close(self) -> None:
        """Release resources."""


class JsonlSink(Sink):
    """One JSON object per line, to a file or stdout."""

    wants_json = True

    def __init__(self, path: str, flush: bool = True) -> None:
        self.path, self.flush = path, flush
        self._f: Optional[IO[bytes]] = None

    async def start(self) -> None:
        if self.path == "-":
            self._f = sys.stdout.buffer
        else:
            try:
                self._f = open(self.path, "ab")
            except OSError as exc:
                raise ConfigError(f"sink jsonl:{self.path}: cannot open for writing: {exc.strerror or exc}") from None

    def emit(self, result: Result, line: Optional[bytes]) -> None:
        assert self._f is not None and line is not None
        self._f.write(line)
        if self.flush:
            self._f.flush()

    def emit_batch(self, results: list[Result], lines: Optional[list[bytes]]) -> None:
        assert self._f is not None and lines is not None
        self._f.write(b"".join(lines))
        if self.flush:
            self._f.flush()

    def drain(self, timeout: float) -> bool:
        if self._f is not None:
            self._f.flush()
        return True

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.flush()
            except (OSError, ValueError):
                pass
            if self._f is not sys.stdout.buffer:
                self._f.close()
            self._f = None


class ReplySink(Sink):
    """A RESULT frame back to the device over the link the request came in on."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    @staticmethod
    def _frame(result: Result) -> bytes:
        post = result.post
        payload = framing.encode_result_payload(post.label_index, post.score if post.score is not None else float("nan"),
                                                result.outputs[0].tobytes())
        return framing.encode_frame(framing.RESULT, result.seq, payload)

    def emit(self, result: Result, line: Optional[bytes]) -> None:
        link = result.link
        if link is None or not link.send(self._frame(result)):
            self.metrics.inc("reply_dropped")

    def emit_batch(self, results: list[Result], lines: Optional[list[bytes]]) -> None:
        # one write per link per batch instead of one per result
        by_link: dict[int, tuple[Link, list[bytes]]] = {}
        for r in results:
            if r.link is None:
                self.metrics.inc("reply_dropped")
                continue
            by_link.setdefault(id(r.link), (r.link, []))[1].append(self._frame(r))
        for link, frames in by_link.values():
            if not link.send(b"".join(frames)):
                self.metrics.inc("reply_dropped", len(frames))

    def emit_frames(self, links: list[Optional[Link]], frames: bytes, starts: Optional[list[int]] = None) -> None:
        """Send encoded RESULT frames, the i-th to ``links[i]``: one write per link.

        ``frames`` holds them back to back; frame i spans ``starts[i]:starts[i + 1]`` (``starts`` None:
        every frame has the same size).
        """
        n = len(links)
        first = links[0]
        if first is not None and links.count(first) == n:  # the usual case: one device
            if not first.send(frames):
                self.metrics.inc("reply_dropped", n)
            return
        if starts is None:
            size = len(frames) // n
            starts = list(range(0, len(frames) + 1, size))
        by_link: dict[int, tuple[Link, list[memoryview]]] = {}
        view = memoryview(frames)
        for i, link in enumerate(links):
            if link is None:
                self.metrics.inc("reply_dropped")
                continue
            by_link.setdefault(id(link), (link, []))[1].append(view[starts[i]:starts[i + 1]])
        for link, parts in by_link.values():
            if not link.send(b"".join(parts)):
                self.metrics.inc("reply_dropped", len(parts))


class MqttSink(Sink):
    """Publish results with paho-mqtt; bounded offline buffer; reconnect with exponential backoff.

    Results wait in a buffer of ``offline_buffer`` messages (the oldest is dropped and
    counted when it overflows). At most ``max_inflight`` messages are handed to paho
    without a PUBACK; paho resends those after a reconnect, which is the only source of
    duplicates (QoS 1: at least once).
    """

    wants_json = True

    def __init__(self, cfg: Any, metrics: Metrics) -> None:
        self.cfg = cfg
        self.name = f"mqtt://{cfg.host}:{cfg.port}"
        self.metrics = metrics
        self.device_id = cfg.device_id or socket.gethostname()
        self.topic = cfg.topic.replace("{device_id}", self.device_id)
        self.status_topic = cfg.status_topic.replace("{device_id}", self.device_id) if cfg.status_topic else None
        # every payload names the device: '{"device_id": ..., <the result's own fields>'
        self._prefix = b'{"device_id":' + json.dumps(self.device_id).encode() + b","
        self._buf: "collections.deque[bytes]" = collections.deque()
        self._lock = threading.Lock()
        self._inflight: set[int] = set()
        self._early: set[int] = set()
        self._wake = threading.Event()
        self._closing = False
        self.connected = False
        self._client: Any = None
        self._thread: Optional[threading.Thread] = None

    async def start(self) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError("the MQTT sink needs paho-mqtt: pip install 'edge-runtime[mqtt]'") from None
        c = self.cfg
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=c.client_id or "", protocol=mqtt.MQTTv311)
        if c.username is not None:
            client.username_pw_set(c.username, mqtt_password(c))
        if c.tls is not None:
            import ssl

            try:
                ctx = ssl.create_default_context(cafile=c.tls.ca_file)
                if c.tls.cert_file:
                    ctx.load_cert_chain(c.tls.cert_file, c.tls.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"sink {self.name}: TLS files: {exc}") from None
            ctx.check_hostname = c.tls.check_hostname
            client.tls_set_context(ctx)
        if self.status_topic:
            client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.max_inflight_messages_set(c.max_inflight)
        client.reconnect_delay_set(min_delay=c.reconnect_min_s, max_delay=c.reconnect_max_s)  # type: ignore[arg-type]
        try:
            client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"sink mqtt://{c.host}:{c.port}: {exc}") from None
        self._client = client
        client.loop_start()
        self._thread = threading.Thread(target=self._publisher, name="mqtt-publisher", daemon=True)
        self._thread.start()

    # paho network-thread callbacks: they only update state and wake the publisher thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("mqtt: connection refused: %s", reason_code)
            return
        self.connected = True
        self.metrics.inc("mqtt_connects")
        if self.status_topic:
            client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if self.connected:
            self.metrics.inc("mqtt_disconnects")
        self.connected = False

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any = None, properties: Any = None) -> None:
        with self._lock:
            if mid in self._inflight:
                self._inflight.discard(mid)
                self.metrics.inc("mqtt_acked")
            else:
                self._early.add(mid)  # acknowledged before publish() returned its mid
        self._wake.set()

    def _publisher(self) -> None:
        c = self.cfg
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            if self._closing:
                return
            while True:
                with self._lock:
                    if not (self.connected and self._buf and len(self._inflight) < c.max_inflight):
                        break
                    msg = self._buf.popleft()
                info = self._client.publish(self.topic, msg, qos=c.qos)
                self.metrics.inc("mqtt_published")
                with self._lock:
                    if info.mid in self._early:
                        self._early.discard(info.mid)
                        self.metrics.inc("mqtt_acked")
                    else:
                        self._inflight.add(info.mid)

    def emit_batch(self, results: list[Result], lines: Optional[list[bytes]]) -> None:
        assert lines is not None
        with self._lock:
            for line in lines:
                if len(self._buf) >= self.cfg.offline_buffer:
                    self._buf.popleft()
                    self.metrics.inc("mqtt_dropped")
                self._buf.append(self._prefix + line.rstrip(b"\n")[1:])
        self._wake.set()

    def emit(self, result: Result, line: Optional[bytes]) -> None:
        assert line is not None
        with self._lock:
            if len(self._buf) >= self.cfg.offline_buffer:
                self._buf.popleft()
                self.metrics.inc("mqtt_dropped")
            self._buf.append(self._prefix + line.rstrip(b"\n")[1:])
        self._wake.set()

    def pending(self) -> int:
        """Messages buffered or not yet acknowledged."""
        with self._lock:
            return len(self._buf) + len(self._inflight)

    def drain(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.pending() and time.monotonic() < end:
            self._wake.set()
            time.sleep(0.02)
        return self.pending() == 0

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            if self.status_topic and self.connected:  # a clean stop: say so (the will covers a crash)
                self._client.publish(self.status_topic, b"offline", qos=1, retain=True).wait_for_publish(2)
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


def mqtt_password(cfg: Any) -> Optional[str]:
    """The MQTT password from ``password_file`` or ``password_env`` (never from the config itself)."""
    if cfg.password_file:
        try:
            with open(cfg.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"sink mqtt: password_file {cfg.password_file}: cannot read it: {exc}") from None
    if cfg.password_env:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise ConfigError(f"sink mqtt: password_env {cfg.password_env} is not set in the environment")
        return value
    return None


def make_sink(cfg: Any, metrics: Metrics) -> Sink:
    """Build the sink a config section describes."""
    if cfg.type == "jsonl":
        return JsonlSink(cfg.path, cfg.flush)
    if cfg.type == "reply":
        return ReplySink(metrics)
    if cfg.type == "mqtt":
        return MqttSink(cfg, metrics)
    raise ConfigError(f"unknown sink type {cfg.type!r}")


def to_json_line(result: Result) -> bytes:
    """The JSON Lines encoding of a result (NaN scores become null)."""
    rec = result.record()
    return (json.dumps(rec, separators=(",", ":"), allow_nan=False, default=_default) + "\n").encode()


def _default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o).__name__)

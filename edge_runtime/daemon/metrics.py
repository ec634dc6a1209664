"""Counters, gauges and latency percentiles, exposed in Prometheus text format.

Everything here has a fixed size: counters are a dict with a fixed key set, latency
is a ring of the last ``window`` samples. :class:`HealthServer` answers ``GET /healthz``
and ``GET /metrics`` over TCP (127.0.0.1 by default) or a Unix socket.
"""
from __future__ import annotations

import asyncio
import bisect
import os
import threading
import time
from typing import Callable, Optional

import numpy as np

COUNTERS = {
    "frames_received": "good DATA frames decoded on all links (samples from a .npy file count too)",
    "frames_corrupt": "chunks between delimiters that failed COBS, header, length or CRC checks",
    "frames_oversize": "runs longer than the largest frame, discarded up to the next delimiter",
    "frames_lost": "frames missing according to gaps in sequence numbers",
    "frames_duplicate": "frames repeating the previous sequence number",
    "sequence_restarts": "sequence number jumps taken as a device restart",
    "samples_incomplete": "fragmented samples thrown away because a fragment was missing",
    "samples_bad": "samples whose size does not match the model input",
    "bytes_dropped": "bytes discarded while resynchronising",
    "requests": "requests admitted to the queue",
    "dropped_oldest": "queued requests dropped to admit a new one (overload policy drop_oldest)",
    "dropped_newest": "new requests refused because the queue was full (overload policy drop_newest)",
    "blocked": "times a source waited for queue space (overload policy block)",
    "inferences": "requests inferred",
    "inference_errors": "worker calls that raised",
    "batches": "worker calls",
    "results": "results handed to the sinks",
    "sink_errors": "results a sink failed to write",
    "reply_dropped": "results not sent back because the link's send buffer was full or closed",
    "mqtt_published": "MQTT messages handed to the client",
    "mqtt_acked": "MQTT messages acknowledged by the broker (PUBACK)",
    "mqtt_dropped": "MQTT messages dropped because the offline buffer was full",
    "mqtt_connects": "successful MQTT connections",
    "mqtt_disconnects": "MQTT connections lost",
    "reloads": "successful model reloads",
    "reload_failures": "reloads refused (model failed to load or check); the old model kept serving",
    "connections": "link connections accepted",
    "connections_refused": "link connections closed at once: every slot held by a device that had sent frames",
    "connections_evicted": "idle connections closed to make room for a new one (no valid frame for evict_after_s)",
    "connections_idle_closed": "connections closed after sending nothing for idle_timeout_s",
    "connections_memory_closed": "connections closed because all links' unfinished frames passed max_buffered_bytes",
    "nacks_sent": "NACK frames sent to devices for samples that were not run (overload, wrong size, bad sample)",
    "health_refused": "health/metrics connections closed at once (more than health.max_connections)",
    "health_timeouts": "health/metrics requests that did not arrive within health.request_timeout_s",
}


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


#: Histogram bucket bounds (seconds) of the latency metrics: Prometheus histograms add up across devices.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)


class LatencyWindow:
    """Latencies in seconds: a histogram of all of them (for /metrics) and the last ``window`` (percentiles)."""

    def __init__(self, window: int = 4096) -> None:
        self._buf = np.zeros(window, dtype=np.float64)
        self._n = 0
        self._pos = 0
        self._lock = threading.Lock()
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)  #: per bucket (not cumulative); last = above all
        self.total = 0.0
        self.count = 0

    def _observe(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def add(self, seconds: float) -> None:
        """Record one latency."""
        with self._lock:
            self._observe(seconds)
            self._buf[self._pos] = seconds
            self._pos = (self._pos + 1) % self._buf.shape[0]
            if self._n < self._buf.shape[0]:
                self._n += 1

    def add_many(self, values: list[float]) -> None:
        """Record several latencies at once."""
        size = self._buf.shape[0]
        k = len(values)
        if not k:
            return
        with self._lock:
            if k < 16:
                for v in values:
                    self._observe(v)
            else:  # bucket counts from the sorted values: a bisection per bucket bound they straddle
                counts = self.bucket_counts
                lo = bisect.bisect_left(LATENCY_BUCKETS, min(values))
                hi = bisect.bisect_left(LATENCY_BUCKETS, max(values))
                if lo == hi:  # all in one bucket (the usual case: the requests of one job waited alike)
                    counts[lo] += k
                else:
                    ordered = sorted(values)
                    below = 0
                    for b in range(lo, hi):  # bucket b holds the values in (bound b-1, bound b]
                        upto = bisect.bisect_right(ordered, LATENCY_BUCKETS[b])
                        counts[b] += upto - below
                        below = upto
                    counts[hi] += k - below
                self.total = sum(values, self.total)  # the running total in order, as one by one
                self.count += k
            if k > size:  # only the newest ``size`` stay, where one-by-one adds would have put them
                self._pos = (self._pos + k - size) % size
                values = values[-size:]
                k = size
            end = self._pos + k
            if end <= size:
                self._buf[self._pos:end] = values
            else:
                cut = size - self._pos
                self._buf[self._pos:] = values[:cut]
                self._buf[: k - cut] = values[cut:]
            self._pos = end % size
            self._n = min(size, self._n + k)

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> dict[float, float]:
        """Percentiles of the window (NaN when empty)."""
        with self._lock:
            if self._n == 0:
                return {q: float("nan") for q in qs}
            vals = np.percentile(self._buf[: self._n], qs)
        return {q: float(v) for q, v in zip(qs, vals)}


class Metrics:
    """All daemon counters and gauges."""

    def __init__(self) -> None:
        self.counters = {k: 0 for k in COUNTERS}
        self.latency = LatencyWindow()
        self.inference_time = LatencyWindow()
        self.model_version = ""
        self.model_path = ""
        self.backend = ""
        self.last_reload_error = ""
        self.started = time.time()
        self.gauges: dict[str, Callable[[], float]] = {}
        self.alive: Callable[[], bool] = lambda: True
        #: checks that return why the daemon is degraded (a sink down, load being shed), or None
        self.degraded_checks: list[Callable[[], Optional[str]]] = []

    def degraded(self) -> list[str]:
        """The reasons the daemon is serving in a degraded state (empty when all is well)."""
        return [r for r in (check() for check in self.degraded_checks) if r]

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name`` (names are fixed in COUNTERS)."""
        self.counters[name] += n

    def snapshot(self) -> dict[str, float]:
        """Counters and gauges as a flat dict (used by tests and the summary line)."""
        out: dict[str, float] = dict(self.counters)
        for k, fn in self.gauges.items():
            out[k] = fn()
        return out

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines = []
        p = "edge_runtime_"
        lines += [f"# HELP {p}up 1 while the daemon is serving", f"# TYPE {p}up gauge", f"{p}up {1 if self.alive() else 0}"]
        lines += [f"# HELP {p}degraded 1 while serving degraded (see /healthz for why)", f"# TYPE {p}degraded gauge",
                  f"{p}degraded {1 if self.degraded() else 0}"]
        lines += [f"# HELP {p}model_info the model being served", f"# TYPE {p}model_info gauge",
                  f'{p}model_info{{version="{_esc(self.model_version)}",path="{_esc(self.model_path)}",backend="{_esc(self.backend)}"}} 1']
        lines += [f"# HELP {p}uptime_seconds seconds since start", f"# TYPE {p}uptime_seconds gauge",
                  f"{p}uptime_seconds {time.time() - self.started:.3f}"]
        lines += [f"# HELP {p}rss_bytes resident set size", f"# TYPE {p}rss_bytes gauge", f"{p}rss_bytes {rss_bytes()}"]
        for k, fn in self.gauges.items():
            lines += [f"# TYPE {p}{k} gauge", f"{p}{k} {fn():g}"]
        for k, help_ in COUNTERS.items():
            lines += [f"# HELP {p}{k}_total {help_}", f"# TYPE {p}{k}_total counter", f"{p}{k}_total {self.counters[k]}"]
        for name, win, help_ in (("latency_seconds", self.latency, "frame arrival to result"),
                                 ("inference_seconds", self.inference_time, "worker time per request")):
            lines += [f"# HELP {p}{name} {help_}", f"# TYPE {p}{name} histogram"]
            cum = 0
            for le, n in zip(LATENCY_BUCKETS, win.bucket_counts):
                cum += n
                lines.append(f'{p}{name}_bucket{{le="{le:g}"}} {cum}')
            lines.append(f'{p}{name}_bucket{{le="+Inf"}} {win.count}')
            lines += [f"{p}{name}_sum {win.total:.9g}", f"{p}{name}_count {win.count}"]
        if self.last_reload_error:
            lines += [f"# HELP {p}last_reload_error_info why the last reload was refused", f"# TYPE {p}last_reload_error_info gauge",
                      f'{p}last_reload_error_info{{error="{_esc(self.last_reload_error)}"}} 1']
        return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HealthServer:
    """A tiny HTTP/1.0 server for ``/healthz`` and ``/metrics``."""

    def __init__(self, metrics: Metrics, listen: str, max_connections: int = 16,
                 request_timeout_s: float = 5.0) -> None:
        self.metrics = metrics
        self.listen = listen
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self._active = 0
        self._server: Optional[asyncio.base_events.Server] = None
        self._socket_id: Optional[tuple[int, int]] = None
        self.address = ""

    async def start(self) -> None:
        """Bind and start serving."""
        try:
            if self.listen.startswith("unix:"):
                path = self.listen[5:]
                _clear_stale_socket(path)
                self._server = await asyncio.start_unix_server(self._handle, path=path)
                st = os.stat(path)
                self._socket_id = (st.st_dev, st.st_ino)
                self.address = self.listen
                return
            host, _, port = self.listen.rpartition(":")
            self._server = await asyncio.start_server(self._handle, host=host, port=int(port))
        except OSError as exc:
            from edge_runtime.errors import ConfigError

            raise ConfigError(f"health {self.listen}: cannot listen: {exc.strerror or exc}") from None
        sock = self._server.sockets[0].getsockname()
        self.address = f"{sock[0]}:{sock[1]}"

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            if self.listen.startswith("unix:") and self._socket_id is not None:
                path = self.listen[5:]
                try:
                    st = os.lstat(path)
                    if (st.st_dev, st.st_ino) == self._socket_id:  # only the socket this server made
                        os.unlink(path)
                except OSError:
                    pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= self.max_connections:
            self.metrics.inc("health_refused")
            writer.close()
            return
        self._active += 1
        try:
            await asyncio.wait_for(self._answer(reader, writer), self.request_timeout_s)
        except asyncio.TimeoutError:
            self.metrics.inc("health_timeouts")
        except (ConnectionError, ValueError):
            pass
        finally:
            self._active -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        for _ in range(100):  # skip the headers (at most 100 lines)
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
        parts = line.decode("latin-1").split()
        path = parts[1] if len(parts) >= 2 else "/"
        if path.startswith("/metrics"):
            status, body, ctype = "200 OK", self.metrics.render(), "text/plain; version=0.0.4"
        elif path.startswith("/healthz"):
            ok = self.metrics.alive()
            status = "200 OK" if ok else "503 Service Unavailable"
            reasons = self.metrics.degraded() if ok else []
            body = ("degraded: " + "; ".join(reasons) + "\n") if reasons else ("ok\n" if ok else "not serving\n")
            ctype = "text/plain"
        else:
            status, body, ctype = "404 Not Found", "try /healthz or /metrics\n", "text/plain"
        data = body.encode()
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                     "Connection: close\r\n\r\n".encode() + data)
        await writer.drain()


def _clear_stale_socket(path: str) -> None:
    """Remove ``path`` only if it is a socket nobody listens on; refuse anything else already there."""
    import socket
    import stat

    from edge_runtime.errors import ConfigError

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"health unix:{path}: the path exists and is not a socket; refusing to replace it "
                          "(choose another path or remove it yourself)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # a stale socket left by a process that died
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise ConfigError(f"health unix:{path}: another process is listening on this socket")

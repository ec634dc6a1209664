"""Where frames come from: a serial port, a TCP listener, a file or stdin.

Every source hands complete samples to ``submit(link, seq, payload)`` (a coroutine on
the event loop). Serial and stdin reads block, so they run in a reader thread and
submit through ``asyncio.run_coroutine_threadsafe``; with the ``block`` overload
policy the thread waits, which pushes back on the device (flow control).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Optional

import numpy as np

from edge_runtime.daemon import framing
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.memory import READ_CHUNK
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.errors import ConfigError

log = logging.getLogger("edge_runtime.daemon")

Submit = Callable[[Link, int, bytes], Awaitable[None]]


class Source:
    """Base class: ``start`` begins delivering samples, ``stop`` stops reading (replies may still go out)."""

    name = "source"

    def __init__(self) -> None:
        self.finished = asyncio.Event()  #: set when a finite source (a file) has delivered everything
        self.links: list[Link] = []
        #: the pipeline's non-waiting admission (True: admitted); None or False: ``await submit``
        self.fast_submit: Optional[Callable[[Link, int, bytes], bool]] = None
        #: admits the samples of a list from an index on that ``fast_submit`` would take; returns how many
        self.fast_submit_many: Optional[Callable[[Link, list[tuple[int, bytes]], int], int]] = None

    async def start(self, submit: Submit, metrics: Metrics, max_payload: int) -> None:
        """Start reading."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop reading new data."""

    async def close(self) -> None:
        """Close connections (after the pipeline has drained)."""


class _Conn:
    """Bookkeeping of one TCP connection: when it last sent bytes, whether it has sent a valid frame."""

    __slots__ = ("transport", "link", "last", "task")

    def __init__(self, transport: asyncio.Transport, link: Link, now: float, task: Optional[asyncio.Task]) -> None:
        self.transport, self.link, self.last, self.task = transport, link, now, task

    @property
    def proven(self) -> bool:
        """True once the peer has sent a valid DATA frame (a device, not a stray connection)."""
        return self.link.data_frames > 0


class _TcpConnection(asyncio.Protocol):
    """One device connection: received bytes are decoded and admitted right in ``data_received``.

    Samples the pipeline admits without waiting go straight to its queue; at the first one that must
    wait (a full queue under the ``block`` policy, or any sample without the fast path) reading pauses
    and a task submits the rest of that read, then resumes it, so a connection never holds more than
    one read of unadmitted samples. After the peer's end of stream the connection stays open until
    the samples it sent are answered.
    """

    def __init__(self, source: "TcpSource") -> None:
        self.src = source
        self.conn: Optional[_Conn] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        src = self.src
        assert isinstance(transport, asyncio.Transport)
        loop = asyncio.get_running_loop()
        if src._stopping or not src._make_room(loop.time()):
            src._metrics.inc("connections_refused")
            transport.close()
            return
        src._n += 1
        peer = transport.get_extra_info("peername") or ("?", 0)
        if hasattr(transport, "max_size"):  # asyncio's socket transport receives up to 256 KiB per call:
            transport.max_size = READ_CHUNK  # keep each receive to a chunk
        limit = 1 << 20

        def send(data: bytes) -> bool:
            if transport.is_closing() or transport.get_write_buffer_size() > limit:
                return False
            transport.write(data)
            return True

        link = Link(f"tcp:{peer[0]}:{peer[1]}#{src._n}", src._metrics, src._max, send)
        src.links.append(link)
        if len(src.links) > 4 * src.max_connections:
            del src.links[: len(src.links) - 4 * src.max_connections]
        src._metrics.inc("connections")
        self.conn = _Conn(transport, link, loop.time(), None)
        src._conns[self] = self.conn

    def data_received(self, data: bytes) -> None:
        conn, src = self.conn, self.src
        if conn is None or src._stopping or self not in src._conns:
            return
        conn.last = asyncio.get_running_loop().time()
        link = conn.link
        samples = link.samples(data)
        i = self._admit_nowait(samples, 0)
        if i < len(samples):  # a sample must wait: stop reading until this read is admitted
            conn.transport.pause_reading()
            conn.task = asyncio.get_running_loop().create_task(self._admit_rest(samples, i))
            src._tasks.add(conn.task)
            return
        src._check_memory(conn)

    def _admit_nowait(self, samples: list[tuple[int, bytes]], i: int) -> int:
        """Admit samples from ``i`` on while the pipeline takes them without waiting; the first it did not."""
        src, link = self.src, self.conn.link  # type: ignore[union-attr]
        fast, fast_many = src.fast_submit, src.fast_submit_many
        n = len(samples)
        while i < n:  # in order: as many as admit at once, then one at a time
            if fast_many is not None:
                i += fast_many(link, samples, i)
                if i == n:
                    break
            seq, payload = samples[i]
            if fast is None or not fast(link, seq, payload):
                return i
            i += 1
        return n

    async def _admit_rest(self, samples: list[tuple[int, bytes]], i: int) -> None:
        conn, src = self.conn, self.src
        assert conn is not None
        try:
            while i < len(samples):
                seq, payload = samples[i]
                await src._submit(conn.link, seq, payload)
                i = self._admit_nowait(samples, i + 1)
            src._check_memory(conn)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            src._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
            conn.task = None
            if not src._stopping and self in src._conns and not conn.transport.is_closing():
                conn.transport.resume_reading()

    def eof_received(self) -> bool:
        conn = self.conn
        if conn is None:
            return False
        conn.link.reset()
        # the device may have closed only its sending side: answer what it already sent, then close
        task = asyncio.get_running_loop().create_task(self._close_when_answered())
        self.src._tasks.add(task)
        return True

    async def _close_when_answered(self) -> None:
        conn, src = self.conn, self.src
        assert conn is not None
        try:
            for _ in range(1000):
                if (conn.link.inflight <= 0 and conn.task is None) or conn.transport.is_closing() or src._stopping:
                    break
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass
        finally:
            src._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        if not src._stopping:
            conn.link.open = False
            src._conns.pop(self, None)
            conn.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        conn, src = self.conn, self.src
        if conn is None:
            return
        conn.link.reset()
        if not src._stopping:
            conn.link.open = False
            src._conns.pop(self, None)


class TcpSource(Source):
    """A listener; each connection is one device with its own sequence numbers.

    Connections are bounded three ways, so idle or hostile peers cannot lock devices out:
    at most ``max_connections`` at once (when all are taken, a new connection replaces the
    longest-idle one that has never sent a valid frame and has been idle ``evict_after_s``,
    else it is closed at once); a connection silent for ``idle_timeout_s`` is closed; and the
    unfinished frames of all connections together stay under ``max_buffered_bytes`` (past
    it, the connection holding the most is closed). Each connection is a :class:`_TcpConnection`.
    """

    def __init__(self, host: str, port: int, max_connections: int = 8, idle_timeout_s: float = 60.0,
                 evict_after_s: float = 1.0, max_buffered_bytes: int = 16 << 20) -> None:
        super().__init__()
        self.host, self.port, self.max_connections = host, port, max_connections
        self.idle_timeout_s, self.evict_after_s, self.max_buffered_bytes = idle_timeout_s, evict_after_s, \
            max_buffered_bytes
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: dict[_TcpConnection, _Conn] = {}
        self._stopping = False
        self._sweeper: Optional[asyncio.Task] = None
        self.address = ""
        self._n = 0

    async def start(self, submit: Submit, metrics: Metrics, max_payload: int) -> None:
        self._submit, self._metrics, self._max = submit, metrics, max_payload
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: _TcpConnection(self), self.host, self.port)
        except OSError as exc:
            raise ConfigError(f"source tcp://{self.host}:{self.port}: cannot listen: {exc.strerror or exc}") from None
        sock = self._server.sockets[0].getsockname()
        self.address = f"{sock[0]}:{sock[1]}"
        self.name = f"tcp://{self.address}"
        self._sweeper = loop.create_task(self._sweep())

    def _drop(self, conn: _Conn, counter: str) -> None:
        """Close a connection now and free its slot."""
        key = next((k for k, c in self._conns.items() if c is conn), None)
        if key is None:
            return
        del self._conns[key]
        self._metrics.inc(counter)
        conn.link.drop_partial()
        conn.link.open = False
        conn.transport.abort()

    def _make_room(self, now: float) -> bool:
        """Free a slot for a new connection if an unproven one has idled long enough; True when there is room."""
        if len(self._conns) < self.max_connections:
            return True
        idle = [c for c in self._conns.values() if not c.proven and now - c.last >= self.evict_after_s]
        if not idle:
            return False
        self._drop(min(idle, key=lambda c: c.last), "connections_evicted")
        return True

    async def _sweep(self) -> None:
        """Close connections silent for idle_timeout_s."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self.idle_timeout_s / 4)
        while not self._stopping:
            await asyncio.sleep(period)
            now = loop.time()
            for conn in [c for c in self._conns.values() if now - c.last > self.idle_timeout_s]:
                self._drop(conn, "connections_idle_closed")

    def _check_memory(self, conn: _Conn) -> None:
        """Keep all links' unfinished frames under max_buffered_bytes."""
        if conn.link.buffered_bytes == 0:
            return
        total = sum(c.link.buffered_bytes for c in self._conns.values())
        while total > self.max_buffered_bytes and self._conns:
            worst = max(self._conns.values(), key=lambda c: c.link.buffered_bytes)
            total -= worst.link.buffered_bytes
            self._drop(worst, "connections_memory_closed")

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in self._conns.values():  # stop reading; replies to what was admitted still go out
            if not conn.transport.is_closing():
                conn.transport.pause_reading()
            conn.link.reset()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    async def close(self) -> None:
        for conn in list(self._conns.values()):
            t = conn.transport
            end = time.monotonic() + 5
            while not t.is_closing() and t.get_write_buffer_size() and time.monotonic() < end:
                await asyncio.sleep(0.01)
            t.close()
        for link in self.links:
            link.open = False
        self._conns.clear()


class _ThreadedSource(Source):
    """Common part of sources read by a blocking thread."""

    def __init__(self) -> None:
        super().__init__()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    async def start(self, submit: Submit, metrics: Metrics, max_payload: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._submit, self._metrics, self._max = submit, metrics, max_payload
        self._open()
        self._thread = threading.Thread(target=self._run_thread, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        pass

    def _deliver(self, link: Link, seq: int, payload: bytes) -> bool:
        fut = asyncio.run_coroutine_threadsafe(self._submit(link, seq, payload), self._loop)
        while not self._stop.is_set():
            try:
                fut.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the loop is shutting down
                return False
        fut.cancel()
        return False

    def _run_thread(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # noqa: BLE001 - report and stop this source, the daemon keeps its state
            log.error("source %s stopped: %s", self.name, exc)
        finally:
            self._loop.call_soon_threadsafe(self.finished.set)

    def _read_loop(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        self._stop.set()
        await _join(self._thread, 5)


class SerialSource(_ThreadedSource):
    """A serial port through pyserial: a device path, a pty, or a URL such as ``loop://``.

    Replies go out through a bounded queue and a writer thread. While that queue is more
    than half full the reader stops taking new frames, so a device that reads its
    results slowly slows its own input instead of losing results.
    """

    OUT_QUEUE = 1024

    def __init__(self, port: str, baudrate: int = 115200, hello: bool = True) -> None:
        super().__init__()
        self.port, self.baudrate, self.hello = port, baudrate, hello
        self.name = f"serial:{port}"
        self.serial: Any = None
        self._out: "queue.Queue[Optional[bytes]]" = queue.Queue(maxsize=self.OUT_QUEUE)
        self._writer: Optional[threading.Thread] = None

    def _open(self) -> None:
        try:
            import serial  # pyserial
        except ImportError:
            raise ConfigError("serial sources need pyserial: pip install 'edge-runtime[serial]'") from None
        try:
            self.serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise ConfigError(f"source serial:{self.port}: cannot open the port: {exc}") from None
        self.link = Link(self.name, self._metrics, self._max, self._queue_send)
        self.links.append(self.link)
        self._writer = threading.Thread(target=self._write_loop, name="serial-writer", daemon=True)
        self._writer.start()
        if self.hello:
            self._queue_send(framing.encode_frame(framing.HELLO, 0))

    def _queue_send(self, data: bytes) -> bool:
        try:
            self._out.put_nowait(data)
            return True
        except queue.Full:
            return False

    def _write_loop(self) -> None:
        while True:
            data = self._out.get()
            if data is None:
                return
            try:
                self.serial.write(data)
            except Exception:  # noqa: BLE001 - a write timeout or a closed port drops this reply
                self._metrics.inc("reply_dropped")

    def _read_loop(self) -> None:
        ser = self.serial
        while not self._stop.is_set():
            try:
                data = ser.read(max(1, min(ser.in_waiting, 65536)))
            except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException/OSError on unplug
                log.warning("serial %s: read failed (%s); reopening", self.port, exc)
                self.link.reset()
                if not self._reopen():
                    return
                ser = self.serial
                continue
            if not data:
                continue
            for seq, payload in self.link.samples(data):
                while self._out.qsize() > self.OUT_QUEUE // 2 and not self._stop.is_set():
                    time.sleep(0.002)  # flow control: the device is not reading its results
                if not self._deliver(self.link, seq, payload):
                    return

    def _reopen(self) -> bool:
        import serial

        while not self._stop.wait(0.5):
            try:
                self.serial.close()
                self.serial = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05, write_timeout=1.0)
                return True
            except (serial.SerialException, OSError, ValueError):
                continue
        return False

    async def close(self) -> None:
        for link in self.links:
            link.open = False
        if self._writer is not None:
            self._out.put(None)
            await _join(self._writer, 5)
        if self.serial is not None:
            self.serial.close()


class FramedStreamSource(_ThreadedSource):
    """A framed byte stream (a serial capture) from a file, or from stdin when the path is '-'."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.name = "stdin" if path == "-" else f"file:{path}"

    def _open(self) -> None:
        if self.path == "-":
            self._f = sys.stdin.buffer
        else:
            try:
                self._f = open(self.path, "rb")
            except OSError as exc:
                raise ConfigError(f"source file:{self.path}: cannot open: {exc.strerror or exc}") from None
        self.link = Link(self.name, self._metrics, self._max)
        self.links.append(self.link)

    def _read_loop(self) -> None:
        read = getattr(self._f, "read1", self._f.read)
        while not self._stop.is_set():
            data = read(65536)
            if not data:
                break
            for seq, payload in self.link.samples(data):
                if not self._deliver(self.link, seq, payload):
                    return
        self.link.reset()


class NpySource(Source):
    """Samples from a .npy file (first axis), sequence number = index; optionally paced."""

    def __init__(self, path: str, rate_hz: Optional[float] = None) -> None:
        super().__init__()
        self.path, self.rate_hz = path, rate_hz
        self.name = f"file:{path}"
        self._task: Optional[asyncio.Task] = None

    async def start(self, submit: Submit, metrics: Metrics, max_payload: int) -> None:
        try:
            self.data = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"source file:{self.path}: not a readable .npy file: {exc}") from None
        if self.data.ndim < 1 or self.data.shape[0] == 0:
            raise ConfigError(f"source file:{self.path}: expected samples along the first axis, got shape {self.data.shape}")
        self.link = Link(self.name, metrics, max_payload)
        self.links.append(self.link)
        self._metrics = metrics
        self._task = asyncio.create_task(self._run(submit))

    async def _run(self, submit: Submit) -> None:
        period = 1.0 / self.rate_hz if self.rate_hz else 0.0
        t_next = time.perf_counter()
        try:
            for i in range(self.data.shape[0]):
                if period:
                    t_next += period
                    delay = t_next - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                self._metrics.inc("frames_received")
                await submit(self.link, i, np.ascontiguousarray(self.data[i]).tobytes())
                if i % 64 == 63:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass
        finally:
            self.finished.set()

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _join(thread: Optional[threading.Thread], timeout: float) -> None:
    """Wait for a thread to end without blocking the loop (and without starting another thread)."""
    end = time.monotonic() + timeout
    while thread is not None and thread.is_alive() and time.monotonic() < end:
        await asyncio.sleep(0.01)


def make_source(cfg: Any) -> Source:
    """Build the source described by a config section."""
    if cfg.type == "tcp":
        return TcpSource(cfg.host, cfg.port, cfg.max_connections, cfg.idle_timeout_s, cfg.evict_after_s)
    if cfg.type == "serial":
        return SerialSource(cfg.port, cfg.baudrate, cfg.hello)
    if cfg.type == "file":
        if cfg.path != "-" and cfg.path.endswith(".npy"):
            return NpySource(cfg.path, cfg.rate_hz)
        return FramedStreamSource(cfg.path)
    raise ConfigError(f"unknown source type {cfg.type!r}")

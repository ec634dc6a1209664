"""Simulated sensor firmware: streams frames to ``edge-runtime serve`` and reads results back.

It speaks the daemon's framing (docs/framing.md) over a serial port, a pty pair it
creates itself, or TCP, and can inject faults: bit flips, dropped bytes and garbage
inside frames, garbage bursts between frames, and disconnects (a cut frame and a
pause on serial; a closed and reopened connection on TCP).

    python -m firmware_sim.sensor --port PORT_OR_TCP_URL (--npy FILE | --wav FILE | --imu | --image FILE)
        [--rate HZ] [--corrupt FRACTION] [--seed N] ...

``--port`` takes ``tcp://HOST:PORT``, a device path or pyserial URL, or ``pty`` /
``pty:LINK``: create a pty pair, print ``pty: /dev/pts/N`` on stderr (and make LINK a
symlink to it), and wait for the daemon's HELLO before sending.

Fault accounting is exact: a frame counts as corrupted when a fault touched a byte
between its two delimiters; faults never touch the delimiters, so neighbours stay
intact, and the last frame is always sent clean so the daemon can see every gap.
The last line of output is a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import wave
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from edge_runtime.daemon import framing


# -- payload generators ------------------------------------------------------

@dataclass
class Sample:
    """One model input, sent as one frame or, for images, one frame per line."""

    index: int
    parts: list[bytes]


def npy_samples(path: str, count: Optional[int]) -> Iterator[Sample]:
    """Samples along the first axis of a .npy file."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    n = arr.shape[0] if count is None else min(count, arr.shape[0])
    for i in range(n):
        yield Sample(i, [np.ascontiguousarray(arr[i]).tobytes()])


def wav_samples(path: str, chunk_ms: float, count: Optional[int], channel: int = 0) -> tuple[Iterator[Sample], float]:
    """16-bit PCM audio (one channel of it) in chunks of ``chunk_ms``; also returns the real-time chunk rate."""
    try:
        w = wave.open(path, "rb")
    except (OSError, wave.Error, EOFError) as exc:
        raise SystemExit(f"sensor: error: {path}: not a readable WAV file: {exc}")
    nch = w.getnchannels()
    if w.getsampwidth() != 2:
        raise SystemExit(f"sensor: error: {path}: expected 16-bit PCM, got {w.getsampwidth() * 8}-bit")
    if not 0 <= channel < nch:
        raise SystemExit(f"sensor: error: {path}: --channel {channel}, but the file has {nch} channel(s)")
    per = max(1, int(round(w.getframerate() * chunk_ms / 1000)))

    def gen() -> Iterator[Sample]:
        i = 0
        while count is None or i < count:
            data = w.readframes(per)
            if len(data) < per * 2 * nch:
                break
            if nch > 1:
                data = np.frombuffer(data, dtype="<i2").reshape(per, nch)[:, channel].tobytes()
            yield Sample(i, [data])
            i += 1
        w.close()

    return gen(), 1000.0 / chunk_ms


def imu_samples(rate: float, window: int, dtype: str, count: int, rng: np.random.Generator) -> Iterator[Sample]:
    """Synthetic 6-axis IMU (accel m/s^2 in g/2048 steps, gyro in deg/s/16.4 steps): ``window`` readings per frame."""
    t = 0.0
    dt = 1.0 / rate
    for i in range(count):
        ts = t + dt * np.arange(window)
        acc = np.stack([0.3 * np.sin(2 * np.pi * 1.5 * ts), 0.2 * np.cos(2 * np.pi * 0.7 * ts),
                        1.0 + 0.05 * np.sin(2 * np.pi * 3.0 * ts)], axis=1)
        gyr = np.stack([20 * np.sin(2 * np.pi * 0.5 * ts), 10 * np.cos(2 * np.pi * 1.1 * ts),
                        5 * np.sin(2 * np.pi * 0.2 * ts)], axis=1)
        x = np.concatenate([acc, gyr], axis=1) + rng.normal(0, 0.01, (window, 6))
        if dtype == "int16":
            x = np.clip(np.round(x * np.array([2048] * 3 + [16.4] * 3)), -32768, 32767).astype("<i2")
        else:
            x = x.astype("<f4")
        t += dt * window
        yield Sample(i, [x.tobytes()])


def image_samples(path: str, count: int) -> Iterator[Sample]:
    """An image (.npy HxWxC or 1xHxWxC, or a PNG/JPEG through Pillow) sent line by line, ``count`` times."""
    if path.endswith(".npy"):
        img = np.load(path, allow_pickle=False)
    else:
        from PIL import Image

        img = np.asarray(Image.open(path))
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim not in (2, 3):
        raise SystemExit(f"sensor: error: {path}: expected an HxW or HxWxC image, got shape {img.shape}")
    rows = [np.ascontiguousarray(img[r]).tobytes() for r in range(img.shape[0])]
    for i in range(count):
        yield Sample(i, rows)


# -- fault injection -------------------------------------------------------------

@dataclass
class FaultPlan:
    """Corrupt about ``fraction`` of the bytes inside frames, in bursts of ``burst`` bytes."""

    fraction: float = 0.0
    burst: int = 1
    kinds: tuple[str, ...] = ("flip",)
    between: float = 0.0  #: probability of a garbage burst between two frames
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    bytes_corrupted: int = 0

    def apply(self, wire: bytes) -> tuple[bytes, bool]:
        """Faults for one encoded frame; returns the bytes to send and whether the frame was touched."""
        body = bytearray(wire[1:-1])
        if self.fraction <= 0 or not body:
            return wire, False
        events = self.rng.poisson(len(body) * self.fraction / self.burst)
        if events == 0:
            return wire, False
        for _ in range(events):
            kind = self.kinds[int(self.rng.integers(len(self.kinds)))]
            pos = int(self.rng.integers(len(body))) if body else 0
            n = self.burst
            if kind == "flip":
                end = min(len(body), pos + n)
                for j in range(pos, end):
                    body[j] ^= 1 << int(self.rng.integers(8))
                self.bytes_corrupted += end - pos
            elif kind == "drop":
                end = min(len(body), pos + n)
                self.bytes_corrupted += end - pos
                del body[pos:end]
            else:  # garbage inserted inside the frame
                body[pos:pos] = self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                self.bytes_corrupted += n
        return b"\x00" + bytes(body) + b"\x00", True

    def gap_garbage(self) -> bytes:
        """Line noise between frames (it may contain zeros; it never touches a frame)."""
        if self.between > 0 and self.rng.random() < self.between:
            n = int(self.rng.integers(1, 4 * self.burst + 8))
            self.bytes_corrupted += n
            return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return b""


# -- links -------------------------------------------------------------------------

class Port:
    """A byte link to the daemon: serial (pyserial), a pty we created, or TCP."""

    def __init__(self, spec: str, connect_timeout: float, baud: int = 115200) -> None:
        self.baud = baud
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.pty_path: Optional[str] = None
        self._sock: Optional[socket.socket] = None
        self._ser = None
        self._fd: Optional[int] = None
        self._slave: Optional[int] = None
        self.is_tcp = spec.startswith("tcp://")
        self.closed_by_peer = threading.Event()
        self.is_pty = spec == "pty" or spec.startswith("pty:")
        self.open()

    def open(self) -> None:
        """Open (or reopen) the link."""
        if self.is_tcp:
            host, _, port = self.spec[6:].rpartition(":")
            end = time.monotonic() + self.connect_timeout
            while True:
                try:
                    self._sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=5)
                    self._sock.settimeout(None)
                    self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return
                except OSError as exc:
                    if time.monotonic() > end:
                        raise SystemExit(f"sensor: error: cannot connect to {self.spec}: {exc}")
                    time.sleep(0.1)
        if self.is_pty:
            if self._fd is None:
                import tty

                self._fd, self._slave = os.openpty()
                tty.setraw(self._slave)
                tty.setraw(self._fd)
                self.pty_path = os.ttyname(self._slave)
                link = self.spec[4:]
                if link:
                    try:
                        os.unlink(link)
                    except FileNotFoundError:
                        pass
                    os.symlink(self.pty_path, link)
                print(f"pty: {self.pty_path}", file=sys.stderr, flush=True)
            return
        import serial

        try:
            self._ser = serial.serial_for_url(self.spec, baudrate=self.baud, timeout=0.1)
        except (serial.SerialException, ValueError) as exc:
            raise SystemExit(f"sensor: error: cannot open {self.spec}: {exc}")

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        if self._sock is not None:
            self._sock.sendall(data)
        elif self._fd is not None:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        else:
            self._ser.write(data)  # type: ignore[union-attr]

    def read(self) -> Optional[bytes]:
        """Some received bytes (b'' on timeout; None when the peer closed a TCP link)."""
        sock = self._sock
        if sock is None and self.is_tcp:
            time.sleep(0.02)
            return b""
        try:
            if sock is not None:
                data = sock.recv(65536)
                return data if data else None
            if self._fd is not None:
                import select

                r, _, _ = select.select([self._fd], [], [], 0.1)
                return os.read(self._fd, 65536) if r else b""
            if self._ser is not None:
                return self._ser.read(max(1, self._ser.in_waiting))
        except OSError:
            time.sleep(0.05)
        return b""

    def disconnect(self, drain: float = 0.0) -> None:
        """Drop the link (TCP: close; serial and pty stay open, the caller cuts the frame).

        With ``drain`` (TCP), only the sending side closes at once; replies to what was
        already sent are still read for up to ``drain`` seconds, until the daemon closes.
        """
        sock = self._sock
        if sock is None:
            return
        if drain > 0:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.closed_by_peer.clear()
            self.closed_by_peer.wait(drain)
        self._sock = None
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self) -> None:
        """Close everything."""
        self.disconnect()
        if self._ser is not None:
            self._ser.close()
        for fd in (self._fd, self._slave):
            if fd is not None:
                os.close(fd)
        self._fd = self._slave = None


class ResultReader(threading.Thread):
    """Reads RESULT, NACK and HELLO frames from the link."""

    def __init__(self, port: Port) -> None:
        super().__init__(daemon=True, name="result-reader")
        self.port = port
        self.dec = framing.FrameDecoder()
        self.results: dict[int, list[bytes]] = {}
        self.nacks: dict[int, list[tuple[int, str]]] = {}  #: sequence -> (reason code, text) of each NACK
        self.hello = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.count = 0

    def run(self) -> None:
        """Decode frames from the link until ``stop`` is set."""
        while not self.stop.is_set():
            data = self.port.read()
            if data is None:  # the daemon closed the connection (or it is being reopened)
                self.port.closed_by_peer.set()
                time.sleep(0.02)
                continue
            if not data:
                continue
            for f in self.dec.feed(data):
                if f.kind == framing.HELLO and not f.payload:
                    self.hello.set()
                elif f.kind == framing.RESULT:
                    with self.lock:
                        self.results.setdefault(f.seq, []).append(f.payload)
                        self.count += 1
                elif f.kind == framing.NACK:
                    with self.lock:
                        self.nacks.setdefault(f.seq, []).append(framing.decode_nack_payload(f.payload))


# -- main ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m firmware_sim.sensor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True, help="tcp://HOST:PORT, /dev/ttyX, a pyserial URL, pty or pty:LINK")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--npy", help="samples along the first axis of a .npy file, one frame each")
    src.add_argument("--wav", help="16-bit PCM WAV (one channel, see --channel), sent in --chunk-ms chunks")
    src.add_argument("--imu", action="store_true", help="synthetic 6-axis IMU (accel xyz, gyro xyz)")
    src.add_argument("--image", help="an image (.npy, PNG or JPEG) sent line by line, one fragment per row")
    p.add_argument("--baud", type=int, default=115200, help="serial ports: baud rate (default 115200)")
    p.add_argument("--rate", type=float, help="frames (samples) per second; default as fast as possible "
                                              "(IMU: readings per second, default 100)")
    p.add_argument("--realtime", action="store_true", help="--wav: pace chunks at the audio's real-time rate")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="--wav: milliseconds of audio per frame (default 20)")
    p.add_argument("--channel", type=int, default=0, help="--wav: which channel of a multi-channel file (default 0)")
    p.add_argument("--window", type=int, default=32, help="--imu: readings per frame (default 32)")
    p.add_argument("--imu-dtype", choices=["int16", "float32"], default="int16", help="--imu: sample type")
    p.add_argument("--count", type=int, help="send at most this many samples (--imu, --image: default 100)")
    p.add_argument("--corrupt", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of the bytes inside frames to corrupt (default 0)")
    p.add_argument("--burst", type=int, default=1, help="bytes per fault event (default 1: independent byte errors)")
    p.add_argument("--faults", default="flip", help="comma list of fault kinds inside frames: flip, drop, garbage")
    p.add_argument("--garbage-between", type=float, default=0.0, metavar="P",
                   help="probability of a garbage burst between two frames (line noise)")
    p.add_argument("--disconnect-every", type=int, default=0, metavar="N",
                   help="every N frames cut a frame in half and drop the link for --pause s (TCP: reconnect)")
    p.add_argument("--pause", type=float, default=0.2, help="seconds the link stays down on a disconnect")
    p.add_argument("--drain", type=float, default=5.0,
                   help="TCP disconnect: close the sending side first and read replies this long "
                        "until the daemon closes (0: abrupt close; replies in flight are lost)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fault injection and IMU noise")
    p.add_argument("--start-seq", type=int, default=0, help="first sequence number")
    p.add_argument("--expect", help=".npy of the expected raw model outputs per sample; results that differ are mismatches")
    p.add_argument("--no-results", action="store_true", help="do not read results back")
    p.add_argument("--wait-results", type=float, default=10.0, help="seconds to wait for outstanding results (default 10)")
    p.add_argument("--wait-hello", type=float, help="wait this long for the daemon's HELLO before sending "
                                                      "(default 10 s on a pty, else do not wait)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="TCP: keep retrying the connection this long")
    p.add_argument("--progress", action="store_true", help="show a progress bar (default: when stderr is a terminal)")
    p.add_argument("--report", help="write the full report (with the corrupted sequence numbers) to this JSON file")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Run the simulated sensor; print a JSON summary as the last line."""
    args = build_parser().parse_args(argv)
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    bad = [k for k in kinds if k not in ("flip", "drop", "garbage")]
    if bad or not kinds:
        print(f"sensor: error: --faults: unknown kind(s) {bad}; use flip, drop, garbage", file=sys.stderr)
        return 2
    if not 0 <= args.corrupt < 1 or args.burst < 1:
        print("sensor: error: --corrupt must be in [0, 1) and --burst at least 1", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    rate = args.rate
    try:
        if args.npy:
            samples: Iterator[Sample] = npy_samples(args.npy, args.count)
        elif args.wav:
            samples, rt = wav_samples(args.wav, args.chunk_ms, args.count, args.channel)
            if args.realtime:
                rate = rt
        elif args.imu:
            imu_rate = rate or 100.0
            samples = imu_samples(imu_rate, args.window, args.imu_dtype, args.count or 100, rng)
            rate = imu_rate / args.window
        else:
            samples = image_samples(args.image, args.count or 100)
    except (OSError, ValueError) as exc:
        print(f"sensor: error: cannot read the input: {exc}", file=sys.stderr)
        return 2
    expect = np.load(args.expect, allow_pickle=False) if args.expect else None
    faults = FaultPlan(args.corrupt, args.burst, kinds, args.garbage_between, rng)

    port = Port(args.port, args.connect_timeout, args.baud)
    reader = None if args.no_results else ResultReader(port)
    if reader is not None:
        reader.start()
    wait_hello = args.wait_hello if args.wait_hello is not None else (10.0 if port.is_pty else 0.0)
    if wait_hello and reader is not None and not reader.hello.wait(wait_hello):
        print(f"sensor: error: no HELLO from the daemon within {wait_hello:g} s", file=sys.stderr)
        port.close()
        return 1

    port.write(framing.encode_frame(framing.HELLO, args.start_seq, framing.DEVICE_HELLO))
    # encode ahead one sample so the very last frame can be sent clean
    seq = args.start_seq
    frames_sent = bytes_sent = 0
    corrupted_seqs: list[int] = []
    intact: dict[int, int] = {}  # first-fragment seq -> sample index
    disconnects = 0
    samples_sent = 0
    period = 1.0 / rate if rate else 0.0
    t_next = time.perf_counter()
    all_samples = list(samples) if not args.npy else None
    seq_iter: Iterator[Sample] = iter(all_samples) if all_samples is not None else npy_samples(args.npy, args.count)
    pending = next(seq_iter, None)
    bar = None
    if args.progress or sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=args.count, unit="sample", desc="sending", file=sys.stderr)
        except ImportError:
            bar = None
    while pending is not None:
        sample, pending = pending, next(seq_iter, None)
        last_sample = pending is None
        first_seq = seq
        sample_ok = True
        nparts = len(sample.parts)
        for k, part in enumerate(sample.parts):
            flags = (framing.FIRST if k == 0 else 0) | (framing.LAST if k == nparts - 1 else 0)
            wire = framing.encode_frame(framing.DATA, seq, part, flags)
            final = last_sample and k == nparts - 1
            touched = False
            if args.disconnect_every and frames_sent and frames_sent % args.disconnect_every == 0 and not final:
                port.write(wire[: len(wire) // 2])  # cut mid-frame
                port.disconnect(drain=args.drain)
                time.sleep(args.pause)
                if port.is_tcp:
                    port.open()
                    port.write(framing.encode_frame(framing.HELLO, (seq + 1) & 0xFFFFFFFF, framing.DEVICE_HELLO))
                disconnects += 1
                touched = True
                wire = b""
            elif not final:
                wire, touched = faults.apply(wire)
                wire = faults.gap_garbage() + wire
            if wire:
                port.write(wire)
                bytes_sent += len(wire)
            frames_sent += 1
            if touched:
                corrupted_seqs.append(seq)
                sample_ok = False
            seq = (seq + 1) & 0xFFFFFFFF
        samples_sent += 1
        if bar is not None:
            bar.update(1)
        if sample_ok:
            intact[first_seq] = sample.index
        if period:
            t_next += period
            d = t_next - time.perf_counter()
            if d > 0:
                time.sleep(d)

    if bar is not None:
        bar.close()
    received = duplicates = unexpected = mismatches = 0
    if reader is not None:
        end = time.monotonic() + args.wait_results
        while time.monotonic() < end:
            with reader.lock:
                if all(s in reader.results for s in intact):
                    break
            time.sleep(0.02)
        time.sleep(0.1)  # a late duplicate or stray result still counts
        reader.stop.set()
        with reader.lock:
            results = {k: list(v) for k, v in reader.results.items()}
            received = reader.count
        for s, payloads in results.items():
            duplicates += len(payloads) - 1
            if s not in intact:
                unexpected += 1
                continue
            if expect is not None:
                _idx, _score, raw = framing.decode_result_payload(payloads[0])
                want = np.ascontiguousarray(expect[intact[s]]).tobytes()
                if raw != want:
                    mismatches += 1
        missing = sum(1 for s in intact if s not in results)
    else:
        missing = 0
    port.close()
    summary = {
        "frames_sent": frames_sent, "samples_sent": samples_sent,
        "frames_corrupted": len(corrupted_seqs), "samples_intact": len(intact),
        "bytes_sent": bytes_sent, "bytes_corrupted": faults.bytes_corrupted, "disconnects": disconnects,
        "results_received": received, "missing_results": missing if reader is not None else None,
        "unexpected_results": unexpected, "duplicate_results": duplicates,
        "mismatches": mismatches + unexpected + duplicates,
    }
    if args.report:
        with open(args.report, "w") as f:
            json.dump({**summary, "corrupted_seqs": corrupted_seqs, "intact_seqs": sorted(intact)}, f)
    print(json.dumps(summary), flush=True)
    if reader is None:
        return 0
    return 0 if summary["mismatches"] == 0 and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

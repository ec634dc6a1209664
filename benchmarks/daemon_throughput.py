"""Daemon throughput, latency and memory soak: ``python -m benchmarks.daemon_throughput``.

Measured side by side in one run, on loopback only:

1. the raw backend: ``Model.run`` in a Python loop on the kws01 inputs (the invoke rate);
2. ``edge-runtime serve`` over TCP at saturation (the client keeps a window of frames
   outstanding; overload policy ``block``), replies sent back over the link;
3. latency from the client's send to the reply at 50% of the measured saturation rate;
4. a soak of ``--soak`` inferences: the daemon's RSS (from /proc) after warm-up and at the end.

Prints a Markdown table. Bounded in count and time; traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_of(pid: int) -> int:
    """VmRSS of a process in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Daemon:
    """``edge-runtime serve`` in a subprocess with a TCP source and the reply sink."""

    def __init__(self, model: Path, backend: str, extra: list[str], op_resolver: str = "default",
                 root: Path = ROOT, cpu: Optional[int] = None) -> None:
        # ``root`` first on the path and as the working directory (``python -m`` puts the working
        # directory before PYTHONPATH): another copy of edge_runtime (the baseline) can be measured
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys([str(root), str(ROOT)])))
        self._tmp = tempfile.TemporaryDirectory(prefix="daemon-bench-")
        cfg = Path(self._tmp.name) / "device.yaml"
        cfg.write_text(json.dumps({"model": {"path": str(model), "backend": backend,
                                             "options": {} if op_resolver == "default" else {"op_resolver": op_resolver}},
                                   "source": {"type": "tcp", "port": 0}, "sinks": [{"type": "reply"}],
                                   "pipeline": {"overload": "block"}}))
        self.p = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "serve", "--config", str(cfg), *extra],
                                  cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                                  preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})))
        self.info: dict = {}
        end = time.monotonic() + 60
        assert self.p.stderr is not None
        while time.monotonic() < end:
            line = self.p.stderr.readline().decode()
            if not line and self.p.poll() is not None:
                raise SystemExit(f"daemon exited with {self.p.returncode}")
            if "ready: " in line:
                self.info = json.loads(line.split("ready: ", 1)[1])
                break
        threading.Thread(target=lambda: [None for _ in iter(self.p.stderr.readline, b"")], daemon=True).start()
        self.port = int(self.info["source"].rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.p.terminate()
        rc = self.p.wait(60)
        self._tmp.cleanup()
        return rc


class Client:
    """Sends pre-encoded frames and reads RESULT frames back, timing each round trip."""

    def __init__(self, port: int, frames: list[bytes]) -> None:
        from edge_runtime.daemon import framing

        self.framing = framing
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames = frames
        self.window = 256
        self.received = 0
        self.cv = threading.Condition()
        self.sent_at: Optional[np.ndarray] = None
        self.lat: list[float] = []
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self) -> None:
        # At saturation the client only counts replies: every frame on the wire carries exactly
        # two zero bytes (its delimiters; COBS leaves none inside), so the count costs the client
        # almost no CPU, which it would otherwise take from the daemon on this shared machine.
        # In the latency run it decodes each reply for its sequence number.
        dec = self.framing.FrameDecoder()
        zeros = 0
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.perf_counter()
            if self.sent_at is None:
                zeros += data.count(0)
                n = zeros // 2 - self.received
            else:
                n = 0
                for f in dec.feed(data):
                    if f.kind == self.framing.RESULT:
                        n += 1
                        self.lat.append(now - self.sent_at[f.seq])
                zeros += 2 * n
            if n:
                with self.cv:
                    self.received += n
                    self.cv.notify_all()

    def saturate(self, n: int, window: Optional[int] = None) -> float:
        """Send ``n`` frames keeping ``window`` outstanding; results per second."""
        window = self.window if window is None else window
        start_rx = self.received
        t0 = time.perf_counter()
        sent = 0
        while sent < n:
            with self.cv:
                while sent - (self.received - start_rx) >= window:
                    self.cv.wait()
            k = min(64, n - sent)
            self.sock.sendall(b"".join(self.frames[(sent + j) % len(self.frames)] for j in range(k)))
            sent += k
        with self.cv:
            while self.received - start_rx < n:
                self.cv.wait(30)
        return n / (time.perf_counter() - t0)

    def paced(self, frames: list[bytes], rate: float) -> list[float]:
        """Send frames at ``rate`` per second; round-trip latencies in seconds."""
        self.sent_at = np.zeros(len(frames))
        self.lat = []
        start_rx = self.received
        # 1 ms ticks: every frame due by now goes out (no busy-waiting that would steal a core)
        t0 = time.perf_counter()
        i = 0
        while i < len(frames):
            due = min(len(frames), int((time.perf_counter() - t0) * rate) + 1)
            if due > i:
                now = time.perf_counter()
                self.sent_at[i:due] = now
                self.sock.sendall(b"".join(frames[i:due]))
                i = due
            time.sleep(0.001)
        with self.cv:
            while self.received - start_rx < len(frames):
                if not self.cv.wait(30):
                    break
        lat = list(self.lat)
        self.sent_at = None
        return lat


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="kws_ref_model.tflite", help="MLPerf Tiny model name in ../shared")
    ap.add_argument("--backend", default="litert")
    ap.add_argument("--op-resolver", default="default",
                    help="LiteRT kernels: default (XNNPACK) or reference (slow kernels: the daemon's overhead vanishes)")
    ap.add_argument("--n", type=int, default=20000, help="inferences per saturation run")
    ap.add_argument("--latency-n", type=int, default=3000, help="requests in the 50%% load run")
    ap.add_argument("--soak", type=int, default=100_000, help="inferences in the soak (0: skip)")
    ap.add_argument("--batch", default="1,8,32", help="max_batch_size values to try at saturation")
    ap.add_argument("--window", type=int, default=256, help="frames the client keeps outstanding at saturation")
    ap.add_argument("--baseline-root", type=Path, default=None,
                    help="also measure the daemon from this directory's edge_runtime (e.g. an extracted older "
                         "version: git archive HEAD edge_runtime | tar -x -C DIR), interleaved with this tree's")
    ap.add_argument("--pin-cpu", type=int, default=None,
                    help="run the daemon (all its threads) and the raw Model.run loop on this one CPU and the "
                         "client elsewhere: both sides get exactly one core, whatever else the machine runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved daemon/raw measurements per setting")
    args = ap.parse_args(argv)

    import edge_runtime
    from edge_runtime.daemon import framing
    from edge_runtime.reference_data import load_kws01, mlperf_model

    try:
        path = mlperf_model(args.model)
        x, _, _ = load_kws01(1000)
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    frames = [framing.encode_frame(framing.DATA, i, x[i % 1000].tobytes()) for i in range(1000)]

    opts = {} if args.op_resolver == "default" else {"op_resolver": args.op_resolver}
    model = edge_runtime.load(path, backend=args.backend, **opts)
    for i in range(200):
        model.run(x[i % 1000])

    everywhere = os.sched_getaffinity(0)
    if args.pin_cpu is not None:
        if args.pin_cpu not in everywhere or len(everywhere) < 2:
            raise SystemExit(f"--pin-cpu {args.pin_cpu}: needs two CPUs, one of them {args.pin_cpu} "
                             f"(this process may use {sorted(everywhere)})")
        os.sched_setaffinity(0, everywhere - {args.pin_cpu})  # the client's threads

    def raw_rate(n: int) -> float:
        if args.pin_cpu is not None:  # only this (the calling) thread moves to the daemon's CPU
            os.sched_setaffinity(0, {args.pin_cpu})
        t = time.perf_counter()
        for i in range(n):
            model.run(x[i % 1000])
        rate = n / (time.perf_counter() - t)
        if args.pin_cpu is not None:
            os.sched_setaffinity(0, everywhere - {args.pin_cpu})
        return rate

    rows = []
    best = 0.0
    best_batch = 1
    trees = [("", ROOT)] if args.baseline_root is None else [("baseline ", args.baseline_root.resolve()), ("", ROOT)]
    for b in [int(v) for v in args.batch.split(",")]:
        for label, root in trees:
            d = Daemon(path, args.backend, ["--max-batch-size", str(b)], args.op_resolver, root, args.pin_cpu)
            c = Client(d.port, frames)
            c.window = args.window
            c.saturate(2000)  # warm-up
            rates, raws = [], []
            for _ in range(args.rounds):  # alternate, so both see the same machine load
                raws.append(raw_rate(args.n // 2))
                rates.append(c.saturate(args.n))
            c.sock.close()
            d.stop()
            ratios = sorted(r / w for r, w in zip(rates, raws))
            rate, raw = float(np.median(rates)), float(np.median(raws))
            rows.append((f"{label}saturation, max_batch_size {b} ({d.info['batching']})", rate, raw, ratios))
            if not label and rate > best:
                best, best_batch = rate, b
    model.close()

    pinned = "" if args.pin_cpu is None else f", daemon and raw loop pinned to CPU {args.pin_cpu}, client elsewhere"
    print(f"\nedge-runtime serve, {args.model} on {args.backend} ({args.op_resolver} kernels), TCP loopback, reply sink, "
          f"{os.cpu_count()} CPU(s){pinned}, {args.n} inferences per run\n")
    print(f"| run | daemon results/s (median of {args.rounds}) | raw Model.run/s (median, interleaved) "
          "| median of per-round ratios | per-round ratios (sorted) |")
    print("|---|---:|---:|---:|---|")
    for name, rate, raw, ratios in rows:
        print(f"| {name} | {rate:,.0f} | {raw:,.0f} | {float(np.median(ratios)):.1%} | "
              f"{', '.join(f'{r:.0%}' for r in ratios)} |")
    try:
        print(f"\nload average while measuring: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)")
    except OSError:
        pass

    d = Daemon(path, args.backend, ["--max-batch-size", str(best_batch)], args.op_resolver, cpu=args.pin_cpu)
    c = Client(d.port, frames)
    c.saturate(1000)
    load = best / 2
    paced = [framing.encode_frame(framing.DATA, i, x[i % 1000].tobytes()) for i in range(args.latency_n)]
    lat = np.array(c.paced(paced, load)) * 1e3
    print(f"\nlatency at 50% load ({load:,.0f} requests/s, max_batch_size {best_batch}, {len(lat)} requests): "
          f"p50 {np.percentile(lat, 50):.3f} ms, p99 {np.percentile(lat, 99):.3f} ms, max {lat.max():.3f} ms "
          "(client send to reply received)")

    if args.soak:
        warm = min(10_000, args.soak // 10)
        c.saturate(warm)
        rss0 = rss_of(d.p.pid)
        done = warm
        samples = [(done, rss0)]
        step = max(1, (args.soak - warm) // 9)
        while done < args.soak:
            k = min(step, args.soak - done)
            c.saturate(k)
            done += k
            samples.append((done, rss_of(d.p.pid)))
        growth = samples[-1][1] - rss0
        print(f"\nsoak: {done:,} inferences; RSS after {warm:,} (warm-up) {rss0 / 2**20:.2f} MiB, at the end "
              f"{samples[-1][1] / 2**20:.2f} MiB, growth {growth / 2**20:+.3f} MiB "
              f"(max over the run {max(s for _, s in samples) / 2**20:.2f} MiB)")
        print("| inferences | RSS MiB |\n|---:|---:|")
        for n, r in samples:
            print(f"| {n:,} | {r / 2**20:.2f} |")
    c.sock.close()
    d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

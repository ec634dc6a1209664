"""Daemon throughput, latency and memory soak: ``python -m benchmarks.daemon_throughput``.

Measured side by side in one run, on loopback only:

1. the raw backend: ``Model.run`` in a Python loop on the kws01 inputs (the invoke rate);
2. ``edge-runtime serve`` over TCP at saturation (the client keeps a window of frames
   outstanding; overload policy ``block``), replies sent back over the link;
3. latency from the client's send to the reply at 50% of the measured saturation rate;
4. a soak of ``--soak`` inferences: the daemon's RSS (from /proc) after warm-up and at the end.

With two or more CPUs the daemon (all its threads) and the raw loop run pinned to one CPU and
the client to the others, so both sides of every ratio get the same single core. Each setting
is measured on a quiet machine and again with ``--busy N`` background CPU burners, each pinned
to one CPU in turn (``--busy 2`` on two CPUs: one on the daemon's CPU, one on the client's), so
the load every measurement competes with is the same from run to run. Every round measures the
raw loop before and after the daemon's run (half of the raw inferences each side) and compares
the daemon with both halves together, so a load that drifts during the round weighs on both
sides alike; the tables give medians over ``--rounds`` rounds and every per-round ratio. The
1-minute load average before and after each row and the CPUs busy while measuring (all
processes, from /proc/stat) are printed.

Two ratios are printed. Wall clock: results per second against Model.run per second, what a
user sees; on a busy machine it also depends on how the scheduler shares the CPU, and it
treats the daemon's two threads (event loop, inference) as two claims on the CPU against the
raw loop's one. Per CPU-second: the same rates per second of on-CPU time, which leaves other
processes out and is the steadier measure of the daemon's own cost per request.

``--profile DIR`` runs each daemon under cProfile (one profile per thread, written as
``DIR/<tree>-batch<N>.<thread>.pstats`` when it stops) and prints the costliest functions.

Prints Markdown tables (``--json``: one JSON object). Bounded in count and time; traffic goes to
127.0.0.1 only.
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
from typing import Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_of(pid: int) -> int:
    """VmRSS of a process in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


#: ``python -c`` program that runs ``edge_runtime.cli`` with cProfile on in the main thread and in every
#: thread of a ThreadPoolExecutor (the inference worker); argv[1] is the prefix of the .pstats files
#: written when the daemon stops. Only this benchmark uses it (``--profile``).
_PROFILED = """
import cProfile, concurrent.futures, sys, threading
prefix = sys.argv.pop(1)
profiles = []
def _start():
    p = cProfile.Profile()
    profiles.append((threading.current_thread().name, p))
    p.enable()
_init = concurrent.futures.ThreadPoolExecutor.__init__
def _profiled(self, *a, **k):
    k.setdefault("initializer", _start)
    _init(self, *a, **k)
concurrent.futures.ThreadPoolExecutor.__init__ = _profiled
main = cProfile.Profile()
profiles.append(("main", main))
main.enable()
from edge_runtime.cli import main as cli
try:
    rc = cli(sys.argv[1:])
finally:
    for name, p in profiles:
        p.disable()
        p.dump_stats(f"{prefix}.{name}.pstats")
sys.exit(rc)
"""


def print_profile(prefix: Path, top: int = 15) -> None:
    """The ``top`` functions by own time of each thread profile written under ``prefix`` (``--profile``)."""
    import pstats

    for f in sorted(prefix.parent.glob(f"{prefix.name}.*.pstats")):
        print(f"\nprofile {f.name} (own time, cProfile inflates call-heavy code):")
        pstats.Stats(str(f), stream=sys.stdout).sort_stats("tottime").print_stats(top)


class Daemon:
    """``edge-runtime serve`` in a subprocess with a TCP source and the reply sink (under cProfile with ``profile``)."""

    def __init__(self, model: Path, backend: str, extra: list[str], op_resolver: str = "default",
                 root: Path = ROOT, cpu: Optional[int] = None, profile: Optional[Path] = None) -> None:
        # ``root`` first on the path and as the working directory (``python -m`` puts the working
        # directory before PYTHONPATH): another copy of edge_runtime (the baseline) can be measured
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys([str(root), str(ROOT)])))
        self._tmp = tempfile.TemporaryDirectory(prefix="daemon-bench-")
        cfg = Path(self._tmp.name) / "device.yaml"
        cfg.write_text(json.dumps({"model": {"path": str(model), "backend": backend,
                                             "options": {} if op_resolver == "default" else {"op_resolver": op_resolver}},
                                   "source": {"type": "tcp", "port": 0}, "sinks": [{"type": "reply"}],
                                   "pipeline": {"overload": "block"}}))
        run = ["-m", "edge_runtime.cli"] if profile is None else ["-c", _PROFILED, str(profile)]
        self.p = subprocess.Popen([sys.executable, *run, "serve", "--config", str(cfg), *extra],
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


def burner_cpus(n: int, cpus: set[int]) -> list[int]:
    """The CPU each of ``n`` burners is pinned to: round robin over ``cpus``, the highest (the daemon's) first."""
    order = sorted(cpus, reverse=True)
    return [order[i % len(order)] for i in range(n)]


class Burners:
    """``n`` background processes spinning a CPU each, each pinned to one CPU (:func:`burner_cpus`), for the busy rows."""

    def __init__(self, n: int, cpus: set[int]) -> None:
        self.cpus = burner_cpus(n, cpus)
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       preexec_fn=lambda c=c: os.sched_setaffinity(0, {c})) for c in self.cpus]
        time.sleep(0.5 if n else 0.0)  # let them start spinning before anything is measured

    def stop(self) -> None:
        """Kill every burner this object started (by its pid)."""
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait(10)
        self.procs = []


def cpu_seconds(pid: int) -> float:
    """On-CPU time of all threads of ``pid`` in seconds (/proc/PID/task/*/schedstat, ns resolution)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat; (0, 0) where unavailable."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return float(sum(vals) - idle), float(sum(vals))


def loadavg() -> float:
    """The 1-minute load average (NaN where unavailable)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def pick_cpus(pin: str) -> tuple[Optional[int], set[int]]:
    """(the daemon's CPU or None, the client's CPUs) for ``--pin-cpu``: auto, none or a CPU number."""
    everywhere = os.sched_getaffinity(0)
    if pin == "none" or (pin == "auto" and len(everywhere) < 2):
        return None, everywhere
    cpu = max(everywhere) if pin == "auto" else int(pin)
    if cpu not in everywhere or len(everywhere) < 2:
        raise SystemExit(f"--pin-cpu {pin}: needs two CPUs, one of them {cpu} (this process may use {sorted(everywhere)})")
    return cpu, everywhere - {cpu}


def measure(args: argparse.Namespace, path: Path, frames: list[bytes],
            raw_rate: Callable[[int], tuple[float, float]], batch: int, root: Path,
            cpu: Optional[int], profile: Optional[Path] = None) -> tuple[list[tuple[float, float]],
                                                                           list[tuple[float, float]], str]:
    """(rate, rate per CPU-second) of the daemon and of the raw loop, ``args.rounds`` interleaved rounds
    at max_batch_size ``batch``.

    Each round runs the raw loop for a quarter of ``args.n`` inferences, the daemon for ``args.n``, then
    the raw loop for another quarter; the round's raw rate is over both quarters (inferences over their
    summed time), so it brackets the daemon's run in time.
    """
    d = Daemon(path, args.backend, ["--max-batch-size", str(batch)], args.op_resolver, root, cpu, profile)
    try:
        c = Client(d.port, frames)
        c.window = args.window
        c.saturate(2000)  # warm-up
        rates, raws = [], []
        half = max(1, args.n // 4)
        for _ in range(args.rounds):  # raw, daemon, raw: both see the same machine load
            before = raw_rate(half)
            cpu0 = cpu_seconds(d.p.pid)
            rate = c.saturate(args.n)
            rates.append((rate, args.n / max(1e-9, cpu_seconds(d.p.pid) - cpu0)))
            after = raw_rate(half)
            raws.append((2 / (1 / before[0] + 1 / after[0]), 2 / (1 / before[1] + 1 / after[1])))
        c.sock.close()
    finally:
        d.stop()
    return rates, raws, d.info["batching"]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n"
                                        "  python -m benchmarks.daemon_throughput --rounds 3\n"
                                        "  python -m benchmarks.daemon_throughput --batch 1,32 --busy 2 --soak 0\n"
                                        "  python -m benchmarks.daemon_throughput --backend micro --n 2000 --batch 1 "
                                        "--busy 0 --latency-n 500 --soak 0\n"
                                        "  python -m benchmarks.daemon_throughput --batch 1 --busy 0 --soak 0 --json")
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
    ap.add_argument("--pin-cpu", default="auto",
                    help="CPU for the daemon (all its threads) and the raw Model.run loop; the client runs on the "
                         "others. auto (default): the highest CPU when there are two or more; none: no pinning")
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                    help="also measure with this many background CPU burners (unpinned; default one per CPU); "
                         "0: quiet rows only")
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds per setting, each raw loop / daemon / raw loop (medians over the rounds)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--profile", type=Path, default=None,
                    help="run the measured daemons under cProfile, one .pstats file per thread in this directory, "
                         "and print their costliest functions (slows the daemon: its rates are not comparable)")
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
    load_start = loadavg()

    opts = {} if args.op_resolver == "default" else {"op_resolver": args.op_resolver}
    model = edge_runtime.load(path, backend=args.backend, **opts)
    for i in range(200):
        model.run(x[i % 1000])

    everywhere = os.sched_getaffinity(0)
    cpu, client_cpus = pick_cpus(args.pin_cpu)
    os.sched_setaffinity(0, client_cpus)  # the client's threads

    def raw_rate(n: int) -> tuple[float, float]:
        """Model.run per second of wall time and per second of this thread's CPU time."""
        if cpu is not None:  # only this (the calling) thread moves to the daemon's CPU
            os.sched_setaffinity(0, {cpu})
        t, tc = time.perf_counter(), time.thread_time()
        for i in range(n):
            model.run(x[i % 1000])
        rate, cpu_rate = n / (time.perf_counter() - t), n / max(1e-9, time.thread_time() - tc)
        if cpu is not None:
            os.sched_setaffinity(0, client_cpus)
        return rate, cpu_rate

    rows = []
    best = 0.0
    best_batch = 1
    trees = [("", ROOT)] if args.baseline_root is None else [("baseline ", args.baseline_root.resolve()), ("", ROOT)]
    modes = [("quiet", 0)] + ([(f"busy ({args.busy} burner{'s' if args.busy > 1 else ''})", args.busy)]
                              if args.busy > 0 else [])
    for mode, burners in modes:
        burn = Burners(burners, everywhere)
        try:
            load_before = loadavg()
            b0, t0 = cpu_busy()
            for b in [int(v) for v in args.batch.split(",")]:
                for label, root in trees:
                    row_load = loadavg()
                    prefix = None
                    if args.profile is not None:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        prefix = args.profile / f"{label.strip() or 'this'}-{'busy' if burners else 'quiet'}-batch{b}"
                    rates, raws, how = measure(args, path, frames, raw_rate, b, root, cpu, prefix)
                    ratios = sorted(r[0] / w[0] for r, w in zip(rates, raws))
                    cpu_ratios = sorted(r[1] / w[1] for r, w in zip(rates, raws))
                    rate, raw = float(np.median([r[0] for r in rates])), float(np.median([w[0] for w in raws]))
                    rows.append({"mode": mode, "tree": label.strip() or "this", "max_batch_size": b,
                                 "batching": how, "daemon_per_s": rate, "raw_per_s": raw,
                                 "ratio": float(np.median(ratios)), "ratios": ratios,
                                 "cpu_ratio": float(np.median(cpu_ratios)), "cpu_ratios": cpu_ratios,
                                 "daemon_cpu_us": 1e6 / float(np.median([r[1] for r in rates])),
                                 "raw_cpu_us": 1e6 / float(np.median([w[1] for w in raws])),
                                 "row_load_before": row_load, "row_load_after": loadavg()})
                    if prefix is not None and not args.json:
                        print_profile(prefix)
                    if not label and not burners and rate > best:
                        best, best_batch = rate, b
            b1, t1 = cpu_busy()
            ncpu = os.cpu_count() or 1
            busy_cpus = (b1 - b0) / (t1 - t0) * ncpu if t1 > t0 else float("nan")
            for r in rows:
                if r["mode"] == mode:
                    r.update(load_before=load_before, load_after=loadavg(), cpus_busy=busy_cpus)
        finally:
            burn.stop()
    model.close()

    pinned = ("no pinning" if cpu is None else
              f"daemon and raw loop pinned to CPU {cpu}, client on CPU(s) {','.join(map(str, sorted(client_cpus)))}")
    head = (f"edge-runtime serve, {args.model} on {args.backend} ({args.op_resolver} kernels), TCP loopback, reply sink, "
            f"{os.cpu_count()} CPU(s), {pinned}, {args.n} inferences per daemon run, {args.rounds} rounds of "
            f"raw {args.n // 4} / daemon {args.n} / raw {args.n // 4}"
            + (f", busy: {args.busy} burner(s) pinned to CPU(s) {','.join(map(str, burner_cpus(args.busy, everywhere)))}"
               if args.busy > 0 else ""))
    if not args.json:
        print(f"\n{head}\n")
        print(f"| machine | max_batch_size (batching) | daemon results/s (median of {args.rounds}) "
              "| raw Model.run/s (median, interleaved) | median of per-round ratios | per-round ratios (sorted) "
              "| per CPU-second: median ratio (per round) | CPU µs per request: daemon / raw | load average before → after |")
        print("|---|---|---:|---:|---:|---|---|---:|---|")
        for r in rows:
            tree = "" if r["tree"] == "this" else f"{r['tree']} "
            print(f"| {tree}{r['mode']} | {r['max_batch_size']} ({r['batching']}) | {r['daemon_per_s']:,.0f} | "
                  f"{r['raw_per_s']:,.0f} | {r['ratio']:.1%} | {', '.join(f'{v:.0%}' for v in r['ratios'])} | "
                  f"{r['cpu_ratio']:.1%} ({', '.join(f'{v:.0%}' for v in r['cpu_ratios'])}) | "
                  f"{r['daemon_cpu_us']:.1f} / {r['raw_cpu_us']:.1f} | "
                  f"{r['row_load_before']:.2f} → {r['row_load_after']:.2f} |")
        print("\nper CPU-second: results per second of the daemon's on-CPU time (all its threads) against Model.run "
              "per second of the raw loop's thread CPU time; other processes' share of the CPU drops out of it")
        print(f"\n1-minute load average before the run: {load_start:.2f} (on {os.cpu_count()} CPUs)")
        for mode, _ in modes:
            r = next((r for r in rows if r["mode"] == mode), None)
            if r is not None:
                print(f"{mode}: load average {r['load_before']:.2f} before, {r['load_after']:.2f} after; "
                      f"CPUs busy while measuring (all processes, /proc/stat): {r['cpus_busy']:.2f} of {os.cpu_count()}")

    d = Daemon(path, args.backend, ["--max-batch-size", str(best_batch)], args.op_resolver, cpu=cpu)
    c = Client(d.port, frames)
    c.saturate(1000)
    load = best / 2
    paced = [framing.encode_frame(framing.DATA, i, x[i % 1000].tobytes()) for i in range(args.latency_n)]
    lat = np.array(c.paced(paced, load)) * 1e3
    latency = {"rate": load, "max_batch_size": best_batch, "n": len(lat), "p50_ms": float(np.percentile(lat, 50)),
               "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}
    if not args.json:
        print(f"\nlatency at 50% load ({load:,.0f} requests/s, max_batch_size {best_batch}, {len(lat)} requests): "
              f"p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms, max {latency['max_ms']:.3f} ms "
              "(client send to reply received)")

    soak: dict = {}
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
        soak = {"inferences": done, "rss_samples": samples, "growth_bytes": growth}
        if not args.json:
            print(f"\nsoak: {done:,} inferences; RSS after {warm:,} (warm-up) {rss0 / 2**20:.2f} MiB, at the end "
                  f"{samples[-1][1] / 2**20:.2f} MiB, growth {growth / 2**20:+.3f} MiB "
                  f"(max over the run {max(s for _, s in samples) / 2**20:.2f} MiB)")
            print("| inferences | RSS MiB |\n|---:|---:|")
            for n, r in samples:
                print(f"| {n:,} | {r / 2**20:.2f} |")
    c.sock.close()
    d.stop()
    if args.json:
        print(json.dumps({"setup": head, "load_start": load_start, "rows": rows, "latency": latency, "soak": soak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

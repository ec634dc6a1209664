"""The daemon's pipeline: results vs Model.run, overload policies, dynamic batching, memory budget,
postprocessors, health and metrics, systemd notify.

Reference for outputs: ``edge_runtime.load(..., backend="litert").run`` (LiteRT) on the same inputs.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.request

import numpy as np
import pytest
import yaml

import edge_runtime
from edge_runtime.daemon import framing, memory
from edge_runtime.daemon.config import ArgmaxPost, SmoothPost, ThresholdPost, TopKPost, load_config
from edge_runtime.daemon.postprocess import PostChain
from edge_runtime.model import TensorSpec
from test_daemon_support import KWS_LABELS, DaemonProc, env_for_subprocess, parse_prometheus, read_jsonl, wait_until


def write_config(tmp_path, model_path, **sections) -> str:
    cfg = {"model": {"path": str(model_path), "backend": "litert"}, "health": {"listen": "127.0.0.1:0"}}
    for k, v in sections.items():
        if k == "model":
            cfg["model"].update(v)
        else:
            cfg[k] = v
    p = tmp_path / "device.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def send_frames(port: int, x: np.ndarray, seqs) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(framing.encode_frame(framing.DATA, int(i), x[i].tobytes()) for i in seqs))
    return s


@pytest.fixture(scope="module")
def kws(kws01, mlperf_models):
    x = kws01[0][:200]
    path = mlperf_models / "kws_ref_model.tflite"
    return x, path


# -- postprocessors (reference: numpy on the dequantized output) -----------------

def test_argmax_topk_threshold_and_labels():
    spec = TensorSpec("out", (1, 4), np.dtype(np.int8), scale=1 / 256, zero_point=-128)
    chain = PostChain([ArgmaxPost(type="argmax", labels=list("abcd")), TopKPost(type="topk", k=2),
                       ThresholdPost(type="threshold", min_score=0.5, below_label="unsure")], spec)
    raw = np.array([[-128, 10, 100, -50]], dtype=np.int8)
    p = chain.apply(raw)
    scores = (raw.astype(np.float32) + 128) / 256
    assert p.label == "c" and p.label_index == 2 and p.score == pytest.approx(float(scores[0, 2]))
    assert [t["label"] for t in p.topk] == ["c", "b"]
    weak = chain.apply(np.array([[-128, -10, 0, -50]], dtype=np.int8))  # best 128/256 = 0.5: kept
    assert weak.label == "c"
    weaker = chain.apply(np.array([[-128, -10, -1, -50]], dtype=np.int8))
    assert weaker.label == "unsure" and weaker.label_index is None


def test_moving_average_smoothing_per_stream():
    spec = TensorSpec("out", (3,), np.dtype(np.float32))
    chain = PostChain([SmoothPost(type="smooth", window=3), ArgmaxPost(type="argmax")], spec)
    rng = np.random.default_rng(0)
    xs = rng.random((10, 3)).astype(np.float32)
    for i, x in enumerate(xs):
        p = chain.apply(x, stream="a")
        ref = xs[max(0, i - 2): i + 1].mean(axis=0)
        assert np.allclose(p.scores, ref, rtol=1e-6), i
        assert p.label_index == int(np.argmax(ref))
    other = chain.apply(xs[0], stream="b")  # a second device has its own window
    assert np.allclose(other.scores, xs[0])


def test_label_count_must_match_output():
    spec = TensorSpec("out", (1, 12), np.dtype(np.int8), scale=1 / 256, zero_point=-128)
    with pytest.raises(ValueError, match="3 labels given for an output of 12 values"):
        PostChain([ArgmaxPost(type="argmax", labels=["a", "b", "c"])], spec)


# -- results, overload, batching ---------------------------------------------------

def test_npy_file_results_equal_model_run(tmp_path, kws):
    x, path = kws
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.jsonl"
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", f"file:{tmp_path / 'x.npy'}",
                    "--sink", f"jsonl:{out}", "--labels", KWS_LABELS, "--max-batch-size", "4"])
    assert d.p.wait(120) == 0, d.stderr
    rows = read_jsonl(out)
    ref = edge_runtime.load(path, backend="litert")
    expected = np.stack([ref.run(x[i])[0].reshape(-1) for i in range(len(x))])
    assert [r["seq"] for r in rows] == list(range(len(x)))
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), expected)
    labels = KWS_LABELS.split(",")
    assert [r["label"] for r in rows] == [labels[i] for i in expected.argmax(axis=1)]


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "block"])
def test_overload_policies_count_what_they_drop(tmp_path, kws, policy):
    x, path = kws
    out = tmp_path / "r.jsonl"
    # LiteRT's reference kernels take milliseconds per KWS inference: 40 frames at once overload a queue of 4
    cfg = write_config(tmp_path, path, model={"options": {"op_resolver": "reference", "threads": 1}},
                       source={"type": "tcp", "port": 0}, sinks=[{"type": "jsonl", "path": str(out)}],
                       pipeline={"queue_size": 4, "overload": policy, "max_batch_size": 1})
    d = DaemonProc(["--config", cfg])
    try:
        d.wait_ready()
        s = send_frames(d.tcp_port, x, range(40))
        key = {"drop_newest": "dropped_newest", "drop_oldest": "dropped_oldest", "block": "blocked"}[policy]

        def settled():
            m = d.metrics()
            c = {k: m[f"edge_runtime_{k}_total"] for k in ("requests", "results", "dropped_newest", "dropped_oldest")}
            done = c["requests"] + c["dropped_newest"] == 40 and c["results"] == c["requests"] - c["dropped_oldest"]
            return (c, m) if done and m["edge_runtime_queue_depth"] == 0 else None

        c, m = wait_until(settled, what="the daemon to answer or drop all 40 frames")
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()
    seqs = [r["seq"] for r in read_jsonl(out)]
    assert m[f"edge_runtime_{key}_total"] > 0
    if policy == "block":
        assert seqs == list(range(40))
    elif policy == "drop_newest":
        assert len(seqs) + m["edge_runtime_dropped_newest_total"] == 40 and seqs[0] == 0
    else:
        assert len(seqs) + m["edge_runtime_dropped_oldest_total"] == 40 and seqs[-1] == 39
    assert seqs == sorted(seqs)


def test_dynamic_batching_waits_up_to_the_queue_delay(tmp_path, kws):
    x, path = kws
    cfg = write_config(tmp_path, path, source={"type": "tcp", "port": 0},
                       sinks=[{"type": "jsonl", "path": str(tmp_path / "r.jsonl")}],
                       pipeline={"max_batch_size": 8, "max_queue_delay_ms": 300})
    d = DaemonProc(["--config", cfg])
    try:
        d.wait_ready()
        s = send_frames(d.tcp_port, x, range(3))  # fewer than max_batch_size: one batch after the delay
        wait_until(lambda: d.counter("results") == 3, what="3 results")
        assert d.counter("batches") == 1
        s.sendall(b"".join(framing.encode_frame(framing.DATA, i, x[i].tobytes()) for i in range(3, 19)))
        wait_until(lambda: d.counter("results") == 19, what="19 results")
        assert d.counter("batches") in (3, 4)  # 16 more: two full batches of 8 (a third if a batch split)
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()


def test_memory_budget_caps_the_batch_and_refuses_start(tmp_path, kws):
    x, path = kws
    model = edge_runtime.load(path, backend="litert")
    cfg = load_config(None, {"model": {"path": str(path)}, "source": {"type": "tcp", "port": 0},
                             "pipeline": {"max_batch_size": 32}})
    free = memory.estimate(model, cfg, None)
    base = free.total - free.items["batch buffers"] - free.items["batched interpreter"]
    # per request in a batch: input and output buffers twice, plus the batched interpreter's arena
    per = 2 * (490 + 12 + memory.PER_ITEM_OVERHEAD) + free.items["arena"]
    budget = base + 3 * per + 10
    est = memory.check_budget(model, cfg, budget)
    assert est.max_batch == 3 and est.total <= budget
    d = DaemonProc(["--config", write_config(tmp_path, path, source={"type": "tcp", "port": 0},
                                             pipeline={"max_batch_size": 32}, memory_budget_bytes=budget)])
    try:
        assert d.wait_ready()["max_batch_size"] == 3
        assert d.stop() == 0
    finally:
        d.kill()
    small = DaemonProc(["--config", write_config(tmp_path, path, source={"type": "tcp", "port": 0},
                                                 memory_budget_bytes=100_000)])
    assert small.p.wait(60) == 3  # does not fit
    err = small.stderr
    assert "over budget by" in err and "100,000-byte budget" in err and "Traceback" not in err


def test_microcontroller_profile_is_refused(tmp_path, kws):
    _, path = kws
    d = DaemonProc(["--model", str(path), "--profile", "nrf52840", "--source", "tcp://127.0.0.1:0"])
    assert d.p.wait(60) == 1
    assert "profile 'nrf52840' cannot run the daemon" in d.stderr


# -- health, metrics, systemd -------------------------------------------------------

def test_health_and_metrics_over_tcp_and_unix_socket(tmp_path, kws):
    x, path = kws
    sock_path = tmp_path / "health.sock"
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--sink", f"jsonl:{tmp_path / 'r.jsonl'}", "--health", f"unix:{sock_path}"])
    try:
        d.wait_ready()
        s = send_frames(d.tcp_port, x, range(20))
        wait_until(lambda: len(read_jsonl(tmp_path / "r.jsonl")) == 20, what="20 results")
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.connect(str(sock_path))
        u.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := u.recv(65536):
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.0 200") and b"text/plain; version=0.0.4" in head
        m = parse_prometheus(body.decode())
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()
    assert m["edge_runtime_up"] == 1
    assert m["edge_runtime_results_total"] == 20 and m["edge_runtime_frames_received_total"] == 20
    assert m["edge_runtime_queue_depth"] == 0 and m["edge_runtime_queue_capacity"] == 64
    assert m["edge_runtime_rss_bytes"] > 10_000_000
    # latencies are Prometheus histograms (they add up across devices): cumulative buckets, sum and count
    assert m['edge_runtime_latency_seconds_bucket{le="+Inf"}'] == m["edge_runtime_latency_seconds_count"] == 20
    assert m["edge_runtime_latency_seconds_sum"] > 0
    buckets = [v for k, v in m.items() if k.startswith("edge_runtime_latency_seconds_bucket")]
    assert buckets == sorted(buckets)
    version = [k for k in m if k.startswith("edge_runtime_model_info{")]
    assert len(version) == 1 and 'backend="litert"' in version[0] and 'version="' in version[0]
    assert not sock_path.exists()  # removed on exit


def test_healthz_over_tcp(tmp_path, kws):
    _, path = kws
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--health", "127.0.0.1:0"])
    try:
        info = d.wait_ready()
        assert info["health"].startswith("127.0.0.1:") and info["source"].startswith("tcp://127.0.0.1:")
        with urllib.request.urlopen(f"http://{info['health']}/healthz", timeout=10) as r:
            assert r.status == 200 and r.read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{info['health']}/nothing", timeout=10)
        assert e.value.code == 404
        assert d.stop() == 0
    finally:
        d.kill()


def test_systemd_notify_ready_watchdog_stopping(tmp_path, kws):
    _, path = kws
    addr = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(addr)
    srv.settimeout(30)
    env = env_for_subprocess({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "200000"})
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", "tcp://127.0.0.1:0"], env=env)
    msgs = []
    try:
        d.wait_ready()
        while sum(1 for m in msgs if m == "WATCHDOG=1") < 3:
            msgs.append(srv.recv(4096).decode())
        assert d.stop() == 0
        srv.settimeout(5)
        while "STOPPING=1" not in msgs:
            msgs.append(srv.recv(4096).decode())
    finally:
        d.kill()
        srv.close()
    assert msgs[0].startswith("READY=1\nSTATUS=serving ") and f"MAINPID={d.p.pid}" in msgs[0]
    assert msgs.count("WATCHDOG=1") >= 3


def test_audio_preprocessing_per_link_matches_offline_features(tmp_path, shared, mlperf_models):
    """WAV chunks of 20 ms through the kws preset in the daemon give the same inputs, hence outputs,
    as the preset run offline on the whole recording (reference: build_preprocessor + LiteRT)."""
    import wave

    from edge_runtime.preprocess.base import iter_windows
    from edge_runtime.preprocess.config import build_preprocessor
    from test_daemon_support import run_sensor

    wav = shared / "models" / "mlperf_tiny" / "data" / "audio" / "short_wav_easy10s.wav"
    path = mlperf_models / "kws_ref_model.tflite"
    model = edge_runtime.load(path, backend="litert")
    with wave.open(str(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())[:, 0].copy()
    n_chunks = len(pcm) // 320
    stream = build_preprocessor("kws", input_spec=model.inputs[0])
    expected = [model.run(win.reshape(model.inputs[0].shape).copy())[0].reshape(-1)
                for end, win in iter_windows(stream, pcm[: n_chunks * 320], flush=False)]
    assert len(expected) >= 5
    out = tmp_path / "r.jsonl"
    d = DaemonProc(["--model", str(path), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--preprocess", "kws", "--sink", f"jsonl:{out}", "--sink", "reply", "--overload", "block"])
    try:
        d.wait_ready()
        summary, cp = run_sensor(["--port", f"tcp://127.0.0.1:{d.tcp_port}", "--wav", str(wav), "--chunk-ms", "20",
                                  "--wait-results", "2"])
        assert d.stop() == 0
    finally:
        d.kill()
    rows = read_jsonl(out)
    assert summary["frames_sent"] == n_chunks
    assert len(rows) == len(expected)
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), np.stack(expected))
    # each window's result carries the sequence number of the frame that completed it: one per second of audio
    assert all(b - a == 50 for a, b in zip([r["seq"] for r in rows], [r["seq"] for r in rows][1:]))


def test_batched_invoke_where_the_model_supports_a_batch_dimension(tmp_path, kws):
    """A model exposing run_batch gets whole batches in one call; outputs equal LiteRT per sample."""
    import asyncio

    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.daemon.pipeline import Daemon
    from edge_runtime.model import Model

    class BatchedLiteRT(Model):
        """LiteRT with its input resized to the batch (how a backend with a batch dimension behaves)."""

        def __init__(self, path, **_):
            base = edge_runtime.load(path, backend="litert")
            super().__init__(path=str(path), backend="litert", inputs=base.inputs, outputs=base.outputs)
            base.close()
            self.it = Interpreter(model_path=str(path))
            self.it.allocate_tensors()
            self.i = self.it.get_input_details()[0]["index"]
            self.o = self.it.get_output_details()[0]["index"]
            self.n, self.calls = 1, []

        def run_batch(self, stacked):
            b = stacked[0].shape[0]
            if b != self.n:
                self.it.resize_tensor_input(self.i, [b, *self.inputs[0].shape[1:]])
                self.it.allocate_tensors()
                self.n = b
            self.it.set_tensor(self.i, stacked[0])
            self.it.invoke()
            self.calls.append(b)
            return [self.it.get_tensor(self.o)]

        def _invoke(self, arrays):
            return [o[:1] for o in self.run_batch(arrays)]

    x, path = kws
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.jsonl"
    cfg = load_config(None, {"model": {"path": str(path)}, "source": {"type": "file", "path": str(tmp_path / "x.npy")},
                             "sinks": [{"type": "jsonl", "path": str(out)}],
                             "pipeline": {"max_batch_size": 8, "max_queue_delay_ms": 5}})
    made = []

    def loader(p, **kw):
        made.append(BatchedLiteRT(p))
        return made[-1]

    assert asyncio.run(Daemon(cfg, loader=loader, install_signals=False).run()) == 0
    rows = read_jsonl(out)
    ref = edge_runtime.load(path, backend="litert")
    expected = np.stack([ref.run(x[i])[0].reshape(-1) for i in range(len(x))])
    assert [r["seq"] for r in rows] == list(range(len(x)))
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), expected)
    assert max(made[0].calls) == 8 and sum(made[0].calls) >= len(x)  # (+1: the start-up check)


def test_serial_loop_url_source(tmp_path, kws):
    """pyserial's loop:// port: what is written comes back. (loop:// interleaves concurrent writers byte
    by byte, so the daemon's own writes, HELLO and replies, are off here.)"""
    import asyncio

    from edge_runtime.daemon.pipeline import Daemon

    x, path = kws
    out = tmp_path / "r.jsonl"
    cfg = load_config(None, {"model": {"path": str(path), "backend": "litert"},
                             "source": {"type": "serial", "port": "loop://", "hello": False},
                             "sinks": [{"type": "jsonl", "path": str(out)}]})

    async def scenario():
        d = Daemon(cfg, install_signals=False)
        task = asyncio.create_task(d.run())
        await asyncio.wait_for(d.ready.wait(), 30)
        data = b"\x00\x13junk" + b"".join(framing.encode_frame(framing.DATA, i, x[i].tobytes()) for i in range(10))
        await asyncio.to_thread(d.source.serial.write, data)  # off the loop: loop:// has a bounded buffer
        for _ in range(600):
            if d.metrics.counters["results"] == 10:
                break
            await asyncio.sleep(0.05)
        snap = d.metrics.snapshot()
        d.request_stop()
        return await task, snap

    rc, snap = asyncio.run(scenario())
    assert rc == 0
    assert snap["results"] == 10 and snap["frames_received"] == 10 and snap["frames_corrupt"] == 1
    rows = read_jsonl(out)
    ref = edge_runtime.load(path, backend="litert")
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8),
                          np.stack([ref.run(x[i])[0].reshape(-1) for i in range(10)]))


def test_onnx_model_with_a_dynamic_batch_axis(tmp_path):
    """An ONNX model ([-1, 1, 8, 8] -> [-1, 10]) is batched on its dynamic axis; each result equals
    ONNX Runtime's per-sample output (reference: edge_runtime.load(..., backend="onnx").run)."""
    from test_daemon_support import ROOT

    model_path = ROOT / "converters" / "data" / "digits_cnn.onnx"
    sample = ROOT / "converters" / "data" / "digits_sample.npz"
    if not model_path.exists() or not sample.exists():
        pytest.skip("the digits ONNX fixture of converters/data is not in this checkout")
    x = np.load(sample)["x"].astype(np.float32).reshape(-1, 1, 1, 8, 8)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.jsonl"
    d = DaemonProc(["--model", str(model_path), "--backend", "onnx", "--source", f"file:{tmp_path / 'x.npy'}",
                    "--sink", f"jsonl:{out}", "--max-batch-size", "8", "--max-queue-delay-ms", "20"])
    assert d.p.wait(120) == 0, d.stderr
    assert "dynamic batch axis, batches of 8" in d.stderr
    ref = edge_runtime.load(model_path, backend="onnx")
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(len(x)))
    for r in rows:
        expected = ref.run(x[r["seq"]])[0].reshape(-1)
        assert np.array_equal(np.array(r["raw"], dtype=np.float32), expected)
        assert r["label_index"] == int(np.argmax(expected))


def test_micro_backend_results_equal_edge_runtime_run(tmp_path, kws):
    """The pure-numpy micro backend through the daemon; reference: ``edge-runtime run --backend micro``."""
    import subprocess
    import sys

    from test_daemon_support import ROOT, env_for_subprocess

    x, path = kws
    np.save(tmp_path / "x.npy", x[:16])
    ref_cp = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "run", str(path), "--backend", "micro",
                             "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "ref.npy")],
                            cwd=ROOT, env=env_for_subprocess(), capture_output=True, timeout=300)
    if ref_cp.returncode != 0 and b"not available" in ref_cp.stderr:
        pytest.skip("the micro backend is not in this checkout")
    assert ref_cp.returncode == 0, ref_cp.stderr.decode()
    out = tmp_path / "r.jsonl"
    d = DaemonProc(["--model", str(path), "--backend", "micro", "--source", f"file:{tmp_path / 'x.npy'}",
                    "--sink", f"jsonl:{out}"])
    assert d.p.wait(300) == 0, d.stderr
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(16))
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), np.load(tmp_path / "ref.npy").reshape(16, -1))

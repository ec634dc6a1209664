"""Operations: hot reload (SIGHUP and file watch) and graceful shutdown (SIGTERM drains the queue).

Reference for outputs: ``edge_runtime.load(kws_ref_model.tflite, backend="litert").run`` (LiteRT).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket

import numpy as np
import pytest
import yaml

import edge_runtime
from edge_runtime.daemon import framing
from edge_runtime.daemon.model_slot import file_version
from test_daemon_support import DaemonProc, read_jsonl, wait_until


@pytest.fixture(scope="module")
def kws(kws01, mlperf_models):
    x = kws01[0][:100]
    path = mlperf_models / "kws_ref_model.tflite"
    model = edge_runtime.load(path, backend="litert")
    ref = np.stack([model.run(x[i])[0].reshape(-1) for i in range(len(x))])
    return x, ref, path


def _send(s: socket.socket, x: np.ndarray, seqs) -> None:
    s.sendall(b"".join(framing.encode_frame(framing.DATA, int(i), x[i].tobytes()) for i in seqs))


def _replace(dst, data: bytes) -> None:
    tmp = str(dst) + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dst)


def _renamed_copy(src) -> bytes:
    """The same network with one tensor renamed: valid, same inputs and outputs, a different file hash."""
    data = bytearray(open(src, "rb").read())
    i = data.find(b"input_1")
    assert i > 0
    data[i + 6] = ord("9")
    return bytes(data)


def test_sighup_reload_bad_model_keeps_serving_then_good_model_swaps(tmp_path, kws, mlperf_models):
    x, ref, src = kws
    model = tmp_path / "model.tflite"
    shutil.copy(src, model)
    out = tmp_path / "r.jsonl"
    d = DaemonProc(["--model", str(model), "--backend", "litert", "--source", "tcp://127.0.0.1:0",
                    "--sink", f"jsonl:{out}", "--health", "127.0.0.1:0"])
    try:
        d.wait_ready()
        v1 = file_version(str(model))
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=10)
        _send(s, x, range(0, 10))
        wait_until(lambda: d.counter("results") == 10, what="10 results")

        _replace(model, b"\x00garbage, not a model" * 50)  # a corrupt update
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reload_failures") == 1, what="the reload to fail")
        _send(s, x, range(10, 20))
        wait_until(lambda: d.counter("results") == 20, what="20 results")
        m = d.metrics()
        assert any(k.startswith("edge_runtime_last_reload_error_info{") and "model.tflite" in k for k in m)
        assert f'version="{v1}"' in next(k for k in m if k.startswith("edge_runtime_model_info{"))

        shutil.copy(mlperf_models / "vww_96_int8.tflite", model)  # valid, but takes other inputs
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reload_failures") == 2, what="the second reload to fail")

        _replace(model, _renamed_copy(src))  # a good update
        v2 = file_version(str(model))
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reloads") == 1, what="the reload to succeed")
        _send(s, x, range(20, 30))
        wait_until(lambda: d.counter("results") == 30, what="30 results")
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(30))
    assert {r["model_version"] for r in rows[:20]} == {v1}
    assert {r["model_version"] for r in rows[20:]} == {v2} and v2 != v1
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), ref[:30])
    assert "reload of" in d.stderr and "still serving version" in d.stderr
    # the reason of each refusal is reported: the loader's own message about the file, then the mismatch
    assert re.search(r"reload of \S+model\.tflite failed: \S+model\.tflite: .*still serving version " + v1, d.stderr)
    assert "the new model's input 'input_1_int8' is int8[1, 96, 96, 3]" in d.stderr


def test_watched_file_change_reloads(tmp_path, kws):
    x, ref, src = kws
    model = tmp_path / "model.tflite"
    shutil.copy(src, model)
    cfg = tmp_path / "device.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"path": str(model), "backend": "litert", "watch": True, "watch_interval_s": 0.2},
        "source": {"type": "tcp", "port": 0}, "health": {"listen": "127.0.0.1:0"},
        "sinks": [{"type": "jsonl", "path": str(tmp_path / "r.jsonl")}]}))
    d = DaemonProc(["--config", str(cfg)])
    try:
        d.wait_ready()
        _replace(model, _renamed_copy(src))
        wait_until(lambda: d.counter("reloads") == 1, what="the watcher to reload")
        v2 = file_version(str(model))
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=10)
        _send(s, x, range(5))
        wait_until(lambda: d.counter("results") == 5, what="5 results")
        s.close()
        assert d.stop() == 0
    finally:
        d.kill()
    rows = read_jsonl(tmp_path / "r.jsonl")
    assert {r["model_version"] for r in rows} == {v2}
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), ref[:5])


def test_sigterm_answers_all_100_queued_requests(tmp_path, kws):
    x, _ref, src = kws
    out = tmp_path / "r.jsonl"
    cfg = tmp_path / "device.yaml"
    # LiteRT's reference kernels: milliseconds per inference, so the 100 requests are still queued at SIGTERM
    cfg.write_text(yaml.safe_dump({
        "model": {"path": str(src), "backend": "litert", "options": {"op_resolver": "reference", "threads": 1}},
        "source": {"type": "tcp", "port": 0}, "health": {"listen": "127.0.0.1:0"},
        "sinks": [{"type": "jsonl", "path": str(out)}, {"type": "reply"}],
        "pipeline": {"queue_size": 128, "overload": "block", "max_batch_size": 1}}))
    ref = edge_runtime.load(src, backend="litert", op_resolver="reference", threads=1)
    expected = np.stack([ref.run(x[i])[0].reshape(-1) for i in range(100)])
    d = DaemonProc(["--config", str(cfg)])
    try:
        d.wait_ready()
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=30)
        _send(s, x, range(100))
        wait_until(lambda: d.counter("requests") == 100, what="all 100 requests admitted")
        answered_before = d.counter("results")
        d.signal(signal.SIGTERM)
        replies = []
        dec = framing.FrameDecoder()
        while data := s.recv(65536):  # the daemon answers everything, then closes the connection
            replies += [f for f in dec.feed(data) if f.kind == framing.RESULT]
        rc = d.p.wait(60)
    finally:
        d.kill()
    assert rc == 0, d.stderr
    print(f"\nSIGTERM: {100 - answered_before:.0f} of 100 requests still queued; answered {len(replies)} replies, exit {rc}")
    assert answered_before < 100  # work really was queued when SIGTERM arrived
    rows = read_jsonl(out)
    assert [r["seq"] for r in rows] == list(range(100))
    assert np.array_equal(np.array([r["raw"] for r in rows], dtype=np.int8), expected)
    assert [f.seq for f in replies] == list(range(100))
    assert all(framing.decode_result_payload(f.payload)[2] == expected[f.seq].tobytes() for f in replies)


def test_short_soak_rss_stays_flat(kws, tmp_path):
    """25,000 inferences: RSS (from /proc) after a 5,000 warm-up grows by less than 2 MB.
    The full 100,000-inference soak is in benchmarks/daemon_throughput.py."""
    import threading

    x, _ref, src = kws
    d = DaemonProc(["--model", str(src), "--backend", "litert", "--source", "tcp://127.0.0.1:0", "--sink", "reply",
                    "--overload", "block", "--health", "127.0.0.1:0"])
    frames = [framing.encode_frame(framing.DATA, i, x[i % len(x)].tobytes()) for i in range(500)]
    try:
        d.wait_ready()
        s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=60)
        got = [0]
        cv = threading.Condition()

        def reader():
            dec = framing.FrameDecoder()
            try:
                while data := s.recv(1 << 16):
                    n = sum(1 for f in dec.feed(data) if f.kind == framing.RESULT)
                    with cv:
                        got[0] += n
                        cv.notify_all()
            except OSError:
                pass  # the test closed the socket

        threading.Thread(target=reader, daemon=True).start()

        def run(n):  # n frames, at most 1,000 outstanding
            base = got[0]
            for sent in range(500, n + 1, 500):
                s.sendall(b"".join(frames))
                with cv:
                    assert cv.wait_for(lambda: got[0] >= base + sent - 1000, 60)
            with cv:
                assert cv.wait_for(lambda: got[0] >= base + n, 60)

        def rss():
            with open(f"/proc/{d.p.pid}/status") as f:
                return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))

        run(5000)
        before = rss()
        run(20000)
        after = rss()
        assert d.stop() == 0
        s.close()
    finally:
        d.kill()
    assert after - before < 2 * 2**20, f"RSS grew {after - before} bytes over 20,000 inferences"

"""[UX] SIGHUP re-reads the whole config: new sinks, topics and postprocessing apply; a bad config is refused.

Reference: the JSONL files the daemon writes, and /metrics.
"""
from __future__ import annotations

import signal
import socket

import yaml

from edge_runtime.daemon import framing
from test_daemon_support import DaemonProc, read_jsonl, wait_until


def _write(p, model, out, labels=None, port=0) -> None:
    cfg = {"model": {"path": str(model), "backend": "litert"}, "health": {"listen": "127.0.0.1:0"},
           "source": {"type": "tcp", "port": port}, "sinks": [{"type": "jsonl", "path": str(out)}]}
    if labels:
        cfg["model"]["labels"] = labels
    p.write_text(yaml.safe_dump(cfg))


def _send(port: int, x, seqs) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"".join(framing.encode_frame(framing.DATA, int(i), x[i].tobytes()) for i in seqs))
    s.close()


def test_sighup_applies_sinks_labels_and_refuses_a_bad_config(tmp_path, kws01, mlperf_models):
    model = mlperf_models / "kws_ref_model.tflite"
    x = kws01[0]
    cfg = tmp_path / "device.yaml"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(cfg, model, a)
    d = DaemonProc(["--config", str(cfg)])
    try:
        d.wait_ready()
        port = d.tcp_port
        _send(port, x, range(5))
        wait_until(lambda: len(read_jsonl(a)) == 5, what="5 results in a")
        labels = [f"class{i}" for i in range(12)]
        _write(cfg, model, b, labels=labels, port=port)  # same port: the source is kept
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reloads") == 1, what="the reload")
        _send(port, x, range(5, 10))
        wait_until(lambda: len(read_jsonl(b)) == 5, what="5 results in b")
        assert len(read_jsonl(a)) == 5
        assert all(r["label"] in labels for r in read_jsonl(b))
        cfg.write_text("model: [this is not\n")
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reload_failures") == 1, what="the refused reload")
        m = d.metrics()
        assert any(k.startswith("edge_runtime_last_reload_error_info") and "not valid YAML" in k for k in m)
        _send(port, x, range(10, 13))
        wait_until(lambda: len(read_jsonl(b)) == 8, what="the old config still serving")
        assert d.stop() == 0
    finally:
        d.kill()
    assert "config reload refused" in d.stderr and "Traceback" not in d.stderr


def test_sighup_moves_the_source_to_a_new_port(tmp_path, kws01, mlperf_models):
    model = mlperf_models / "kws_ref_model.tflite"
    x = kws01[0]
    cfg = tmp_path / "device.yaml"
    out = tmp_path / "r.jsonl"
    _write(cfg, model, out)
    d = DaemonProc(["--config", str(cfg)])
    try:
        d.wait_ready()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        new_port = s.getsockname()[1]
        s.close()
        _write(cfg, model, out, port=new_port)
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.counter("reloads") == 1, what="the reload")
        _send(new_port, x, range(4))
        wait_until(lambda: len(read_jsonl(out)) == 4, what="results through the new port")
        assert d.stop() == 0
    finally:
        d.kill()

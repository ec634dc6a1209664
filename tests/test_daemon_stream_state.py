"""[OPS] The daemon keeps one state per source stream for stateful models.

Two TCP devices feed the two-subgraph streaming model (resource variables + CALL_ONCE) of
tests/test_micro_stateful.py through one daemon; each device's results must equal that model run
on its own frames alone in a fresh interpreter (reference: micro's Model.run, which
tests/test_micro_stateful.py shows equal to tflite-micro's).
"""
from __future__ import annotations

import socket

import numpy as np
import pytest
import yaml
from test_daemon_support import DaemonProc, wait_until
from test_micro_stateful import streaming_model

from edge_runtime.backends.micro import open_model
from edge_runtime.daemon import framing
from edge_runtime.daemon.stream_state import is_stateful


@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_each_stream_has_its_own_state(tmp_path, backend):
    model = streaming_model(tmp_path / "s.tflite", "int8", rows=1, width=8, step=4, seed=3)
    assert is_stateful(str(model))
    rng = np.random.default_rng(0)
    frames = {dev: [rng.integers(-128, 128, (1, 4)).astype(np.int8) for _ in range(12)] for dev in ("a", "b")}
    expect = {}
    for dev, xs in frames.items():
        m = open_model(str(model))
        expect[dev] = [m.run([x])[0] for x in xs]
    cfg = {"model": {"path": str(model), "backend": backend}, "source": {"type": "tcp", "port": 0},
           "sinks": [{"type": "reply"}], "health": {"listen": "127.0.0.1:0"},
           "pipeline": {"max_batch_size": 4, "max_queue_delay_ms": 2}}
    p = tmp_path / "d.yaml"
    p.write_text(yaml.safe_dump(cfg))
    d = DaemonProc(["--config", str(p)])
    try:
        info = d.wait_ready()
        assert "per stream" in info["batching"]
        socks = {dev: socket.create_connection(("127.0.0.1", d.tcp_port), timeout=10) for dev in frames}
        for i in range(12):  # interleave the two devices' frames
            for dev, s in socks.items():
                s.sendall(framing.encode_frame(framing.DATA, i, frames[dev][i].tobytes()))
        for dev, s in socks.items():
            dec = framing.FrameDecoder()
            got: dict[int, bytes] = {}
            s.settimeout(10)
            while len(got) < 12:
                for f in dec.feed(s.recv(65536)):
                    if f.kind == framing.RESULT:
                        got[f.seq] = framing.decode_result_payload(f.payload)[2]
            for i in range(12):
                assert np.frombuffer(got[i], np.int8).tolist() == expect[dev][i].reshape(-1).tolist(), (dev, i)
            s.close()
        wait_until(lambda: d.metrics()["edge_runtime_streams"] == 2, what="two streams")
        assert d.stop() == 0
    finally:
        d.kill()


@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_memory_estimate_counts_one_instance_per_stream(tmp_path, backend):
    """A stateful model's per-stream instances are in the estimate; a budget that holds the shared model
    but not one instance per stream is refused at start-up with the stream count named as the cause."""
    import edge_runtime
    from edge_runtime.daemon import memory
    from edge_runtime.daemon.config import load_config
    from edge_runtime.daemon.stream_state import STREAMS_PER_LINK, max_streams

    model_path = streaming_model(tmp_path / "s.tflite", "int8", rows=1, width=64, step=4, seed=3)
    model = edge_runtime.load(str(model_path), backend=backend)
    cfg = load_config(None, {"model": {"path": str(model_path), "backend": backend},
                             "source": {"type": "tcp", "port": 0, "max_connections": 8},
                             "pipeline": {"max_batch_size": 1}})
    assert max_streams(cfg) == STREAMS_PER_LINK * 8
    est = memory.estimate(model, cfg, None)
    per_instance = est.items["arena"] + memory.instance_extra_bytes(model)
    assert est.items["arena"] > 0
    assert est.items["stream models"] == 16 * per_instance
    budget = est.total - est.items["stream models"] + per_instance  # room for one stream, not sixteen
    with pytest.raises(Exception) as info:
        memory.check_budget(model, cfg, budget)
    if est.items["stream models"] == max(est.items.values()):
        assert "lower source.max_connections" in str(info.value)
    fewer = load_config(None, {"model": {"path": str(model_path), "backend": backend},
                               "source": {"type": "tcp", "port": 0, "max_connections": 1}})
    assert memory.estimate(model, fewer, None).items["stream models"] == STREAMS_PER_LINK * per_instance
    model.close()


def test_stateless_models_have_no_stream_instances(tmp_path):
    """A stateless model shares one instance: nothing is added for streams."""
    from tflite_builder import T, build

    from edge_runtime.daemon import memory
    from edge_runtime.daemon.config import load_config

    path = build(tmp_path / "relu.tflite", "RELU", [T([1, 8], scale=0.1)], [T([1, 8], scale=0.1)])
    import edge_runtime
    model = edge_runtime.load(str(path), backend="micro")
    cfg = load_config(None, {"model": {"path": str(path)}, "source": {"type": "tcp", "port": 0}})
    assert "stream models" not in memory.estimate(model, cfg, None).items

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

from edge_runtime.backends.micro import open_model
from edge_runtime.daemon import framing
from edge_runtime.daemon.stream_state import is_stateful
from test_daemon_support import DaemonProc, wait_until
from test_micro_stateful import streaming_model


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

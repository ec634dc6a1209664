"""The daemon's per-request LiteRT path (issue #18): ``LiteRTModel._invoke_rows`` and the worker using it.

Requests are written straight into the interpreter's input buffer and each output copied straight into
one array per job. References: LiteRT itself through ``Model.run`` (set_tensor / invoke / get_tensor),
one request at a time; for the worker's fallback (a backend without the path) the fake model's own
outputs. Checked: equal outputs (bit-exact), one- and multi-input/output models, a job's outputs are
not overwritten by the next job, no view of the interpreter's buffers outlives a call (LiteRT's own
``invoke`` refuses to run while one does), and a refused request fails alone. Also: a source moved by a
config reload keeps the bulk admission of a read's samples (replies bit-exact with LiteRT's Model.run).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import edge_runtime
from edge_runtime.backends.litert import RowsFailed
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.daemon.pipeline import Daemon, Request


@pytest.fixture(scope="module")
def kws(mlperf_models: Path):
    model = edge_runtime.load(mlperf_models / "kws_ref_model.tflite", backend="litert")
    yield model
    model.close()


def _rows(x: np.ndarray) -> list[list[np.ndarray]]:
    return [[r] for r in x]


def test_rows_equal_model_run_one_request_at_a_time(kws, kws01) -> None:
    x = kws01[0][:40]
    times: list[float] = []
    outs = kws._invoke_rows(_rows(x), times)
    assert outs is not None and len(outs) == 1 and outs[0].shape == (40, 1, 12) and outs[0].dtype == np.int8
    ref = np.stack([kws.run(r)[0] for r in x])  # LiteRT's set_tensor/invoke/get_tensor
    assert np.array_equal(outs[0], ref)
    assert len(times) == 40 and all(t > 0 for t in times)


def test_payload_bytes_entries_equal_model_run_and_a_wrong_length_fails_alone(kws, kws01) -> None:
    x = kws01[0][:10]
    entries = [r.tobytes() if i % 3 else [r] for i, r in enumerate(x)]  # payloads (the fast path) and arrays
    outs = kws._invoke_rows(entries, [])
    assert np.array_equal(outs[0], np.stack([kws.run(r)[0] for r in x]))
    with pytest.raises(RowsFailed) as info:
        kws._invoke_rows([x[0].tobytes(), x[1].tobytes()[:-1]], [])
    assert info.value.done == 1 and "489 input bytes, the tensor takes 490" in str(info.value)
    assert np.array_equal(info.value.outputs[0], kws.run(x[0])[0][None])


def test_a_jobs_outputs_survive_the_next_job_and_model_run_still_works(kws, kws01) -> None:
    x = kws01[0]
    first = kws._invoke_rows(_rows(x[:20]), [])
    kept = first[0].copy()
    second = kws._invoke_rows(_rows(x[20:45]), [])
    assert np.array_equal(first[0], kept)  # not a view of the interpreter's output buffer
    assert not np.shares_memory(first[0], second[0])
    # LiteRT's invoke() raises "There is at least 1 reference to internal data" if a view survived
    assert np.array_equal(kws.run(x[3])[0], kept[3])
    assert np.array_equal(second[0][0], kws.run(x[20])[0])


def test_a_refused_request_stops_the_run_with_the_outputs_before_it(kws, kws01) -> None:
    x = kws01[0][:6]
    bad = [[r] for r in x[:3]] + [[x[3].astype(np.int16)]] + [[r] for r in x[4:]]
    with pytest.raises(RowsFailed) as info:
        kws._invoke_rows(bad, [])
    err = info.value
    assert err.done == 3 and "int16" in str(err) and "int8" in str(err)
    assert np.array_equal(err.outputs[0], np.stack([kws.run(r)[0] for r in x[:3]]))
    wrong_shape = [[x[0]], [x[1].reshape(1, 10, 49, 1)]]
    with pytest.raises(RowsFailed) as info:
        kws._invoke_rows(wrong_shape, [])
    assert info.value.done == 1 and "[1, 10, 49, 1]" in str(info.value)
    assert np.array_equal(kws.run(x[5])[0], kws._invoke_rows([[x[5]]], [])[0][0])  # no view left behind


def test_malformed_entries_fail_alone_at_their_index(kws, kws01) -> None:
    x = kws01[0][:3]
    for bad, why in (([], "0 input arrays, the model takes 1"), ([x[1], x[1]], "2 input arrays, the model takes 1"),
                     ([x[1].tolist()], "")):
        with pytest.raises(RowsFailed) as info:
            kws._invoke_rows([[x[0]], bad, [x[2]]], [])
        assert info.value.done == 1 and why in str(info.value)
        assert np.array_equal(info.value.outputs[0], kws.run(x[0])[0][None])


def test_closed_model_is_refused_in_one_line(mlperf_models: Path) -> None:
    model = edge_runtime.load(mlperf_models / "kws_ref_model.tflite", backend="litert")
    model.close()
    with pytest.raises(edge_runtime.errors.ConfigError, match="has been closed"):
        model._invoke_rows([[np.zeros((1, 49, 10, 1), np.int8)]], [])


@pytest.fixture(scope="module")
def two_in_two_out(tmp_path_factory) -> dict[str, Path]:
    """A float ONNX model p [1,4,6] + q [1,1,6] -> Relu -> MatMul, outputs y and s; converted to int8 .tflite + QDQ .onnx."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    from converters.pipeline import convert_model

    tmp = tmp_path_factory.mktemp("two")
    rng = np.random.default_rng(5)
    nodes = [h.make_node("Add", ["p", "q"], ["s"]), h.make_node("Relu", ["s"], ["r"]),
             h.make_node("MatMul", ["r", "w"], ["y"])]
    g = h.make_graph(nodes, "two", [h.make_tensor_value_info("p", TP.FLOAT, [1, 4, 6]),
                                    h.make_tensor_value_info("q", TP.FLOAT, [1, 1, 6])],
                     [h.make_tensor_value_info("y", TP.FLOAT, None), h.make_tensor_value_info("s", TP.FLOAT, None)],
                     [nh.from_array(rng.normal(0, 0.3, (6, 3)).astype(np.float32), "w")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    src = tmp / "two.onnx"
    onnx.save(m, str(src))
    calib = {"p": rng.normal(0, 1, (16, 1, 4, 6)).astype(np.float32),
             "q": rng.normal(0, 1, (16, 1, 1, 6)).astype(np.float32)}
    convert_model(src, "rpi4-4gb", calib, tmp / "out", plot=False, formats=("tflite", "onnx"))
    return {"tflite": next((tmp / "out").glob("*.tflite")), "onnx": next((tmp / "out").glob("*.onnx"))}


def _random_requests(model, n: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.integers(-128, 128, s.shape).astype(s.dtype) if np.dtype(s.dtype).kind == "i"
             else rng.normal(0, 1, s.shape).astype(s.dtype) for s in model.inputs] for _ in range(n)]


def test_multi_input_multi_output_rows_equal_model_run(two_in_two_out) -> None:
    model = edge_runtime.load(two_in_two_out["tflite"], backend="litert")
    try:
        assert len(model.inputs) == 2 and len(model.outputs) == 2
        reqs = _random_requests(model, 9)
        outs = model._invoke_rows(reqs, [])
        assert outs is not None and len(outs) == 2
        for i, arrays in enumerate(reqs):
            ref = model.run(arrays)
            for o, r in zip(outs, ref):
                assert np.array_equal(o[i], r)
        with pytest.raises(RowsFailed) as info:  # one input array where the model takes two
            model._invoke_rows([reqs[0], reqs[1][:1]], [])
        assert info.value.done == 1 and "1 input arrays, the model takes 2" in str(info.value)
    finally:
        model.close()


# -- the worker ---------------------------------------------------------------------------------------------


def _req(seq: int, arrays: list[np.ndarray]) -> Request:
    return Request(seq, Link("t", Metrics(), 1 << 16), arrays, 0.0)


def _worker(model: object) -> SimpleNamespace:
    loaded = SimpleNamespace(version="v1", batch=None, model=model)
    return SimpleNamespace(slot=SimpleNamespace(current=loaded), streams=None, _fast=None)


def test_worker_job_through_rows_equals_model_run_and_drops_only_the_bad_request(kws, kws01) -> None:
    x = kws01[0][:12]
    batches = [[_req(i, [x[i]])] for i in range(12)]
    batches[5] = [_req(5, [x[5].reshape(1, 10, 49, 1)])]  # refused by LiteRT: that request alone fails
    segs = Daemon._infer_job(_worker(kws), batches)
    assert [(s.batches, s.outputs is None) for s in segs] == [(5, False), (1, True), (6, False)]
    got = np.concatenate([segs[0].outputs[0], segs[2].outputs[0]])
    ref = np.stack([kws.run(x[i])[0] for i in range(12) if i != 5])
    assert np.array_equal(got, ref)
    assert len(segs[0].seconds) == 5 and len(segs[2].seconds) == 6


def _payload_worker(model: object, shape: tuple[int, ...], dtype: np.dtype) -> SimpleNamespace:
    w = _worker(model)
    w._fast = (np.dtype(dtype), tuple(shape))
    return w


@pytest.mark.parametrize("backend", ["litert", "micro"])
def test_worker_runs_fast_path_payloads_equal_to_model_run(mlperf_models, kws01, backend) -> None:
    model = edge_runtime.load(mlperf_models / "kws_ref_model.tflite", backend=backend)
    try:
        assert (getattr(model, "_invoke_rows", None) is not None) == (backend == "litert")
        x = kws01[0][:6]
        link = Link("t", Metrics(), 1 << 16)
        batches = [[Request(i, link, None, 0.0, r.tobytes())] for i, r in enumerate(x)]
        segs = Daemon._infer_job(_payload_worker(model, (1, 49, 10, 1), np.int8), batches)
        assert len(segs) == 1 and segs[0].batches == 6
        assert np.array_equal(segs[0].outputs[0], np.stack([model.run(r)[0] for r in x]))
    finally:
        model.close()


class _NoRows:
    """A backend without ``_invoke_rows`` (onnx, micro): output = input * 2; input 7 fails."""

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if int(arrays[0].reshape(-1)[0]) == 7:
            raise ValueError("bad input")
        return [arrays[0] * 2, arrays[0][..., :1]]


@pytest.mark.parametrize("bad_at", [None, 0, 3, 5])
def test_worker_fallback_keeps_outputs_before_and_after_a_failure(bad_at) -> None:
    values = [1, 2, 3, 4, 5, 6]
    if bad_at is not None:
        values[bad_at] = 7
    batches = [[_req(i, [np.full((1, 3), v, np.int8)])] for i, v in enumerate(values)]
    segs = Daemon._infer_job(_worker(_NoRows()), batches)
    good = [v for v in values if v != 7]
    assert sum(s.batches for s in segs) == 6
    assert sum(s.batches for s in segs if s.outputs is None) == (0 if bad_at is None else 1)
    got = np.concatenate([s.outputs[0] for s in segs if s.outputs is not None])
    assert np.array_equal(got[:, 0, 0], np.array(good) * 2)
    assert np.concatenate([s.outputs[1] for s in segs if s.outputs is not None]).shape == (len(good), 1, 1)
    # the failed request sits where it was in the job
    assert [s.outputs is None for s in segs] == (
        [False] if bad_at is None else [False] * (bad_at > 0) + [True] + [False] * (bad_at < 5))


@pytest.mark.parametrize("backend", ["onnx", "micro"])
def test_other_backends_serve_through_the_fallback_equal_to_model_run(two_in_two_out, backend) -> None:
    model = edge_runtime.load(two_in_two_out["onnx" if backend == "onnx" else "tflite"], backend=backend)
    try:
        assert getattr(model, "_invoke_rows", None) is None and len(model.inputs) == 2
        reqs = _random_requests(model, 5)
        segs = Daemon._infer_job(_worker(model), [[_req(i, r)] for i, r in enumerate(reqs)])
        assert len(segs) == 1 and segs[0].batches == 5 and len(segs[0].outputs) == len(model.outputs)
        for k, out in enumerate(segs[0].outputs):
            assert np.array_equal(out, np.stack([model.run(r)[k] for r in reqs]))
    finally:
        model.close()


def test_a_reloaded_source_keeps_the_bulk_admission_and_serves_equal_to_model_run(mlperf_models, kws01) -> None:
    """After SIGHUP moves the TCP source, a read's samples are still admitted at once (as at start-up)."""
    import asyncio
    import socket

    from edge_runtime.daemon import framing
    from edge_runtime.daemon.config import load_config

    path = mlperf_models / "kws_ref_model.tflite"

    def cfg(port: int):
        return load_config(None, {"model": {"path": str(path), "backend": "litert"},
                                  "source": {"type": "tcp", "port": port}, "sinks": [{"type": "reply"}]})

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    new_port = s.getsockname()[1]
    s.close()
    x = kws01[0][:20]

    async def run() -> list:
        d = Daemon(cfg(0), install_signals=False, reread=lambda: cfg(new_port))
        task = asyncio.ensure_future(d.run())
        await asyncio.wait_for(d.ready.wait(), 60)
        assert await d.reloader.reload("test")
        assert d.source.fast_submit_many == d.submit_many_nowait
        reader, writer = await asyncio.open_connection("127.0.0.1", new_port)
        writer.write(b"".join(framing.encode_frame(framing.DATA, i, r.tobytes()) for i, r in enumerate(x)))
        dec, got = framing.FrameDecoder(), []
        while len(got) < len(x):
            data = await asyncio.wait_for(reader.read(65536), 30)
            assert data
            got += [f for f in dec.decode(data) if f.kind == framing.RESULT]
        writer.close()
        d.request_stop()
        assert await asyncio.wait_for(task, 60) == 0
        return got

    got = asyncio.run(run())
    model = edge_runtime.load(path, backend="litert")
    try:
        assert [f.seq for f in got] == list(range(len(x)))
        for f, r in zip(got, x):
            assert framing.decode_result_payload(f.payload)[2] == model.run(r)[0].tobytes()  # bit-exact with LiteRT
    finally:
        model.close()


def test_models_whose_arena_may_move_take_the_safe_path(tmp_path: Path) -> None:
    """A model with a value-shaped op (RANGE) or a dynamic dimension beyond the batch gets no buffer views:
    ``_invoke_rows`` declines (None) and the caller's set_tensor/get_tensor path runs it."""
    from tflite_builder import T, build

    ranged = build(tmp_path / "range.tflite", "RANGE",
                   [T([], "float32"), T([], "float32", data=np.array(4, np.float32)),
                    T([], "float32", data=np.array(1, np.float32))], [T([1], "float32")])
    model = edge_runtime.load(ranged, backend="litert")
    try:
        assert model._invoke_rows([[np.array(0, np.float32)]], []) is None
        assert model._all_static is False
    finally:
        model.close()


def test_a_static_model_takes_the_view_path(kws, kws01) -> None:
    """KWS (batch signature -1, allocated as 1) is static: the rows path runs it."""
    assert kws._invoke_rows(_rows(kws01[0][:2]), []) is not None and kws._all_static is True

"""The daemon's throughput paths: in-place COBS decoding, the whole-frame fast path,
several batches per worker job, payload-joined batches, bulk latency recording."""
from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.daemon import framing
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import LatencyWindow, Metrics
from edge_runtime.daemon.pipeline import Daemon, Request


def _runs(rng: random.Random) -> bytes:
    """Bytes with zero-free runs around the COBS block limits (253, 254, 255) and zeros."""
    out = bytearray()
    for _ in range(rng.randrange(1, 6)):
        out += bytes(rng.randrange(1, 256) for _ in range(rng.choice([0, 1, 253, 254, 255, 300, 508])))
        out += b"\x00" * rng.randrange(0, 3)
    return bytes(out)


def test_cobs_decode_inverts_encode_at_block_limits() -> None:
    rng = random.Random(7)
    for _ in range(300):
        data = _runs(rng)
        enc = framing.cobs_encode(data)
        assert b"\x00" not in enc
        assert framing.cobs_decode(enc) == data


def test_cobs_decode_rejects_invalid_blocks() -> None:
    assert framing.cobs_decode(b"\x03ab\x00") is None  # a zero inside
    assert framing.cobs_decode(b"\x05ab") is None  # a code running past the end
    assert framing.cobs_decode(b"\xffab") is None  # a full block cut short


def test_bit_error_is_counted_corrupt_and_the_next_frame_still_decodes() -> None:
    good = framing.encode_frame(framing.DATA, 1, bytes(range(200)))
    bad = bytearray(framing.encode_frame(framing.DATA, 0, bytes(range(200))))
    bad[40] ^= 0x10
    dec = framing.FrameDecoder()
    frames = list(dec.feed(bytes(bad) + good))
    assert [f.seq for f in frames] == [1]
    assert dec.stats.corrupt == 1


def _link() -> tuple[Link, Metrics]:
    m = Metrics()
    return Link("t", m, 1 << 16), m


def test_whole_frame_after_an_unfinished_sample_counts_it_incomplete() -> None:
    link, m = _link()
    data = framing.encode_frame(framing.DATA, 0, b"ab", flags=framing.FIRST)
    data += framing.encode_frame(framing.DATA, 1, b"whole")
    data += framing.encode_frame(framing.DATA, 2, b"w2")
    assert list(link.samples(data)) == [(1, b"whole"), (2, b"w2")]
    assert m.counters["samples_incomplete"] == 1
    # fragments after whole frames still reassemble
    more = framing.encode_frame(framing.DATA, 3, b"x", flags=framing.FIRST)
    more += framing.encode_frame(framing.DATA, 4, b"y", flags=framing.LAST)
    assert list(link.samples(more)) == [(3, b"xy")]


def test_oversize_whole_frame_is_refused_by_the_fast_path() -> None:
    m = Metrics()
    link = Link("t", m, 1 << 10)
    link.reasm.max_bytes = 64  # the decoder lets the frame through, the reassembler must not
    assert list(link.samples(framing.encode_frame(framing.DATA, 0, b"z" * 100))) == []
    assert m.counters["samples_incomplete"] == 1


def test_latency_add_many_equals_one_by_one_across_the_wrap() -> None:
    a, b = LatencyWindow(16), LatencyWindow(16)
    vals = [float(i) for i in range(40)]
    for chunk in (vals[:5], vals[5:20], vals[20:21], vals[21:40]):
        a.add_many(chunk)
        for v in chunk:
            b.add(v)
    assert np.array_equal(a._buf, b._buf) and a._n == b._n and a._pos == b._pos
    c = LatencyWindow(4)
    c.add_many(vals)  # more than the window: the newest values are kept
    assert sorted(c._buf.tolist()) == vals[-4:]


def _fake(max_batch: int, items: list) -> SimpleNamespace:
    q: asyncio.Queue = asyncio.Queue(100)
    for it in items:
        q.put_nowait(it)
    return SimpleNamespace(q=q, max_batch=max_batch)


def _reqs(n: int, t0: float) -> list[Request]:
    link, _ = _link()
    return [Request(i, link, None, t0, b"") for i in range(n)]


def test_job_takes_full_batches_then_the_rest_only_without_delay() -> None:
    reqs = _reqs(11, 0.0)
    fake = _fake(4, reqs[4:])
    batches = [reqs[:4]]
    assert Daemon._more_batches(fake, batches, 0.0) is False
    assert [len(b) for b in batches] == [4, 4, 3]
    assert [r.seq for b in batches for r in b] == list(range(11))  # order kept


def test_job_of_single_requests_is_capped_and_big_batches_go_one_per_job() -> None:
    reqs = _reqs(100, 0.0)
    fake = _fake(1, reqs[1:])
    batches = [reqs[:1]]
    Daemon._more_batches(fake, batches, 0.0)
    assert len(batches) == 64 and all(len(b) == 1 for b in batches)
    fake = _fake(8, reqs[8:])
    batches = [reqs[:8]]
    Daemon._more_batches(fake, batches, 0.0)
    assert [len(b) for b in batches] == [8] * 8  # small batches share a job, up to 64 requests
    fake = _fake(64, reqs[64:])
    batches = [reqs[:64]]
    Daemon._more_batches(fake, batches, 0.0)
    assert [len(b) for b in batches] == [64]  # a batch of 64 or more goes alone


def test_job_leaves_a_partial_batch_that_is_still_inside_its_queue_delay() -> None:
    import time

    reqs = _reqs(11, time.perf_counter())
    fake = _fake(4, reqs[4:])
    batches = [reqs[:4]]
    Daemon._more_batches(fake, batches, 60.0)
    assert [len(b) for b in batches] == [4, 4]
    assert fake.q.qsize() == 3  # waits for its batch to fill or its delay to pass


def test_job_stops_at_the_end_marker() -> None:
    reqs = _reqs(6, 0.0)
    fake = _fake(4, reqs[4:] + [None])
    batches = [reqs[:4]]
    assert Daemon._more_batches(fake, batches, 0.0) is True
    assert [len(b) for b in batches] == [4, 2]


def test_payload_joined_batch_is_bit_exact_with_litert_per_sample(mlperf_models, kws01) -> None:
    import edge_runtime
    from edge_runtime.daemon.batching import make_batch_runner

    x = kws01[0]
    model = edge_runtime.load(mlperf_models / "kws_ref_model.tflite", backend="litert")
    try:
        runner, how = make_batch_runner(model, 8)
        assert runner is not None, how
        link, _ = _link()
        reqs = [Request(i, link, None, 0.0, x[i].tobytes()) for i in range(8)]
        # a mixed batch: some requests carry arrays, the others raw bytes
        mixed = [Request(i, link, [x[i]] if i % 2 else None, 0.0, None if i % 2 else x[i].tobytes())
                 for i in range(8, 16)]
        for batch, off in ((reqs, 0), (mixed, 8)):
            got = runner.run(batch)
            for i, outs in enumerate(got):
                ref = model.run(x[off + i])  # reference: LiteRT, one sample per invoke
                assert all(np.array_equal(a, b) for a, b in zip(ref, outs))
    finally:
        model.close()


@pytest.mark.parametrize("size_ok", [True, False])
def test_submit_nowait_takes_only_well_formed_samples(size_ok: bool) -> None:
    link, m = _link()
    fake = SimpleNamespace(q=asyncio.Queue(2), _fast=(np.dtype(np.int8), (1, 4)), _in_bytes=4,
                           max_batch=1, metrics=m)
    payload = b"\x01\x02\x03\x04" if size_ok else b"\x01\x02"
    assert Daemon.submit_nowait(fake, link, 5, payload) is size_ok
    assert m.counters["requests"] == int(size_ok) and link.inflight == int(size_ok)
    if size_ok:
        req = fake.q.get_nowait()
        # the payload as is (the worker copies it into the interpreter's input or views it as an array)
        assert req.seq == 5 and req.arrays is None and req.payload == payload
        fake.q.put_nowait(req)
        fake.q.put_nowait(req)
        assert Daemon.submit_nowait(fake, link, 6, payload) is False  # full queue: the overload policy decides


# -- the per-request fast path: frames, admission, worker segments, vectorized replies --------------


def _reference_parse(chunk: bytes, max_payload: int = 1 << 20):
    """The frame a chunk encodes, decoded step by step from the spec (docs/framing.md)."""
    import struct
    import zlib

    body = framing.cobs_decode(chunk)
    if body is None or len(body) < framing.OVERHEAD:
        return None
    version, kind, flags, _res, seq, length = struct.unpack_from("<BBBBII", body)
    if version != framing.VERSION or length != len(body) - framing.OVERHEAD or length > max_payload:
        return None
    if zlib.crc32(body[:-4]) != struct.unpack_from("<I", body, len(body) - 4)[0]:
        return None
    return (kind, flags, seq, body[12:12 + length])


def test_parse_chunk_agrees_with_the_spec_on_good_and_damaged_frames() -> None:
    rng = random.Random(3)
    seen = {"good": 0, "bad": 0}
    for _ in range(400):
        payload = _runs(rng)[: rng.choice([0, 5, 240, 490, 2000])]
        chunk = bytearray(framing.encode_frame(rng.choice([1, 2, 4]), rng.randrange(1 << 32), payload,
                                               rng.choice([1, 2, 3]))[1:-1])
        if rng.random() < 0.5:  # damage: flip, drop or add a (non-zero) byte
            i = rng.randrange(len(chunk))
            op = rng.randrange(3)
            if op == 0:
                chunk[i] = chunk[i] ^ rng.randrange(1, 256) or 1
            elif op == 1:
                del chunk[i]
            else:
                chunk.insert(i, rng.randrange(1, 256))
        ref = _reference_parse(bytes(chunk))
        got = framing.parse_chunk(bytes(chunk))
        assert (tuple(got) if got is not None else None) == ref
        seen["good" if ref is not None else "bad"] += 1
    assert seen["good"] > 150 and seen["bad"] > 100
    assert framing.parse_chunk(framing.encode_frame(framing.DATA, 1, b"x" * 64)[1:-1], max_payload=63) is None


@pytest.mark.parametrize("length", [0, 1, 18, 237, 238, 600])
def test_frames_encoded_together_equal_frames_encoded_one_by_one(length: int) -> None:
    rng = np.random.default_rng(length)
    n = 70
    payloads = rng.integers(0, 256, (n, length), dtype=np.uint8)
    payloads[rng.random((n, length)) < 0.3] = 0  # zeros everywhere, runs of every length
    seqs = [0, 255, 256, 65535, (1 << 32) - 1, 1 << 32] + rng.integers(0, 1 << 32, n - 6).tolist()
    got = framing.encode_frames_fixed(framing.RESULT, seqs, payloads)
    if framing.HEADER.size + length + framing.CRC.size >= 254:
        assert got is None  # a COBS block could fill up: the caller encodes frame by frame
        return
    assert got == b"".join(framing.encode_frame(framing.RESULT, s, payloads[i].tobytes()) for i, s in enumerate(seqs))
    assert [f.seq for f in framing.FrameDecoder().decode(got)] == [s & 0xFFFFFFFF for s in seqs]


def test_result_payloads_equal_the_one_by_one_encoding() -> None:
    index = np.array([3, -1, 0, 11])
    score = np.array([0.5, np.nan, 1e-3, 0.99609375], np.float32)
    raw = np.arange(48, dtype=np.uint8).reshape(4, 12)
    got = framing.encode_result_payloads(index, score, raw)
    for i in range(4):
        ref = framing.encode_result_payload(None if index[i] < 0 else int(index[i]), float(score[i]), raw[i].tobytes())
        assert got[i].tobytes() == ref


def test_label_scores_equal_apply_and_cover_only_argmax_threshold_chains() -> None:
    from edge_runtime.daemon.config import ArgmaxPost, SmoothPost, ThresholdPost, TopKPost
    from edge_runtime.daemon.postprocess import PostChain
    from edge_runtime.model import TensorSpec

    spec = TensorSpec("out", (1, 12), np.dtype(np.int8), scale=1 / 256, zero_point=-128)
    rng = np.random.default_rng(0)
    raw = rng.integers(-128, 128, (300, 1, 12), dtype=np.int8)
    raw[0, 0, :] = -128  # a tie: argmax takes the first
    raw[1, 0, :] = -128
    raw[1, 0, 4] = 0  # best score exactly 0.5: on the threshold, kept
    chains = [[ArgmaxPost(type="argmax")],
              [ArgmaxPost(type="argmax"), ThresholdPost(type="threshold", min_score=0.5)],
              [ArgmaxPost(type="argmax"), ThresholdPost(type="threshold", min_score=0.3),
               ThresholdPost(type="threshold", min_score=0.6, below_label="unsure")]]
    for steps in chains:
        chain = PostChain(steps, spec)
        assert chain.label_only
        index, score = chain.label_scores(raw)
        for i in range(len(raw)):
            p = chain.apply(raw[i])
            assert (-1 if p.label_index is None else p.label_index) == index[i]
            assert p.score == float(score[i])
    for steps in ([ArgmaxPost(type="argmax"), TopKPost(type="topk", k=2)],
                  [SmoothPost(type="smooth", window=3), ArgmaxPost(type="argmax")],
                  [ThresholdPost(type="threshold", min_score=0.5), ArgmaxPost(type="argmax")]):
        assert not PostChain(steps, spec).label_only  # these go through Result objects, as before


def test_emit_frames_writes_each_links_frames_in_order_and_counts_drops() -> None:
    from edge_runtime.daemon.sinks import ReplySink

    m = Metrics()
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    a = Link("a", m, 1 << 16, send=lambda d: got["a"].append(d) or True)
    b = Link("b", m, 1 << 16, send=lambda d: got["b"].append(d) or True)
    closed = Link("c", m, 1 << 16, send=lambda d: False)
    frames = [framing.encode_frame(framing.RESULT, i, bytes([i + 1]) * 18) for i in range(6)]
    sink = ReplySink(m)
    sink.emit_frames([a] * 6, b"".join(frames))
    assert got["a"] == [b"".join(frames)] and m.counters["reply_dropped"] == 0  # one write for one device
    got["a"].clear()
    sink.emit_frames([a, b, a, None, closed, b], b"".join(frames))
    assert got["a"] == [frames[0] + frames[2]] and got["b"] == [frames[1] + frames[5]]
    assert m.counters["reply_dropped"] == 2
    starts = [0]  # frames of different sizes
    odd = [framing.encode_frame(framing.RESULT, i, b"\x01" * (i * 7)) for i in range(3)]
    for f in odd:
        starts.append(starts[-1] + len(f))
    got["b"].clear()
    sink.emit_frames([b, a, b], b"".join(odd), starts)
    assert got["b"] == [odd[0] + odd[2]]


def test_submit_many_admits_in_order_up_to_room_and_the_first_bad_size() -> None:
    from edge_runtime.daemon.pipeline import RequestQueue

    async def run() -> None:
        for max_batch in (1, 8):
            link, m = _link()
            fake = SimpleNamespace(q=RequestQueue(5), _fast=(np.dtype(np.int8), (1, 4)), _in_bytes=4,
                                   max_batch=max_batch, metrics=m)
            samples = [(i, bytes([i, 0, 0, 0])) for i in range(4)] + [(4, b"\x01")] + [(5, b"\x05\x00\x00\x00")]
            assert Daemon.submit_many_nowait(fake, link, samples) == 4  # stops at the bad size
            assert Daemon.submit_many_nowait(fake, link, samples, 4) == 0  # submit() will NACK it
            assert Daemon.submit_many_nowait(fake, link, samples, 5) == 1
            assert Daemon.submit_many_nowait(fake, link, [(6, b"\x06\x00\x00\x00")]) == 0  # queue full
            assert m.counters["requests"] == 5 and link.inflight == 5
            reqs = fake.q.get_many_nowait(10)
            assert [r.seq for r in reqs] == [0, 1, 2, 3, 5] and len({r.t0 for r in reqs[:4]}) == 1
            for r in reqs:
                assert r.arrays is None and r.payload == dict(samples)[r.seq]  # payloads as they are

    asyncio.run(run())


def test_request_queue_bulk_calls_wake_the_batcher_and_blocked_sources() -> None:
    from edge_runtime.daemon.pipeline import RequestQueue

    async def run() -> None:
        q = RequestQueue(3)
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        q.put_many_nowait([1, 2])
        assert await asyncio.wait_for(getter, 1) == 1
        q.put_many_nowait([3, 4])
        putter = asyncio.ensure_future(q.put(5))  # the block policy waits for room
        await asyncio.sleep(0)
        assert not putter.done()
        assert q.get_many_nowait(2) == [2, 3]
        await asyncio.wait_for(putter, 1)
        assert q.get_many_nowait(10) == [4, 5] and q.empty()

    asyncio.run(run())


def test_job_of_single_requests_from_the_request_queue_stops_at_the_end_marker() -> None:
    from edge_runtime.daemon.pipeline import RequestQueue

    reqs = _reqs(10, 0.0)
    q = RequestQueue(100)
    q.put_many_nowait(reqs[1:5] + [None] + reqs[5:])
    batches = [reqs[:1]]
    assert Daemon._more_batches(SimpleNamespace(q=q, max_batch=1), batches, 0.0) is True
    assert [[r.seq for r in b] for b in batches] == [[0], [1], [2], [3], [4]]


def test_latency_add_many_buckets_and_total_equal_one_by_one() -> None:
    a, b = LatencyWindow(64), LatencyWindow(64)
    rng = np.random.default_rng(1)
    vals = (10.0 ** rng.uniform(-5, 1.5, 300)).tolist() + [0.0001, 0.00025, 10.0, 0.0]  # on bucket bounds too
    a.add_many(vals)
    for v in vals:
        b.add(v)
    assert a.bucket_counts == b.bucket_counts and a.count == b.count and a.total == b.total


def _serve_and_collect(model_path, x: np.ndarray, max_batch: int, sends: list[tuple[int, int, bytes]]) -> dict:
    """Run the daemon in this process with a TCP source and the reply sink; send ``(connection, seq,
    payload)`` frames over two connections (interleaved); return each connection's decoded replies."""
    from edge_runtime.daemon.config import load_config

    cfg = load_config(None, {"model": {"path": str(model_path), "backend": "litert"},
                             "source": {"type": "tcp", "port": 0}, "sinks": [{"type": "reply"}],
                             "pipeline": {"max_batch_size": max_batch, "max_queue_delay_ms": 0, "overload": "block",
                                          "queue_size": 16}})

    async def run() -> dict:
        d = Daemon(cfg, install_signals=False)
        task = asyncio.ensure_future(d.run())
        await asyncio.wait_for(d.ready.wait(), 60)
        port = int(d.source.address.rsplit(":", 1)[1])
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        want = [sum(1 for c, _, _ in sends if c == k) for k in range(2)]
        got: dict = {0: [], 1: []}

        async def read(k: int) -> None:
            dec = framing.FrameDecoder()
            while len(got[k]) < want[k]:
                data = await conns[k][0].read(65536)
                assert data, "connection closed early"
                got[k] += [f for f in dec.decode(data) if f.kind in (framing.RESULT, framing.NACK)]

        readers = [asyncio.ensure_future(read(k)) for k in range(2)]
        for c, seq, payload in sends:
            conns[c][1].write(framing.encode_frame(framing.DATA, seq, payload))
        await asyncio.wait_for(asyncio.gather(*readers), 60)
        snap = d.metrics.snapshot()
        for _, w in conns:
            w.close()
        d.request_stop()
        assert await asyncio.wait_for(task, 60) == 0
        return {"replies": got, "metrics": snap, "batching": d.batching}

    return asyncio.run(run())


@pytest.mark.parametrize("max_batch", [1, 8])
def test_fast_path_replies_equal_model_run_for_every_request_in_order(mlperf_models, kws01, max_batch: int) -> None:
    import edge_runtime

    x = kws01[0][:141]  # 8 * 17 + 5: full batches of 8 and a partial one
    path = mlperf_models / "kws_ref_model.tflite"
    sends = [(i % 2, 1000 + i, x[i].tobytes()) for i in range(len(x))]
    sends.insert(50, (1, 7, b"\x01\x02\x03"))  # a bad size among them: a NACK, as before
    out = _serve_and_collect(path, x, max_batch, sends)
    model = edge_runtime.load(path, backend="litert")
    try:
        spec = model.outputs[0]
        for k in range(2):
            nacks = [f for f in out["replies"][k] if f.kind == framing.NACK]  # sent at once, at admission
            replies = [f for f in out["replies"][k] if f.kind == framing.RESULT]
            expect = [(seq, p) for c, seq, p in sends if c == k and len(p) == 490]
            assert [f.seq for f in replies] == [seq for seq, _ in expect]  # every request, in order
            assert [(f.seq, framing.decode_nack_payload(f.payload)) for f in nacks] == (
                [(7, (framing.NACK_BAD_SIZE, "3 bytes; the model input takes 490"))] if k == 1 else [])
            for f, (seq, payload) in zip(replies, expect):
                ref = model.run(np.frombuffer(payload, np.int8).reshape(1, 49, 10, 1))[0]
                label, score, raw = framing.decode_result_payload(f.payload)
                assert raw == ref.tobytes()  # bit-exact with LiteRT run one request at a time
                scores = spec.dequantize(ref).reshape(-1)
                assert label == int(np.argmax(scores)) and score == float(scores[label])
    finally:
        model.close()
    m = out["metrics"]
    assert m["requests"] == m["inferences"] == m["results"] == len(x)
    assert m["samples_bad"] == 1 and m["nacks_sent"] == 1 and m["reply_dropped"] == 0
    if max_batch == 1:
        assert m["batches"] == len(x)
    else:
        assert "batched interpreter" in out["batching"] and m["batches"] < len(x)

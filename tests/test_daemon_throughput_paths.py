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
    assert [len(b) for b in batches] == [8]


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
        assert req.seq == 5 and np.array_equal(req.arrays[0], np.array([[1, 2, 3, 4]], np.int8))
        fake.q.put_nowait(req)
        fake.q.put_nowait(req)
        assert Daemon.submit_nowait(fake, link, 6, payload) is False  # full queue: the overload policy decides

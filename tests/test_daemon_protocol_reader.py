"""The daemon's per-request read path: the split-based frame decoder, the link's read of whole and
reassembled frames and the protocol-based TCP reader, each against a step-by-step reference.

References: the framing spec (docs/framing.md: frames are the runs between 0x00 delimiters; a run
longer than any frame is dropped and counted once), ``SequenceTracker.see`` / ``Reassembler.idle`` /
``Reassembler.add`` applied frame by frame, and ``LatencyWindow.add`` one value at a time.
"""
from __future__ import annotations

import asyncio
import random

import pytest

from edge_runtime.daemon import framing
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import LatencyWindow, Metrics
from edge_runtime.daemon.sources import TcpSource

MAX_PAYLOAD = 600


def _stream(rng: random.Random, n: int = 120) -> tuple[bytes, list[bytes]]:
    """Frames of every kind (with gaps, repeats, fragments, HELLOs), garbage, damaged frames, oversize
    runs and idle zeros; the stream ends with a delimiter. Also the good frames' payloads."""
    out = bytearray()
    seq = rng.randrange(1 << 32)
    for _ in range(n):
        r = rng.random()
        if r < 0.55:  # a whole DATA frame, usually the next sequence number
            seq = (seq + rng.choice([1, 1, 1, 1, 0, 2, 5, -3])) & 0xFFFFFFFF
            size = rng.choice([0, 1, 13, 240, 253, 254, 490, MAX_PAYLOAD])
            payload = bytes(rng.choice([0, 1, 255, rng.randrange(256)]) for _ in range(size))
            out += framing.encode_frame(framing.DATA, seq, payload)
        elif r < 0.65:  # a fragmented sample (sometimes cut short)
            parts = rng.randrange(2, 4)
            for k in range(parts):
                flags = (framing.FIRST if k == 0 else 0) | (framing.LAST if k == parts - 1 else 0)
                seq = (seq + 1) & 0xFFFFFFFF
                if rng.random() < 0.9:
                    out += framing.encode_frame(framing.DATA, seq, bytes(rng.randrange(1, 256) for _ in range(30)), flags)
        elif r < 0.66:  # a sample abandoned after its first fragment, then a whole frame right after it
            for flags in (framing.FIRST, framing.WHOLE):
                seq = (seq + 1) & 0xFFFFFFFF
                out += framing.encode_frame(framing.DATA, seq, b"abandoned" if flags == framing.FIRST else b"whole", flags)
        elif r < 0.7:  # a device HELLO restarting the numbering, or our own kinds echoed back
            seq = rng.randrange(1 << 32)
            kind = rng.choice([framing.HELLO, framing.RESULT, framing.NACK])
            out += framing.encode_frame(kind, seq, framing.DEVICE_HELLO if kind == framing.HELLO else b"x")
            seq = (seq - 1) & 0xFFFFFFFF
        elif r < 0.8:  # a damaged frame
            bad = bytearray(framing.encode_frame(framing.DATA, seq, bytes(rng.randrange(256) for _ in range(40))))
            bad[rng.randrange(1, len(bad) - 1)] ^= rng.randrange(1, 256) or 1
            out += bad
        elif r < 0.87:  # garbage without delimiters, sometimes longer than any frame
            out += bytes(rng.randrange(1, 256) for _ in range(rng.choice([3, 200, 2000])))
        else:  # idle fill
            out += b"\x00" * rng.randrange(1, 4)
    out += b"\x00"
    return bytes(out), []


def _reference_frames(stream: bytes, max_payload: int) -> tuple[list[tuple], dict[str, int]]:
    """Frames and counters of a whole stream ending in a delimiter, run by run (the spec)."""
    dec = framing.FrameDecoder(max_payload)
    limit = dec._max_encoded
    frames, st = [], {"frames": 0, "corrupt": 0, "oversize": 0, "bytes_dropped": 0}
    for run in stream.split(b"\x00")[:-1]:
        if not run:
            continue
        if len(run) > limit:
            st["oversize"] += 1
            st["bytes_dropped"] += len(run)
            continue
        body = framing.cobs_decode(run)
        f = None
        if body is not None and len(body) >= framing.OVERHEAD:
            version, kind, flags, _r, seq, length = framing.HEADER.unpack_from(body)
            if version == framing.VERSION and length == len(body) - framing.OVERHEAD and length <= max_payload and \
                    framing.zlib.crc32(body[:-4]) == framing.CRC.unpack_from(body, len(body) - 4)[0]:
                f = (kind, flags, seq, body[12:12 + length])
        if f is None:
            st["corrupt"] += 1
            st["bytes_dropped"] += len(run)
        else:
            st["frames"] += 1
            frames.append(f)
    return frames, st


def _cuts(rng: random.Random, total: int) -> list[int]:
    """Chunk boundaries: single bytes, odd sizes and reads of up to 16 KiB."""
    cuts, at = [], 0
    while at < total:
        at += rng.choice([1, 2, 7, 509, 510, 511, 4096, 16384])
        cuts.append(min(at, total))
    return cuts


@pytest.mark.parametrize("seed", range(6))
def test_decoder_gives_the_spec_frames_and_counters_at_any_chunk_boundaries(seed: int) -> None:
    rng = random.Random(seed)
    stream, _ = _stream(rng)
    want, want_st = _reference_frames(stream, MAX_PAYLOAD)
    assert want_st["oversize"] and want_st["corrupt"] and len(want) > 40  # the stream exercises every path
    dec = framing.FrameDecoder(MAX_PAYLOAD)
    got, start = [], 0
    for end in _cuts(rng, len(stream)):
        got += [tuple(f) for f in dec.decode(stream[start:end])]
        start = end
    assert got == want
    st = dec.stats
    assert (st.frames, st.corrupt, st.oversize, st.bytes_dropped) == \
        (want_st["frames"], want_st["corrupt"], want_st["oversize"], want_st["bytes_dropped"])
    assert st.bytes_in == len(stream) and dec.buffered_bytes == 0


def test_decoder_drops_a_run_longer_than_a_frame_once_however_it_arrives() -> None:
    good = framing.encode_frame(framing.DATA, 3, b"ok")
    run = b"\x07" * 5000
    for step in (1, 100, 4999, 5001, 10_000):
        dec = framing.FrameDecoder(max_payload=64)
        data = b"\x00" + run + good
        frames = []
        for i in range(0, len(data), step):
            frames += dec.decode(data[i:i + step])
        assert [f.payload for f in frames] == [b"ok"]
        assert dec.stats.oversize == 1 and dec.stats.bytes_dropped == 5000 and dec.stats.corrupt == 0


def _reference_samples(frames: list[tuple], tracker: framing.SequenceTracker,
                       reasm: framing.Reassembler) -> list[tuple[int, bytes]]:
    """Every frame through SequenceTracker.see and Reassembler.idle / add, one by one."""
    out = []
    for kind, flags, seq, payload in frames:
        f = framing.Frame(kind, flags, seq, payload)
        if kind != framing.DATA:
            if kind == framing.HELLO and payload == framing.DEVICE_HELLO:
                tracker.start_at(seq)
            continue
        if not tracker.see(seq):
            continue
        if flags == framing.WHOLE and reasm.idle(f):
            out.append((seq, payload))
            continue
        sample = reasm.add(f)
        if sample is not None:
            out.append(sample)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_link_whole_frames_equal_the_tracker_and_reassembler_frame_by_frame(seed: int) -> None:
    rng = random.Random(100 + seed)
    stream, _ = _stream(rng, 200)
    dec, tracker, reasm = framing.FrameDecoder(MAX_PAYLOAD), framing.SequenceTracker(), framing.Reassembler(300)
    m = Metrics()
    link = Link("t", m, MAX_PAYLOAD)
    link.reasm.max_bytes = 300  # some whole frames exceed it
    data_frames, total, start = 0, 0, 0
    for end in _cuts(rng, len(stream)):  # after every read: the same samples and the same state
        frames = [tuple(f) for f in dec.decode(stream[start:end])]
        want = _reference_samples(frames, tracker, reasm)
        assert link.samples(stream[start:end]) == want
        start = end
        total += len(want)
        data_frames += sum(1 for f in frames if f[0] == framing.DATA)
        assert (link.tracker.expected, link.tracker.lost, link.tracker.restarts, link.tracker.duplicates) == \
            (tracker.expected, tracker.lost, tracker.restarts, tracker.duplicates)
        assert (link.reasm.incomplete, link.reasm._first_seq, link.reasm.buffered_bytes) == \
            (reasm.incomplete, reasm._first_seq, reasm.buffered_bytes)
        c = m.counters
        assert (c["frames_lost"], c["frames_duplicate"], c["samples_incomplete"], c["frames_received"]) == \
            (tracker.lost, tracker.duplicates, reasm.incomplete, data_frames)
    assert total > 40


@pytest.mark.parametrize("vals", [
    [0.0011 + i * 1e-6 for i in range(40)],  # all in the (0.001, 0.0025] bucket
    [0.004 - i * 1e-4 for i in range(40)],  # falling (a job's requests from older reads first), 3 buckets
    [0.001, 0.0025, 0.005] * 6 + [0.0010000001, 1e-5, 20.0, 0.5] * 5,  # on the bounds, below and above all
])
def test_latency_add_many_equals_one_by_one(vals: list[float]) -> None:
    a, b = LatencyWindow(32), LatencyWindow(32)
    a.add_many(vals)
    for v in vals:
        b.add(v)
    assert a.bucket_counts == b.bucket_counts and a.total == b.total and a.count == b.count
    assert (a._buf == b._buf).all() and a._pos == b._pos and a._n == b._n


async def _serve(fast_ok, held: asyncio.Event, chunks: list[bytes], want: int):
    """A TcpSource whose pipeline admits without waiting when ``fast_ok(seq)``; other samples wait for
    ``held``. Sends ``chunks`` (then EOF) and returns (admitted in order, metrics, paused-while-held)."""
    admitted: list[tuple[int, bytes]] = []
    m = Metrics()
    src = TcpSource("127.0.0.1", 0, idle_timeout_s=30)
    waiting: list[int] = []

    async def submit(link, seq, payload):
        waiting.append(seq)
        await held.wait()
        admitted.append((seq, payload))

    def fast(link, seq, payload):
        if fast_ok(seq):
            admitted.append((seq, payload))
            return True
        return False

    src.fast_submit = fast
    await src.start(submit, m, MAX_PAYLOAD)
    port = int(src.address.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for c in chunks:
        writer.write(c)
        await writer.drain()
    writer.write_eof()
    for _ in range(200):
        if waiting or len(admitted) >= want:
            break
        await asyncio.sleep(0.01)
    paused = list(admitted)
    held.set()
    for _ in range(300):
        if len(admitted) >= want:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    writer.close()
    await src.stop()
    await src.close()
    return admitted, m, paused


def test_tcp_reader_admits_samples_in_order_across_any_chunking_and_a_wait() -> None:
    rng = random.Random(5)
    payloads = [bytes(rng.randrange(256) for _ in range(490)) for _ in range(300)]
    data = b"\x00\x00garbage" + b"".join(framing.encode_frame(framing.DATA, i, p) for i, p in enumerate(payloads))
    chunks, start = [], 0
    for end in _cuts(rng, len(data)):
        chunks.append(data[start:end])
        start = end
    held = asyncio.Event()
    admitted, m, paused = asyncio.run(_serve(lambda seq: seq != 120, held, chunks, len(payloads)))
    assert admitted == list(enumerate(payloads))  # every sample, in order, the waiting one in its place
    assert [s for s, _ in paused] == list(range(120))  # nothing after it was admitted while it waited
    c = m.counters
    assert c["frames_received"] == 300 and c["frames_corrupt"] == 1 and c["connections"] == 1


def test_tcp_reader_counts_an_oversize_run_and_keeps_the_link() -> None:
    good = [framing.encode_frame(framing.DATA, i, b"s%d" % i) for i in range(3)]
    chunks = [good[0], b"\x05" * (MAX_PAYLOAD * 3), good[1] + good[2]]
    admitted, m, _ = asyncio.run(_serve(lambda seq: True, asyncio.Event(), chunks, 3))
    assert admitted == [(0, b"s0"), (1, b"s1"), (2, b"s2")]
    assert m.counters["frames_oversize"] == 1


@pytest.mark.parametrize("k", [1, 12, 200])
def test_result_frames_from_reused_rows_equal_frames_encoded_one_by_one(k: int) -> None:
    import numpy as np

    rng = np.random.default_rng(k)
    for n in (300, 7, 256, 1, 64):  # more than the rows hold, then fewer: nothing of a call leaks into the next
        raw = rng.integers(0, 256, (n, k), dtype=np.uint8)
        raw[rng.random((n, k)) < 0.3] = 0
        index = rng.integers(-1, 300, n)
        score = rng.standard_normal(n).astype(np.float32)
        score[::5] = 0.0
        seqs = [(1 << 32) + 5, 0, 255, 65536] + rng.integers(0, 1 << 32, n).tolist()
        seqs = seqs[:n]
        got = framing.encode_results_fixed(seqs, index, score, raw)
        want = b"".join(framing.encode_frame(framing.RESULT, s, framing.encode_result_payload(
            None if index[i] < 0 else int(index[i]), float(score[i]), raw[i].tobytes())) for i, s in enumerate(seqs))
        if framing.HEADER.size + framing.RESULT_HEAD.size + k + framing.CRC.size >= 254:
            assert got is None
        else:
            assert got == want

"""The daemon's per-request fast paths of issue #18, each against an independent reference:
table CRC-32 (zlib), RESULT frames written straight into their bodies (encode_frame one by one),
the decoder's inlined whole-chunk path (parse_chunk on every chunk), the link's inlined
sequence/reassembly step (the counters of the slow path), argmax on raw outputs (apply()),
and the benchmark's pinned burners."""
from __future__ import annotations

import random
import zlib

import numpy as np
import pytest

from edge_runtime.daemon import framing
from edge_runtime.daemon.config import ArgmaxPost, ThresholdPost
from edge_runtime.daemon.link import Link
from edge_runtime.daemon.metrics import Metrics
from edge_runtime.daemon.postprocess import PostChain
from edge_runtime.model import TensorSpec


@pytest.mark.parametrize("length", [0, 1, 4, 30, 249])
def test_crc32_rows_equals_zlib_row_by_row(length: int) -> None:
    rng = np.random.default_rng(length)
    rows = rng.integers(0, 256, (50, length), dtype=np.uint8)
    rows[rng.random(rows.shape) < 0.3] = 0
    rows[0] = 0
    rows[1] = 255
    got = framing.crc32_rows(rows)
    assert got.dtype == np.uint32
    assert got.tolist() == [zlib.crc32(r.tobytes()) for r in rows]


def test_crc32_rows_of_a_strided_view_equals_zlib() -> None:
    base = np.random.default_rng(1).integers(0, 256, (20, 40), dtype=np.uint8)
    view = base[:, 3:31]  # rows that are not contiguous in memory, as in the frame buffer
    assert framing.crc32_rows(view).tolist() == [zlib.crc32(r.tobytes()) for r in view]


@pytest.mark.parametrize("k", [0, 1, 12, 231])
def test_result_frames_written_in_place_equal_frames_encoded_one_by_one(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 67
    raw = rng.integers(0, 256, (n, k), dtype=np.uint8)
    raw[rng.random(raw.shape) < 0.4] = 0
    index = rng.integers(-1, 400, n)
    index[:3] = [-1, 0, 32767]
    score = rng.standard_normal(n).astype(np.float32)
    score[:4] = [np.nan, np.inf, -0.0, 0.0]
    seqs = [0, 255, (1 << 32) - 1, 1 << 32] + rng.integers(0, 1 << 32, n - 4).tolist()
    got = framing.encode_results_fixed(seqs, index, score, raw)
    if framing.HEADER.size + framing.RESULT_HEAD.size + k + framing.CRC.size >= 254:
        assert got is None  # long outputs: the caller encodes frame by frame
        return
    ref = b"".join(framing.encode_frame(framing.RESULT, s, framing.encode_result_payload(
        None if index[i] < 0 else int(index[i]), float(score[i]), raw[i].tobytes())) for i, s in enumerate(seqs))
    assert got == ref
    frames = framing.FrameDecoder().decode(got)
    assert [f.seq for f in frames] == [s & 0xFFFFFFFF for s in seqs]


def test_no_results_encode_to_no_bytes() -> None:
    empty = np.zeros((0, 12), np.uint8)
    assert framing.encode_results_fixed([], np.zeros(0, np.int64), np.zeros(0, np.float32), empty) == b""
    assert framing.encode_frames_fixed(framing.RESULT, [], empty) == b""


def _stream(rng: random.Random) -> tuple[bytes, list[bytes]]:
    """Frames (some damaged, some oversize, some fill) back to back; the chunks between zeros."""
    out = bytearray()
    for _ in range(120):
        payload = bytes(rng.choice([0, 0, rng.randrange(1, 256)]) for _ in range(rng.choice([0, 3, 250, 490, 700])))
        frame = bytearray(framing.encode_frame(rng.choice([1, 2, 3]), rng.randrange(1 << 32), payload,
                                               rng.choice([1, 2, 3])))
        r = rng.random()
        if r < 0.2:  # a flipped bit inside
            i = rng.randrange(1, len(frame) - 1)
            frame[i] = frame[i] ^ (1 << rng.randrange(8)) or 1
        elif r < 0.3:  # a byte lost
            del frame[rng.randrange(1, len(frame) - 1)]
        elif r < 0.35:  # idle fill between frames
            frame = bytearray(b"\x00" * rng.randrange(1, 4)) + frame
        out += frame
    data = bytes(out)
    return data, [c for c in data.split(b"\x00") if c]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_fast_path_equals_parse_chunk_on_every_chunk(seed: int) -> None:
    rng = random.Random(seed)
    data, chunks = _stream(rng)
    max_payload = 600  # frames with 700-byte payloads are refused (and longer chunks skipped as oversize)
    want = [f for f in (framing.parse_chunk(c, max_payload) for c in chunks) if f is not None]
    dec = framing.FrameDecoder(max_payload)
    got: list[framing.Frame] = []
    i = 0
    while i < len(data):  # reads of random sizes: chunks whole in a read and chunks split across reads
        step = rng.choice([1, 7, 300, 4096, 16384])
        got += dec.decode(data[i:i + step])
        i += step
    whole = framing.FrameDecoder(max_payload)
    assert [tuple(f) for f in got] == [tuple(f) for f in want]
    assert [tuple(f) for f in whole.decode(data)] == [tuple(f) for f in want]
    for d in (dec, whole):
        assert d.stats.frames == len(want)
        assert d.stats.bytes_in == len(data)
        assert d.stats.corrupt + d.stats.oversize + d.stats.frames == len(chunks)


def test_link_fast_path_keeps_the_sequence_and_reassembly_counters() -> None:
    m = Metrics()
    link = Link("t", m, 1 << 16)
    enc = framing.encode_frame
    data = b"".join([
        enc(framing.DATA, 0, b"a"), enc(framing.DATA, 1, b"b"),  # the expected numbers
        enc(framing.DATA, 4, b"c"),  # 2 and 3 lost
        enc(framing.DATA, 4, b"c"),  # a duplicate
        enc(framing.DATA, 5, b"d", framing.FIRST), enc(framing.DATA, 6, b"e", framing.LAST),  # fragments
        enc(framing.DATA, 7, b"f", framing.FIRST),  # left unfinished by ...
        enc(framing.DATA, 8, b"g"),  # ... a whole sample: the fragment is dropped, the whole one served
        enc(framing.HELLO, 100, framing.DEVICE_HELLO),  # the device restarts its numbering at 100
        enc(framing.DATA, 100, b"h"),
        enc(framing.DATA, 10, b"i"),  # a jump back: a restart
    ])
    assert link.samples(data) == [(0, b"a"), (1, b"b"), (4, b"c"), (5, b"de"), (8, b"g"), (100, b"h"), (10, b"i")]
    c = m.counters
    assert (c["frames_received"], c["frames_lost"], c["frames_duplicate"], c["samples_incomplete"],
            c["sequence_restarts"]) == (10, 2, 1, 1, 1)
    # the fast path leaves both trackers where the slow path would
    assert link.tracker.expected == 11 and link.reasm._next_seq == 11 and link.reasm._first_seq is None


def _label_scores_reference(chain: PostChain, raw: np.ndarray) -> tuple[list[int], list[float]]:
    posts = [chain.apply(r) for r in raw]
    return [-1 if p.label_index is None else p.label_index for p in posts], [p.score for p in posts]


@pytest.mark.parametrize("dtype,scale,zero_point,fast", [
    (np.int8, 1 / 256, -128, True),
    (np.uint8, 0.00390625, 0, True),
    (np.int16, 3.0517578125e-05, 0, True),
    (np.int8, 1e-40, 0, False),  # subnormal scores could tie: dequantize first
    (np.int8, -0.5, 3, False),  # a negative scale reverses the order
    (np.int32, 1e-3, 0, False),  # q - zero_point not exact in float32
    (np.float32, None, None, True),
])
def test_argmax_on_raw_outputs_equals_apply(dtype: type, scale: float, zero_point: int, fast: bool) -> None:
    spec = TensorSpec("out", (1, 12), np.dtype(dtype), scale=scale, zero_point=zero_point)
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        raw = rng.standard_normal((200, 1, 12)).astype(np.float32)
        raw[3, 0, 5] = np.nan
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(max(info.min, -3000), min(info.max, 3000), (200, 1, 12), endpoint=True).astype(dtype)
    raw[0] = raw[0, 0, 0]  # all equal: the first wins
    raw[1, 0, 2] = raw[1, 0, 9] = raw[1].max()  # a tie for the best: the first wins
    for steps in ([ArgmaxPost(type="argmax")],
                  [ArgmaxPost(type="argmax"), ThresholdPost(type="threshold", min_score=0.25)]):
        chain = PostChain(steps, spec)
        assert chain._argmax_raw is fast
        index, score = chain.label_scores(raw)
        ref_index, ref_score = _label_scores_reference(chain, raw)
        assert index.tolist() == ref_index
        assert np.array_equal(score, np.array(ref_score, np.float32), equal_nan=True)


def test_busy_burners_are_pinned_round_robin_from_the_daemons_cpu() -> None:
    from benchmarks.daemon_throughput import burner_cpus

    assert burner_cpus(2, {0, 1}) == [1, 0]
    assert burner_cpus(3, {0, 1}) == [1, 0, 1]
    assert burner_cpus(1, {2, 5, 7}) == [7]
    assert burner_cpus(0, {0, 1}) == []

"""The daemon's framing: COBS + CRC-32 frames, resynchronisation and loss accounting.

Reference: the framing specification in docs/framing.md (COBS as in Cheshire & Baker
1999, CRC-32 as computed by zlib.crc32).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.daemon import framing
from edge_runtime.daemon.framing import FrameDecoder, SequenceTracker, cobs_decode, cobs_encode, encode_frame


def test_cobs_known_vectors():
    # vectors from the COBS paper / Wikipedia's worked examples
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(b"\x11\x22\x33\x44") == b"\x05\x11\x22\x33\x44"
    data = bytes(range(1, 255))  # 254 non-zero bytes
    assert cobs_encode(data)[:1] == b"\xff"
    assert cobs_decode(cobs_encode(data)) == data


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_cobs_roundtrip_and_no_zeros(data):
    enc = cobs_encode(data)
    assert b"\x00" not in enc
    assert cobs_decode(enc) == data


def test_frame_layout_matches_docs():
    wire = encode_frame(framing.DATA, 0x01020304, b"\x00\x01\x02")
    assert wire[0] == 0 and wire[-1] == 0 and b"\x00" not in wire[1:-1]
    body = cobs_decode(wire[1:-1])
    assert body[:4] == bytes([1, framing.DATA, framing.WHOLE, 0])
    assert body[4:8] == (0x01020304).to_bytes(4, "little")
    assert body[8:12] == (3).to_bytes(4, "little")
    assert body[12:15] == b"\x00\x01\x02"
    assert int.from_bytes(body[15:19], "little") == zlib.crc32(body[:15])


def _frames(n, size=40, start=0):
    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(n)]
    return payloads, [encode_frame(framing.DATA, start + i, p) for i, p in enumerate(payloads)]


def test_decoder_splits_a_stream_fed_byte_by_byte():
    payloads, wires = _frames(5)
    dec = FrameDecoder()
    out = []
    for b in b"".join(wires):
        out += list(dec.feed(bytes([b])))
    assert [f.payload for f in out] == payloads
    assert [f.seq for f in out] == [0, 1, 2, 3, 4]
    assert dec.stats.corrupt == 0 and dec.stats.frames == 5


def test_resync_after_garbage_truncation_and_bit_flip():
    payloads, wires = _frames(6)
    flipped = bytearray(wires[3])
    flipped[10] ^= 0x10
    stream = (b"\x17\x99garbage\x00\x05noise" + wires[0] + wires[1][: len(wires[1]) // 2] + wires[2]
              + bytes(flipped) + wires[4] + b"\xff" * 300 + wires[5])
    dec = FrameDecoder()
    tr = SequenceTracker()
    got = []
    for f in dec.feed(stream):
        tr.see(f.seq)
        got.append(f.seq)
    assert got == [0, 2, 4, 5]
    # 2 garbage chunks (split by a zero), the truncated frame merged into no other frame,
    # the flipped frame and the 0xff run between frames 4 and 5
    assert dec.stats.corrupt == 5
    assert tr.lost == 2  # frames 1 and 3


def test_every_single_bit_flip_is_detected():
    payloads, wires = _frames(1, size=30)
    w, payload = wires[0], payloads[0]
    for i in range(1, len(w) - 1):
        for bit in range(8):
            bad = bytearray(w)
            bad[i] ^= 1 << bit
            # the good copy right after the damaged one always comes through
            assert [f.payload for f in FrameDecoder().feed(bytes(bad) + w)] == [payload]
            dec2 = FrameDecoder()
            frames = list(dec2.feed(bytes(bad)))
            assert frames == [], f"flip of byte {i} bit {bit} passed the checks"
            assert dec2.stats.corrupt >= 1


def test_oversize_run_is_bounded_and_counted():
    dec = FrameDecoder(max_payload=64)
    _, wires = _frames(1, size=64)
    out = list(dec.feed(b"\x01" * 10_000 + wires[0]))
    assert len(out) == 1
    assert dec.stats.oversize == 1
    assert len(dec._buf) == 0
    # a frame with a payload over the limit is refused
    big = encode_frame(framing.DATA, 9, b"\x01" * 65)
    assert list(dec.feed(big)) == []
    assert dec.stats.oversize + dec.stats.corrupt >= 2


def test_sequence_tracker_wraps_restarts_and_duplicates():
    tr = SequenceTracker()
    for s in (0xFFFFFFFE, 0xFFFFFFFF, 0, 2):
        tr.see(s)
    assert tr.lost == 1
    assert tr.see(2) is False and tr.duplicates == 1
    tr.see(7)
    assert tr.lost == 5
    tr.see(1)  # backwards: the device restarted its counter
    assert tr.restarts == 1 and tr.lost == 5


def test_reassembler_joins_lines_and_drops_incomplete_images():
    r = framing.Reassembler(max_bytes=1000)
    rows = [bytes([i]) * 8 for i in range(4)]
    flags = [framing.FIRST, 0, 0, framing.LAST]
    out = [r.add(framing.Frame(framing.DATA, f, 10 + i, row)) for i, (f, row) in enumerate(zip(flags, rows))]
    assert out[:3] == [None, None, None] and out[3] == (10, b"".join(rows))
    # line 2 of the next image is lost: the image is thrown away and counted
    assert r.add(framing.Frame(framing.DATA, framing.FIRST, 20, rows[0])) is None
    assert r.add(framing.Frame(framing.DATA, 0, 22, rows[2])) is None
    assert r.add(framing.Frame(framing.DATA, framing.LAST, 23, rows[3])) is None
    assert r.incomplete == 1


def test_result_payload_roundtrip():
    raw = np.arange(12, dtype=np.int8).tobytes()
    p = framing.encode_result_payload(7, 0.5, raw)
    assert framing.decode_result_payload(p) == (7, 0.5, raw)
    assert framing.decode_result_payload(framing.encode_result_payload(None, 0.0, b""))[0] is None
    with pytest.raises(ValueError, match="shorter"):
        framing.decode_result_payload(b"\x01")


@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=8), st.binary(max_size=64),
       st.integers(0, 2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_garbage_between_frames_never_loses_a_frame(payloads, garbage, start):
    wires = [encode_frame(framing.DATA, (start + i) & 0xFFFFFFFF, p) for i, p in enumerate(payloads)]
    stream = b"".join(garbage + w for w in wires)
    dec = FrameDecoder()
    got = list(dec.feed(stream))
    assert [f.payload for f in got] == payloads

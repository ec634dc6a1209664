"""Binary framing for serial and TCP links (see docs/framing.md).

A frame is ``0x00 COBS(header | payload | crc32) 0x00``:

- header, little-endian, 12 bytes: version (u8, 1), kind (u8), flags (u8), reserved (u8),
  sequence number (u32), payload length (u32);
- CRC-32 (IEEE 802.3, ``zlib.crc32``) over header and payload, u32 little-endian.

COBS removes every zero byte from the frame, so ``0x00`` only ever marks a frame
boundary and the decoder resynchronises at the next one after garbage, a truncated
frame or a bit error. :class:`FrameDecoder` keeps a bounded buffer and counts what it
drops; :class:`SequenceTracker` turns gaps in sequence numbers into a lost-frame count.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

VERSION = 1
HEADER = struct.Struct("<BBBBII")
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size

# kinds
DATA = 1  #: a model input (or a fragment of one), device -> daemon
RESULT = 2  #: an inference result, daemon -> device
HELLO = 3  #: link bring-up: the daemon's (empty payload) says "listening"; a device's carries DEVICE_HELLO
NACK = 4  #: a sample the daemon did not run, daemon -> device: u8 reason code + a short UTF-8 reason
#: payload of a device's HELLO; its sequence number is the number of the device's next DATA frame
DEVICE_HELLO = b"dev"

# NACK reason codes
NACK_OVERLOAD = 1  #: dropped by the overload policy (queue full)
NACK_BAD_SIZE = 2  #: the sample's size does not fit the model input
NACK_BAD_SAMPLE = 3  #: preprocessing refused the sample
NACK_REASONS = {NACK_OVERLOAD: "overload", NACK_BAD_SIZE: "bad_size", NACK_BAD_SAMPLE: "bad_sample"}
NACK_TEXT_MAX = 120

# flags
FIRST = 0x01  #: first fragment of a sample
LAST = 0x02  #: last fragment of a sample
WHOLE = FIRST | LAST

DEFAULT_MAX_PAYLOAD = 1 << 20


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result contains no zero byte."""
    out = bytearray()
    for part in bytes(data).split(b"\x00"):
        # each zero-free run becomes blocks of at most 254 bytes
        while len(part) >= 254:
            out.append(255)
            out += part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    # every run except the last stands for "run, then a zero"; COBS codes the zero
    # implicitly; a 255 block does not imply a zero, which the loop above respects.
    return bytes(out)


def cobs_decode(data: bytes) -> Optional[bytes]:
    """Decode one COBS block sequence; ``None`` when it is not valid COBS."""
    # Decoding in place: every code byte becomes the zero it stands for, except the
    # first one and any that follows a full (255) block, which stand for nothing.
    buf = bytearray(data)
    n = len(buf)
    drop = [0]
    i = 0
    full = False
    while i < n:
        code = buf[i]
        if code == 0 or i + code > n:
            return None
        if full:
            drop.append(i)
        else:
            buf[i] = 0
        full = code == 255
        i += code
    for j in reversed(drop):
        del buf[j]
    return bytes(buf)


def encode_frame(kind: int, seq: int, payload: bytes = b"", flags: int = WHOLE) -> bytes:
    """One frame on the wire, delimiters included."""
    body = HEADER.pack(VERSION, kind, flags, 0, seq & 0xFFFFFFFF, len(payload)) + bytes(payload)
    body += CRC.pack(zlib.crc32(body) & 0xFFFFFFFF)
    return b"\x00" + cobs_encode(body) + b"\x00"


#: CRC-32 tables of fixed-length messages, by length: each byte value's share at each position
_CRC_TABLES: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
_CRC_TABLES_MAX = 8  #: lengths kept (a daemon uses one or two: its RESULT frames)


def _crc_table(length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(flat ``(length * 256,)`` uint32 table, ``position * 256`` offsets, CRC-32 of ``length`` zeros).

    For messages of one length CRC-32 is affine: ``crc(m) = crc(zeros) ^ XOR_p share(p, m[p])``, where
    ``share(p, v)`` is ``crc(zeros with v at p) ^ crc(zeros)`` and is itself linear in the bits of ``v``.
    So the CRCs of many messages are one table lookup per byte and an XOR-reduce per message.
    """
    got = _CRC_TABLES.get(length)
    if got is None:
        zeros = bytearray(length)
        c0 = zlib.crc32(zeros)
        basis = np.empty((length, 8), dtype=np.uint32)
        for p in range(length):
            for b in range(8):
                zeros[p] = 1 << b
                basis[p, b] = zlib.crc32(zeros) ^ c0
            zeros[p] = 0
        bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(bool)  # (256, 8)
        table = np.bitwise_xor.reduce(np.where(bits[None], basis[:, None, :], np.uint32(0)), axis=2)
        if len(_CRC_TABLES) >= _CRC_TABLES_MAX:
            _CRC_TABLES.pop(next(iter(_CRC_TABLES)))
        got = _CRC_TABLES[length] = (np.ascontiguousarray(table, dtype=np.uint32).reshape(-1),
                                     np.arange(length, dtype=np.intp) * 256, c0)
    return got


def crc32_rows(rows: np.ndarray) -> np.ndarray:
    """``zlib.crc32`` of each row of a ``(n, length)`` uint8 array, as uint32, computed together."""
    table, offsets, c0 = _crc_table(rows.shape[1])
    return np.bitwise_xor.reduce(table[rows + offsets], axis=1) ^ np.uint32(c0)


def _frames(kind: int, seqs: Sequence[int], length: int) -> tuple[np.ndarray, int]:
    """``(n, 3 + body size)`` uint8 rows, one frame each: delimiter, COBS code, body, delimiter.

    The headers are filled in; the payload (columns ``2 + HEADER.size`` on) is left to the caller,
    then :func:`_seal` adds the CRC and applies COBS in place.
    """
    n = len(seqs)
    size = HEADER.size + length + CRC.size
    rows = np.zeros((n, size + 3), dtype=np.uint8)
    rows[:, 2:2 + HEADER.size] = np.frombuffer(HEADER.pack(VERSION, kind, WHOLE, 0, 0, length), dtype=np.uint8)
    # sequence numbers modulo 2**32 (as encode_frame), written through a little-endian u32 view of their column
    rows[:, 6:10].view("<u4")[:, 0] = np.fromiter(seqs, dtype=np.int64, count=n) & 0xFFFFFFFF
    return rows, size


def _seal(rows: np.ndarray, size: int) -> bytes:
    """CRC the bodies of :func:`_frames` rows, then COBS-encode them in place; the frames back to back.

    Bodies are shorter than 254 bytes, so COBS has no full blocks: the code byte (column 1) and
    every zero of the body become the distance to the next zero, where the trailing delimiter
    ends the body. In the flattened rows that is the gap to the next zero for every zero but
    the two delimiters, which are put back afterwards.
    """
    crc_end = 2 + size - CRC.size
    rows[:, crc_end:2 + size].view("<u4")[:, 0] = crc32_rows(rows[:, 2:crc_end])
    flat = rows.reshape(-1)
    zeros = np.flatnonzero(flat == 0)
    flat[zeros[:-1]] = np.diff(zeros)
    rows[:, 0] = 0
    rows[:, -1] = 0
    return rows.tobytes()


def encode_frames_fixed(kind: int, seqs: Sequence[int], payloads: np.ndarray) -> Optional[bytes]:
    """Frames of one kind whose payloads all have one length, encoded together; None when too long.

    ``payloads`` is a ``(n, length)`` uint8 array; the result is the ``n`` frames, each exactly as
    :func:`encode_frame` (flags WHOLE) makes it, back to back. Bodies of 254 bytes or more (where a
    COBS block can fill up) return None: encode those one by one.
    """
    length = payloads.shape[1]
    if HEADER.size + length + CRC.size >= 254:
        return None
    if not len(seqs):
        return b""
    rows, size = _frames(kind, seqs, length)
    rows[:, 2 + HEADER.size:2 + HEADER.size + length] = payloads
    return _seal(rows, size)


def encode_results_fixed(seqs: Sequence[int], label_index: np.ndarray, scores: np.ndarray,
                         raw: np.ndarray) -> Optional[bytes]:
    """RESULT frames of ``n`` results, encoded together; None when too long (as :func:`encode_frames_fixed`).

    The same bytes as ``encode_frames_fixed(RESULT, seqs, encode_result_payloads(label_index, scores, raw))``,
    with the payloads written straight into the frame bodies.
    """
    n, k = raw.shape
    length = RESULT_HEAD.size + k
    if HEADER.size + length + CRC.size >= 254:
        return None
    if not n:
        return b""
    rows, size = _frames(RESULT, seqs, length)
    h = 2 + HEADER.size
    rows[:, h:h + 2].view("<i2")[:, 0] = label_index  # RESULT_HEAD: i16 label index, f32 score, little-endian
    rows[:, h + 2:h + 6].view("<f4")[:, 0] = scores
    rows[:, h + 6:h + 6 + k] = raw
    return _seal(rows, size)


def encode_result_payloads(label_index: np.ndarray, scores: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """RESULT payloads of ``n`` results as a ``(n, length)`` uint8 array (see :func:`encode_result_payload`).

    ``label_index``: int array, -1 for none; ``scores``: float array; ``raw``: ``(n, nbytes)`` uint8,
    the raw output bytes of each result.
    """
    n = raw.shape[0]
    out = np.empty((n, RESULT_HEAD.size + raw.shape[1]), dtype=np.uint8)
    out[:, 0:2] = np.asarray(label_index).astype("<i2").view(np.uint8).reshape(n, 2)
    out[:, 2:6] = np.asarray(scores).astype("<f4").view(np.uint8).reshape(n, 4)
    out[:, 6:] = raw
    return out


class Frame(NamedTuple):
    """A decoded, CRC-checked frame."""

    kind: int
    flags: int
    seq: int
    payload: bytes


_new_tuple = tuple.__new__  # a Frame from a tuple, without the Python-level constructor
_unpack_header = HEADER.unpack_from
#: zlib.crc32(message + CRC.pack(zlib.crc32(message))) for every message
CRC32_RESIDUE = 0x2144DF1C


@dataclass
class FramingStats:
    """What a decoder saw: good frames, corrupt chunks, bytes thrown away, oversize chunks."""

    frames: int = 0
    corrupt: int = 0
    oversize: int = 0
    bytes_in: int = 0
    bytes_dropped: int = 0


class FrameDecoder:
    """Streaming decoder: feed it bytes as they arrive, get whole frames out.

    The buffer never holds more than one encoded frame of ``max_payload`` bytes; a
    longer run without a delimiter is discarded (counted in ``oversize``) up to the
    next ``0x00``. A chunk between delimiters that is not valid COBS, has a bad
    header, a length that disagrees with its size, or a bad CRC counts as ``corrupt``.
    """

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self.max_payload = int(max_payload)
        body = OVERHEAD + self.max_payload
        self._max_encoded = body + body // 254 + 2
        self._buf = bytearray()
        self._skipping = False
        self.stats = FramingStats()

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        if self._buf:
            self.stats.bytes_dropped += len(self._buf)
            self.stats.corrupt += 1
        self._buf.clear()
        self._skipping = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of a frame received in part."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add received bytes; iterate over every complete, valid frame they finish."""
        return iter(self.decode(data))

    def decode(self, data: bytes) -> list[Frame]:
        """Add received bytes; the complete, valid frames they finish, in order."""
        out: list[Frame] = []
        max_payload = self.max_payload
        st = self.stats
        st.bytes_in += len(data)
        start = 0
        n = len(data)
        while start < n:
            z = data.find(b"\x00", start)
            if z < 0:
                self._append(data, start, n)
                return out
            if not self._buf and not self._skipping and z - start <= self._max_encoded:
                chunk = data[start:z]  # the whole chunk is in this read: no copy through the buffer
                start = z + 1
                if not chunk:
                    continue  # idle fill or the leading delimiter
            else:
                self._append(data, start, z)
                start = z + 1
                if self._skipping:
                    self._skipping = False
                    continue
                if not self._buf:
                    continue
                chunk = bytes(self._buf)
                self._buf.clear()
            frame = parse_chunk(chunk, max_payload)
            if frame is None:
                st.corrupt += 1
                st.bytes_dropped += len(chunk)
            else:
                st.frames += 1
                out.append(frame)
        return out

    def _append(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        if self._skipping:
            self.stats.bytes_dropped += end - start
            return
        if len(self._buf) + (end - start) > self._max_encoded:
            self.stats.oversize += 1
            self.stats.bytes_dropped += len(self._buf) + (end - start)
            self._buf.clear()
            self._skipping = True
            return
        self._buf += data[start:end]

    def _parse(self, chunk: bytes) -> Optional[Frame]:
        return parse_chunk(chunk, self.max_payload)


def parse_chunk(chunk: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Optional[Frame]:
    """The frame one chunk between delimiters encodes; None when it is not valid COBS, has a bad
    header, a length that disagrees with its size, a payload over ``max_payload`` or a bad CRC.

    :func:`cobs_decode` inlined (this runs once per received frame).
    """
    buf = bytearray(chunk)
    n = len(buf)
    drop = None  # code bytes that follow a full block (they stand for nothing), besides the first
    i = 0
    full = False
    while i < n:
        code = buf[i]
        if code == 0 or i + code > n:
            return None
        if full:
            if drop is None:
                drop = [i]
            else:
                drop.append(i)
        else:
            buf[i] = 0
        full = code == 255
        i += code
    if drop is not None:
        for j in reversed(drop):
            del buf[j]
    # the body is buf[1:] (the first code byte stands for nothing)
    n -= 1 + (len(drop) if drop is not None else 0)
    if n < OVERHEAD:
        return None
    version, kind, flags, _res, seq, length = _unpack_header(buf, 1)
    if version != VERSION or length != n - OVERHEAD or length > max_payload:
        return None
    # a CRC-32 over a message followed by its own CRC (little-endian) always gives CRC32_RESIDUE,
    # and only the right CRC does: one pass checks it, without slicing the CRC off
    if zlib.crc32(memoryview(buf)[1:]) != CRC32_RESIDUE:
        return None
    return _new_tuple(Frame, (kind, flags, seq, bytes(buf[13:13 + length])))


class SequenceTracker:
    """Counts frames lost between good frames from gaps in their sequence numbers.

    A jump forward of less than ``window`` counts the skipped numbers as lost. Anything
    else (a jump backwards or a huge jump) is taken as the device restarting its
    counter and counted in ``restarts``; a repeated number counts in ``duplicates``.
    """

    def __init__(self, window: int = 1 << 16) -> None:
        self.window = window
        self.expected: Optional[int] = None
        self.lost = 0
        self.restarts = 0
        self.duplicates = 0

    def start_at(self, seq: int) -> None:
        """The peer announced its next sequence number (a device HELLO)."""
        self.expected = seq & 0xFFFFFFFF

    def see(self, seq: int) -> bool:
        """Record ``seq``; return False for a duplicate of the previous frame."""
        exp = self.expected
        if exp is not None:
            gap = (seq - exp) & 0xFFFFFFFF
            if gap == 0xFFFFFFFF:
                self.duplicates += 1
                return False
            if gap < self.window:
                self.lost += gap
            elif gap != 0:
                self.restarts += 1
        self.expected = (seq + 1) & 0xFFFFFFFF
        return True


class Reassembler:
    """Joins FIRST..LAST fragments (consecutive sequence numbers) into one sample.

    A fragment that arrives out of order, or a sample that would exceed ``max_bytes``,
    throws the partial sample away and counts it in ``incomplete``. The memory used is
    bounded by ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._parts = bytearray()
        self._first_seq: Optional[int] = None
        self._next_seq = 0
        self.incomplete = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of a sample reassembled so far."""
        return len(self._parts)

    def clear(self) -> None:
        """Drop a partial sample (counted as incomplete)."""
        if self._first_seq is not None:
            self.incomplete += 1
        self._parts = bytearray()
        self._first_seq = None

    def idle(self, frame: Frame) -> bool:
        """Take a WHOLE frame in passing when no sample is being reassembled (the fast path)."""
        if self._first_seq is not None or len(frame.payload) > self.max_bytes:
            return False
        self._next_seq = (frame.seq + 1) & 0xFFFFFFFF
        return True

    def add(self, frame: Frame) -> Optional[tuple[int, bytes]]:
        """Add a DATA frame; return ``(sequence of the first fragment, sample bytes)`` when complete."""
        if frame.flags & FIRST:
            if self._first_seq is not None:
                self.incomplete += 1
            self._parts.clear()
            self._first_seq = frame.seq
        elif self._first_seq is None or frame.seq != self._next_seq:
            if self._first_seq is not None:
                self.incomplete += 1
            self._parts.clear()
            self._first_seq = None
            return None
        if len(self._parts) + len(frame.payload) > self.max_bytes:
            self.incomplete += 1
            self._parts.clear()
            self._first_seq = None
            return None
        self._next_seq = (frame.seq + 1) & 0xFFFFFFFF
        if frame.flags & LAST:
            if frame.flags & FIRST:
                self._first_seq = None
                return frame.seq, frame.payload
            out = bytes(self._parts) + frame.payload
            first = self._first_seq
            self._parts.clear()
            self._first_seq = None
            return first, out  # type: ignore[return-value]
        self._parts += frame.payload
        return None


def encode_nack_payload(reason: int, text: str) -> bytes:
    """Payload of a NACK frame: the reason code (u8) and up to 120 bytes of UTF-8 text."""
    return bytes([reason & 0xFF]) + text.encode("utf-8")[:NACK_TEXT_MAX]


def decode_nack_payload(payload: bytes) -> tuple[int, str]:
    """Inverse of :func:`encode_nack_payload`."""
    if not payload:
        raise ValueError("a NACK payload has at least its reason byte")
    return payload[0], payload[1:].decode("utf-8", "replace")


RESULT_HEAD = struct.Struct("<hf")


def encode_result_payload(label_index: Optional[int], score: float, raw: bytes) -> bytes:
    """Payload of a RESULT frame: label index (i16, -1 for none), score (f32), raw output bytes."""
    return RESULT_HEAD.pack(-1 if label_index is None else int(label_index), float(score)) + raw


def decode_result_payload(payload: bytes) -> tuple[Optional[int], float, bytes]:
    """Inverse of :func:`encode_result_payload`."""
    if len(payload) < RESULT_HEAD.size:
        raise ValueError(f"result payload of {len(payload)} bytes is shorter than its {RESULT_HEAD.size}-byte head")
    idx, score = RESULT_HEAD.unpack_from(payload)
    return (None if idx < 0 else idx), score, payload[RESULT_HEAD.size:]

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
    head = zeros[:-1]
    flat[head] = zeros[1:] - head
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
    with the payloads written straight into the frame bodies (of a :class:`_ResultRows`, for up to its
    capacity; more at once go through :func:`_frames` / :func:`_seal`).
    """
    n, k = raw.shape
    length = RESULT_HEAD.size + k
    if HEADER.size + length + CRC.size >= 254:
        return None
    if not n:
        return b""
    if n <= _ResultRows.CAPACITY:
        enc = _RESULT_ROWS.get(k)
        if enc is None:
            if len(_RESULT_ROWS) >= _CRC_TABLES_MAX:
                _RESULT_ROWS.pop(next(iter(_RESULT_ROWS)))
            enc = _RESULT_ROWS[k] = _ResultRows(k)
        return enc.encode(seqs, label_index, scores, raw)
    rows, size = _frames(RESULT, seqs, length)
    h = 2 + HEADER.size
    rows[:, h:h + 2].view("<i2")[:, 0] = label_index  # RESULT_HEAD: i16 label index, f32 score, little-endian
    rows[:, h + 2:h + 6].view("<f4")[:, 0] = scores
    rows[:, h + 6:h + 6 + k] = raw
    return _seal(rows, size)


class _ResultRows:
    """Preallocated frame rows for RESULT frames with ``k`` raw output bytes, and a view of each field.

    What :func:`_frames` and :func:`_seal` do per call, with the rows, the header template, the CRC
    table and the column views made once: a reply of a whole job then costs a few numpy calls. The
    rows are reused by the next call (the frames are returned as bytes); the event loop is the only
    caller.
    """

    CAPACITY = 256

    def __init__(self, k: int) -> None:
        length = RESULT_HEAD.size + k
        size = HEADER.size + length + CRC.size
        cap = self.CAPACITY
        self.width = size + 3
        self.template = np.zeros((cap, self.width), dtype=np.uint8)
        self.template[:, 2:2 + HEADER.size] = np.frombuffer(HEADER.pack(VERSION, RESULT, WHOLE, 0, 0, length),
                                                            dtype=np.uint8)
        self.rows = rows = np.zeros((cap, self.width), dtype=np.uint8)
        self.flat = rows.reshape(-1)
        h = 2 + HEADER.size
        crc_end = 2 + size - CRC.size
        self.seq = rows[:, 6:10].view("<u4")[:, 0]
        self.label = rows[:, h:h + 2].view("<i2")[:, 0]
        self.score = rows[:, h + 2:h + 6].view("<f4")[:, 0]
        self.raw = rows[:, h + 6:h + 6 + k]
        self.body = rows[:, 2:crc_end]
        self.crc = rows[:, crc_end:crc_end + CRC.size].view("<u4")[:, 0]
        self.table, self.offsets, c0 = _crc_table(size - CRC.size)
        self.c0 = np.uint32(c0)

    def encode(self, seqs: Sequence[int], label_index: np.ndarray, scores: np.ndarray, raw: np.ndarray) -> bytes:
        """The frames of ``n <= CAPACITY`` results back to back (see :func:`encode_results_fixed`)."""
        n = len(seqs)
        rows = self.rows[:n]
        rows[...] = self.template[:n]
        self.seq[:n] = np.fromiter(seqs, dtype=np.int64, count=n) & 0xFFFFFFFF
        self.label[:n] = label_index
        self.score[:n] = scores
        self.raw[:n] = raw
        # CRC by table (see _crc_table), then COBS in place (see _seal)
        crc = np.bitwise_xor.reduce(self.table[self.body[:n] + self.offsets], axis=1)
        np.bitwise_xor(crc, self.c0, out=self.crc[:n])
        flat = self.flat[:n * self.width]
        zeros = (flat == 0).nonzero()[0]
        head = zeros[:-1]
        flat[head] = zeros[1:] - head
        rows[:, 0] = 0
        rows[:, -1] = 0
        return rows.tobytes()


#: RESULT frame rows by raw output length (a daemon uses one)
_RESULT_ROWS: dict[int, _ResultRows] = {}


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
        st = self.stats
        st.bytes_in += len(data)
        pieces = bytes(data).split(b"\x00")  # one C call: the runs between delimiters
        tail = pieces.pop()  # after the last delimiter: the start of a frame still arriving
        if pieces and (self._buf or self._skipping):
            # the first run ends the frame begun in an earlier read
            first = pieces[0]
            pieces[0] = b""
            self._append_run(first)
            if self._skipping:
                self._skipping = False
            elif self._buf:
                pieces[0] = bytes(self._buf)
                self._buf.clear()
        out: list[Frame] = []
        max_payload, max_encoded = self.max_payload, self._max_encoded
        parse = parse_chunk
        for chunk in pieces:
            if not chunk:
                continue  # idle fill or the leading delimiter
            if len(chunk) > max_encoded:
                st.oversize += 1  # a run without a delimiter longer than any frame: thrown away
                st.bytes_dropped += len(chunk)
                continue
            frame = parse(chunk, max_payload)
            if frame is None:
                st.corrupt += 1
                st.bytes_dropped += len(chunk)
            else:
                out.append(frame)
        st.frames += len(out)
        if tail:
            self._append_run(tail)
        return out

    def _append_run(self, run: bytes) -> None:
        """Buffer part of a frame (up to its bound; past it, drop it and skip to the next delimiter)."""
        if not run:
            return
        if self._skipping:
            self.stats.bytes_dropped += len(run)
            return
        if len(self._buf) + len(run) > self._max_encoded:
            self.stats.oversize += 1
            self.stats.bytes_dropped += len(self._buf) + len(run)
            self._buf.clear()
            self._skipping = True
            return
        self._buf += run

    def _parse(self, chunk: bytes) -> Optional[Frame]:
        return parse_chunk(chunk, self.max_payload)


def parse_chunk(chunk: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Optional[Frame]:
    """The frame one chunk between delimiters encodes; None when it is not valid COBS, has a bad
    header, a length that disagrees with its size, a payload over ``max_payload`` or a bad CRC.

    :func:`cobs_decode` inlined (this runs once per received frame), in place: every code byte
    becomes the zero it stands for, except the first one and any that follows a full (255) block,
    which stand for nothing and are deleted. Valid COBS holds no zero byte.
    """
    n = len(chunk)
    if n <= OVERHEAD or 0 in chunk:
        return None
    buf = bytearray(chunk)
    drop = []  # code bytes that follow a full block (besides the first)
    i = 0
    while i < n:
        code = chunk[i]
        buf[i] = 0
        i += code
        if code == 255:
            drop.append(i)
    if i != n:
        return None  # the last code runs past the end
    if drop:
        if drop[-1] == n:  # a full block at the very end: no code byte follows it
            drop.pop()
        for j in reversed(drop):
            del buf[j]
    del buf[0]  # the first code byte (O(1) at the front of a bytearray); buf is now the body
    if len(buf) < OVERHEAD:
        return None
    version, kind, flags, _res, seq, length = _unpack_header(buf)
    if version != VERSION or length != len(buf) - OVERHEAD or length > max_payload:
        return None
    # a CRC-32 over a message followed by its own CRC (little-endian) always gives CRC32_RESIDUE,
    # and only the right CRC does: one pass checks it, without slicing the CRC off
    if zlib.crc32(buf) != CRC32_RESIDUE:
        return None
    return _new_tuple(Frame, (kind, flags, seq, bytes(buf[12:12 + length])))


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

"""TFLM_DECODE (TFLM custom op): expand compressed constant tensors (LUT, pruning, Huffman).

Inputs come in pairs (encoded data, ancillary data; both constant uint8-viewed tensors), one
output per pair. The ancillary tensor starts with a 16-byte header: byte 0 the scheme (0 LUT,
1 Huffman, 2 prune), byte 1 the header version (1), byte 4 the scheme version (1).

- LUT: byte 5 & 7 = index bit width (1..7), byte 6 = value-table stride per channel; the value
  table (of the output type) follows the header. Indices are an MSB-first bit stream; element
  ``k`` of channel ``c`` is ``table[c * stride + index_k]``. Channels follow the output's
  quantization: axis 0 (blocks of elements), or the last axis (interleaved) when it has
  several scales.
- Prune: the encoded data is a bitmap (MSB first) of kept elements; kept elements take the
  next value of the table, the others the zero point (per channel for int8 outputs with
  several scales).
- Huffman: byte 5 holds the table format (bit 0: 32-bit entries, bits 4..7: log2 of the first
  table's size minus 1); the codewords are a big-endian bit stream, decoded through the
  chained lookup tables with TFLM's put-back of unused lookahead bits.

The decoded values depend on constants only: they are computed once at load time and copied
into the outputs on every invocation (as TFLM re-decodes into them).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)

HEADER = 16
LUT_TYPES = ("BOOL", "FLOAT32", "INT8", "INT16", "INT32", "INT64")


def _bits(data: np.ndarray) -> np.ndarray:
    """The MSB-first bit stream of a byte array."""
    return np.unpackbits(np.ascontiguousarray(data, dtype=np.uint8))


def _read_indices(data: np.ndarray, width: int, count: int) -> np.ndarray:
    """``count`` unsigned ``width``-bit fields of an MSB-first bit stream."""
    bits = _bits(data)[:count * width].reshape(count, width).astype(np.int64)
    return bits @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))


class _Channels:
    """TFLM's channel layout of a decoded tensor (from its quantization)."""

    def __init__(self, ctx: OpContext, out: Any) -> None:
        q = out.quantization
        self.n, self.alt, self.zero_points = 1, False, np.zeros(1, np.int64)
        if q is not None and q.scale.size:
            self.n = int(q.scale.size)
            dim = int(getattr(q, "quantized_dimension", 0) or 0)
            if dim == len(out.shape) - 1 and self.n > 1:
                self.alt = True
            elif dim != 0:
                raise ctx.fail(f"quantized dimension {dim} of '{out.name}' is neither 0 nor the last axis")
            self.zero_points = np.asarray(q.zero_point, np.int64) if q.zero_point.size else np.zeros(1, np.int64)
        count = out.num_elements
        if self.alt and count % self.n:
            raise ctx.fail(f"{count} elements do not split into {self.n} interleaved channels")
        self.per_channel = 1 if self.alt else count // self.n

    def channel_of(self, count: int) -> np.ndarray:
        """Channel of each decoded element (-1 for trailing elements TFLM leaves unwritten)."""
        k = np.arange(count)
        if self.alt:
            return k % self.n
        c = k // max(1, self.per_channel)
        return np.where(k < self.n * self.per_channel, c, -1)


def _decode_lut(ctx: OpContext, enc: np.ndarray, anc: np.ndarray, out: Any) -> tuple[np.ndarray, np.ndarray]:
    if out.type_name not in LUT_TYPES:
        raise ctx.fail(f"LUT decoding into {out.type_name} is not supported")
    width, stride = int(anc[5]) & 7, int(anc[6])
    if width < 1:
        raise ctx.fail("LUT index bit width 0")
    ch = _Channels(ctx, out)
    count = out.num_elements
    chan = ch.channel_of(count)
    written = chan >= 0
    n_written = int(written.sum())
    if enc.size * 8 < n_written * width:
        raise ctx.fail(f"the encoded indices hold {enc.size * 8} bits; {n_written * width} needed")
    table = np.frombuffer(anc[HEADER:].tobytes(), dtype=out.dtype.newbyteorder("<")) \
        if (anc.size - HEADER) >= out.dtype.itemsize else np.zeros(0, out.dtype)
    idx = _read_indices(enc, width, n_written)
    pos = chan[written] * stride + idx
    if pos.size and int(pos.max()) >= table.size:
        raise ctx.fail("a LUT index points past the value table")
    values = np.zeros(count, out.dtype)
    values[written] = table[pos]
    return values, written


def _decode_prune(ctx: OpContext, enc: np.ndarray, anc: np.ndarray, out: Any) -> tuple[np.ndarray, np.ndarray]:
    kinds = {"BOOL": np.int8, "FLOAT32": np.int32, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
             "INT64": np.int64}
    if out.type_name not in kinds:
        raise ctx.fail(f"prune decoding into {out.type_name} is not supported")
    raw = np.dtype(kinds[out.type_name]).newbyteorder("<")
    ch = _Channels(ctx, out)
    count = out.num_elements
    per_channel_zp = ch.n > 1 and out.type_name == "INT8"
    if per_channel_zp:
        chan = ch.channel_of(count)
        if ch.zero_points.size < ch.n:
            raise ctx.fail("fewer zero points than channels")
        zp = np.where(chan >= 0, ch.zero_points[np.maximum(chan, 0)], 0)
        written = chan >= 0
    else:
        single = int(np.int8(ch.zero_points[0] if out.quantization is not None and
                             out.quantization.scale.size else 0))
        if out.type_name != "INT8" and single != 0:
            raise ctx.fail("the zero point of a non-int8 pruned tensor must be 0")
        zp = np.full(count, single, np.int64)
        written = np.ones(count, bool)
    n = int(written.sum())
    if enc.size * 8 < n:
        raise ctx.fail(f"the prune bitmap holds {enc.size * 8} bits; {n} needed")
    keep = np.zeros(count, bool)
    keep[written] = _bits(enc)[:n].astype(bool)
    table = np.frombuffer(anc[HEADER:HEADER + (anc.size - HEADER) // raw.itemsize * raw.itemsize].tobytes(), raw)
    if int(keep.sum()) > table.size:
        raise ctx.fail(f"the bitmap keeps {int(keep.sum())} values; the table holds {table.size}")
    vals = zp.astype(raw)
    vals[keep] = table[:int(keep.sum())]
    return vals.view(out.dtype) if out.type_name != "BOOL" else vals.view(np.bool_), written


def _decode_huffman(ctx: OpContext, enc: np.ndarray, anc: np.ndarray, out: Any) -> tuple[np.ndarray, np.ndarray]:
    fmt = int(anc[5])
    wide = bool(fmt & 1)
    first_bits = ((fmt & 0xF0) >> 4) + 1
    if out.type_name not in ("INT8", "INT16") or (out.type_name == "INT16" and not wide):
        raise ctx.fail(f"Huffman decoding into {out.type_name} with {32 if wide else 16}-bit tables is not "
                       "supported (TFLM: int8, or int16 with 32-bit tables)")
    ent = np.dtype("<u4" if wide else "<u2")
    tables = np.frombuffer(anc[HEADER:HEADER + (anc.size - HEADER) // ent.itemsize * ent.itemsize].tobytes(),
                           ent).tolist()
    found, cmask, cshift, vmask = (0x80000000, 0x78000000, 27, 0x07FFFFFF) if wide else \
        (0x8000, 0x7800, 11, 0x07FF)
    padded = np.zeros(-(-enc.size // 4) * 4 + 8, np.uint8)
    padded[:enc.size] = enc
    stream = int.from_bytes(padded.tobytes(), "big")
    total = padded.size * 8
    count = out.num_elements
    res = np.zeros(count, np.int64)
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > total:
            raise ctx.fail("the Huffman codewords end before every element is decoded")
        v = (stream >> (total - pos - n)) & ((1 << n) - 1)
        pos += n
        return v

    for k in range(count):
        used = first_bits
        off = take(used)
        if off >= len(tables):
            raise ctx.fail("a Huffman code points past the tables")
        v = tables[off]
        while not v & found:
            used = ((v & cmask) >> cshift) + 1
            off += (v & vmask) + take(used)
            if off >= len(tables):
                raise ctx.fail("a Huffman code points past the tables")
            v = tables[off]
        res[k] = v
        residual = (v & cmask) >> cshift
        if used > residual:
            pos -= used - residual
    if pos > enc.size * 8 + 31:
        raise ctx.fail("the Huffman codewords are shorter than the decoded elements need")
    bits = 8 * out.dtype.itemsize
    res = ((res + (1 << (bits - 1))) & ((1 << bits) - 1)) - (1 << (bits - 1))
    return res.astype(out.dtype), np.ones(count, bool)


DECODERS = {0: _decode_lut, 1: _decode_huffman, 2: _decode_prune}


class TflmDecode(Kernel):
    """Decode compressed constants into their outputs."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        n_out = len(ctx.op.outputs)
        if n_out < 1 or len(ctx.op.inputs) != 2 * n_out:
            raise ctx.fail(f"expects 2 inputs per output, got {len(ctx.op.inputs)} inputs for {n_out} outputs")
        self.decoded: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(n_out):
            enc_t, anc_t, out = ctx.input(2 * i), ctx.input(2 * i + 1), ctx.output(i)
            if enc_t is None or anc_t is None or enc_t.data is None or anc_t.data is None:
                raise ctx.fail(f"the encoded and ancillary tensors of output {i} must be constant")
            if out.dtype is None:
                raise ctx.fail(f"output {i} has type {out.type_name}")
            enc = np.asarray(enc_t.data, np.uint8).reshape(-1)
            anc = np.asarray(anc_t.data, np.uint8).reshape(-1)
            if anc.size < HEADER:
                raise ctx.fail(f"the ancillary tensor of output {i} is shorter than its 16-byte header")
            if anc[1] != 1 or anc[4] != 1:
                raise ctx.fail(f"decode header version {anc[1]} / scheme version {anc[4]} (supported: 1)")
            decoder = DECODERS.get(int(anc[0]))
            if decoder is None:
                raise ctx.fail(f"decode scheme {int(anc[0])} is not supported (0 LUT, 1 Huffman, 2 prune)")
            values, written = decoder(ctx, enc, anc, out)
            self.decoded.append((values, written))
        self.all_written = [bool(w.all()) for _, w in self.decoded]

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Flat output views."""
        self.outs = [o.reshape(-1) for o in outputs]

    def run(self) -> None:
        """Copy the decoded values (positions TFLM leaves unwritten stay untouched)."""
        for out, (values, written), full in zip(self.outs, self.decoded, self.all_written):
            if full:
                np.copyto(out, values)
            else:
                np.copyto(out, values, where=written)

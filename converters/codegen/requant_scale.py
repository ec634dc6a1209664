"""Requantization multipliers stored as the weight scales' float32 bits (``ER_RQ_SCALE``).

A layer's per-channel multiplier is TFLM's ``QuantizeMultiplier(double(s_in) * double(s_w) /
double(s_out))``: 31 significant bits, but a function of the 24-bit mantissa and the exponent of
the float32 weight scale ``s_w`` (``s_in``, ``s_out`` are the layer's). The generated C stores,
per output channel, the 23 stored mantissa bits and the exponent relative to the layer's smallest
(0-2 bits), bit-packed; the kernel recomputes the (multiplier, shift) pair with integers only:

    C = round(s_in / s_out * 2**K), a 56-bit integer in [2**55, 2**56): C_hi = C >> 24, C_lo = C & 0xFFFFFF
    p = mw * C_hi + ((mw * C_lo) >> 24)              (mw: the 24-bit mantissa, p < 2**56)
    q = p >> 24;  q >= 2**31: m = round(q / 2), extra = 1;  else: m = q + bit 23 of p, extra = 0
    m == 2**31: m = 2**30, extra += 1;  shift = base + extra + exponent offset

That is not TFLM's double arithmetic, so :func:`scale_layout` accepts a layer only when this
integer recipe gives exactly micro's (multiplier, shift) for every channel (checked here, at
export); otherwise the layer keeps its stored multipliers. Blob layout (uint8): C_lo (3 bytes,
little-endian), then the channels' fields LSB-first, padded so the kernel's 4-byte read of the
last field stays inside the array.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

MANTISSA_BITS = 23
MAX_EXP_BITS = 2  # a field of 23 + 2 bits starting at any bit of a byte fits the kernel's 32-bit read


@dataclass(frozen=True)
class ScaleFit:
    """A layer's multipliers as weight-scale bits: the blob, C's high word, the base shift."""

    blob: np.ndarray  # uint8
    c_hi: int         # C >> 24, in [2**31, 2**32)
    base_shift: int
    exp_bits: int

    @property
    def nbytes(self) -> int:
        """Flash bytes of the blob."""
        return int(self.blob.size)

    @property
    def c_hi_i32(self) -> int:
        """``c_hi`` as the int32 of the same bits (the parameter block's ``mult`` field)."""
        return self.c_hi - (1 << 32) if self.c_hi >= 1 << 31 else self.c_hi


def layer_constant(s_in: float, s_out: float) -> int:
    """``round(s_in / s_out * 2**K)`` (float32 scales, exact rational) in [2**55, 2**56)."""
    c = Fraction(float(np.float32(s_in))) / Fraction(float(np.float32(s_out)))
    k = 55 - (c.numerator.bit_length() - c.denominator.bit_length())
    while True:
        v = c * (Fraction(2) ** k)
        big = round(v)
        if big >= 1 << 56:
            k -= 1
        elif big < 1 << 55:
            k += 1
        else:
            return int(big)


def device_multipliers(mw: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's integer recipe: per 24-bit mantissa ``mw``, (multiplier, extra shift)."""
    mw = np.asarray(mw, dtype=object)
    c_hi, c_lo = c >> 24, c & 0xFFFFFF
    m, extra = [], []
    for w in mw:
        p = int(w) * c_hi + ((int(w) * c_lo) >> 24)
        q = p >> 24
        if q >> 31:
            mm, ex = (q >> 1) + (q & 1), 1
        else:
            mm, ex = q + ((p >> 23) & 1), 0
        if mm == 1 << 31:
            mm, ex = 1 << 30, ex + 1
        m.append(mm)
        extra.append(ex)
    return np.array(m, np.int64), np.array(extra, np.int64)


def pack_fields(fields: np.ndarray, width: int) -> np.ndarray:
    """``fields`` (each < 2**width) as an LSB-first bit stream, padded for a 4-byte read of the last."""
    total = 0
    for i, f in enumerate(np.asarray(fields, np.int64).tolist()):
        total |= int(f) << (i * width)
    last = (len(fields) - 1) * width // 8 if len(fields) else 0
    n = max((len(fields) * width + 7) // 8, last + 4)
    return np.frombuffer(total.to_bytes(n, "little"), np.uint8).copy()


def unpack_field(blob: np.ndarray, channel: int, width: int) -> int:
    """The kernel's read of field ``channel`` (4 bytes from its first byte, shifted, masked)."""
    bit = channel * width
    b = blob[bit >> 3:(bit >> 3) + 4].astype(np.int64)
    v = int(b[0]) | int(b[1]) << 8 | int(b[2]) << 16 | int(b[3]) << 24
    return (v >> (bit & 7)) & ((1 << width) - 1)


def scale_layout(m: np.ndarray, s: np.ndarray, s_in: float, s_w: np.ndarray, s_out: float) -> "ScaleFit | None":
    """The ER_RQ_SCALE form of the (multiplier ``m``, shift ``s``) pairs of a layer whose weight scales
    are ``s_w``, or None when the recipe does not give exactly ``m`` and ``s`` for every channel (or the
    scales are not normal positive float32 whose exponents span at most four values)."""
    m, s = np.asarray(m, np.int64).reshape(-1), np.asarray(s, np.int64).reshape(-1)
    sw = np.asarray(s_w, np.float32).reshape(-1)
    if sw.size != m.size or m.size == 0 or not np.isfinite(float(s_in)) or not np.isfinite(float(s_out)):
        return None
    if float(np.float32(s_in)) <= 0.0 or float(np.float32(s_out)) <= 0.0:
        return None
    bits = sw.view(np.uint32).astype(np.int64)
    e = (bits >> 23) & 0xFF
    if np.any(bits >> 31) or np.any(e == 0) or np.any(e == 0xFF):
        return None
    de = e - e.min()
    exp_bits = int(de.max()).bit_length()
    if exp_bits > MAX_EXP_BITS:
        return None
    c = layer_constant(s_in, s_out)
    mm, extra = device_multipliers((bits & 0x7FFFFF) | 0x800000, c)
    base = s - extra - de
    if not np.array_equal(mm, m) or np.any(base != base[0]) or not -128 <= int(base[0]) <= 127:
        return None
    width = MANTISSA_BITS + exp_bits
    body = pack_fields((bits & 0x7FFFFF) | (de << MANTISSA_BITS), width)
    head = np.frombuffer((c & 0xFFFFFF).to_bytes(3, "little"), np.uint8)
    return ScaleFit(np.concatenate([head, body]), c >> 24, int(base[0]), exp_bits)


__all__ = ["ScaleFit", "device_multipliers", "layer_constant", "pack_fields", "scale_layout", "unpack_field"]

"""Lossless entropy coding of int8 weights for the generated C (``kernels/er_rc.h`` decodes it).

An adaptive binary range coder in the style of LZMA's: each weight is mapped to 0..255 by zigzag
(0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) and its 8 bits are coded MSB first down a bit tree of 255
adaptive probabilities (12-bit, adapted by 1/128 of the error after each bit). One stream per
model, in op order, with the probabilities carried from layer to layer (reset at the start of each
inference), so the model learns once. The decoder needs no table in flash: 256 uint16
probabilities and three words of state in RAM. Rows that the kernel decodes more than once per
inference (``er_wstream``) are coded adaptively like the others: the decoder marks its whole state
(stream position and probabilities, :meth:`Decoder.mark`) before them and goes back to it for each
further pass (:meth:`Decoder.rewind`).
"""
from __future__ import annotations

import numpy as np

PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS
MOVE_BITS = 7
TOP = 1 << 24
_LOG2 = np.concatenate([[0.0], -np.log2(np.arange(1, PROB_ONE) / PROB_ONE)])


def zigzag(w: np.ndarray) -> np.ndarray:
    """int8 -> 0..255: 0, -1, 1, -2, 2, ... -> 0, 1, 2, 3, 4, ..."""
    v = np.asarray(w, np.int64).reshape(-1)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(z: np.ndarray) -> np.ndarray:
    """The inverse of :func:`zigzag`, as int8."""
    z = np.asarray(z, np.int64)
    return np.where(z & 1, -((z + 1) >> 1), z >> 1).astype(np.int8)


class Model:
    """The 255 adaptive bit probabilities of the bit tree (index 1..255; probability of a 0 bit)."""

    def __init__(self) -> None:
        self.p = [PROB_ONE // 2] * 256

    def copy(self) -> "Model":
        """An independent copy (to price a choice without committing it)."""
        m = Model()
        m.p = list(self.p)
        return m

    def cost_bits(self, weights: np.ndarray) -> float:
        """The ideal code length of ``weights`` in bits, adapting the probabilities as coding would."""
        p, total, log2 = self.p, 0.0, _LOG2
        move = MOVE_BITS
        for z in zigzag(weights).tolist():
            node = 1
            for i in range(7, -1, -1):
                b = (z >> i) & 1
                q = p[node]
                if b:
                    total += log2[PROB_ONE - q]
                    p[node] = q - (q >> move)
                else:
                    total += log2[q]
                    p[node] = q + ((PROB_ONE - q) >> move)
                node = 2 * node + b
        return total


class Encoder:
    """The range encoder (carry propagation through a cached byte, as LZMA's)."""

    def __init__(self) -> None:
        self.low, self.range, self.cache, self.cache_size = 0, 0xFFFFFFFF, 0, 1
        self.out = bytearray()
        self.model = Model()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if self.cache_size == 0:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def weights(self, w: np.ndarray) -> None:
        """Code the int8 values ``w`` (flattened, in order)."""
        p = self.model.p
        move = MOVE_BITS
        for z in zigzag(w).tolist():
            node = 1
            for i in range(7, -1, -1):
                b = (z >> i) & 1
                q = p[node]
                bound = (self.range >> PROB_BITS) * q
                if b:
                    self.low += bound
                    self.range -= bound
                    p[node] = q - (q >> move)
                else:
                    self.range = bound
                    p[node] = q + ((PROB_ONE - q) >> move)
                while self.range < TOP:
                    self.range = (self.range << 8) & 0xFFFFFFFF
                    self._shift_low()
                node = 2 * node + b

    def finish(self) -> bytes:
        """Flush and return the stream."""
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


class Decoder:
    """The decoder, step for step as ``kernels/er_rc.h`` (for tests and export-time checks)."""

    def __init__(self, stream: bytes) -> None:
        self.s, self.pos = stream, 5
        self.code = int.from_bytes(stream[1:5], "big")
        self.range = 0xFFFFFFFF
        self.model = Model()

    def mark(self) -> None:
        """Save the whole state (``er_rc_stream`` mode 0)."""
        self._mark = (self.pos, self.code, self.range, self.model.copy())

    def rewind(self) -> None:
        """Go back to the state :meth:`mark` saved (``er_rc_stream`` mode 1)."""
        self.pos, self.code, self.range, model = self._mark
        self.model = model.copy()

    def weights(self, n: int) -> np.ndarray:
        """Decode the next ``n`` int8 values."""
        p, out = self.model.p, []
        move = MOVE_BITS
        for _ in range(n):
            node = 1
            for _ in range(8):
                q = p[node]
                bound = (self.range >> PROB_BITS) * q
                if self.code < bound:
                    self.range = bound
                    p[node] = q + ((PROB_ONE - q) >> move)
                    node = 2 * node
                else:
                    self.range -= bound
                    self.code -= bound
                    p[node] = q - (q >> move)
                    node = 2 * node + 1
                if self.range < TOP:
                    self.range = (self.range << 8) & 0xFFFFFFFF
                    self.code = ((self.code << 8) | self.s[self.pos]) & 0xFFFFFFFF
                    self.pos += 1
            out.append(node - 256)
        return unzigzag(np.array(out, np.int64))


__all__ = ["Decoder", "Encoder", "Model", "unzigzag", "zigzag"]

"""A bounds-checked FlexBuffers reader for custom-op options (TFLite's ``custom_options``).

Custom ops (TFLite_Detection_PostProcess, TFLM's Signal ops) store their options as a
FlexBuffers map. This reader decodes maps, vectors, typed vectors, strings, keys, blobs,
integers, floats and booleans into Python values. It is written here, not taken from the
``flatbuffers`` package, because the device side depends on numpy, pydantic and PyYAML only.

Every offset is checked against the buffer and nesting is bounded, so a hostile buffer gives
one :class:`~edge_runtime.errors.ModelFormatError`, never an IndexError or a deep recursion.
Format: the root's byte width is the last byte, its packed type (``type << 2 | width code``)
the byte before, its value just before that; offset-typed values point backwards.
"""
from __future__ import annotations

import struct
from typing import Any

from edge_runtime.errors import ModelFormatError

_NULL, _INT, _UINT, _FLOAT, _KEY, _STRING = 0, 1, 2, 3, 4, 5
_INDIRECT_INT, _INDIRECT_UINT, _INDIRECT_FLOAT, _MAP, _VECTOR = 6, 7, 8, 9, 10
_VECTOR_INT, _VECTOR_UINT, _VECTOR_FLOAT, _VECTOR_KEY, _VECTOR_STRING = 11, 12, 13, 14, 15
_BLOB, _BOOL, _VECTOR_BOOL = 25, 26, 36
_FIXED_TYPED = {16: (_INT, 2), 17: (_UINT, 2), 18: (_FLOAT, 2), 19: (_INT, 3), 20: (_UINT, 3), 21: (_FLOAT, 3),
                22: (_INT, 4), 23: (_UINT, 4), 24: (_FLOAT, 4)}
_TYPED = {_VECTOR_INT: _INT, _VECTOR_UINT: _UINT, _VECTOR_FLOAT: _FLOAT, _VECTOR_KEY: _KEY,
          _VECTOR_STRING: _STRING, _VECTOR_BOOL: _BOOL}
MAX_DEPTH = 16
MAX_ELEMENTS = 1 << 16


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.b = bytes(data)

    def fail(self, why: str) -> ModelFormatError:
        return ModelFormatError(f"custom op options are not a valid FlexBuffer: {why}")

    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > len(self.b):
            raise self.fail(f"reference to bytes {off}..{off + n} outside the {len(self.b)}-byte buffer")

    def uint(self, off: int, width: int) -> int:
        if width not in (1, 2, 4, 8):
            raise self.fail(f"byte width {width}")
        self._check(off, width)
        return int.from_bytes(self.b[off:off + width], "little", signed=False)

    def int(self, off: int, width: int) -> int:
        if width not in (1, 2, 4, 8):
            raise self.fail(f"byte width {width}")
        self._check(off, width)
        return int.from_bytes(self.b[off:off + width], "little", signed=True)

    def float(self, off: int, width: int) -> float:
        self._check(off, width)
        if width == 4:
            return float(struct.unpack_from("<f", self.b, off)[0])
        if width == 8:
            return float(struct.unpack_from("<d", self.b, off)[0])
        raise self.fail(f"float of {width} bytes")

    def indirect(self, off: int, width: int) -> int:
        target = off - self.uint(off, width)
        self._check(target, 0)
        return target

    def key(self, off: int) -> str:
        end = self.b.find(b"\0", off)
        if off < 0 or end < 0:
            raise self.fail("unterminated key")
        return self.b[off:end].decode("utf-8", "replace")

    def size(self, target: int, width: int) -> int:
        n = self.uint(target - width, width)
        if n > MAX_ELEMENTS:
            raise self.fail(f"a vector of {n} elements")
        return n

    def value(self, off: int, parent_width: int, packed: int, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")
        t, width = packed >> 2, 1 << (packed & 3)
        if t == _NULL:
            return None
        if t == _INT:
            return self.int(off, parent_width)
        if t in (_UINT,):
            return self.uint(off, parent_width)
        if t == _BOOL:
            return bool(self.uint(off, parent_width))
        if t == _FLOAT:
            return self.float(off, parent_width)
        target = self.indirect(off, parent_width)
        if t == _INDIRECT_INT:
            return self.int(target, width)
        if t == _INDIRECT_UINT:
            return self.uint(target, width)
        if t == _INDIRECT_FLOAT:
            return self.float(target, width)
        if t == _KEY:
            return self.key(target)
        if t in (_STRING, _BLOB):
            n = self.size(target, width)
            self._check(target, n)
            raw = self.b[target:target + n]
            return raw.decode("utf-8", "replace") if t == _STRING else raw
        if t in (_VECTOR, _MAP):
            n = self.size(target, width)
            self._check(target, n * width + n)
            values = [self.value(target + i * width, width, self.b[target + n * width + i], depth + 1)
                      for i in range(n)]
            if t == _VECTOR:
                return values
            keys_at = self.indirect(target - 3 * width, width)
            key_width = self.uint(target - 2 * width, width)
            if self.size(keys_at, key_width) != n:
                raise self.fail("a map whose key and value counts differ")
            keys = [self.key(self.indirect(keys_at + i * key_width, key_width)) for i in range(n)]
            return dict(zip(keys, values))
        if t in _TYPED or t in _FIXED_TYPED:
            elem, n = (_TYPED[t], None) if t in _TYPED else _FIXED_TYPED[t]
            if n is None:
                n = self.size(target, width)
            self._check(target, n * width)
            return [self.value(target + i * width, width, (elem << 2), depth + 1) if elem != _KEY
                    else self.key(self.indirect(target + i * width, width)) for i in range(n)]
        raise self.fail(f"unknown value type {t}")


def decode(data: "bytes | bytearray | memoryview") -> Any:
    """Decode a FlexBuffer (a custom op's options) into dicts, lists, str, bytes, int, float, bool and None."""
    r = _Reader(bytes(data))
    if len(r.b) < 3:
        raise r.fail(f"{len(r.b)} bytes is too short")
    root_width = r.b[-1]
    packed = r.b[-2]
    return r.value(len(r.b) - 2 - root_width, root_width, packed, 0)

"""A small, bounds-checked, zero-copy FlatBuffers reader.

The device side may not depend on generated schema code, so the TFLite reader is
built on this: tables, vectors and strings are read straight out of a buffer
(usually a memory map) with ``struct`` and ``numpy.frombuffer``. Every offset is
checked against the buffer before it is followed, so a truncated or corrupt file
raises :class:`FlatBufferError` instead of reading garbage or crashing.

Wire format facts used here (from the FlatBuffers internals documentation):
a table starts with a signed 32-bit offset back to its vtable; a vtable is
``u16 vtable_bytes, u16 table_bytes, u16 field_offset[...]``; reference fields
hold an unsigned 32-bit offset relative to the field's own position; vectors and
strings start with a u32 element count.
"""
from __future__ import annotations

import struct
from typing import Optional

import numpy as np

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")

_SCALAR_FORMATS = {
    "b": struct.Struct("<b"), "B": struct.Struct("<B"), "h": struct.Struct("<h"),
    "H": struct.Struct("<H"), "i": struct.Struct("<i"), "I": struct.Struct("<I"),
    "q": struct.Struct("<q"), "Q": struct.Struct("<Q"), "f": struct.Struct("<f"),
    "d": struct.Struct("<d"), "?": struct.Struct("<?"),
}


class FlatBufferError(ValueError):
    """The buffer is not a well-formed FlatBuffer at the place being read."""


class Buffer:
    """A read-only byte buffer with checked little-endian reads."""

    __slots__ = ("data", "size", "_np")

    def __init__(self, data: "bytes | memoryview | np.ndarray") -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
        self.size = len(self.data)
        self._np = np.frombuffer(self.data, dtype=np.uint8)

    def check(self, pos: int, nbytes: int, what: str) -> None:
        """Raise unless ``[pos, pos + nbytes)`` lies inside the buffer."""
        if pos < 0 or nbytes < 0 or pos + nbytes > self.size:
            raise FlatBufferError(
                f"{what} at byte {pos} (+{nbytes}) lies outside the {self.size}-byte file (truncated or corrupt)"
            )

    def u32(self, pos: int, what: str = "offset") -> int:
        """Read an unsigned 32-bit integer."""
        self.check(pos, 4, what)
        return _U32.unpack_from(self.data, pos)[0]

    def i32(self, pos: int, what: str = "offset") -> int:
        """Read a signed 32-bit integer."""
        self.check(pos, 4, what)
        return _I32.unpack_from(self.data, pos)[0]

    def u16(self, pos: int, what: str = "vtable entry") -> int:
        """Read an unsigned 16-bit integer."""
        self.check(pos, 2, what)
        return _U16.unpack_from(self.data, pos)[0]

    def scalar(self, pos: int, fmt: str, what: str = "scalar") -> "int | float | bool":
        """Read one scalar of struct format ``fmt`` (one character)."""
        s = _SCALAR_FORMATS[fmt]
        self.check(pos, s.size, what)
        return s.unpack_from(self.data, pos)[0]

    def array(self, pos: int, count: int, dtype: "np.dtype | type", what: str = "vector") -> np.ndarray:
        """A zero-copy numpy view of ``count`` little-endian elements at ``pos``."""
        dt = np.dtype(dtype).newbyteorder("<")
        nbytes = count * dt.itemsize
        self.check(pos, nbytes, what)
        return self._np[pos:pos + nbytes].view(dt)

    def root(self) -> "Table":
        """The root table of the buffer."""
        return Table(self, self.u32(0, "root offset"), "root table")


class Table:
    """A view of one FlatBuffers table; fields are addressed by their schema index."""

    __slots__ = ("buf", "pos", "_vt", "_vt_size", "what")

    def __init__(self, buf: Buffer, pos: int, what: str = "table") -> None:
        self.buf = buf
        self.pos = pos
        self.what = what
        vt = pos - buf.i32(pos, f"{what} vtable offset")
        vt_size = buf.u16(vt, f"{what} vtable size")
        if vt_size < 4 or vt_size % 2:
            raise FlatBufferError(f"{what} at byte {pos} has a malformed vtable (size {vt_size})")
        buf.check(vt, vt_size, f"{what} vtable")
        self._vt = vt
        self._vt_size = vt_size

    def _field_pos(self, index: int) -> int:
        entry = 4 + 2 * index
        if entry >= self._vt_size:
            return 0
        off = self.buf.u16(self._vt + entry)
        return self.pos + off if off else 0

    def has(self, index: int) -> bool:
        """True when field ``index`` is present."""
        return self._field_pos(index) != 0

    def scalar(self, index: int, fmt: str, default: "int | float | bool" = 0) -> "int | float | bool":
        """A scalar field, or ``default`` when absent."""
        p = self._field_pos(index)
        return self.buf.scalar(p, fmt, f"{self.what} field {index}") if p else default

    def _target(self, index: int) -> int:
        p = self._field_pos(index)
        if not p:
            return 0
        return p + self.buf.u32(p, f"{self.what} field {index} offset")

    def table(self, index: int, what: str = "table") -> Optional["Table"]:
        """A sub-table field, or ``None`` when absent."""
        t = self._target(index)
        return Table(self.buf, t, what) if t else None

    def string(self, index: int, default: str = "") -> str:
        """A string field decoded as UTF-8 (bad bytes replaced), or ``default``."""
        t = self._target(index)
        if not t:
            return default
        n = self.buf.u32(t, f"{self.what} string length")
        self.buf.check(t + 4, n, f"{self.what} string")
        return bytes(self.buf.data[t + 4:t + 4 + n]).decode("utf-8", "replace")

    def vector(self, index: int, dtype: "np.dtype | type") -> Optional[np.ndarray]:
        """A vector of scalars as a zero-copy numpy view, or ``None`` when absent."""
        t = self._target(index)
        if not t:
            return None
        n = self.buf.u32(t, f"{self.what} vector length")
        return self.buf.array(t + 4, n, dtype, f"{self.what} field {index} vector")

    def vector_info(self, index: int) -> tuple[int, int]:
        """``(position of first element, element count)`` of a vector field; ``(0, 0)`` if absent."""
        t = self._target(index)
        if not t:
            return 0, 0
        return t + 4, self.buf.u32(t, f"{self.what} vector length")

    def tables(self, index: int, what: str = "table") -> list["Table"]:
        """A vector of tables, each read and checked now."""
        start, n = self.vector_info(index)
        self.buf.check(start, 4 * n, f"{self.what} field {index} table vector")
        out = []
        for i in range(n):
            p = start + 4 * i
            out.append(Table(self.buf, p + self.buf.u32(p), f"{what}[{i}]"))
        return out

    def strings(self, index: int) -> list[str]:
        """A vector of strings."""
        start, n = self.vector_info(index)
        self.buf.check(start, 4 * n, f"{self.what} field {index} string vector")
        out = []
        for i in range(n):
            p = start + 4 * i
            t = p + self.buf.u32(p)
            ln = self.buf.u32(t, "string length")
            self.buf.check(t + 4, ln, "string")
            out.append(bytes(self.buf.data[t + 4:t + 4 + ln]).decode("utf-8", "replace"))
        return out

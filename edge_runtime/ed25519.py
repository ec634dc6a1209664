"""Ed25519 signature verification in pure Python (RFC 8032, section 5.1), for devices
without the ``cryptography`` package.

Only verification is implemented: devices check signatures, they never sign. The math
follows RFC 8032: points on the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2 over
GF(2^255 - 19) in extended homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z,
x*y = T/Z. A signature (R, S) on message M under public key A is accepted when S < L,
A and R decode to curve points, and the encoding of [S]B - [k]A equals R's bytes, with
k = SHA-512(R || A || M) mod L. That is the cofactorless check OpenSSL (and therefore
``cryptography``) uses, so both accept exactly the same signatures. Verification does
not handle secrets, so it need not run in constant time.

:func:`verify` uses ``cryptography`` when it is installed (faster) and this code otherwise.
"""
from __future__ import annotations

import hashlib
from typing import Optional

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

_Point = tuple[int, int, int, int]


def _add(p1: _Point, p2: _Point) -> _Point:
    """Unified point addition (RFC 8032, 5.1.4); also correct for doubling."""
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = b - a, dd - c, dd + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _neg(p1: _Point) -> _Point:
    x, y, z, t = p1
    return ((-x) % P, y, z, (-t) % P)


_IDENTITY: _Point = (0, 1, 1, 0)


def _mul(scalar: int, point: _Point) -> _Point:
    """[scalar]point by double-and-add."""
    q = _IDENTITY
    while scalar > 0:
        if scalar & 1:
            q = _add(q, point)
        point = _add(point, point)
        scalar >>= 1
    return q


def _recover_x(y: int, sign: int) -> Optional[int]:
    """x from y and the sign bit (RFC 8032, 5.1.3 steps 2-4); None when no such point."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def decode_point(s: bytes) -> Optional[_Point]:
    """Decode a 32-byte point encoding; None when it is not a point on the curve."""
    if len(s) != 32:
        return None
    n = int.from_bytes(s, "little")
    y = n & ((1 << 255) - 1)
    x = _recover_x(y, n >> 255)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def encode_point(p1: _Point) -> bytes:
    """The 32-byte encoding of a point (RFC 8032, 5.1.2)."""
    x, y, z, _ = p1
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


_BY = 4 * pow(5, P - 2, P) % P
_BX = _recover_x(_BY, 0)
assert _BX is not None
BASE: _Point = (_BX, _BY, 1, _BX * _BY % P)


def verify_pure(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key`` (pure Python)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = decode_point(public_key)
    if a is None or decode_point(signature[:32]) is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    r_check = _add(_mul(s, BASE), _neg(_mul(k, a)))
    return encode_point(r_check) == signature[:32]


def backend() -> str:
    """'cryptography' when that package can verify here, else 'pure-python'."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken (e.g. missing OpenSSL): use the pure verifier
        return "pure-python"
    return "cryptography"


def verify(public_key: bytes, message: bytes, signature: bytes, *, use: Optional[str] = None) -> bool:
    """Verify an Ed25519 signature with ``cryptography`` if available, else in pure Python.

    ``use`` forces one implementation ('cryptography' or 'pure-python').
    """
    which = use or backend()
    if which == "cryptography":
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if len(public_key) != 32 or len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True
    if which != "pure-python":
        raise ValueError(f"unknown Ed25519 implementation {which!r}")
    return verify_pure(public_key, message, signature)

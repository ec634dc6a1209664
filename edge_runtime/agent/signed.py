"""Signed JSON envelopes: ``{"payload": {...}, "signature": {algorithm, key_id, signature}}``.

The signature covers :func:`edge_runtime.bundle.canonical_json` of the payload, like a
bundle's ``manifest.sig`` covers ``manifest.json``. Used for rollout announcements and for
per-device files. Signing (host side) takes any object with ``signature_file(bytes)``
(:class:`converters.fleet.keys.Signer`).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from edge_runtime.bundle import canonical_json, check_signature
from edge_runtime.errors import BundleError

MAX_ENVELOPE_BYTES = 1 << 20


def seal(payload: dict[str, Any], signer: Any) -> bytes:
    """The envelope bytes for ``payload`` signed by ``signer`` (unsigned when None)."""
    body: dict[str, Any] = {"payload": payload}
    if signer is not None:
        body["signature"] = json.loads(signer.signature_file(canonical_json(payload)))
    return canonical_json(body)


def open_envelope(data: bytes, public_key: Optional[bytes], origin: str, *,
                  require_signature: bool = True) -> dict[str, Any]:
    """Check an envelope's signature against ``public_key``; return its payload or raise BundleError."""
    if len(data) > MAX_ENVELOPE_BYTES:
        raise BundleError(f"{origin}: refused: {len(data)} bytes (limit {MAX_ENVELOPE_BYTES})")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{origin}: not a signed JSON envelope: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
        raise BundleError(f"{origin}: not a signed JSON envelope (no 'payload' mapping)")
    sig = body.get("signature")
    sig_bytes = canonical_json(sig) if sig is not None else None
    check_signature(canonical_json(body["payload"]), sig_bytes, public_key, origin,
                    require_signature=require_signature)
    return body["payload"]

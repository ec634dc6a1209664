"""Rollout announcements: one retained, signed MQTT message per group.

Payload: the release, its sequence number (each re-announcement of a wave adds one), the
bundle's URL, sha256 and size, the bundle manifest's sha256, the URL template of the
per-device files (``{device_id}``), the wave's percentage and whether the rollout is
halted. An agent ignores an announcement older than one it has seen (a replay).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from edge_runtime.agent.signed import open_envelope
from edge_runtime.errors import BundleError

KIND = "edge-runtime-rollout"


def topic(prefix: str, fleet: str, group: str, leaf: str) -> str:
    """``<prefix>/<fleet>/<group>/<leaf>`` (leaf: ``announce`` or ``status/<device id>``)."""
    return f"{prefix.rstrip('/')}/{fleet}/{group}/{leaf}"


@dataclass(frozen=True)
class Announcement:
    """A verified announcement."""

    fleet: str
    group: str
    release: int
    seq: int
    manifest_sha256: str
    url: str
    sha256: str
    size: int
    device_url: Optional[str]
    percent: float
    halted: bool

    @property
    def order(self) -> tuple[int, int]:
        """What makes one announcement newer than another."""
        return (self.release, self.seq)

    def device_file_url(self, device_id: str) -> Optional[str]:
        """The URL of this device's own signed config file, if the release has per-device files."""
        return self.device_url.replace("{device_id}", device_id) if self.device_url else None


def payload(fleet: str, group: str, release: int, seq: int, manifest_sha256: str, url: str, sha256: str, size: int,
            device_url: Optional[str], percent: float, halted: bool = False) -> dict[str, Any]:
    """The payload the publisher signs."""
    return {"type": KIND, "fleet": fleet, "group": group, "release": release, "seq": seq,
            "manifest_sha256": manifest_sha256, "bundle": {"url": url, "sha256": sha256, "size": size},
            "device_url": device_url, "percent": percent, "halted": halted}


def parse(data: bytes, public_key: Optional[bytes], fleet: str, group: str, *,
          require_signature: bool = True) -> Announcement:
    """Verify an announcement and check it is for this device's fleet and group."""
    p = open_envelope(data, public_key, "announcement", require_signature=require_signature)
    try:
        if p["type"] != KIND:
            raise ValueError(f"type {p['type']!r}")
        a = Announcement(str(p["fleet"]), str(p["group"]), int(p["release"]), int(p["seq"]),
                         str(p["manifest_sha256"]), str(p["bundle"]["url"]), str(p["bundle"]["sha256"]),
                         int(p["bundle"]["size"]), p.get("device_url"), float(p["percent"]), bool(p["halted"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"announcement: malformed payload: {exc}") from None
    if (a.fleet, a.group) != (fleet, group):
        raise BundleError(f"announcement: for {a.fleet}/{a.group}, this device is in {fleet}/{group}")
    if not a.url.startswith(("http://", "https://")):
        raise BundleError(f"announcement: bundle URL must be http(s), got {a.url!r}")
    return a

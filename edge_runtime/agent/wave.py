"""Wave membership: a stable hash of the device id against the wave's percentage.

A device's bucket is the first 32 bits of SHA-256(``fleet/group/device_id``) scaled to
[0, 100); it is in a wave of P percent when its bucket is below P. The same devices form
the canary of every release, and widening a wave only adds devices.
"""
from __future__ import annotations

import hashlib


def bucket(fleet: str, group: str, device_id: str) -> float:
    """The device's place in [0, 100)."""
    h = hashlib.sha256(f"{fleet}/{group}/{device_id}".encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big") * 100.0 / 2 ** 32


def in_wave(fleet: str, group: str, device_id: str, percent: float) -> bool:
    """Whether the device belongs to a wave of ``percent`` percent (100 takes every device)."""
    return percent >= 100 or bucket(fleet, group, device_id) < percent

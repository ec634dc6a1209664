"""A device's own config, shipped beside the group bundle as a small signed file.

A group with many devices does not carry every device's config in its bundle: ``fleet
build`` writes ``DIST/<group>.devices/<id>.json``, a signed envelope whose payload names the
fleet, group, release and bundle manifest hash it belongs to, and holds the device's
``device.yaml`` mapping (paths relative to the bundle root). A device fetches and verifies
only its own file, so its work does not grow with the group.

On the device the envelope is kept at ``ROOT/overrides/<release id>/<id>.json`` and the
config, with its paths made absolute in the release, at ``<id>.yaml`` beside it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from edge_runtime.agent.signed import open_envelope
from edge_runtime.errors import BundleError

KIND = "edge-runtime-device-config"


def payload(fleet: str, group: str, release: Optional[int], manifest_sha256: str, device_id: str,
            config: dict[str, Any]) -> dict[str, Any]:
    """The payload of a device file (host side)."""
    return {"type": KIND, "fleet": fleet, "group": group, "release": release, "manifest_sha256": manifest_sha256,
            "device": device_id, "config": config}


def verify_device_file(data: bytes, public_key: Optional[bytes], *, fleet: str, group: str, manifest_sha256: str,
                       device_id: str, origin: str, require_signature: bool = True) -> dict[str, Any]:
    """Check the signature and that the file is this device's, for this very bundle; return the config."""
    p = open_envelope(data, public_key, origin, require_signature=require_signature)
    if p.get("type") != KIND:
        raise BundleError(f"{origin}: refused: not a device config file (type {p.get('type')!r})")
    want = {"fleet": fleet, "group": group, "manifest_sha256": manifest_sha256, "device": device_id}
    for k, v in want.items():
        if p.get(k) != v:
            raise BundleError(f"{origin}: refused: device file is for {k} {p.get(k)!r}, expected {v!r}")
    if not isinstance(p.get("config"), dict):
        raise BundleError(f"{origin}: refused: device file has no 'config' mapping")
    return p["config"]


def _absolute(cfg: dict[str, Any], release: Path) -> dict[str, Any]:
    """Make the bundle-relative paths of a device.yaml mapping absolute in ``release``."""
    def fix(holder: dict[str, Any], key: str) -> None:
        v = holder.get(key)
        if isinstance(v, str) and v and not os.path.isabs(v):
            if ".." in Path(v).parts:
                raise BundleError(f"refused: device config path {v!r} leaves the release")
            holder[key] = str(release / v)

    out = dict(cfg)
    if isinstance(out.get("model"), dict):
        out["model"] = dict(out["model"])
        for k in ("path", "test_input"):
            fix(out["model"], k)
    if isinstance(out.get("profile"), str) and out["profile"].endswith((".yaml", ".yml")):
        fix(out, "profile")
    sinks = []
    for s in out.get("sinks") or []:
        if isinstance(s, dict):
            s = dict(s)
            for k in ("password_file", "ca_file", "cert_file", "key_file"):
                fix(s, k)
        sinks.append(s)
    if "sinks" in out:
        out["sinks"] = sinks
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def store_device_file(root: Union[str, os.PathLike], release_id: str, device_id: str, data: bytes,
                      config: dict[str, Any]) -> Path:
    """Keep a verified device file under ``ROOT/overrides/<release id>/`` and write its resolved yaml."""
    d = Path(root) / "overrides" / release_id
    d.mkdir(parents=True, exist_ok=True)
    _write_atomic(d / f"{device_id}.json", data)
    resolved = _absolute(config, Path(root).resolve() / "releases" / release_id)
    out = d / f"{device_id}.yaml"
    _write_atomic(out, yaml.safe_dump(resolved, sort_keys=False).encode("utf-8"))
    return out


def installed_override(root: Union[str, os.PathLike], release_id: str, manifest_sha256: str, fleet: str, group: str,
                       device_id: str, public_key: Optional[bytes], require_signature: bool = True) -> Optional[Path]:
    """The device's verified config for the installed release, or None when it has no device file."""
    src = Path(root) / "overrides" / release_id / f"{device_id}.json"
    if not src.is_file():
        return None
    cfg = verify_device_file(src.read_bytes(), public_key, fleet=fleet, group=group, manifest_sha256=manifest_sha256,
                             device_id=device_id, origin=str(src), require_signature=require_signature)
    return store_device_file(root, release_id, device_id, src.read_bytes(), cfg)


def prune_overrides(root: Union[str, os.PathLike]) -> None:
    """Drop device files of releases that are no longer installed."""
    base = Path(root) / "overrides"
    if not base.is_dir():
        return
    releases = Path(root) / "releases"
    for d in base.iterdir():
        if d.is_dir() and not (releases / d.name).is_dir():
            for f in d.iterdir():
                f.unlink()
            d.rmdir()

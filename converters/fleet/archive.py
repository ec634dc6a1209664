"""Write a bundle: a deterministic plain ``.tar.gz`` with the manifest first.

Members are sorted, owned by 0:0, mode 0644 (directories 0755), with one fixed
mtime (the build time), and gzip's own timestamp is that time too, so the same
inputs and build time give the same bytes. The file is written beside its
destination and renamed into place.
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Optional, Union

from edge_runtime.bundle import MANIFEST_NAME, SIGNATURE_NAME

Content = Union[bytes, Path]


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = mtime
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


def write_bundle(out_path: Union[str, os.PathLike], files: dict[str, Content], manifest: bytes,
                 signature: Optional[bytes], mtime: int) -> Path:
    """Write ``manifest.json``, ``manifest.sig`` (if any), then ``files`` (bundle path -> bytes or file)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=mtime) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
                    tf.addfile(_info(MANIFEST_NAME, len(manifest), mtime), io.BytesIO(manifest))
                    if signature is not None:
                        tf.addfile(_info(SIGNATURE_NAME, len(signature), mtime), io.BytesIO(signature))
                    for name in sorted(files):
                        content = files[name]
                        if isinstance(content, bytes):
                            tf.addfile(_info(name, len(content), mtime), io.BytesIO(content))
                        else:
                            with open(content, "rb") as f:
                                tf.addfile(_info(name, os.fstat(f.fileno()).st_size, mtime), f)
            raw.flush()
            os.fchmod(raw.fileno(), 0o644)  # mkstemp makes 0600; a bundle is meant to be copied and served
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def file_entries(files: dict[str, Content], roles: Optional[dict[str, str]] = None) -> list[dict]:
    """Manifest ``files`` entries (path, sha256, size, role), sorted by path."""
    import hashlib

    from converters.fleet.cache import sha256_file

    out = []
    for name in sorted(files):
        c = files[name]
        if isinstance(c, bytes):
            digest, size = hashlib.sha256(c).hexdigest(), len(c)
        else:
            digest, size = sha256_file(c), Path(c).stat().st_size
        out.append({"path": name, "sha256": digest, "size": size, "role": (roles or {}).get(name, "data")})
    return out


def pack_bundle(out_path: Union[str, os.PathLike], files: dict[str, Content], *, fleet: str, group: str,
                profile: str, signer: "Optional[object]" = None, build_time: int = 0,
                converter_version: str = "unknown", models: Optional[list[dict]] = None,
                device_config: Optional[str] = None, roles: Optional[dict[str, str]] = None,
                release: Optional[int] = None, device_configs: Optional[dict[str, str]] = None) -> Path:
    """Pack ``files`` into a bundle with a manifest (signed when ``signer`` is a :class:`Signer`).

    The fleet build uses the same writer; this entry point packs files that are already
    converted (e.g. to re-sign or hand-assemble a bundle).
    """
    import datetime as _dt

    from edge_runtime.bundle import BUNDLE_FORMAT, FORMAT_VERSION, canonical_json

    manifest = {
        "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, "fleet": fleet, "group": group,
        "profile": profile, "converter_version": converter_version,
        "build_time": _dt.datetime.fromtimestamp(build_time, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device_config": device_config, "models": models or [], "files": file_entries(files, roles),
    }
    if release is not None:
        manifest["release"] = release
    if device_configs:
        manifest["device_configs"] = device_configs
    data = canonical_json(manifest)
    sig = signer.signature_file(data) if signer is not None else None  # type: ignore[attr-defined]
    return write_bundle(out_path, files, data, sig, build_time)

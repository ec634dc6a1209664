"""A content-addressed cache of conversion results.

The key of a conversion is the SHA-256 of everything that can change its output: the
source model's bytes, the calibration data's bytes, the device profile's values, the
convert settings, and the converter's own code. An entry is a directory
``<cache>/<key>/`` holding the artefacts and ``entry.json`` (file names, sizes, hashes,
roles, and the converter's report). Entries are written to a temporary directory and
renamed into place, so a killed build never leaves a half entry; a damaged entry
(a file changed or missing) is treated as a miss and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

ENTRY_FILE = "entry.json"
CACHE_FORMAT = 1


def sha256_file(path: Union[str, os.PathLike], chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: Union[str, os.PathLike]) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and contents, sorted)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f.relative_to(p).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def code_hash(roots: list[Path], exclude: tuple[str, ...] = ()) -> str:
    """SHA-256 over the .py files under ``roots`` (the converter's code version)."""
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root.parent).as_posix()
            if any(rel.startswith(e) for e in exclude) or "__pycache__" in rel:
                continue
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    """The key of a conversion: SHA-256 of the canonical JSON of its inputs."""
    return hashlib.sha256(json.dumps({"cache_format": CACHE_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()


@dataclass
class CacheEntry:
    """A cached conversion."""

    key: str
    path: Path
    files: dict[str, dict[str, Any]]  # name -> {sha256, size, role}
    report: dict[str, Any]

    def file(self, name: str) -> Path:
        """Path of an artefact."""
        return self.path / name


class ConversionCache:
    """The cache directory."""

    def __init__(self, root: Union[str, os.PathLike]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> Optional[CacheEntry]:
        """The entry for ``key`` if present and intact, else None."""
        d = self.root / key
        try:
            meta = json.loads((d / ENTRY_FILE).read_text())
            files = meta["files"]
            for name, info in files.items():
                f = d / name
                if f.stat().st_size != info["size"] or sha256_file(f) != info["sha256"]:
                    return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return CacheEntry(key, d, files, meta.get("report", {}))

    def put(self, key: str, produce: Callable[[Path], tuple[dict[str, str], dict[str, Any]]]) -> CacheEntry:
        """Run ``produce(tmpdir) -> ({file name: role}, report)`` and store its files under ``key``."""
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=self.root))
        try:
            roles, report = produce(tmp)
            files = {}
            for name, role in roles.items():
                f = tmp / name
                files[name] = {"sha256": sha256_file(f), "size": f.stat().st_size, "role": role}
            (tmp / ENTRY_FILE).write_text(json.dumps({"key": key, "files": files, "report": report},
                                                     indent=2, sort_keys=True, default=str))
            dest = self.root / key
            if dest.exists():
                shutil.rmtree(dest)  # a damaged entry (get() returned None)
            try:
                os.rename(tmp, dest)
            except OSError:  # another build stored the same key meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entry = self.get(key)
        if entry is None:
            raise RuntimeError(f"cache entry {key} could not be stored under {self.root}")
        return entry

    def clean_temporaries(self) -> None:
        """Remove temporary directories left by killed builds."""
        for d in self.root.glob(".tmp-*"):
            shutil.rmtree(d, ignore_errors=True)

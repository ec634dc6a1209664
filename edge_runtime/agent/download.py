"""HTTP(S) download with resume (``Range``) and a size + sha256 check, stdlib only.

Data go to ``DIR/<sha256>.part``; a download interrupted at any point (even kill -9)
continues from the part file's length next time. A complete file is renamed to
``DIR/<sha256>.bundle`` only after its hash matches.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from edge_runtime.errors import BundleError

_CHUNK = 1 << 16


class DownloadError(BundleError):
    """The server could not be reached or answered with an error (worth retrying later)."""


def _hash_file(path: Path) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def fetch_small(url: str, limit: int = 1 << 20, timeout_s: float = 10.0) -> Optional[bytes]:
    """GET a small file; None on 404; DownloadError on other failures."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            data = r.read(limit + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > limit:
        raise BundleError(f"{url}: refused: larger than {limit} bytes")
    return data


def _one_pass(url: str, part: Path, size: int, timeout_s: float, on_bytes: Callable[[int], None]) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        mode = "ab"
        if have and r.status != 206:  # the server ignored Range: start again
            mode, have = "wb", 0
        with open(part, mode) as f:
            while have < size:
                chunk = r.read(min(_CHUNK, size - have))
                if not chunk:
                    break
                f.write(chunk)
                have += len(chunk)
                on_bytes(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if have < size:
        raise DownloadError(f"{url}: connection closed after {have} of {size} bytes")


def fetch(url: str, dest_dir: Path, sha256: str, size: int, *, timeout_s: float = 30.0, retries: int = 5,
          on_bytes: Optional[Callable[[int], None]] = None, deadline_s: float = 3600.0) -> Path:
    """Download ``url`` into ``dest_dir`` resuming a previous part; return the checked file.

    Raises :class:`BundleError` when the data do not match ``sha256`` (the part is deleted) and
    :class:`DownloadError` when the server stays unreachable after ``retries`` attempts.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"{sha256}.bundle"
    if final.exists() and final.stat().st_size == size and _hash_file(final).hexdigest() == sha256:
        return final
    part = dest_dir / f"{sha256}.part"
    end = time.monotonic() + deadline_s
    last: Optional[Exception] = None
    for attempt in range(max(retries, 0) + 1):
        if time.monotonic() > end:
            break
        try:
            _one_pass(url, part, size, timeout_s, on_bytes or (lambda _n: None))
            last = None
            break
        except urllib.error.HTTPError as exc:
            last = DownloadError(f"{url}: HTTP {exc.code} {exc.reason}")
            if exc.code in (404, 410, 403):
                break
            if exc.code == 416 and part.exists():
                part.unlink()
        except (urllib.error.URLError, OSError, DownloadError) as exc:
            last = exc if isinstance(exc, DownloadError) else DownloadError(f"{url}: {getattr(exc, 'reason', exc)}")
        time.sleep(min(0.2 * 2 ** attempt, 5.0))
    if last is not None:
        raise last if isinstance(last, DownloadError) else DownloadError(str(last))
    if _hash_file(part).hexdigest() != sha256:
        part.unlink()
        raise BundleError(f"{url}: refused: downloaded file does not match the announced sha256 (tampered or corrupt)")
    os.replace(part, final)
    return final


def clean(dest_dir: Path, keep: set[str]) -> None:
    """Delete downloads and parts whose hash is not in ``keep``."""
    if not dest_dir.is_dir():
        return
    for p in dest_dir.iterdir():
        if p.suffix in (".part", ".bundle") and p.stem not in keep:
            p.unlink()

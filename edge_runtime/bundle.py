"""Model bundles on the device: verify hashes and the Ed25519 signature, install atomically.

A bundle is a plain ``.tar.gz`` written by ``edge-convert fleet build``. Its first member is
``manifest.json`` (the sha256 and size of every other file, the profile, the converter
version, the source models' hashes and the build time); the second, when the bundle is
signed, is ``manifest.sig`` (JSON: algorithm, key id, base64 Ed25519 signature of the exact
manifest bytes). Every other member must be a regular file (or directory) listed in the
manifest. Refused, with one clear :class:`~edge_runtime.errors.BundleError`:

- a file whose bytes or size differ from the manifest, or a file missing or not listed;
- a signature made with another key, or a manifest changed after signing;
- an unsigned bundle when a public key is configured;
- absolute paths, ``..`` components, links, devices or FIFOs in the archive.

:func:`install_bundle` unpacks into a staging directory beside the releases, hashing as it
writes and fsyncing every file and directory, then renames the staging directory into
``releases/<id>`` and atomically replaces the ``current`` symlink. A process killed at any
moment leaves ``current`` pointing at a complete release: the old one or the new one.
Leftover staging directories are removed by the next install. ``previous`` links to the release
replaced by the last install; :func:`rollback_bundle` switches ``current`` back to it.

Device side: stdlib + pydantic only. Signatures are checked with ``cryptography`` when it
is installed, else with the pure-Python RFC 8032 verifier in :mod:`edge_runtime.ed25519`.
"""
from __future__ import annotations

import base64
import gzip
import binascii
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_runtime import ed25519
from edge_runtime.config_errors import read_errors
from edge_runtime.errors import BundleError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
BUNDLE_FORMAT = "edge-runtime-bundle"
FORMAT_VERSION = 1
#: DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE{SEQUENCE{OID 1.3.101.112}, BIT STRING}.
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_MAX_MANIFEST_BYTES = 16 << 20
_MAX_MEMBERS = 10_000
_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

StepHook = Callable[[str], None]


# ----------------------------------------------------------------------------- manifest
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """One file of the bundle."""

    path: str
    sha256: str = Field(pattern=_SHA256_RE.pattern)
    size: int = Field(ge=0)
    role: str = Field("data", description="model, config, labels, report, profile or data")


class ModelEntry(_Strict):
    """One converted model and where it came from."""

    name: str
    files: list[str] = Field(description="bundle paths of the converted model files")
    source: str = Field(description="the source model's file name")
    source_sha256: str = Field(pattern=_SHA256_RE.pattern)
    calibration_sha256: Optional[str] = None
    cache_key: str = ""


class Manifest(_Strict):
    """``manifest.json``: what the bundle holds and how it was built."""

    format: Literal["edge-runtime-bundle"]
    format_version: Literal[1]
    fleet: str
    group: str
    profile: str
    profile_sha256: str = ""
    microcontroller: bool = False
    converter_version: str
    build_time: str
    release: Optional[int] = Field(None, ge=1, description="release number within the group, rising with every build")
    device_config: Optional[str] = Field(None, description="bundle path of the group's device.yaml")
    device_configs: dict[str, str] = Field(default_factory=dict, description="device id -> bundle path of its config")
    models: list[ModelEntry] = Field(default_factory=list)
    files: list[FileEntry]

    def file_map(self) -> dict[str, FileEntry]:
        """Files by path."""
        return {f.path: f for f in self.files}


def canonical_json(obj: object) -> bytes:
    """The exact bytes signed: sorted keys, two-space indent, UTF-8, trailing newline."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes, origin: str) -> Manifest:
    """Validate manifest bytes; raise BundleError naming the field."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{origin}: {MANIFEST_NAME} is not valid JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("format_version") not in (None, FORMAT_VERSION):
        raise BundleError(f"{origin}: bundle format version {raw.get('format_version')!r} is not supported "
                          f"(this edge-runtime reads version {FORMAT_VERSION}); upgrade edge-runtime")
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        raise BundleError(f"{origin}: {MANIFEST_NAME} field '{loc}': {e['msg']}") from None
    seen: set[str] = set()
    for f in m.files:
        check_member_name(f.path, origin)
        if f.path in (MANIFEST_NAME, SIGNATURE_NAME) or f.path in seen:
            raise BundleError(f"{origin}: {MANIFEST_NAME} lists '{f.path}' twice or lists a reserved name")
        seen.add(f.path)
    for what, target in [("device_config", m.device_config)] + [(f"device_configs.{k}", v)
                                                                 for k, v in m.device_configs.items()]:
        if target is not None and target not in seen:
            raise BundleError(f"{origin}: {MANIFEST_NAME} field '{what}' names '{target}', which is not a file of "
                              "the bundle")
    return m


def release_key(m: Manifest) -> tuple[int, str]:
    """What orders releases of one group: the release number (0 when absent), then the build time."""
    return (m.release or 0, m.build_time)


def check_not_older(new: Manifest, installed: Manifest, origin: str, same_release: bool) -> None:
    """Refuse installing ``new`` over ``installed`` unless it is newer (or the very same release)."""
    if same_release:
        return
    if (new.fleet, new.group) != (installed.fleet, installed.group):
        return  # another group's bundle: release numbers do not compare
    if release_key(new) <= release_key(installed):
        def label(m: Manifest) -> str:
            return (f"release {m.release}, " if m.release else "") + f"built {m.build_time}"
        raise BundleError(f"{origin}: refused: this bundle ({label(new)}) is not newer than the installed one "
                          f"({label(installed)}); pass --allow-downgrade to install it anyway")


# ----------------------------------------------------------------------------- keys and signatures
def key_id(public_key: bytes) -> str:
    """Short fingerprint of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def parse_public_key(data: bytes, origin: str = "public key") -> bytes:
    """The 32 raw bytes of an Ed25519 public key given as PEM (SubjectPublicKeyInfo), raw, hex or base64."""
    text = data.strip()
    if len(data) == 32 and not text.startswith(b"-----"):
        return bytes(data)
    if text.startswith(b"-----BEGIN"):
        lines = text.decode("ascii", "replace").splitlines()
        if "PRIVATE KEY" in lines[0]:
            raise BundleError(f"{origin}: this is a private key; give the device the public key file (.pub)")
        body = "".join(line for line in lines if not line.startswith("-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BundleError(f"{origin}: PEM body is not valid base64") from None
        if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
            raise BundleError(f"{origin}: not an Ed25519 public key (expected a 44-byte SubjectPublicKeyInfo "
                              f"with OID 1.3.101.112)")
        return der[len(_SPKI_PREFIX):]
    try:
        s = text.decode("ascii")
    except UnicodeDecodeError:
        raise BundleError(f"{origin}: not an Ed25519 public key (expected PEM, 64 hex digits or base64)") from None
    if re.fullmatch(r"[0-9a-fA-F]{64}", s):
        return bytes.fromhex(s)
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == 32:
        return raw
    raise BundleError(f"{origin}: not an Ed25519 public key (expected PEM, 64 hex digits or base64 of 32 bytes)")


def load_public_key(path: Union[str, os.PathLike]) -> bytes:
    """Read a public key file (see :func:`parse_public_key`)."""
    p = os.fspath(path)
    with read_errors(p, "public key file", BundleError, cannot_read="cannot read the public key"):
        with open(p, "rb") as f:
            data = f.read(4096)
    return parse_public_key(data, p)


def make_signature_file(signature: bytes, public_key: bytes) -> bytes:
    """The bytes of ``manifest.sig`` for a signature made by ``public_key``'s private key."""
    return canonical_json({"algorithm": "ed25519", "key_id": key_id(public_key),
                           "signature": base64.b64encode(signature).decode("ascii")})


def check_signature(manifest_bytes: bytes, sig_bytes: Optional[bytes], public_key: Optional[bytes],
                    origin: str, *, require_signature: bool = True) -> Optional[str]:
    """Check ``manifest.sig`` against ``public_key``; return the signer's key id (None if unsigned and allowed)."""
    if sig_bytes is None:
        if public_key is not None or require_signature:
            why = "a public key is configured" if public_key is not None else "a signature is required"
            raise BundleError(f"{origin}: refused: the bundle is unsigned (no {SIGNATURE_NAME}) and {why}")
        return None
    try:
        sig = json.loads(sig_bytes.decode("utf-8"))
        if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519":
            raise ValueError("algorithm must be 'ed25519'")
        raw = base64.b64decode(str(sig["signature"]), validate=True)
        signer = str(sig.get("key_id", ""))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, KeyError, binascii.Error) as exc:
        raise BundleError(f"{origin}: {SIGNATURE_NAME} is malformed: {exc}") from None
    if public_key is None:
        if require_signature:
            raise BundleError(f"{origin}: no public key given to check the signature of key {signer}")
        return signer
    if not ed25519.verify(public_key, manifest_bytes, raw):
        if signer and signer != key_id(public_key):
            raise BundleError(f"{origin}: refused: signed with key {signer}, but the configured public key is "
                              f"{key_id(public_key)} (wrong key)")
        raise BundleError(f"{origin}: refused: the signature does not match {MANIFEST_NAME} "
                          f"(the manifest was changed after signing)")
    return signer


# ----------------------------------------------------------------------------- archive members
def check_member_name(name: str, origin: str) -> str:
    """Refuse absolute paths, '..', empty or odd components; return the normalised relative name."""
    if not name or "\x00" in name or "\\" in name:
        raise BundleError(f"{origin}: refused: unsafe member name {name!r} in the archive")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"{origin}: refused: absolute path '{name}' in the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise BundleError(f"{origin}: refused: path traversal ('..') in archive member '{name}'")
    if not parts:
        raise BundleError(f"{origin}: refused: empty member name {name!r} in the archive")
    return "/".join(parts)


def _check_member_type(m: tarfile.TarInfo, origin: str) -> None:
    if m.issym() or m.islnk():
        raise BundleError(f"{origin}: refused: archive member '{m.name}' is a link (to '{m.linkname}')")
    if not (m.isfile() or m.isdir()):
        raise BundleError(f"{origin}: refused: archive member '{m.name}' is a device, FIFO or other special file")


def _iter_members(tf: tarfile.TarFile, origin: str) -> Iterator[tuple[tarfile.TarInfo, str]]:
    count = 0
    try:
        for m in tf:
            count += 1
            if count > _MAX_MEMBERS:
                raise BundleError(f"{origin}: refused: more than {_MAX_MEMBERS} archive members")
            name = check_member_name(m.name, origin)
            _check_member_type(m, origin)
            yield m, name
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{origin}: not a valid .tar.gz bundle (truncated or corrupt): {exc}") from None


def _read_small(tf: tarfile.TarFile, m: tarfile.TarInfo, origin: str) -> bytes:
    if m.size > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{origin}: refused: {m.name} is {m.size} bytes (limit {_MAX_MANIFEST_BYTES})")
    f = tf.extractfile(m)
    assert f is not None
    return f.read()


@dataclass
class BundleInfo:
    """The result of a successful verification."""

    path: str
    manifest: Manifest
    manifest_sha256: str
    signed_by: Optional[str]
    files_checked: int
    manifest_bytes: bytes = field(default=b"", repr=False)
    signature_bytes: Optional[bytes] = field(default=None, repr=False)
    verifier: str = field(default_factory=ed25519.backend)

    @property
    def release_id(self) -> str:
        """The release directory name: the manifest hash's first 16 hex digits."""
        return self.manifest_sha256[:16]


def _open_tar(path: str) -> tuple[tarfile.TarFile, gzip.GzipFile]:
    """A streaming tar reader over a GzipFile (which checks the gzip CRC and length at the end)."""
    if not os.path.exists(path):
        raise BundleError(f"{path}: no such bundle file")
    if os.path.isdir(path):
        raise BundleError(f"{path}: is a directory, not a bundle (.tar.gz)")
    if not os.path.isfile(path):
        raise BundleError(f"{path}: is not a regular file (a FIFO, socket or device), not a bundle (.tar.gz)")
    gz = gzip.open(path, "rb")
    try:
        return tarfile.open(fileobj=gz, mode="r|"), gz
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        gz.close()
        raise BundleError(f"{path}: not a valid .tar.gz bundle: {exc}") from None


def _process(path: str, public_key: Optional[bytes], require_signature: bool,
             sink: Optional[Callable[[str, tarfile.TarFile, tarfile.TarInfo], "hashlib._Hash"]],
             dir_sink: Optional[Callable[[str], None]] = None,
             hook: Optional[StepHook] = None,
             on_manifest: Optional[Callable[[Manifest, str], None]] = None) -> BundleInfo:
    """One streaming pass over the archive; archive-level read errors become a BundleError."""
    try:
        return _process_archive(path, public_key, require_signature, sink, dir_sink, hook, on_manifest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(f"{path}: not a valid .tar.gz bundle (truncated or corrupt): {exc}") from None


def _process_archive(path: str, public_key: Optional[bytes], require_signature: bool,
             sink: Optional[Callable[[str, tarfile.TarFile, tarfile.TarInfo], "hashlib._Hash"]],
             dir_sink: Optional[Callable[[str], None]] = None,
             hook: Optional[StepHook] = None,
             on_manifest: Optional[Callable[[Manifest, str], None]] = None) -> BundleInfo:
    """One streaming pass over the archive: check names, signature and every file's hash.

    ``sink(name, tf, member)`` consumes a regular file's data and returns its sha256 object;
    without a sink the data are only hashed.
    """
    tf, gz = _open_tar(path)
    with gz, tf:
        members = _iter_members(tf, path)
        first = next(members, None)
        if first is None or first[1] != MANIFEST_NAME or not first[0].isfile():
            raise BundleError(f"{path}: not an edge-runtime bundle: the first archive member must be {MANIFEST_NAME}")
        manifest_bytes = _read_small(tf, first[0], path)
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
        nxt = next(members, None)
        sig_bytes = None
        if nxt is not None and nxt[1] == SIGNATURE_NAME and nxt[0].isfile():
            sig_bytes = _read_small(tf, nxt[0], path)
            nxt = next(members, None)
        signer = check_signature(manifest_bytes, sig_bytes, public_key, path, require_signature=require_signature)
        manifest = parse_manifest(manifest_bytes, path)
        if on_manifest is not None:
            on_manifest(manifest, manifest_sha)
        expected = manifest.file_map()
        parents = {"/".join(p.split("/")[:i]) for p in expected for i in range(1, p.count("/") + 1)}
        seen: set[str] = set()
        while nxt is not None:
            m, name = nxt
            if m.isdir():
                if name not in parents:
                    raise BundleError(f"{path}: refused: directory '{name}' is in the archive but no file listed in "
                                      f"{MANIFEST_NAME} is under it")
                if dir_sink is not None:
                    dir_sink(name)
            else:
                entry = expected.get(name)
                if name in (MANIFEST_NAME, SIGNATURE_NAME):
                    raise BundleError(f"{path}: refused: '{name}' appears twice or out of place in the archive")
                if entry is None:
                    raise BundleError(f"{path}: refused: '{name}' is in the archive but not in {MANIFEST_NAME}")
                if name in seen:
                    raise BundleError(f"{path}: refused: '{name}' appears twice in the archive")
                if m.size != entry.size:
                    raise BundleError(f"{path}: refused: '{name}' is {m.size} bytes, the manifest says {entry.size} "
                                      f"(tampered or corrupt)")
                if sink is not None:
                    h = sink(name, tf, m)
                else:
                    h = hashlib.sha256()
                    f = tf.extractfile(m)
                    assert f is not None
                    for chunk in iter(lambda: f.read(_CHUNK), b""):
                        h.update(chunk)
                if h.hexdigest() != entry.sha256:
                    raise BundleError(f"{path}: refused: '{name}' does not match its sha256 in {MANIFEST_NAME} "
                                      f"(tampered or corrupt)")
                seen.add(name)
                if hook is not None:
                    hook(f"file:{name}")
            nxt = next(members, None)
        _check_tail(gz, path)
        missing = sorted(set(expected) - seen)
        if missing:
            raise BundleError(f"{path}: refused: {len(missing)} file(s) listed in {MANIFEST_NAME} are missing from "
                              f"the archive: {', '.join(missing[:5])}")
    return BundleInfo(path, manifest, manifest_sha, signer, len(seen), manifest_bytes, sig_bytes)


#: Bytes allowed after the tar's end-of-archive blocks: its zero padding to a 10 KiB record, with room.
_MAX_TAIL_BYTES = 64 << 10


def _check_tail(gz: gzip.GzipFile, path: str) -> None:
    """Read the gzip stream to its end (so its CRC and length are checked); refuse data after the archive."""
    tail = 0
    while True:
        chunk = gz.read(_CHUNK if tail <= _MAX_TAIL_BYTES else 0)
        if not chunk:
            break
        tail += len(chunk)
        if tail > _MAX_TAIL_BYTES or chunk.count(0) != len(chunk):
            raise BundleError(f"{path}: refused: data after the end of the archive (more than its zero padding)")


def verify_bundle(path: Union[str, os.PathLike], public_key: Optional[bytes] = None, *,
                  require_signature: Optional[bool] = None) -> BundleInfo:
    """Check every file's hash and size against the manifest and the manifest's signature.

    With ``public_key`` the bundle must be signed by it. Without one, signatures are not
    checked and ``require_signature`` (default False then) decides whether that is allowed.
    Raises :class:`BundleError` with the reason.
    """
    req = public_key is not None if require_signature is None else require_signature
    return _process(os.fspath(path), public_key, req, sink=None)


# ----------------------------------------------------------------------------- install
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(dest: str, data_iter: Iterator[bytes]) -> "hashlib._Hash":
    h = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(dest, flags, 0o644)
    try:
        for chunk in data_iter:
            h.update(chunk)
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    return h


@dataclass
class InstalledBundle:
    """An installed, verified release."""

    root: Path
    path: Path
    manifest: Manifest
    release_id: str
    previous: Optional[str] = None

    def file(self, name: str) -> Path:
        """Absolute path of a bundle file."""
        return self.path / name

    @property
    def device_config(self) -> Optional[Path]:
        """The group's device.yaml, if the bundle has one."""
        return self.path / self.manifest.device_config if self.manifest.device_config else None


def _rm_tree_safely(path: str, root: str) -> None:
    """Rename out of the way first, then delete: a kill mid-delete never leaves a half release under its name."""
    if not os.path.lexists(path):
        return
    trash = tempfile.mkdtemp(prefix=".trash-", dir=root)
    os.rename(path, os.path.join(trash, "x"))
    shutil.rmtree(trash, ignore_errors=True)


def _clean_leftovers(root: str) -> None:
    for name in os.listdir(root):
        if name.startswith((".staging-", ".trash-")):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        elif name in ("current.new", "previous.new"):
            os.unlink(os.path.join(root, name))


def current_release(root: Union[str, os.PathLike]) -> Optional[str]:
    """The release id ``current`` points at, or None before the first install."""
    link = os.path.join(os.fspath(root), "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link))


def install_bundle(bundle: Union[str, os.PathLike], root: Union[str, os.PathLike], public_key: Optional[bytes], *,
                   require_signature: bool = True, keep: int = 2, on_step: Optional[StepHook] = None,
                   allow_downgrade: bool = False) -> InstalledBundle:
    """Verify and install ``bundle`` under ``root`` atomically; return the new release.

    Layout: ``root/releases/<id>/`` (one per bundle, ``<id>`` from the manifest hash) and
    ``root/current`` (a relative symlink to the active release). Files are hashed while
    they are written, so what is installed is exactly what was verified. A refused bundle
    leaves ``current`` untouched. ``keep`` releases (current and previous) are kept.
    ``on_step`` is called with a step name at each stage (tests use it to kill the process).
    A bundle of the same group that is not newer than the installed release (by release number,
    then build time) is refused unless ``allow_downgrade``. Releases are readable by every user
    (directories 0755, files 0644), so a daemon running as its own user can load them.
    """
    src = os.fspath(bundle)
    root_s = os.path.abspath(os.fspath(root))
    try:
        os.makedirs(os.path.join(root_s, "releases"), exist_ok=True)
        with _InstallLock(root_s):
            return _install_locked(src, root_s, public_key, require_signature, keep, on_step or (lambda _s: None),
                                   allow_downgrade)
    except OSError as exc:  # disk full, read-only or unwritable root: the old release is untouched
        where = f" ({exc.filename})" if exc.filename else ""
        raise BundleError(f"{src}: cannot install under {root_s}: {exc.strerror or exc}{where}; "
                          f"the current release is unchanged") from None


class _InstallLock:
    """An exclusive flock on ``root/.lock``: one installer at a time (released by the kernel if killed)."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, ".lock")
        self.fd = -1

    def __enter__(self) -> "_InstallLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no concurrent installers expected
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _installed_manifest(root_s: str) -> Optional[Manifest]:
    """The active release's manifest, or None (nothing installed, or unreadable: then nothing to protect)."""
    rid = current_release(root_s)
    if rid is None:
        return None
    try:
        with open(os.path.join(root_s, "releases", rid, MANIFEST_NAME), "rb") as f:
            return parse_manifest(f.read(_MAX_MANIFEST_BYTES + 1), rid)
    except (OSError, BundleError):
        return None


def _install_locked(src: str, root_s: str, public_key: Optional[bytes], require_signature: bool, keep: int,
                    hook: StepHook, allow_downgrade: bool = False) -> InstalledBundle:
    _clean_leftovers(root_s)
    hook("start")
    installed = None if allow_downgrade else _installed_manifest(root_s)
    current = current_release(root_s)

    def on_manifest(manifest: Manifest, manifest_sha: str) -> None:
        if installed is not None:
            check_not_older(manifest, installed, src, manifest_sha[:16] == current)

    staging = tempfile.mkdtemp(prefix=".staging-", dir=root_s)
    os.chmod(staging, 0o755)

    def file_sink(name: str, tf: tarfile.TarFile, m: tarfile.TarInfo) -> "hashlib._Hash":
        free = shutil.disk_usage(staging).free
        if m.size > free:
            raise BundleError(f"{src}: refused: not enough free space under {root_s} for '{name}' "
                              f"({m.size} bytes, {free} free)")
        dest = os.path.join(staging, *name.split("/"))
        parent = os.path.dirname(dest)
        try:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise BundleError(f"{src}: refused: '{name}' needs a directory where the archive has a file") from None
        f = tf.extractfile(m)
        assert f is not None
        try:
            return _write_file(dest, iter(lambda: f.read(_CHUNK), b""))
        except FileExistsError:
            raise BundleError(f"{src}: refused: '{name}' appears twice in the archive") from None
        except IsADirectoryError:
            raise BundleError(f"{src}: refused: '{name}' is both a directory and a file in the archive") from None

    def dir_sink(name: str) -> None:
        try:
            os.makedirs(os.path.join(staging, *name.split("/")), mode=0o755, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise BundleError(f"{src}: refused: '{name}' is both a file and a directory in the archive") from None

    try:
        info = _process(src, public_key, require_signature, sink=file_sink, dir_sink=dir_sink, hook=hook,
                        on_manifest=on_manifest)
        _write_file(os.path.join(staging, MANIFEST_NAME), iter([info.manifest_bytes]))
        if info.signature_bytes is not None:
            _write_file(os.path.join(staging, SIGNATURE_NAME), iter([info.signature_bytes]))
        for dirpath, _dirs, files in os.walk(staging, topdown=False):
            for name in files:  # readable by the daemon's own user whatever the installer's umask
                os.chmod(os.path.join(dirpath, name), 0o644)
            os.chmod(dirpath, 0o755)
            _fsync_dir(dirpath)
        hook("staged")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    releases = os.path.join(root_s, "releases")
    final = os.path.join(releases, info.release_id)
    previous = current_release(root_s)
    if os.path.lexists(final):
        try:
            _verify_tree(final, public_key, require_signature)
            shutil.rmtree(staging, ignore_errors=True)  # the same release is already installed intact
        except BundleError:
            _rm_tree_safely(final, root_s)
    if not os.path.lexists(final):
        os.rename(staging, final)
        _fsync_dir(releases)
    hook("renamed")
    tmp_link = os.path.join(root_s, "current.new")
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(os.path.join("releases", info.release_id), tmp_link)
    hook("linked")
    os.replace(tmp_link, os.path.join(root_s, "current"))
    _fsync_dir(root_s)
    hook("switched")
    if previous and previous != info.release_id:
        _set_link(root_s, "previous", previous)
    _prune(root_s, max(keep, 1), info.release_id, previous)
    from edge_runtime.agent.device_file import prune_overrides

    prune_overrides(root_s)
    hook("done")
    return InstalledBundle(Path(root_s), Path(final), info.manifest, info.release_id, previous)


def _set_link(root_s: str, name: str, release_id: str) -> None:
    """Point ``root/name`` at ``releases/<release_id>`` atomically."""
    tmp = os.path.join(root_s, f"{name}.new")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", release_id), tmp)
    os.replace(tmp, os.path.join(root_s, name))
    _fsync_dir(root_s)


def previous_release(root: Union[str, os.PathLike]) -> Optional[str]:
    """The release installed before the current one (kept by :func:`install_bundle`), or None."""
    root_s = os.fspath(root)
    link = os.path.join(root_s, "previous")
    if os.path.islink(link):
        rid = os.path.basename(os.readlink(link))
        if rid != current_release(root_s) and os.path.isdir(os.path.join(root_s, "releases", rid)):
            return rid
    return None


def rollback_bundle(root: Union[str, os.PathLike], public_key: Optional[bytes], *, require_signature: bool = True,
                    on_step: Optional[StepHook] = None) -> InstalledBundle:
    """Switch ``current`` back to the previous installed release (verified on disk first), atomically.

    ``previous`` then points at the release rolled back from, so a second rollback undoes the first.
    """
    root_s = os.path.abspath(os.fspath(root))
    hook = on_step or (lambda _s: None)
    if current_release(root_s) is None:
        raise BundleError(f"{root_s}: nothing installed, nothing to roll back")
    with _InstallLock(root_s):
        cur = current_release(root_s)
        if cur is None:
            raise BundleError(f"{root_s}: nothing installed, nothing to roll back")
        prev = previous_release(root_s)
        if prev is None:
            raise BundleError(f"{root_s}: no previous release to roll back to (only {cur} is installed)")
        manifest = _verify_tree(os.path.join(root_s, "releases", prev), public_key, require_signature)
        hook("verified")
        _set_link(root_s, "current", prev)
        hook("switched")
        _set_link(root_s, "previous", cur)
        return InstalledBundle(Path(root_s), Path(root_s) / "releases" / prev, manifest, prev, cur)


def _prune(root: str, keep: int, current: str, previous: Optional[str]) -> None:
    """Delete old releases: keep ``current``, then ``previous``, then the newest others, ``keep`` in all."""
    releases = os.path.join(root, "releases")
    entries = [e for e in os.scandir(releases) if e.is_dir(follow_symlinks=False)]
    entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime, reverse=True)
    keep_names = [current]
    if previous and previous != current:
        keep_names.append(previous)
    keep_names += [e.name for e in entries if e.name not in keep_names]
    keep_names = keep_names[:keep]
    for e in entries:
        if e.name not in keep_names:
            _rm_tree_safely(e.path, root)


def _verify_tree(path: str, public_key: Optional[bytes], require_signature: bool) -> Manifest:
    """Check an unpacked release directory against its own manifest and signature."""
    mpath = os.path.join(path, MANIFEST_NAME)
    try:
        with open(mpath, "rb") as f:
            manifest_bytes = f.read(_MAX_MANIFEST_BYTES + 1)
    except OSError:
        raise BundleError(f"{path}: not an installed bundle (no readable {MANIFEST_NAME})") from None
    sig_path = os.path.join(path, SIGNATURE_NAME)
    sig_bytes = None
    if os.path.exists(sig_path):
        with open(sig_path, "rb") as f:
            sig_bytes = f.read(65536)
    check_signature(manifest_bytes, sig_bytes, public_key, path, require_signature=require_signature)
    manifest = parse_manifest(manifest_bytes, path)
    listed = {MANIFEST_NAME, SIGNATURE_NAME}
    for entry in manifest.files:
        fp = os.path.join(path, *entry.path.split("/"))
        listed.add(entry.path)
        if os.path.islink(fp) or not os.path.isfile(fp):
            raise BundleError(f"{path}: '{entry.path}' is missing or not a regular file")
        h = hashlib.sha256()
        size = 0
        with open(fp, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
                size += len(chunk)
        if size != entry.size or h.hexdigest() != entry.sha256:
            raise BundleError(f"{path}: '{entry.path}' does not match the manifest (modified after install)")
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), path).replace(os.sep, "/")
            if rel not in listed:
                raise BundleError(f"{path}: '{rel}' is not listed in {MANIFEST_NAME}")
    return manifest


def load_installed(root: Union[str, os.PathLike], public_key: Optional[bytes], *,
                   require_signature: bool = True) -> InstalledBundle:
    """Verify the active release under ``root`` (for the daemon, before loading a model)."""
    root_s = os.path.abspath(os.fspath(root))
    rid = current_release(root_s)
    if rid is None:
        raise BundleError(f"{root_s}: no bundle installed (no 'current' link)")
    path = os.path.join(root_s, "releases", rid)
    manifest = _verify_tree(path, public_key, require_signature)
    return InstalledBundle(Path(root_s), Path(path), manifest, rid)


def installed_device_config(root: Union[str, os.PathLike], public_key: Optional[bytes], device_id: Optional[str] = None,
                            *, require_signature: bool = True) -> Path:
    """Verify the active release and return the ``device.yaml`` to serve (the device's own one if listed).

    For ``edge-runtime serve``: call this before loading a model from an installed bundle.
    """
    inst = load_installed(root, public_key, require_signature=require_signature)
    if device_id is not None and device_id not in inst.manifest.device_configs:
        from edge_runtime.agent.device_file import installed_override

        m = inst.manifest
        with open(inst.path / MANIFEST_NAME, "rb") as f:
            msha = hashlib.sha256(f.read()).hexdigest()
        own = installed_override(inst.root, inst.release_id, msha, m.fleet, m.group, device_id, public_key,
                                 require_signature)
        if own is not None:
            return own
    if device_id is not None and device_id in inst.manifest.device_configs:
        return inst.path / inst.manifest.device_configs[device_id]
    if inst.device_config is None:
        raise BundleError(f"{inst.path}: the bundle has no device.yaml (a microcontroller bundle is not served)")
    return inst.device_config

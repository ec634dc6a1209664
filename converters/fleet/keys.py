"""Ed25519 signing keys for bundles (host side, with the ``cryptography`` package).

``fleet.key``: PKCS#8 PEM private key, mode 0600. ``fleet.pub``: SubjectPublicKeyInfo PEM,
which the device reads with :func:`edge_runtime.bundle.load_public_key` (no
``cryptography`` needed there).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from edge_runtime.bundle import key_id, make_signature_file
from edge_runtime.errors import ConfigError


def _crypto():  # type: ignore[no-untyped-def]
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise ConfigError("signing needs the 'cryptography' package: pip install 'edge-runtime[convert]'") from None
    return serialization, Ed25519PrivateKey


def keygen(out_dir: Union[str, os.PathLike], name: str = "fleet", force: bool = False) -> tuple[Path, Path, str]:
    """Write ``NAME.key`` (private, 0600) and ``NAME.pub`` in ``out_dir``; return both paths and the key id."""
    serialization, Ed25519PrivateKey = _crypto()
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = d / f"{name}.key", d / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists() and not force:
            raise ConfigError(f"{p}: already exists; refusing to overwrite a key (use --force)")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tmp = priv_path.with_suffix(".key.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    os.replace(tmp, priv_path)
    pub_path.write_bytes(pub)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return priv_path, pub_path, key_id(raw)


class Signer:
    """Signs manifests with a private key file."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        serialization, Ed25519PrivateKey = _crypto()
        p = os.fspath(path)
        try:
            data = Path(p).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such signing key file (make one with 'edge-convert fleet keygen')") from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read the signing key: {exc.strerror or exc}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{p}: not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{p}: not an Ed25519 key ({type(key).__name__}); make one with 'edge-convert fleet keygen'")
        self._key = key
        self.public_key = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_key)

    def signature_file(self, manifest_bytes: bytes) -> bytes:
        """The ``manifest.sig`` bytes for these manifest bytes."""
        return make_signature_file(self._key.sign(manifest_bytes), self.public_key)

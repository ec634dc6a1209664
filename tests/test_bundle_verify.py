"""Bundle verification on the device: hashes, Ed25519 signatures, unsafe archives.

References: signatures are made by the ``cryptography`` package (OpenSSL); the pure-Python
verifier is checked against it and against RFC 8032's test vector 1.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from converters.fleet.archive import pack_bundle
from converters.fleet.keys import Signer, keygen
from edge_runtime import ed25519
from edge_runtime.bundle import (MANIFEST_NAME, SIGNATURE_NAME, key_id, load_public_key, parse_public_key,
                                 verify_bundle)
from edge_runtime.errors import BundleError

cryptography = pytest.importorskip("cryptography")
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

FILES = {
    "models/m.tflite": bytes(range(256)) * 40,
    "device.yaml": b"model:\n  path: models/m.tflite\n",
    "labels/m.txt": b"yes\nno\n",
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("keys")
    priv, pub, kid = keygen(d, "fleet")
    priv2, pub2, _ = keygen(d, "other")
    return {"signer": Signer(priv), "pub": load_public_key(pub), "other_pub": load_public_key(pub2),
            "other_signer": Signer(priv2), "kid": kid, "pub_path": pub, "priv_path": priv}


def _bundle(path: Path, keys: dict, files: dict | None = None, signed: bool = True) -> Path:
    return pack_bundle(path, dict(files or FILES), fleet="f", group="g", profile="rpi5",
                       signer=keys["signer"] if signed else None, build_time=1_700_000_000,
                       device_config="device.yaml")


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(path, "r:gz") as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out.append((m, f.read() if f else b""))
    return out


def _repack(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            m = tarfile.TarInfo(m.name) if isinstance(m, str) else m
            if m.isfile():
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
            else:
                tf.addfile(m)
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def test_valid_bundle_verifies(tmp_path: Path, keys: dict) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    info = verify_bundle(b, keys["pub"])
    assert info.files_checked == 3 and info.signed_by == keys["kid"] == key_id(keys["pub"])
    assert [m.name for m, _ in _members(b)][:2] == [MANIFEST_NAME, SIGNATURE_NAME]
    manifest = json.loads(_members(b)[0][1])
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(FILES[entry["path"]]).hexdigest()
        assert entry["size"] == len(FILES[entry["path"]])
    # the bundle is a plain .tar.gz that stock tar lists
    r = subprocess.run(["tar", "tzf", str(b)], capture_output=True, text=True)
    assert r.returncode == 0 and "models/m.tflite" in r.stdout


def test_bundles_are_deterministic(tmp_path: Path, keys: dict) -> None:
    a = _bundle(tmp_path / "a.tar.gz", keys).read_bytes()
    b = _bundle(tmp_path / "b.tar.gz", keys).read_bytes()
    assert a == b


def _tamper_file(members, name, fn):  # type: ignore[no-untyped-def]
    return [(m, fn(d) if m.name == name else d) for m, d in members]


@pytest.mark.parametrize("case, problem", [
    ("flip_byte", "does not match its sha256"),
    ("append_byte", "manifest says"),
    ("extra_file", "not in manifest.json"),
    ("missing_file", "missing from the archive"),
    ("manifest_edit", "changed after signing"),
    ("drop_signature", "unsigned"),
    ("duplicate_file", "appears twice"),
    ("manifest_not_first", "first archive member must be manifest.json"),
])
def test_tampered_bundles_are_refused(tmp_path: Path, keys: dict, case: str, problem: str) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    ms = _members(b)
    if case == "flip_byte":
        ms = _tamper_file(ms, "models/m.tflite", lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:])
    elif case == "append_byte":
        ms = _tamper_file(ms, "labels/m.txt", lambda d: d + b"x")
    elif case == "extra_file":
        ms.append((tarfile.TarInfo("models/evil.so"), b"\x7fELF"))
    elif case == "missing_file":
        ms = [x for x in ms if x[0].name != "labels/m.txt"]
    elif case == "manifest_edit":
        ms = _tamper_file(ms, MANIFEST_NAME, lambda d: d.replace(b'"group": "g"', b'"group": "h"'))
    elif case == "drop_signature":
        ms = [x for x in ms if x[0].name != SIGNATURE_NAME]
    elif case == "duplicate_file":
        ms.append(next(x for x in ms if x[0].name == "device.yaml"))
    elif case == "manifest_not_first":
        ms = ms[2:] + ms[:2]
    _repack(b, ms)
    with pytest.raises(BundleError, match=problem) as ei:
        verify_bundle(b, keys["pub"])
    assert str(b) in str(ei.value)


def test_wrong_key_is_named(tmp_path: Path, keys: dict) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    with pytest.raises(BundleError, match=f"signed with key {keys['kid']}.*wrong key"):
        verify_bundle(b, keys["other_pub"])


def test_manifest_re_signed_by_another_key_is_refused(tmp_path: Path, keys: dict) -> None:
    """An attacker with their own key rewrites the manifest for a changed model and signs it."""
    evil = dict(FILES, **{"models/m.tflite": b"evil model"})
    b = pack_bundle(tmp_path / "b.tar.gz", evil, fleet="f", group="g", profile="rpi5",
                    signer=keys["other_signer"])
    with pytest.raises(BundleError, match="wrong key"):
        verify_bundle(b, keys["pub"])


def test_unsigned_bundle(tmp_path: Path, keys: dict) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys, signed=False)
    with pytest.raises(BundleError, match="unsigned.*a public key is configured"):
        verify_bundle(b, keys["pub"])
    info = verify_bundle(b, None)  # no key configured: hashes only, allowed explicitly
    assert info.signed_by is None and info.files_checked == 3
    with pytest.raises(BundleError, match="unsigned"):
        verify_bundle(b, None, require_signature=True)


def _raw_member(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = type_
    m.linkname = linkname
    return m


@pytest.mark.parametrize("member, problem", [
    (_raw_member("../../etc/cron.d/x"), "path traversal"),
    (_raw_member("models/../../x"), "path traversal"),
    (_raw_member("/etc/passwd"), "absolute path"),
    (_raw_member("models/link", tarfile.SYMTYPE, "/etc/shadow"), "is a link"),
    (_raw_member("models/hard", tarfile.LNKTYPE, "device.yaml"), "is a link"),
    (_raw_member("dev/null", tarfile.CHRTYPE), "device, FIFO"),
    (_raw_member("fifo", tarfile.FIFOTYPE), "device, FIFO"),
])
def test_unsafe_members_are_refused(tmp_path: Path, keys: dict, member: tarfile.TarInfo, problem: str) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    ms = _members(b)
    ms.insert(3, (member, b"x" if member.isfile() else b""))
    _repack(b, ms)
    with pytest.raises(BundleError, match=problem):
        verify_bundle(b, keys["pub"])


def test_listed_unsafe_path_in_signed_manifest_is_refused(tmp_path: Path, keys: dict) -> None:
    """Even the fleet owner's key cannot sign a bundle that writes outside the install directory."""
    b = pack_bundle(tmp_path / "b.tar.gz", {"../escape": b"x"}, fleet="f", group="g", profile="p",
                    signer=keys["signer"])
    with pytest.raises(BundleError, match="path traversal"):
        verify_bundle(b, keys["pub"])


@pytest.mark.parametrize("data, problem", [
    (b"", "not a valid .tar.gz"),
    (b"garbage" * 100, "not a valid .tar.gz"),
])
def test_not_an_archive(tmp_path: Path, keys: dict, data: bytes, problem: str) -> None:
    p = tmp_path / "x.tar.gz"
    p.write_bytes(data)
    with pytest.raises(BundleError, match=problem):
        verify_bundle(p, keys["pub"])


def test_truncated_archive(tmp_path: Path, keys: dict) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    data = b.read_bytes()
    for cut in (len(data) // 4, len(data) // 2, len(data) - 10):
        b.write_bytes(data[:cut])
        with pytest.raises(BundleError, match="truncated or corrupt|not a valid|missing"):
            verify_bundle(b, keys["pub"])


def test_missing_and_directory_paths(tmp_path: Path, keys: dict) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        verify_bundle(tmp_path / "nope.tar.gz", keys["pub"])
    with pytest.raises(BundleError, match="is a directory"):
        verify_bundle(tmp_path, keys["pub"])


def test_public_key_formats(keys: dict, tmp_path: Path) -> None:
    raw = keys["pub"]
    assert parse_public_key(raw.hex().encode()) == raw
    import base64
    assert parse_public_key(base64.b64encode(raw)) == raw
    with pytest.raises(BundleError, match="private key"):
        load_public_key(keys["priv_path"])
    bad = tmp_path / "bad.pub"
    bad.write_text("hello")
    with pytest.raises(BundleError, match="not an Ed25519 public key"):
        load_public_key(bad)
    with pytest.raises(BundleError, match="no such public key"):
        load_public_key(tmp_path / "none.pub")


# ----------------------------------------------------------------------------- Ed25519 verifiers
def test_rfc8032_vector_1() -> None:
    """RFC 8032 section 7.1, TEST 1 (empty message)."""
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701"
                        "cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert ed25519.verify_pure(pk, b"", sig)
    assert ed25519.verify(pk, b"", sig, use="cryptography")
    assert not ed25519.verify_pure(pk, b"\x00", sig)


def test_pure_python_verifier_agrees_with_cryptography() -> None:
    import random

    rng = random.Random(1234)
    for i in range(12):
        key = Ed25519PrivateKey.generate()
        pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        msg = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        sig = key.sign(msg)
        cases = [(pub, msg, sig)]
        flipped = bytearray(sig)
        flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
        cases.append((pub, msg, bytes(flipped)))
        cases.append((pub, msg + b"!", sig))
        other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        cases.append((other, msg, sig))
        # S >= L (non-canonical) must be rejected by both
        s = int.from_bytes(sig[32:], "little") + ed25519.L
        if s < 2**256:
            cases.append((pub, msg, sig[:32] + s.to_bytes(32, "little")))
        for pk, m, sg in cases:
            ours = ed25519.verify_pure(pk, m, sg)
            ref = ed25519.verify(pk, m, sg, use="cryptography")
            assert ours == ref, (i, pk.hex(), sg.hex())
        assert ed25519.verify_pure(pub, msg, sig)


def test_bundle_verifies_without_cryptography(tmp_path: Path, keys: dict) -> None:
    """A device without `cryptography`: the pure-Python verifier accepts good and refuses bad bundles."""
    good = _bundle(tmp_path / "good.tar.gz", keys)
    bad = _bundle(tmp_path / "bad.tar.gz", keys)
    _repack(bad, _tamper_file(_members(bad), MANIFEST_NAME, lambda d: d.replace(b'"f"', b'"x"')))
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from edge_runtime import ed25519; assert ed25519.backend() == 'pure-python'\n"
        "from edge_runtime.bundle import verify_bundle, load_public_key\n"
        "from edge_runtime.errors import BundleError\n"
        f"k = load_public_key({str(keys['pub_path'])!r})\n"
        f"print(verify_bundle({str(good)!r}, k).verifier)\n"
        f"try:\n    verify_bundle({str(bad)!r}, k)\nexcept BundleError as e:\n    print('refused', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "pure-python"
    assert "refused" in r.stdout and "changed after signing" in r.stdout


# ----------------------------------------------------------------------------- CLI
def _verify_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_verify(tmp_path: Path, keys: dict) -> None:
    b = _bundle(tmp_path / "b.tar.gz", keys)
    r = _verify_cli(str(b), "--pubkey", str(keys["pub_path"]), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and out["signature"] == "verified" and out["files"] == 3
    _repack(b, _tamper_file(_members(b), "device.yaml", lambda d: d.replace(b"m.tflite", b"x.tflite")))
    r = _verify_cli(str(b), "--pubkey", str(keys["pub_path"]))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("edge-runtime: error: ") and "'device.yaml'" in r.stderr
    r = _verify_cli(str(b))
    assert r.returncode == 1 and "--pubkey" in r.stderr


def test_random_corruption_never_escapes_as_another_error(tmp_path: Path, keys: dict) -> None:
    """300 copies of a signed bundle with random bytes changed, cut or inserted: each one either
    verifies (only when the change left the archive's content intact, e.g. in gzip's header
    timestamp) or is refused with a BundleError; never another exception."""
    import random

    good = _bundle(tmp_path / "good.tar.gz", keys).read_bytes()
    rng = random.Random(99)
    outcomes = {"refused": 0, "intact": 0}
    p = tmp_path / "m.tar.gz"
    for _ in range(300):
        data = bytearray(good)
        kind = rng.choice(["flip", "cut", "insert", "zero"])
        i = rng.randrange(len(data))
        if kind == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del data[i:i + rng.randint(1, 64)]
        elif kind == "insert":
            data[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        else:
            data[i:i + 32] = bytes(len(data[i:i + 32]))
        p.write_bytes(bytes(data))
        try:
            info = verify_bundle(p, keys["pub"])
        except BundleError:
            outcomes["refused"] += 1
        else:
            outcomes["intact"] += 1
            with tarfile.open(p) as tf:  # accepted only if every file is exactly the original
                for name, content in FILES.items():
                    f = tf.extractfile(name)
                    assert f is not None and f.read() == content
            assert info.files_checked == len(FILES)
    assert outcomes["refused"] > 250

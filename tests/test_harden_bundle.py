"""[HARDEN] bundles: no downgrade without asking, no path out of the release, nothing unlisted, readable installs."""
from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from converters.fleet.archive import pack_bundle
from converters.fleet.keys import Signer, keygen
from edge_runtime.bundle import current_release, install_bundle, installed_device_config, load_public_key, verify_bundle
from edge_runtime.errors import BundleError

pytest.importorskip("cryptography")
FILES = {"models/m.tflite": b"M" * 3000, "device.yaml": b"model: {path: models/m.tflite}\n"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("hk")
    priv, pub, _ = keygen(d, "fleet")
    return {"signer": Signer(priv), "key": load_public_key(pub), "pub": pub}


def _b(path: Path, keys: dict, build_time: int, release=None, files=None, **kw) -> Path:
    return pack_bundle(path, dict(files or FILES), fleet="f", group="g", profile="rpi5", signer=keys["signer"],
                       build_time=build_time, release=release, device_config="device.yaml", **kw)


def test_older_bundle_is_refused_unless_asked(tmp_path: Path, keys: dict) -> None:
    root = tmp_path / "root"
    new = _b(tmp_path / "new.tar.gz", keys, 2000)
    old = _b(tmp_path / "old.tar.gz", keys, 1000, files={**FILES, "x": b"old"})
    install_bundle(new, root, keys["key"])
    rid = current_release(root)
    with pytest.raises(BundleError, match="not newer than the installed one.*--allow-downgrade"):
        install_bundle(old, root, keys["key"])
    assert current_release(root) == rid
    install_bundle(new, root, keys["key"])  # the same release again: idempotent, allowed
    assert current_release(root) == rid
    inst = install_bundle(old, root, keys["key"], allow_downgrade=True)
    assert current_release(root) == inst.release_id != rid


def test_release_numbers_order_before_build_time(tmp_path: Path, keys: dict) -> None:
    root = tmp_path / "root"
    install_bundle(_b(tmp_path / "r4.tar.gz", keys, 1000, release=4), root, keys["key"])
    later_but_lower = _b(tmp_path / "r3.tar.gz", keys, 9000, release=3, files={**FILES, "x": b"3"})
    with pytest.raises(BundleError, match=r"release 3.*not newer.*release 4"):
        install_bundle(later_but_lower, root, keys["key"])
    install_bundle(_b(tmp_path / "r5.tar.gz", keys, 500, release=5, files={**FILES, "x": b"5"}), root, keys["key"])


def test_cli_refuses_downgrade_in_one_line(tmp_path: Path, keys: dict) -> None:
    root = tmp_path / "root"
    install_bundle(_b(tmp_path / "new.tar.gz", keys, 2000), root, keys["key"])
    old = _b(tmp_path / "old.tar.gz", keys, 1000, files={**FILES, "x": b"o"})
    cmd = [sys.executable, "-m", "edge_runtime.cli", "verify", str(old), "--pubkey", str(keys["pub"]),
           "--install", str(root)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "not newer" in r.stderr
    r = subprocess.run(cmd + ["--allow-downgrade"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("target", ["../../../../etc/passwd", "/etc/passwd", "not-listed.yaml"])
def test_device_config_outside_the_release_is_refused(tmp_path: Path, keys: dict, target: str) -> None:
    b = pack_bundle(tmp_path / "b.tar.gz", dict(FILES), fleet="f", group="g", profile="rpi5",
                    signer=keys["signer"], device_config=target)
    with pytest.raises(BundleError, match="device_config.*not a file of the bundle"):
        verify_bundle(b, keys["key"])
    b2 = pack_bundle(tmp_path / "b2.tar.gz", dict(FILES), fleet="f", group="g", profile="rpi5",
                     signer=keys["signer"], device_config="device.yaml", device_configs={"cam-1": target})
    with pytest.raises(BundleError, match="device_configs.cam-1"):
        verify_bundle(b2, keys["key"])


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else b"") for m in tf.getmembers()]


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            tf.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return buf.getvalue()


def test_unlisted_directory_is_refused(tmp_path: Path, keys: dict) -> None:
    members = _members(_b(tmp_path / "b.tar.gz", keys, 1))
    d = tarfile.TarInfo("sneaky/dir")
    d.type = tarfile.DIRTYPE
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(_tar(members + [(d, b"")])))
    with pytest.raises(BundleError, match="directory 'sneaky/dir' is in the archive but no file"):
        verify_bundle(bad, keys["key"])
    root = tmp_path / "root"
    with pytest.raises(BundleError):
        install_bundle(bad, root, keys["key"])
    assert current_release(root) is None


def test_data_after_the_archive_is_refused_quickly(tmp_path: Path, keys: dict) -> None:
    raw = _tar(_members(_b(tmp_path / "b.tar.gz", keys, 1)))
    ok = tmp_path / "ok.tar.gz"
    ok.write_bytes(gzip.compress(raw + bytes(4096)))  # more zero padding is harmless
    verify_bundle(ok, keys["key"])
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(raw + b"junk" * 1000))
    with pytest.raises(BundleError, match="data after the end of the archive"):
        verify_bundle(bad, keys["key"])
    big = tmp_path / "big.tar.gz"  # 64 MiB of zeros after the end: refused without reading it all
    with gzip.open(big, "wb", compresslevel=1) as f:
        f.write(raw)
        for _ in range(64):
            f.write(bytes(1 << 20))
    with pytest.raises(BundleError, match="data after the end of the archive"):
        verify_bundle(big, keys["key"])


def test_installed_release_is_readable_by_another_user(tmp_path: Path, keys: dict) -> None:
    root = tmp_path / "root"
    old = os.umask(0o077)
    try:
        inst = install_bundle(_b(tmp_path / "b.tar.gz", keys, 1), root, keys["key"])
    finally:
        os.umask(old)
    for dirpath, dirs, files in os.walk(inst.path):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o755, dirpath
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o644, f
    assert installed_device_config(root, keys["key"]).read_bytes() == FILES["device.yaml"]


def test_built_bundle_file_is_world_readable(tmp_path: Path, keys: dict) -> None:
    old = os.umask(0o077)
    try:
        b = _b(tmp_path / "b.tar.gz", keys, 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o644

"""Release numbers (state file, --release N, never reused, signed), `edge-runtime rollback`,
and per-device data that scales (a 10,000-device group: a few-file bundle plus one small
signed file per device; a device's fetch+verify does not grow with the group)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from converters.fleet.build import build_fleet
from converters.fleet.keys import keygen
from edge_runtime.agent.device_file import store_device_file, verify_device_file
from edge_runtime.bundle import (current_release, install_bundle, installed_device_config, load_installed,
                                 load_public_key, previous_release, verify_bundle)
from edge_runtime.errors import BundleError, ConfigError

pytest.importorskip("cryptography")
MODEL = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("rk")
    priv, pub, kid = keygen(d)
    return {"priv": priv, "pub": pub, "key": load_public_key(pub), "kid": kid}


def _fleet(d: Path, n_devices: int, model: bytes = MODEL) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "m.tflite").write_bytes(model)
    fleet = {"version": 1, "name": "rel", "defaults": {"daemon": {"sinks": [{"type": "jsonl", "path": "-"}]}},
             "groups": {"g": {"profile": "rpi5", "models": {"m": {"source": "m.tflite", "prebuilt": True}}},
                        "h": {"profile": "rpi5", "models": {"m": {"source": "m.tflite", "prebuilt": True}}}},
             "devices": {f"d{i:05d}": {"group": "g", "daemon": {"pipeline": {"queue_size": 1 + i % 7}}}
                         for i in range(n_devices)}}
    p = d / "fleet.yaml"
    p.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return p


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def test_release_numbers_rise_are_signed_and_never_reused(tmp_path: Path, keys: dict) -> None:
    fleet = _fleet(tmp_path / "f", 3)
    dist = tmp_path / "dist"
    kw = dict(sign_key=keys["priv"], cache_dir=tmp_path / "cache", progress=False)
    r1 = build_fleet(fleet, dist, **kw)
    assert [b.release for b in r1.bundles] == [1, 1]
    r2 = build_fleet(fleet, dist, groups=["g"], **kw)
    assert r2.bundles[0].release == 2
    info = verify_bundle(r2.bundles[0].path, keys["key"])  # the number is inside the signed manifest
    assert info.manifest.release == 2
    state = json.loads((dist / "releases.json").read_text())
    assert state["groups"]["g"]["last"] == 2 and state["groups"]["h"]["last"] == 1
    with pytest.raises(ConfigError, match=r"release 2 is not above the last release 2"):
        build_fleet(fleet, dist, release=2, **kw)
    r3 = build_fleet(fleet, dist, release=10, **kw)
    assert [b.release for b in r3.bundles] == [10, 10]
    assert build_fleet(fleet, dist, groups=["h"], **kw).bundles[0].release == 11
    # the CLI: a one-line error, and the release in --json
    bad = _cli("converters.cli", "fleet", "build", str(fleet), "-o", str(dist), "--release", "5",
               "--cache-dir", str(tmp_path / "cache"))
    assert bad.returncode != 0 and "never reused" in bad.stderr and "Traceback" not in bad.stderr
    ok = _cli("converters.cli", "fleet", "build", str(fleet), "-o", str(dist), "--cache-dir", str(tmp_path / "cache"),
              "--sign-key", str(keys["priv"]), "--json", "--group", "g")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["bundles"][0]["release"] == 11


def test_install_refuses_lower_release_and_rollback_goes_back(tmp_path: Path, keys: dict) -> None:
    fleet = _fleet(tmp_path / "f", 2)
    kw = dict(sign_key=keys["priv"], cache_dir=tmp_path / "cache", progress=False, groups=["g"],
              release_state=tmp_path / "releases.json")  # one state file for two output folders
    b1 = build_fleet(fleet, tmp_path / "d1", **kw).bundles[0]
    (tmp_path / "f" / "m.tflite").write_bytes(MODEL[::-1])
    b2 = build_fleet(fleet, tmp_path / "d2", **kw).bundles[0]
    assert (b1.release, b2.release) == (1, 2)
    root = tmp_path / "root"
    i1 = install_bundle(b1.path, root, keys["key"])
    i2 = install_bundle(b2.path, root, keys["key"])
    assert previous_release(root) == i1.release_id
    with pytest.raises(BundleError, match=r"release 1.*not newer.*release 2"):
        install_bundle(b1.path, root, keys["key"])
    r = _cli("edge_runtime.cli", "rollback", "--root", str(root), "--pubkey", str(keys["pub"]), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["current"] == i1.release_id and out["release_number"] == 1 and out["rolled_back_from"] == i2.release_id
    assert current_release(root) == i1.release_id and load_installed(root, keys["key"]).manifest.release == 1
    # a second rollback undoes the first
    assert _cli("edge_runtime.cli", "rollback", "--root", str(root), "--pubkey", str(keys["pub"])).returncode == 0
    assert current_release(root) == i2.release_id
    # a damaged previous release is refused and current stays
    victim = root / "releases" / i1.release_id / "models" / "m.tflite"
    victim.write_bytes(b"x" + victim.read_bytes()[1:])
    bad = _cli("edge_runtime.cli", "rollback", "--root", str(root), "--pubkey", str(keys["pub"]))
    assert bad.returncode == 1 and "does not match the manifest" in bad.stderr
    assert current_release(root) == i2.release_id
    empty = _cli("edge_runtime.cli", "rollback", "--root", str(tmp_path / "none"), "--pubkey", str(keys["pub"]))
    assert empty.returncode == 1 and "nothing installed" in empty.stderr


def test_device_file_belongs_to_one_device_and_one_bundle(tmp_path: Path, keys: dict) -> None:
    fleet = _fleet(tmp_path / "f", 4)
    r = build_fleet(fleet, tmp_path / "dist", sign_key=keys["priv"], cache_dir=tmp_path / "cache", progress=False,
                    groups=["g"], device_files="separate")
    b = r.bundles[0]
    assert b.device_files is not None and len(list(b.device_files.glob("*.json"))) == 4
    info = verify_bundle(b.path, keys["key"])
    assert info.manifest.device_configs == {}  # not in the bundle
    data = (b.device_files / "d00003.json").read_bytes()
    kw = dict(fleet="rel", group="g", manifest_sha256=info.manifest_sha256, origin="d00003.json")
    cfg = verify_device_file(data, keys["key"], device_id="d00003", **kw)
    assert cfg["pipeline"]["queue_size"] == 4
    with pytest.raises(BundleError, match="for device 'd00003', expected 'd00001'"):
        verify_device_file(data, keys["key"], device_id="d00001", **kw)
    with pytest.raises(BundleError, match="manifest_sha256"):
        verify_device_file(data, keys["key"], device_id="d00003", **{**kw, "manifest_sha256": "0" * 64})
    forged = data.replace(b'"queue_size": 4', b'"queue_size": 9')
    with pytest.raises(BundleError, match="changed after signing"):
        verify_device_file(forged, keys["key"], device_id="d00003", **kw)
    # installed: the daemon's config for this device is its own, with paths in the release
    root = tmp_path / "root"
    inst = install_bundle(b.path, root, keys["key"])
    store_device_file(root, inst.release_id, "d00003", data, cfg)
    path = installed_device_config(root, keys["key"], "d00003")
    own = yaml.safe_load(path.read_text())
    assert own["pipeline"]["queue_size"] == 4 and own["model"]["path"] == str(inst.path / "models" / "m.tflite")
    from edge_runtime.daemon.config import load_config

    daemon_cfg = load_config(path)  # what `edge-runtime serve --bundle-root ROOT --device-id d00003` loads
    assert daemon_cfg.pipeline.queue_size == 4 and Path(daemon_cfg.model.path).is_file()
    assert installed_device_config(root, keys["key"], "d00001") == inst.path / "device.yaml"  # no file: group's
    (root / "overrides" / inst.release_id / "d00003.json").write_bytes(forged)
    with pytest.raises(BundleError, match="changed after signing"):
        installed_device_config(root, keys["key"], "d00003")


def _fetch_verify_seconds(b, key: bytes, device: str, rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Best of ``rounds``: verify the group bundle and this device's own file (what a device does)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        info = verify_bundle(b.path, key)
        data = (b.device_files / f"{device}.json").read_bytes()
        verify_device_file(data, key, fleet="rel", group="g", manifest_sha256=info.manifest_sha256, device_id=device,
                           origin=device)
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.slow
def test_ten_thousand_devices_build_small_bundle_and_constant_device_work(tmp_path: Path, keys: dict) -> None:
    small = build_fleet(_fleet(tmp_path / "s", 10), tmp_path / "ds", sign_key=keys["priv"],
                        cache_dir=tmp_path / "cache", progress=False, groups=["g"], device_files="separate").bundles[0]
    t = time.perf_counter()
    big = build_fleet(_fleet(tmp_path / "b", 10_000), tmp_path / "db", sign_key=keys["priv"],
                      cache_dir=tmp_path / "cache", progress=False, groups=["g"]).bundles[0]  # auto: separate
    build_s = time.perf_counter() - t
    files = sorted(os.listdir(big.device_files))
    assert big.files <= 5 and len(files) == 10_000
    per_device = max((big.device_files / f).stat().st_size for f in files[:100])
    t_small = _fetch_verify_seconds(small, keys["key"], "d00007")
    t_big = _fetch_verify_seconds(big, keys["key"], "d09999")
    print(f"\n10,000-device group: build {build_s:.1f} s; bundle {big.size:,} bytes, {big.files} files; "
          f"device file {per_device} bytes; one device's fetch+verify {t_big * 1000:.1f} ms "
          f"(10-device group: {t_small * 1000:.1f} ms)")
    assert big.size < small.size + 4096  # the bundle does not grow with the devices
    assert t_big < max(3 * t_small, t_small + 0.05)
    assert build_s < 180


def test_publish_stage_only_places_files_once_and_refuses_reuse(tmp_path: Path, keys: dict) -> None:
    fleet = _fleet(tmp_path / "f", 3)
    dist = tmp_path / "dist"
    build_fleet(fleet, dist, sign_key=keys["priv"], cache_dir=tmp_path / "cache", progress=False, groups=["g"],
                device_files="separate")
    www = tmp_path / "www"
    args = ("converters.cli", "fleet", "publish", str(dist), "--http-root", str(www), "--base-url",
            "http://cdn.example/b/", "--stage-only", "--json")
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)[0]["staged"]
    assert s["url"] == "http://cdn.example/b/rel/g/1/g.tar.gz" and s["devices"] == ["d00000", "d00001", "d00002"]
    assert s["device_url"] == "http://cdn.example/b/rel/g/1/devices/{device_id}.json"
    assert (www / "rel" / "g" / "1" / "g.tar.gz").read_bytes() == (dist / "g.tar.gz").read_bytes()
    assert len(list((www / "rel" / "g" / "1" / "devices").glob("*.json"))) == 3
    again = _cli(*args)  # the same release again: nothing to copy
    assert again.returncode == 0 and json.loads(again.stdout)[0]["staged"]["bytes_placed"] == 0
    (www / "rel" / "g" / "1" / "g.tar.gz").write_bytes(b"other bytes")
    bad = _cli(*args)
    assert bad.returncode != 0 and "already published with other bytes" in bad.stderr and "Traceback" not in bad.stderr
    no_mqtt = _cli("converters.cli", "fleet", "publish", str(dist), "--http-root", str(www), "--base-url", "http://x")
    assert no_mqtt.returncode != 0 and "--mqtt" in no_mqtt.stderr

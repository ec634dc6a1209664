"""`edge-convert fleet build`: per-group bundles, the content-hash cache, --jobs, signing,
and the bundles verified and installed by the device side."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from converters.fleet.build import build_fleet
from converters.fleet.keys import keygen
from converters.fleet.steps import ConversionJob, convert_prebuilt
from edge_runtime.bundle import install_bundle, load_public_key, verify_bundle
from edge_runtime.errors import BudgetExceededError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fleet" / "fleet.yaml"
COUNTING = "test_fleet_build:counting_convert"


def counting_convert(job: ConversionJob, out_dir: Path):  # type: ignore[no-untyped-def]
    """A converter for tests: ships the (already int8) source and logs each call to a file."""
    with open(job.options["log"], "a") as f:
        f.write(f"{job.model_name} {job.profile['name']} {os.getpid()}\n")
    return convert_prebuilt(job, out_dir)


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("keys")
    priv, pub, kid = keygen(d)
    return {"priv": priv, "pub": pub, "kid": kid, "key": load_public_key(pub)}


def _write_fleet(d: Path, mlperf: Path, log: Path) -> Path:
    for name in ("kws_ref_model.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"):
        shutil.copyfile(mlperf / name, d / name)
    np.save(d / "calib.npy", np.zeros((4, 1, 49, 10, 1), np.float32))
    (d / "kws_labels.txt").write_text("\n".join(["down", "go", "left", "no", "off", "on", "right", "stop", "up",
                                                  "yes", "silence", "unknown"]) + "\n")
    fleet = {
        "version": 1, "name": "test-fleet",
        "defaults": {"convert": {"options": {"log": str(log)}},
                     "daemon": {"pipeline": {"queue_size": 32}, "sinks": [{"type": "jsonl", "path": "-"}]}},
        "groups": {
            "pi5-kws": {"profile": "rpi5",
                        "models": {"kws": {"source": "kws_ref_model.tflite", "calibration": "calib.npy",
                                           "labels": "kws_labels.txt", "postprocess": [{"type": "topk", "k": 3}]}},
                        "daemon": {"source": {"type": "tcp", "port": 7000}}},
            "pi4-multi": {"profile": "rpi4-4gb", "serve": "ad",
                          "models": {"kws": {"source": "kws_ref_model.tflite", "calibration": "calib.npy"},
                                     "ad": {"source": "ad01_int8.tflite", "calibration": "calib.npy"}}},
            "coral-vww": {"profile": "coral-usb-rpi4",
                          "models": {"vww": {"source": "vww_96_int8.tflite", "calibration": "calib.npy"}}},
            "stm32-kws": {"profile": "stm32h743",
                          "models": {"kws": {"source": "kws_ref_model.tflite", "calibration": "calib.npy"}}},
        },
        "devices": {"pi-a": {"group": "pi5-kws", "daemon": {"pipeline": {"queue_size": 8}}},
                    "pi-b": {"group": "pi5-kws"}, "m-1": {"group": "stm32-kws"}},
    }
    p = d / "fleet.yaml"
    p.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mlperf_models: Path, keys: dict) -> dict:
    d = tmp_path_factory.mktemp("fleet")
    log = d / "calls.log"
    fleet = _write_fleet(d, mlperf_models, log)
    r = build_fleet(fleet, d / "dist", sign_key=keys["priv"], cache_dir=d / "cache", converter=COUNTING,
                    build_time=1_750_000_000)
    return {"dir": d, "fleet": fleet, "log": log, "result": r, "calls": _calls(log)}


def test_one_signed_bundle_per_group(built: dict, keys: dict) -> None:
    r = built["result"]
    assert sorted(b.group for b in r.bundles) == ["coral-vww", "pi4-multi", "pi5-kws", "stm32-kws"]
    # 5 (model, profile) pairs, each converted once
    assert r.conversions == 5 == len(built["calls"]) and r.cache_hits == 0
    index = json.loads((built["dir"] / "dist" / "index.json").read_text())
    assert {b["file"] for b in index["bundles"]} == {f"{b.group}.tar.gz" for b in r.bundles}
    for b in r.bundles:
        info = verify_bundle(b.path, keys["key"])
        assert info.signed_by == keys["kid"] and info.files_checked == b.files
        m = info.manifest
        assert m.fleet == "test-fleet" and m.group == b.group and m.profile == b.profile
        assert m.converter_version == r.converter_version and m.build_time == "2025-06-15T15:06:40Z"
        for model in m.models:
            src = built["dir"] / model.source
            import hashlib
            assert model.source_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def _extract(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as tf:
        f = tf.extractfile(name)
        assert f is not None
        return f.read()


def test_device_configs_load_in_the_daemon(built: dict, keys: dict, tmp_path: Path) -> None:
    """Reference: edge_runtime.daemon.config.load_config reads the installed device.yaml."""
    config = pytest.importorskip("edge_runtime.daemon.config")
    bundle = built["dir"] / "dist" / "pi5-kws.tar.gz"
    inst = install_bundle(bundle, tmp_path / "root", keys["key"])
    cfg = config.load_config(inst.device_config)
    assert Path(cfg.model.path) == inst.path / "models" / "kws.tflite" and Path(cfg.model.path).is_file()
    assert cfg.model.labels[:3] == ["down", "go", "left"] and cfg.postprocess[0].type == "topk"
    assert cfg.pipeline.queue_size == 32 and cfg.source.type == "tcp" and cfg.profile == "rpi5"
    dev = config.load_config(inst.path / inst.manifest.device_configs["pi-a"])
    assert dev.pipeline.queue_size == 8  # the device layer
    # the shipped model is the source, byte for byte (prebuilt)
    assert Path(cfg.model.path).read_bytes() == (built["dir"] / "kws_ref_model.tflite").read_bytes()
    multi = install_bundle(built["dir"] / "dist" / "pi4-multi.tar.gz", tmp_path / "root2", keys["key"])
    assert config.load_config(multi.device_config).model.path.endswith("models/ad.tflite")
    assert (multi.path / "models" / "kws.tflite").is_file()


def test_microcontroller_bundle_has_offline_plan_and_arena_report(built: dict) -> None:
    """Golden data: ../shared/models/README.md gives TFLM's arena for KWS (head 16,000 B, total 24,282 B)."""
    from converters.offline_plan import read_offline_plan
    from edge_runtime.formats.tflite import TFLiteModel

    bundle = built["dir"] / "dist" / "stm32-kws.tar.gz"
    with tarfile.open(bundle) as tf:
        names = set(tf.getnames())
    assert "device.yaml" not in names and {"models/kws.tflite", "reports/kws.arena.txt"} <= names
    model = TFLiteModel(_extract(bundle, "models/kws.tflite"))
    plan = read_offline_plan(model)
    assert plan is not None and len(plan) == len(model.main.tensors)
    arena = json.loads(_extract(bundle, "reports/kws.arena.json"))
    assert arena["offline_plan_embedded"] and arena["planned_activation_bytes"] <= 16_000
    assert arena["fits_ram"] and arena["fits_flash"]
    if arena["tflm_measured"] is not None:  # tflite-micro installed (x86_64)
        assert arena["tflm_measured"]["head_bytes"] == arena["planned_activation_bytes"]
        assert arena["recommended_arena_bytes"] <= 24_282 + 16
        assert f"kTensorArenaSize = {arena['recommended_arena_bytes']}" in _extract(
            bundle, "reports/kws.arena.txt").decode()


def test_second_build_is_a_cache_hit(built: dict, keys: dict) -> None:
    d = built["dir"]
    before = len(_calls(built["log"]))
    r = build_fleet(built["fleet"], d / "dist2", sign_key=keys["priv"], cache_dir=d / "cache", converter=COUNTING,
                    build_time=1_750_000_000)
    assert r.conversions == 0 and r.cache_hits == 5
    assert len(_calls(built["log"])) == before  # the converter was not called at all
    # same inputs and build time: byte-identical bundles
    for b in r.bundles:
        assert b.path.read_bytes() == (d / "dist" / b.path.name).read_bytes()


def test_changes_rebuild_only_what_they_affect(built: dict, tmp_path: Path, mlperf_models: Path) -> None:
    d = tmp_path
    log = d / "calls.log"
    fleet = _write_fleet(d, mlperf_models, log)
    build_fleet(fleet, d / "dist", cache_dir=d / "cache", converter=COUNTING)
    assert len(_calls(log)) == 5
    # daemon settings do not touch conversions
    text = fleet.read_text().replace("queue_size: 32", "queue_size: 64")
    fleet.write_text(text)
    assert build_fleet(fleet, d / "dist", cache_dir=d / "cache", converter=COUNTING).conversions == 0
    # new calibration bytes: every model using them is converted again
    np.save(d / "calib.npy", np.ones((4, 1, 49, 10, 1), np.float32))
    r = build_fleet(fleet, d / "dist", cache_dir=d / "cache", converter=COUNTING)
    assert r.conversions == 5 and len(_calls(log)) == 10
    # a changed source model: only its conversions (ad on pi4)
    data = bytearray((d / "ad01_int8.tflite").read_bytes())
    (d / "ad01_int8.tflite").write_bytes(bytes(data) + b"\0" * 16)
    r = build_fleet(fleet, d / "dist", cache_dir=d / "cache", converter=COUNTING)
    assert r.conversions == 1 and _calls(log)[-1].startswith("ad rpi4-4gb")
    # a damaged cache entry is rebuilt, never shipped
    entry = d / "cache" / r.jobs[0].key
    (entry / "model.tflite").write_bytes(b"corrupt")
    r = build_fleet(fleet, d / "dist", cache_dir=d / "cache", converter=COUNTING)
    assert r.conversions == 1


def test_jobs_run_in_parallel_workers_with_identical_output(built: dict, tmp_path: Path,
                                                           mlperf_models: Path) -> None:
    log = tmp_path / "calls.log"
    fleet = _write_fleet(tmp_path, mlperf_models, log)
    r = build_fleet(fleet, tmp_path / "dist", jobs=2, cache_dir=tmp_path / "cache", converter=COUNTING,
                    build_time=1_750_000_000)
    calls = _calls(log)
    assert r.conversions == 5 and len(calls) == 5
    assert len({c.split()[2] for c in calls}) >= 1 and str(os.getpid()) not in {c.split()[2] for c in calls}
    # the bundles' manifests equal the sequential build's (same files, same hashes)
    for b in r.bundles:
        ours = json.loads(_extract(b.path, "manifest.json"))
        ref = json.loads(_extract(built["dir"] / "dist" / b.path.name, "manifest.json"))
        assert ours["files"] == ref["files"]


def test_over_budget_model_fails_the_build(tmp_path: Path, mlperf_models: Path) -> None:
    """ad01_fp32.tflite is 1,067,648 bytes; the nRF52840 profile gives models 512 KiB of flash."""
    shutil.copyfile(mlperf_models / "ad01_fp32.tflite", tmp_path / "ad.tflite")
    (tmp_path / "fleet.yaml").write_text(
        "name: f\ngroups:\n  tiny:\n    profile: nrf52840\n    models:\n"
        "      ad: {source: ad.tflite, prebuilt: true}\n")
    with pytest.raises(BudgetExceededError, match="group 'tiny'.*ad.*nrf52840.*flash budget 524,288"):
        build_fleet(tmp_path / "fleet.yaml", tmp_path / "dist", cache_dir=tmp_path / "cache")


def test_bad_sign_key(tmp_path: Path, built: dict) -> None:
    (tmp_path / "k").write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        build_fleet(built["fleet"], tmp_path / "d", sign_key=tmp_path / "k", cache_dir=built["dir"] / "cache")
    with pytest.raises(ConfigError, match="no such signing key"):
        build_fleet(built["fleet"], tmp_path / "d", sign_key=tmp_path / "none", cache_dir=built["dir"] / "cache")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converters.cli", "fleet", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_keygen_cli(tmp_path: Path) -> None:
    r = _cli("keygen", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "fleet.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "fleet.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = _cli("keygen", "-o", str(tmp_path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_example_fleet_builds_end_to_end(tmp_path: Path) -> None:
    """The example fleet through the real converter (converters.pipeline), then a warm rebuild."""
    pytest.importorskip("converters.pipeline")
    assert _cli("keygen", "-o", str(tmp_path / "keys")).returncode == 0
    args = ["build", str(EXAMPLE), "-o", str(tmp_path / "dist"), "--jobs", "2", "--sign-key",
            str(tmp_path / "keys" / "fleet.key"), "--cache-dir", str(tmp_path / "cache"), "--json"]
    cold = _cli(*args)
    assert cold.returncode == 0, cold.stderr
    c = json.loads(cold.stdout)
    assert c["conversions"] == 4 and c["cache_hits"] == 0 and len(c["bundles"]) == 4
    warm = json.loads(_cli(*args).stdout)
    assert warm["conversions"] == 0 and warm["cache_hits"] == 4
    key = load_public_key(tmp_path / "keys" / "fleet.pub")
    for b in warm["bundles"]:
        info = verify_bundle(b["path"], key)
        assert info.manifest.profile == b["profile"]
    mcu = next(b for b in warm["bundles"] if b["profile"] == "nrf52840")
    arena = json.loads(_extract(Path(mcu["path"]), "reports/digits.arena.json"))
    assert arena["offline_plan_embedded"] and arena["fits_ram"]
    r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", mcu["path"], "--pubkey",
                        str(tmp_path / "keys" / "fleet.pub"), "--install", str(tmp_path / "dev")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "installed:" in r.stdout, r.stderr

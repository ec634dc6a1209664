"""`edge-runtime serve --bundle-root`: the daemon serves only a verified, installed bundle."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edge_runtime.bundle import install_bundle, load_public_key
from edge_runtime.commands import serve
from edge_runtime.errors import BundleError, ConfigError

pytest.importorskip("cryptography")
from converters.fleet.archive import pack_bundle  # noqa: E402
from converters.fleet.keys import Signer, keygen  # noqa: E402


def _args(**kw: object) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    serve.add_arguments(p)
    ns = p.parse_args([])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture()
def installed(tmp_path: Path, mlperf_models: Path) -> dict:
    priv, pub, _ = keygen(tmp_path / "keys")
    model = (mlperf_models / "kws_ref_model.tflite").read_bytes()
    files = {"models/kws.tflite": model,
             "device.yaml": b"model: {path: models/kws.tflite, backend: micro}\nprofile: rpi4-4gb\n"}
    bundle = pack_bundle(tmp_path / "kws.tar.gz", files, fleet="f", group="g", profile="rpi4-4gb",
                         signer=Signer(priv), device_config="device.yaml")
    root = tmp_path / "root"
    install_bundle(bundle, root, load_public_key(pub))
    return {"root": root, "pub": pub, "model": model}


def test_serve_config_comes_from_the_verified_bundle(installed: dict) -> None:
    cfg = serve.build_config(_args(bundle_root=str(installed["root"]), pubkey=str(installed["pub"])))
    path = Path(cfg.model.path)
    assert path.read_bytes() == installed["model"]
    assert installed["root"].resolve() in path.resolve().parents


def test_serve_refuses_a_tampered_installed_bundle(installed: dict) -> None:
    victim = next((installed["root"] / "current" / "models").glob("*.tflite"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the manifest"):
        serve.build_config(_args(bundle_root=str(installed["root"]), pubkey=str(installed["pub"])))


def test_serve_bundle_root_needs_a_key(installed: dict) -> None:
    with pytest.raises(ConfigError, match="--pubkey"):
        serve.build_config(_args(bundle_root=str(installed["root"])))

"""Atomic bundle installation: refused bundles keep the old release; a kill at any moment
leaves the old or the new release complete, never a mix."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from converters.fleet.archive import pack_bundle
from converters.fleet.keys import Signer, keygen
from edge_runtime.bundle import (current_release, install_bundle, load_installed, load_public_key,
                                 verify_bundle)
from edge_runtime.errors import BundleError

pytest.importorskip("cryptography")

N_RANDOM_KILLS = 24


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("install")
    priv, pub, _ = keygen(d / "keys")
    signer = Signer(priv)
    rng = random.Random(7)
    a_files = {"models/m.tflite": b"A" * 5000, "device.yaml": b"model: {path: models/m.tflite}\n",
               "labels/m.txt": b"a\nb\n"}
    # B is bigger (incompressible), so an install takes long enough to be killed at many moments
    b_files = {f"models/part{i:02d}.bin": rng.randbytes(256 << 10) for i in range(12)}
    b_files.update({"models/m.tflite": b"B" * 7000, "device.yaml": b"model: {path: models/m.tflite}\n"})
    a = pack_bundle(d / "a.tar.gz", a_files, fleet="f", group="g", profile="rpi5", signer=signer)
    b = pack_bundle(d / "b.tar.gz", b_files, fleet="f", group="g", profile="rpi5", signer=signer, build_time=1)
    key = load_public_key(pub)
    return {"dir": d, "a": a, "b": b, "pub": pub, "key": key, "signer": signer,
            "a_id": verify_bundle(a, key).release_id, "b_id": verify_bundle(b, key).release_id,
            "a_files": a_files, "b_files": b_files}


def _leftovers(root: Path) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith((".staging-", ".trash-")) or n == "current.new"]


def _fresh_root(env: dict, name: str) -> Path:
    root = env["dir"] / name
    shutil.rmtree(root, ignore_errors=True)
    install_bundle(env["a"], root, env["key"])
    return root


def test_install_then_upgrade(env: dict) -> None:
    root = _fresh_root(env, "upgrade")
    assert current_release(root) == env["a_id"]
    inst = install_bundle(env["b"], root, env["key"])
    assert inst.previous == env["a_id"] and current_release(root) == env["b_id"]
    for name, data in env["b_files"].items():
        assert (root / "current" / name).read_bytes() == data
    assert load_installed(root, env["key"]).release_id == env["b_id"]
    assert sorted(os.listdir(root / "releases")) == sorted([env["a_id"], env["b_id"]])
    assert not _leftovers(root)
    # installing the same bundle again is a no-op switch
    again = install_bundle(env["b"], root, env["key"])
    assert again.release_id == env["b_id"] and current_release(root) == env["b_id"]


def test_keep_prunes_old_releases(env: dict, tmp_path: Path) -> None:
    root = _fresh_root(env, "prune")
    ids = []
    for i in range(4):
        p = pack_bundle(tmp_path / f"v{i}.tar.gz", {"x.txt": f"v{i}".encode()}, fleet="f", group="g",
                        profile="p", signer=env["signer"], build_time=100 + i)
        ids.append(install_bundle(p, root, env["key"], keep=2).release_id)
    assert sorted(os.listdir(root / "releases")) == sorted(ids[-2:])
    assert current_release(root) == ids[-1]


@pytest.mark.parametrize("damage", ["tamper", "unsigned", "wrong_key", "traversal"])
def test_refused_install_keeps_old_release(env: dict, tmp_path: Path, damage: str) -> None:
    root = _fresh_root(env, f"refuse-{damage}")
    before = sorted(os.listdir(root / "releases"))
    key = env["key"]
    if damage == "tamper":
        data = bytearray(env["b"].read_bytes())
        bad = tmp_path / "bad.tar.gz"
        import gzip
        raw = bytearray(gzip.decompress(bytes(data)))
        i = raw.find(b"B" * 100)
        raw[i] = ord("C")
        bad.write_bytes(gzip.compress(bytes(raw)))
        problem = "does not match its sha256"
    elif damage == "unsigned":
        bad = pack_bundle(tmp_path / "u.tar.gz", env["b_files"], fleet="f", group="g", profile="rpi5")
        problem = "unsigned"
    elif damage == "wrong_key":
        bad = env["b"]
        kp = keygen(tmp_path / "k2")[1]
        key = load_public_key(kp)
        problem = "wrong key"
    else:
        bad = pack_bundle(tmp_path / "t.tar.gz", {"../../outside.txt": b"x"}, fleet="f", group="g", profile="p",
                          signer=env["signer"])
        problem = "path traversal"
    with pytest.raises(BundleError, match=problem):
        install_bundle(bad, root, key)
    assert current_release(root) == env["a_id"]
    assert load_installed(root, env["key"]).release_id == env["a_id"]
    assert sorted(os.listdir(root / "releases")) == before
    assert not _leftovers(root)
    assert not (root.parent / "outside.txt").exists() and not (root / "outside.txt").exists()


def test_modified_installed_file_is_detected(env: dict) -> None:
    root = _fresh_root(env, "modified")
    target = root / "current" / "models" / "m.tflite"
    target.write_bytes(b"A" * 4999 + b"Z")
    with pytest.raises(BundleError, match="models/m.tflite.*modified after install"):
        load_installed(root, env["key"])
    # reinstalling the same bundle repairs it
    install_bundle(env["a"], root, env["key"])
    assert load_installed(root, env["key"]).release_id == env["a_id"]


# ----------------------------------------------------------------------------- kill tests
_CHILD = r"""
import os, signal, sys, time
from edge_runtime.bundle import install_bundle, load_public_key
bundle, root, pub, mode, target = sys.argv[1:6]
key = load_public_key(pub)
steps = []
def hook(step):
    steps.append(step)
    if mode == "step" and step == target:
        os.kill(os.getpid(), signal.SIGKILL)
print("ready", flush=True)
t0 = time.perf_counter()
install_bundle(bundle, root, key, on_step=hook)
print("elapsed", time.perf_counter() - t0, flush=True)
print("steps", "|".join(steps), flush=True)
"""


def _spawn(env: dict, root: Path, mode: str, target: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(env["b"]), str(root), str(env["pub"]), mode, target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_after_kill(env: dict, root: Path) -> str:
    """Old or new complete, never a mix; then the next install recovers; then reset to A."""
    rid = current_release(root)
    assert rid in (env["a_id"], env["b_id"])
    inst = load_installed(root, env["key"])  # every file of the active release matches its signed manifest
    files = env["a_files"] if rid == env["a_id"] else env["b_files"]
    for name, data in files.items():
        assert (inst.path / name).read_bytes() == data
    assert set(os.listdir(inst.path)) <= {"models", "labels", "device.yaml", "manifest.json", "manifest.sig"}
    # recovery: a later install cleans up after the killed one and succeeds
    install_bundle(env["b"], root, env["key"])
    assert current_release(root) == env["b_id"] and not _leftovers(root)
    install_bundle(env["a"], root, env["key"], allow_downgrade=True)  # back to A
    shutil.rmtree(root / "releases" / env["b_id"])  # so the next child must really unpack B
    assert current_release(root) == env["a_id"]
    return "new" if rid == env["b_id"] else "old"


def test_kill_at_every_step(env: dict) -> None:
    root = _fresh_root(env, "kill-steps")
    p = _spawn(env, root, "record")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    steps = next(line for line in out.splitlines() if line.startswith("steps ")).split(" ", 1)[1].split("|")
    install_bundle(env["a"], root, env["key"], allow_downgrade=True)  # back to A
    shutil.rmtree(root / "releases" / env["b_id"])
    assert steps[0] == "start" and steps[-1] == "done" and sum(s.startswith("file:") for s in steps) == 14
    files = [s for s in steps if s.startswith("file:")]
    chosen = [s for s in steps if not s.startswith("file:") or s in (files[0], files[len(files) // 2], files[-1])]
    outcomes = {}
    for step in chosen:
        p = _spawn(env, root, "step", step)
        p.communicate(timeout=120)
        assert p.returncode == -signal.SIGKILL, f"the child was not killed at step {step}"
        outcomes[step] = _check_after_kill(env, root)
    # before the symlink switch the old release is active, from the switch on the new one
    switch = steps.index("switched")
    assert all(outcomes[s] == "old" for s in chosen if steps.index(s) <= steps.index("linked"))
    assert all(outcomes[s] == "new" for s in chosen if steps.index(s) >= switch)


def test_kill_at_random_moments(env: dict) -> None:
    root = _fresh_root(env, "kill-random")
    durations = []
    for _ in range(3):  # how long an install takes here, to spread the kills over it
        p = _spawn(env, root, "record")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        durations.append(float(next(line for line in out.splitlines() if line.startswith("elapsed ")).split()[1]))
        install_bundle(env["a"], root, env["key"], allow_downgrade=True)  # back to A
        shutil.rmtree(root / "releases" / env["b_id"])
    install_seconds = min(durations)
    rng = random.Random(2026)
    counts = {"old": 0, "new": 0}
    killed = 0
    for _ in range(N_RANDOM_KILLS):
        p = _spawn(env, root, "none")
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0, install_seconds * 1.25))  # a random moment in (or just after) the install
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=120)
        killed += p.returncode == -signal.SIGKILL
        counts[_check_after_kill(env, root)] += 1
    print(f"random kills: {killed} killed mid-install of {N_RANDOM_KILLS}; outcome {counts}")
    assert killed >= N_RANDOM_KILLS // 3, "many kills should land before the install finished"
    assert counts["old"] + counts["new"] == N_RANDOM_KILLS


def test_unwritable_root_is_a_clean_error(env: dict, tmp_path: Path) -> None:
    root = tmp_path / "not-a-dir"
    root.write_text("a file where the install root should be")
    with pytest.raises(BundleError, match="cannot install under .*not-a-dir.*current release is unchanged"):
        install_bundle(env["a"], root, env["key"])


def test_installed_device_config_for_the_daemon(env: dict, tmp_path: Path) -> None:
    from edge_runtime.bundle import installed_device_config

    files = {"device.yaml": b"model: {path: m}\n", "devices/d1.yaml": b"model: {path: m}\n", "m": b"x"}
    b = pack_bundle(tmp_path / "c.tar.gz", files, fleet="f", group="g", profile="p", signer=env["signer"],
                    device_config="device.yaml")
    root = tmp_path / "root"
    install_bundle(b, root, env["key"])
    assert installed_device_config(root, env["key"]).name == "device.yaml"
    # devices/<id>.yaml is used only when the manifest maps the device to it
    assert installed_device_config(root, env["key"], "d2").name == "device.yaml"
    (root / "current" / "m").write_bytes(b"y")
    with pytest.raises(BundleError, match="'m' does not match the manifest"):
        installed_device_config(root, env["key"])

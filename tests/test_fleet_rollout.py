"""Staged rollout on loopback: nginx (Debian package) serves bundles, Mosquitto carries control,
50 simulated agents (own MQTT connection, install root, state; stub daemons serving /healthz).

Reference for every check: the agents' install roots on disk, nginx's access log and the
wave membership hash, not the publisher's own account.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.fleet_rollout import (FLEET, GROUP, MOSQUITTO, NGINX, Mosquitto, Nginx, SimFleet, StubDaemons,
                                      agent_config, build_release, wait_for)
from converters.fleet.keys import Signer, keygen
from converters.fleet.publish import Announcer, publish, roll_out, stage
from converters.fleet.status import StatusBoard
from edge_runtime.agent import announce
from edge_runtime.agent.signed import seal
from edge_runtime.agent.wave import in_wave
from edge_runtime.bundle import current_release, installed_device_config, load_installed, load_public_key

pytestmark = pytest.mark.slow
N = 50
MODEL = bytes(range(256)) * 300  # 76,800 bytes


def _need_servers() -> None:
    missing = [n for n, p in (("nginx", NGINX), ("mosquitto", MOSQUITTO)) if p is None]
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{', '.join(missing)} not installed, and CI=true (apt-get install {' '.join(missing)})")
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    _need_servers()
    work = tmp_path_factory.mktemp("rollout")
    os.chmod(work, 0o755)
    www = work / "www"
    www.mkdir()
    nginx, broker, stub = Nginx(www, slow_rate="300k").start(), Mosquitto().start(), StubDaemons()
    sim = None
    try:
        priv, pub, _ = keygen(work / "keys")
        sim = SimFleet(work / "devices", N, broker.url, pub, stub).start(max_seconds=600)
        yield {"work": work, "www": www, "nginx": nginx, "broker": broker, "stub": stub, "sim": sim, "priv": priv,
               "pub": pub, "key": load_public_key(pub)}
    finally:
        if sim is not None:
            sim.stop()
        stub.stop()
        broker.stop()
        nginx.stop()


def _publish(env: dict, **kw):  # type: ignore[no-untyped-def]
    return publish(env["work"] / "dist", env["www"], env["nginx"].url, env["broker"].url, sign_key=env["priv"],
                   wave_timeout_s=60, log=lambda _m: None, **kw)[0]


def _bundle_gets(env: dict, release: int) -> list[dict]:
    return [r for r in env["nginx"].requests() if r["uri"] == f"/{FLEET}/{GROUP}/{release}/{GROUP}.tar.gz"]


def _status_cli(env: dict) -> dict:
    r = subprocess.run([sys.executable, "-m", "converters.cli", "fleet", "status", "--mqtt", env["broker"].url,
                        "--json", "--wait", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[f"{FLEET}/{GROUP}"]


def test_good_release_goes_canary_then_everyone(env: dict) -> None:
    sim = env["sim"]
    b = build_release(env["work"] / "fleet", env["work"] / "dist", MODEL, sim.devices, env["priv"])
    assert b.release == 1 and b.files < 10  # 50 devices' configs travel as separate signed files
    cli = subprocess.run([sys.executable, "-m", "converters.cli", "fleet", "publish", str(env["work"] / "dist"),
                          "--http-root", str(env["www"]), "--base-url", env["nginx"].url, "--mqtt", env["broker"].url,
                          "--sign-key", str(env["priv"]), "--canary", "10", "--waves", "25,100", "--wave-timeout", "60",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    r = json.loads(cli.stdout)[0]
    canary = [d for d in sim.devices if in_wave(FLEET, GROUP, d, 10)]
    assert not r["halted"], r["reason"]
    assert [w["percent"] for w in r["waves"]] == [10, 25, 100]
    assert r["waves"][0]["devices"] == len(canary) >= 1 and r["waves"][-1]["committed"] == N
    for dev in sim.devices:  # on disk: every device runs release 1, verified, with its own config
        root = sim.agents[dev].root
        inst = load_installed(root, env["key"])
        assert inst.manifest.release == 1 and env["stub"].loaded[dev] == inst.release_id
        assert sim.agents[dev].state.committed == 1
        cfg = yaml.safe_load(installed_device_config(root, env["key"], dev).read_text())
        assert cfg["health"]["listen"] == f"127.0.0.1:{9100 + sim.devices.index(dev)}"
        assert os.path.isfile(cfg["model"]["path"]) and cfg["model"]["path"].startswith(str(inst.path))
    gets = _bundle_gets(env, 1)
    assert len(gets) == N and all(g["status"] == 200 for g in gets)
    device_files = [x for x in env["nginx"].requests() if "/devices/" in x["uri"]]
    assert len(device_files) == N and len({x["uri"] for x in device_files}) == N  # each fetched only its own
    summary = _status_cli(env)
    assert summary["releases"]["1"] == {"committed": N}
    assert summary["announced"]["release"] == 1 and summary["announced"]["percent"] == 100


def test_bad_release_rolls_back_canary_and_halts(env: dict) -> None:
    sim = env["sim"]
    before = {d: current_release(sim.agents[d].root) for d in sim.devices}
    b = build_release(env["work"] / "fleet", env["work"] / "dist", b"BAD" + MODEL[3:], sim.devices, env["priv"])
    assert b.release == 2
    r = _publish(env, canary=20, waves="100")
    canary = [d for d in sim.devices if in_wave(FLEET, GROUP, d, 20)]
    assert len(canary) >= 2
    assert r.halted and "rolled back" in r.reason and len(r.waves) == 1
    wait_for(lambda: all(sim.agents[d].state.failed.get("2") for d in canary), 30, "canary rollbacks")
    time.sleep(1.0)  # the halted announcement has reached everyone; nobody else may start
    for d in sim.devices:
        assert current_release(sim.agents[d].root) == before[d]  # back on release 1 or never left it
        assert env["stub"].healthy[d] and env["stub"].loaded[d] == before[d]
        started = any(line.startswith("2 downloading") for line in sim.agents[d].log)
        assert started == (d in canary), (d, sim.agents[d].log)
    assert len(_bundle_gets(env, 2)) == len(canary)  # nginx: only the canary fetched it
    summary = _status_cli(env)
    assert summary["releases"]["2"] == {"rolled_back": len(canary)}
    assert summary["releases"]["1"] == {"committed": N - len(canary)}
    assert summary["announced"]["halted"] is True
    human = subprocess.run([sys.executable, "-m", "converters.cli", "fleet", "status", "--mqtt", env["broker"].url,
                            "--group", GROUP], capture_output=True, text=True, timeout=60)
    assert "announced release 2 to 20% (HALTED)" in human.stdout
    assert f"release 2: {len(canary)} rolled_back" in human.stdout, human.stdout


def test_replayed_older_announcement_is_ignored(env: dict) -> None:
    sim = env["sim"]
    signer = Signer(env["priv"])
    st = stage(env["work"] / "dist", env["www"], env["nginx"].url)[0]  # release 2, already in place
    old = announce.payload(FLEET, GROUP, 1, 1, "0" * 64, st.url, st.sha256, st.size, None, 100.0)
    from edge_runtime.agent.mqtt_link import make_client

    c = make_client(env["broker"].url)
    try:
        wait_for(c.is_connected, 10, "test client")
        c.publish(announce.topic("edge-runtime/fleet", FLEET, GROUP, "announce"), seal(old, signer), qos=1,
                  retain=True).wait_for_publish(10)
        wait_for(lambda: all(any("replayed" in line for line in a.log) for a in sim.agents.values()), 20,
                 "every agent to ignore the replay")
    finally:
        c.disconnect()
        c.loop_stop()
    assert all(a.state.committed == 1 and a.state.last_seen[0] == 2 for a in sim.agents.values())
    forged = seal(old, None)  # unsigned: refused before any comparison
    assert sim.agents[sim.devices[0]].offer(forged) is None
    assert "unsigned" in sim.agents[sim.devices[0]].log[-1]


def test_tampered_artifact_is_refused_and_reported(env: dict) -> None:
    sim = env["sim"]
    b = build_release(env["work"] / "fleet", env["work"] / "dist", MODEL[::-1], sim.devices, env["priv"])
    assert b.release == 3
    st = stage(env["work"] / "dist", env["www"], env["nginx"].url)[0]
    served = env["www"] / FLEET / GROUP / "3" / f"{GROUP}.tar.gz"
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: what a compromised server would serve
    served.write_bytes(bytes(data))
    board = StatusBoard(env["broker"].url)
    try:
        assert board.subscribed.wait(10)
        board.settle(3)
        r = roll_out(st, board, Announcer(board.client, "edge-runtime/fleet", Signer(env["priv"])), [10, 100], 0, 60)
    finally:
        board.close()
    canary = [d for d in sim.devices if in_wave(FLEET, GROUP, d, 10)]
    assert r.halted and r.waves[0].failures == len(canary)
    for d in sim.devices:
        a = sim.agents[d]
        assert a.state.committed == 1 and load_installed(a.root, env["key"]).manifest.release == 1
        if d in canary:
            assert "does not match the announced sha256" in a.state.failed["3"]
        else:
            assert "3" not in a.state.failed and not any(x.startswith("3 downloading") for x in a.log)
    assert not list((sim.agents[canary[0]].downloads).glob("*.part"))  # the bad download was not kept


def test_kill_9_mid_download_resumes_and_never_half_installs(env: dict, tmp_path: Path) -> None:
    """Three agent processes download a 2 MB bundle through a 300 KB/s location; each is killed
    mid-download, restarted, resumes with a Range request and commits."""
    devices = ["slow-0", "slow-1", "slow-2"]
    group = "slow"
    big = os.urandom(2_000_000)
    b = build_release(tmp_path / "fleet", tmp_path / "dist", big, devices, env["priv"], group=group)
    stub = env["stub"]
    procs: dict[str, subprocess.Popen] = {}
    cfgs = {}
    for dev in devices:
        c = agent_config(tmp_path, dev, env["broker"].url, env["pub"], stub.url(dev), group=group)
        c["reload"] = {"command": [sys.executable, "-c",
                                   f"import urllib.request; urllib.request.urlopen({stub.url(dev, 'reload')!r})"]}
        Path(c["install_root"]).mkdir(parents=True)
        stub.add(dev, Path(c["install_root"]))
        p = tmp_path / f"{dev}.yaml"
        p.write_text(yaml.safe_dump(c))
        cfgs[dev] = (p, c)

    def start(dev: str) -> None:
        procs[dev] = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "agent", "--config",
                                       str(cfgs[dev][0]), "--max-seconds", "90", "--json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    try:
        for dev in devices:
            start(dev)
        time.sleep(1.5)  # connected and subscribed
        st = stage(tmp_path / "dist", env["www"] / "slow", env["nginx"].url + "/slow")[0]
        from edge_runtime.agent.mqtt_link import make_client

        c = make_client(env["broker"].url)
        try:  # announce to everyone; the test, not the publisher, watches this rollout
            wait_for(c.is_connected, 10, "test client")
            Announcer(c, "edge-runtime/fleet", Signer(env["priv"])).announce(st, 100)
        finally:
            c.disconnect()
            c.loop_stop()
        parts = {d: Path(cfgs[d][1]["state_dir"]) / "downloads" / f"{b.sha256}.part" for d in devices}
        wait_for(lambda: all(p.exists() and p.stat().st_size > 200_000 for p in parts.values()), 30,
                 "downloads under way")
        for dev in devices:
            os.kill(procs[dev].pid, signal.SIGKILL)
            procs[dev].wait(10)
        for dev in devices:  # nothing half-installed: no current, no release, only the part file
            root = Path(cfgs[dev][1]["install_root"])
            assert current_release(root) is None and not list((root / "releases").glob("*"))
            assert 0 < parts[dev].stat().st_size < b.size
        for dev in devices:
            start(dev)
        try:
            wait_for(lambda: all(current_release(Path(cfgs[d][1]["install_root"])) for d in devices), 60, "installs")
        except TimeoutError:
            for p in procs.values():
                p.kill()
            raise AssertionError("\n".join(f"{d}: {procs[d].communicate()}" for d in devices)) from None
        states = {d: Path(cfgs[d][1]["state_dir"]) / "state.json" for d in devices}
        wait_for(lambda: all(json.loads(states[d].read_text()).get("committed") == b.release for d in devices), 30,
                 "commits")
    finally:
        for dev, p in procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
    for dev in devices:
        inst = load_installed(cfgs[dev][1]["install_root"], env["key"])
        assert inst.manifest.group == group and inst.manifest.release == b.release
        state = json.loads((Path(cfgs[dev][1]["state_dir"]) / "state.json").read_text())
        assert state["committed"] == b.release, state
    uri = f"/{FLEET}/{group}/{b.release}/{group}.tar.gz"
    gets = [r for r in env["nginx"].requests() if r["uri"] == "/slow" + uri]
    resumed = [g for g in gets if g["status"] == 206 and g["range"].startswith("bytes=")]
    assert len(resumed) == len(devices), gets
    assert sum(g["bytes"] for g in gets) < len(devices) * b.size * 1.05  # nothing downloaded twice

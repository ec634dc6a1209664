"""Staged rollout to 50 simulated devices on loopback: nginx serves bundles, Mosquitto carries control.

Prints, for 50 devices: the time to full rollout of a good release (canary 10% -> 25% ->
100%), the bytes nginx served, and the time from a bad canary's first rollback to the halt.

Each device is an :class:`edge_runtime.agent.core.Agent` with its own MQTT connection,
install root and state, in this process; its daemon is a stub that serves ``/healthz``
(``ok``, or 503 when the loaded model starts with ``BAD``). The tests import the harness
(:class:`Nginx`, :class:`Mosquitto`, :class:`StubDaemons`, :class:`SimFleet`) from here.

Run: ``python -m benchmarks.fleet_rollout [--devices 50]`` (needs nginx and mosquitto).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import yaml

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
FLEET, GROUP = "sim", "cams"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port}")


class Nginx:
    """nginx (Debian package) serving ``root`` on a loopback port; ``/slow/`` is rate limited."""

    def __init__(self, root: Path, slow_rate: str = "400k") -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.root = root
        self.dir = Path(tempfile.mkdtemp(prefix="edge-runtime-nginx-"))
        self.port = free_port()
        self.log = self.dir / "access.log"
        for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / "tmp" / t).mkdir(parents=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log warn;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "  log_format rollout '$uri $status $body_bytes_sent \"$http_range\"';\n"
            f"  access_log {self.log} rollout;\n"
            f"  client_body_temp_path {self.dir}/tmp/body;\n  proxy_temp_path {self.dir}/tmp/proxy;\n"
            f"  fastcgi_temp_path {self.dir}/tmp/fastcgi;\n  uwsgi_temp_path {self.dir}/tmp/uwsgi;\n"
            f"  scgi_temp_path {self.dir}/tmp/scgi;\n"
            "  types { application/gzip gz; application/json json; }\n  default_type application/octet-stream;\n"
            f"  server {{\n    listen 127.0.0.1:{self.port};\n    root {root};\n"
            f"    location /slow/ {{ limit_rate {slow_rate}; }}\n  }}\n}}\n")
        self.p: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Nginx":
        """Start and wait for the port."""
        self.p = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(self.dir), "-e", str(self.dir / "error.log")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_port(self.port, self.p, "nginx")
        return self

    def requests(self) -> list[dict[str, Any]]:
        """The access log: uri, status, bytes sent, Range header."""
        out = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                m = re.match(r'(\S+) (\d+) (\d+) "(.*)"', line)
                if m:
                    out.append({"uri": m[1], "status": int(m[2]), "bytes": int(m[3]),
                                "range": "" if m[4] == "-" else m[4]})
        return out

    def stop(self) -> None:
        """Stop and remove the working folder."""
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto:
    """A Mosquitto broker on a loopback port."""

    def __init__(self) -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="edge-runtime-mosquitto-"))
        os.chmod(self.dir, 0o777)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n"
                             "max_queued_messages 100000\n")
        self.p: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        """Start and wait for the port."""
        self.p = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_port(self.port, self.p, "mosquitto")
        return self

    def stop(self) -> None:
        """Stop and remove the working folder."""
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


class StubDaemons:
    """One HTTP server standing in for every device's daemon: ``GET /d/<id>/healthz`` and ``/d/<id>/reload``.

    A daemon "loads" ``ROOT/current`` on reload; it is healthy unless its model file starts with ``BAD``.
    """

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}
        self.loaded: dict[str, Optional[str]] = {}
        self.healthy: dict[str, bool] = {}
        self.reloads = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "d" or parts[1] not in stub.roots:
                    self.send_response(404)
                    self.end_headers()
                    return
                if parts[2] == "reload":
                    stub.reload(parts[1])
                    code, body = 200, b"reloaded\n"
                elif stub.healthy.get(parts[1]):
                    code, body = 200, b"ok\n"
                else:
                    code, body = 503, b"unhealthy: the model failed its self-test\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def add(self, device: str, root: Path) -> None:
        """Register a device's install root."""
        self.roots[device] = root
        self.reload(device)

    def url(self, device: str, what: str = "healthz") -> str:
        """The device's /healthz (or /reload) URL."""
        return f"http://127.0.0.1:{self.port}/d/{device}/{what}"

    def reload(self, device: str) -> None:
        """Load the device's current release."""
        self.reloads += 1
        cur = self.roots[device] / "current"
        if not cur.exists():
            self.loaded[device], self.healthy[device] = None, False
            return
        self.loaded[device] = os.path.basename(os.readlink(cur))
        models = sorted((cur / "models").glob("*")) if (cur / "models").is_dir() else []
        self.healthy[device] = bool(models) and not models[0].read_bytes()[:3] == b"BAD"

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()


def agent_config(work: Path, device: str, mqtt_url: str, pubkey: Path, health_url: str, group: str = GROUP,
                 **health: Any) -> dict:
    """An agent.yaml mapping for a simulated device."""
    return {"device_id": device, "fleet": FLEET, "group": group, "pubkey": str(pubkey),
            "install_root": str(work / device / "bundles"), "state_dir": str(work / device / "agent"),
            "mqtt": {"url": mqtt_url},
            "health": {"url": health_url, "commit_after_s": 0.3, "timeout_s": 10, "interval_s": 0.1,
                       "max_unhealthy": 2, **health},
            "download": {"timeout_s": 10, "retries": 3}}


class SimFleet:
    """N in-process agents, each with its own MQTT connection, install root, state and stub daemon."""

    def __init__(self, work: Path, n: int, mqtt_url: str, pubkey: Path, stub: StubDaemons) -> None:
        from edge_runtime.agent.config import AgentConfig
        from edge_runtime.agent.core import Agent
        from edge_runtime.agent.mqtt_link import AgentLink

        self.stub = stub
        self.devices = [f"dev-{i:03d}" for i in range(n)]
        self.agents: dict[str, Agent] = {}
        self.links: dict[str, AgentLink] = {}
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        for dev in self.devices:
            cfg = AgentConfig.model_validate(agent_config(work, dev, mqtt_url, pubkey, stub.url(dev)))
            Path(cfg.install_root).mkdir(parents=True, exist_ok=True)
            stub.add(dev, Path(cfg.install_root))
            link = AgentLink(mqtt_url, cfg.mqtt.topic_prefix, FLEET, GROUP, dev)
            self.links[dev] = link
            self.agents[dev] = Agent(cfg, report=link.report, reload=lambda d=dev: stub.reload(d))

    def start(self, max_seconds: float = 600.0) -> "SimFleet":
        """Connect every agent and run its loop in a thread (bounded by ``max_seconds``)."""
        for dev in self.devices:
            self.links[dev].start(self.agents[dev].offer)
            t = threading.Thread(target=self.agents[dev].run, args=(self.stop_event, max_seconds, 0.2), daemon=True)
            t.start()
            self.threads.append(t)
        for dev in self.devices:
            if not self.links[dev].connected.wait(20):
                raise RuntimeError(f"{dev}: agent did not connect to the broker")
        return self

    def stop(self) -> None:
        """Stop the loops and disconnect."""
        self.stop_event.set()
        for t in self.threads:
            t.join(30)
        for link in self.links.values():
            link.stop()

    def bytes_downloaded(self) -> int:
        """Bytes the agents received."""
        return sum(a.bytes_downloaded for a in self.agents.values())


def write_fleet(d: Path, model: bytes, devices: list[str], group: str = GROUP) -> Path:
    """A fleet file with one group whose model is ``model`` (shipped as is)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.tflite").write_bytes(model)
    fleet = {"version": 1, "name": FLEET,
             "groups": {group: {"profile": "rpi5", "models": {"m": {"source": "model.tflite", "prebuilt": True}},
                                "daemon": {"pipeline": {"queue_size": 16}}}},
             "devices": {dev: {"group": group, "daemon": {"health": {"listen": f"127.0.0.1:{9100 + i}"}}}
                         for i, dev in enumerate(devices)}}
    p = d / "fleet.yaml"
    p.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return p


def build_release(d: Path, dist: Path, model: bytes, devices: list[str], sign_key: Path, group: str = GROUP) -> Any:
    """``fleet build`` of the simulated group with ``model``; per-device files separate."""
    from converters.fleet.build import build_fleet

    return build_fleet(write_fleet(d, model, devices, group), dist, sign_key=sign_key, cache_dir=d / "cache",
                       progress=False, device_files="separate").bundles[0]


def wait_for(cond: Any, timeout_s: float, what: str) -> None:
    """Poll ``cond()`` until true, at most ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if NGINX is None or MOSQUITTO is None:
        print("needs nginx and mosquitto (apt-get install nginx mosquitto)", file=sys.stderr)
        return 1
    from converters.fleet.keys import keygen
    from converters.fleet.publish import publish

    work = Path(tempfile.mkdtemp(prefix="edge-runtime-rollout-"))
    os.chmod(work, 0o755)
    www = work / "www"
    www.mkdir()
    nginx, broker, stub = Nginx(www).start(), Mosquitto().start(), StubDaemons()
    sim = None
    try:
        priv, pub, _ = keygen(work / "keys")
        sim = SimFleet(work / "devices", args.devices, broker.url, pub, stub).start()
        model = os.urandom(200_000)
        results: dict[str, Any] = {"devices": args.devices}
        for name, blob in (("good", model), ("bad", b"BAD" + model[3:])):
            b = build_release(work / "fleet", work / "dist", blob, sim.devices, priv)
            before = sum(r["bytes"] for r in nginx.requests())
            t0 = time.perf_counter()
            r = publish(work / "dist", www, nginx.url, broker.url, sign_key=priv, canary=10, waves="25,100",
                        max_failures=0, wave_timeout_s=120, log=lambda _m: None)[0]
            results[name] = {"release": b.release, "bundle_bytes": b.size, "seconds": round(time.perf_counter() - t0, 3),
                             "halted": r.halted, "waves": [(w.percent, w.devices, w.committed, w.failures)
                                                           for w in r.waves],
                             "bytes_served": sum(x["bytes"] for x in nginx.requests()) - before,
                             "halt_seconds": r.halt_seconds}
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            g, bad = results["good"], results["bad"]
            print(f"{args.devices} devices, bundle {g['bundle_bytes']:,} bytes")
            print(f"good release {g['release']}: full rollout (canary 10% -> 25% -> 100%) in {g['seconds']:.2f} s; "
                  f"nginx served {g['bytes_served']:,} bytes; waves (percent, devices, committed, failures): "
                  f"{g['waves']}")
            print(f"bad release {bad['release']}: halted={bad['halted']} {bad['seconds']:.2f} s after publish; "
                  f"{bad['halt_seconds']:.2f} s from the first rollback to the halt; nginx served "
                  f"{bad['bytes_served']:,} bytes; waves: {bad['waves']}")
        return 0
    finally:
        if sim is not None:
            sim.stop()
        stub.stop()
        broker.stop()
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for the daemon tests: run ``edge-runtime serve`` and the simulated sensor as processes.

Also tests the helpers' own parsing of the Prometheus text format against a known page.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
KWS_LABELS = "Down,Go,Left,No,Off,On,Right,Stop,Up,Yes,Silence,Unknown"

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_prometheus(text: str) -> dict[str, float]:
    """``name`` or ``name{labels}`` -> value, for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def env_for_subprocess(extra: Optional[dict] = None) -> dict:
    """The current environment with the checkout on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    if extra:
        env.update(extra)
    return env


class DaemonProc:
    """``edge-runtime serve ARGS`` in a subprocess, with its stderr collected."""

    def __init__(self, args: list[str], env: Optional[dict] = None, stdin: Optional[int] = None) -> None:
        self.args = args
        self.p = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "serve", *args], cwd=ROOT,
                                  stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env or env_for_subprocess())
        self.stderr_lines: list[str] = []
        self.stdout = bytearray()
        self.info: Optional[dict] = None
        self._t1 = threading.Thread(target=self._pump_err, daemon=True)
        self._t2 = threading.Thread(target=self._pump_out, daemon=True)
        self._t1.start()
        self._t2.start()

    def _pump_err(self) -> None:
        for line in iter(self.p.stderr.readline, b""):
            self.stderr_lines.append(line.decode(errors="replace").rstrip("\n"))

    def _pump_out(self) -> None:
        for chunk in iter(lambda: self.p.stdout.read1(65536), b""):
            self.stdout += chunk

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_ready(self, timeout: float = 60) -> dict:
        """The JSON of the daemon's ``ready:`` line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.stderr_lines:
                if "edge-runtime: ready: " in line:
                    self.info = json.loads(line.split("ready: ", 1)[1])
                    return self.info
            if self.p.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"the daemon exited with {self.p.returncode} before it was ready:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"the daemon was not ready within {timeout} s:\n{self.stderr}")

    @property
    def tcp_port(self) -> int:
        assert self.info is not None
        return int(self.info["source"].rsplit(":", 1)[1])

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics."""
        assert self.info is not None and self.info["health"]
        with urllib.request.urlopen(f"http://{self.info['health']}/metrics", timeout=10) as r:
            return parse_prometheus(r.read().decode())

    def counter(self, name: str) -> float:
        return self.metrics()[f"edge_runtime_{name}_total"]

    def signal(self, sig: int) -> None:
        self.p.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait for the exit code."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout)
        self._t1.join(5)
        self._t2.join(5)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def run_sensor(args: list[str], timeout: float = 120, **kw) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``python -m firmware_sim.sensor ARGS``; return its JSON summary (last line) and the process."""
    cp = subprocess.run([sys.executable, "-m", "firmware_sim.sensor", *args], cwd=ROOT, capture_output=True,
                        timeout=timeout, env=env_for_subprocess(), **kw)
    lines = cp.stdout.decode().strip().splitlines()
    assert lines, f"sensor printed nothing; stderr:\n{cp.stderr.decode()}"
    return json.loads(lines[-1]), cp


def start_sensor(args: list[str]) -> subprocess.Popen:
    """Start the sensor in the background (pty mode prints the pty path on stderr first)."""
    return subprocess.Popen([sys.executable, "-m", "firmware_sim.sensor", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_for_subprocess())


def wait_until(fn, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``fn`` every 50 ms until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_jsonl(path: Path) -> list[dict]:
    """Every line of a JSON Lines file."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def test_parse_prometheus_reads_labels_and_values():
    page = ('# HELP x_total things\n# TYPE x_total counter\nx_total 3\n'
            'lat{quantile="0.5"} 0.25\nup 1\nmodel_info{version="ab",path="/m"} 1\n')
    m = parse_prometheus(page)
    assert m == {"x_total": 3.0, 'lat{quantile="0.5"}': 0.25, "up": 1.0, 'model_info{version="ab",path="/m"}': 1.0}

"""``fleet status``: aggregate the agents' retained status messages per group and release.

Each agent publishes ``{device, release, state, reason, committed, time}`` retained on
``PREFIX/FLEET/GROUP/status/ID``; the publisher's announcement is retained on
``PREFIX/FLEET/GROUP/announce``. :class:`StatusBoard` keeps the latest of each and counts
devices per release and state; ``fleet publish`` watches the same board to widen or halt.
"""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any, Optional

from edge_runtime.agent.mqtt_link import MqttAuth, make_client

#: States after which a device does nothing more for a release.
TERMINAL = ("committed", "rolled_back", "failed")
FAILURES = ("rolled_back", "failed")
STATES = ("downloading", "download_failed", "installing", "installed", "checking", "committed", "rolled_back",
          "failed", "ignored")


class StatusBoard:
    """The latest status of every device and the latest announcement of every group, from MQTT."""

    def __init__(self, mqtt_url: str, prefix: str = "edge-runtime/fleet", fleet: str = "+", group: str = "+",
                 auth: Optional[MqttAuth] = None) -> None:
        self.prefix = prefix.rstrip("/")
        self.devices: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.announced: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.last_message = time.monotonic()
        self.subscribed = threading.Event()
        topics = [f"{self.prefix}/{fleet}/{group}/status/+", f"{self.prefix}/{fleet}/{group}/announce"]

        def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if not getattr(rc, "is_failure", False):
                client.subscribe([(t, 1) for t in topics])
                self.subscribed.set()

        self.client = make_client(mqtt_url, "", 30, on_connect, self._on_message, auth)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        parts = msg.topic[len(self.prefix) + 1:].split("/")
        if len(parts) < 3 or not msg.payload:
            return
        key = (parts[0], parts[1])
        try:
            data = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return
        with self.changed:
            if parts[2] == "status" and len(parts) == 4 and isinstance(data, dict):
                self.devices.setdefault(key, {})[parts[3]] = data
            elif parts[2] == "announce" and isinstance(data, dict) and isinstance(data.get("payload"), dict):
                self.announced[key] = data["payload"]
            self.last_message = time.monotonic()
            self.changed.notify_all()

    def settle(self, max_s: float = 5.0, quiet_s: float = 0.3) -> None:
        """Wait for the retained messages: until nothing new came for ``quiet_s`` (at most ``max_s``)."""
        end = time.monotonic() + max_s
        self.subscribed.wait(max_s)
        while time.monotonic() < end:
            with self.lock:
                idle = time.monotonic() - self.last_message
            if idle >= quiet_s:
                return
            time.sleep(min(quiet_s, 0.05))

    def wait(self, timeout_s: float) -> None:
        """Block until a new message arrives or ``timeout_s`` passes."""
        with self.changed:
            self.changed.wait(timeout_s)

    def counts(self, fleet: str, group: str, release: int) -> Counter:
        """Devices per state for one release (a device's latest status only)."""
        with self.lock:
            return Counter(s.get("state") for s in self.devices.get((fleet, group), {}).values()
                           if s.get("release") == release)

    def state_of(self, fleet: str, group: str, device: str) -> Optional[dict[str, Any]]:
        """The latest status of one device."""
        with self.lock:
            return self.devices.get((fleet, group), {}).get(device)

    def summary(self) -> dict[str, Any]:
        """Per group: the announcement, the devices seen, and per release the count of each state."""
        out: dict[str, Any] = {}
        with self.lock:
            keys = sorted(set(self.devices) | set(self.announced))
            for key in keys:
                devs = self.devices.get(key, {})
                per: dict[str, Counter] = {}
                for s in devs.values():
                    per.setdefault(str(s.get("release")), Counter())[str(s.get("state"))] += 1
                a = self.announced.get(key)
                committed = Counter(str(s.get("committed")) for s in devs.values())
                out[f"{key[0]}/{key[1]}"] = {
                    "announced": None if a is None else {k: a.get(k) for k in ("release", "seq", "percent", "halted")},
                    "devices": len(devs),
                    "releases": {r: dict(c) for r, c in sorted(per.items())},
                    "running_committed": dict(committed),
                }
        return out

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def fleet_status(mqtt_url: str, prefix: str = "edge-runtime/fleet", fleet: str = "+", group: str = "+",
                 wait_s: float = 3.0, auth: Optional[MqttAuth] = None) -> dict[str, Any]:
    """Collect the retained statuses once and summarise them."""
    board = StatusBoard(mqtt_url, prefix, fleet, group, auth)
    try:
        if not board.subscribed.wait(wait_s):
            from edge_runtime.errors import EdgeRuntimeError

            raise EdgeRuntimeError(f"cannot reach the MQTT broker at {mqtt_url} within {wait_s:g} s")
        board.settle(wait_s)
        return board.summary()
    finally:
        board.close()


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines."""
    if not summary:
        return "no groups have announced or reported anything yet"
    lines = []
    for name, g in summary.items():
        a = g["announced"]
        head = f"{name}: {g['devices']} device(s) reporting"
        if a:
            head += f"; announced release {a['release']} to {a['percent']:g}%" + (" (HALTED)" if a["halted"] else "")
        lines.append(head)
        for rel, counts in g["releases"].items():
            lines.append(f"  release {rel}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)

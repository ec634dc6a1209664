"""The install state machine of one device.

::

    announce ──(older: ignored)──
       │ in wave, not halted, newer than committed, not failed before
       ▼
    downloading ──(hash/signature wrong)──► failed
       ▼
    installed ──reload daemon──► health gate ──ok for N s──► committed
                                      │ not ok / timeout
                                      ▼
                                 rolled_back (previous release, daemon reloaded)

Every step is reported through ``report(status)`` (the MQTT link publishes it, retained, on
the device's status topic). Work is bounded: each download, reload and health gate has a
time limit. Transport-free, so tests and the MQTT link drive the same code.
"""
from __future__ import annotations

import os
import signal as _signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from edge_runtime.agent import announce, download
from edge_runtime.agent.config import AgentConfig
from edge_runtime.agent.device_file import store_device_file, verify_device_file
from edge_runtime.agent.health import gate
from edge_runtime.agent.state import AgentState
from edge_runtime.agent.wave import in_wave
from edge_runtime.bundle import (current_release, install_bundle, load_public_key, rollback_bundle, verify_bundle)
from edge_runtime.errors import BundleError, EdgeRuntimeError

Report = Callable[[dict[str, Any]], None]


class Agent:
    """One device's rollout agent (thread-safe entry point: :meth:`offer`)."""

    #: Times an announcement whose download failed (server unreachable) is tried again, with backoff.
    RETRIES = 5

    def __init__(self, cfg: AgentConfig, report: Optional[Report] = None,
                 reload: Optional[Callable[[], None]] = None) -> None:
        self.cfg = cfg
        self.key = load_public_key(cfg.pubkey) if cfg.pubkey else None
        self.require = self.key is not None or not cfg.allow_unsigned
        self.root = Path(cfg.install_root)
        self.state_path = Path(cfg.state_dir) / "state.json"
        self.downloads = Path(cfg.state_dir) / "downloads"
        self.state = AgentState.load(self.state_path)
        self._report = report or (lambda _s: None)
        self._reload = reload
        self._lock = threading.Lock()
        self._latest: Optional[announce.Announcement] = None
        self._wake = threading.Event()
        self.bytes_downloaded = 0
        self.log: list[str] = []
        self._last: Optional[dict[str, Any]] = None

    # ------------------------------------------------------------------ reporting
    def report(self, release: Optional[int], state: str, reason: str = "") -> None:
        """Send a status (release, state, reason) and keep a short log.

        ``ignored`` events (a replay, a bad announcement) do not replace the device's status:
        the last status is sent again with the event in ``note``.
        """
        self.log.append(f"{release} {state} {reason}".strip())
        self.log = self.log[-100:]
        if state == "ignored":
            msg = dict(self._last or {"device": self.cfg.device_id, "fleet": self.cfg.fleet, "group": self.cfg.group,
                                      "release": self.state.committed, "state": "idle", "reason": ""})
            msg.update(note=f"ignored: {reason}", committed=self.state.committed, time=round(time.time(), 3))
        else:
            msg = {"device": self.cfg.device_id, "fleet": self.cfg.fleet, "group": self.cfg.group, "release": release,
                   "state": state, "reason": reason, "committed": self.state.committed, "time": round(time.time(), 3)}
            self._last = msg
        self._report(msg)

    # ------------------------------------------------------------------ input
    def offer(self, data: bytes) -> Optional[announce.Announcement]:
        """Verify an announcement (from any thread); keep it if it is the newest seen. None when ignored."""
        try:
            a = announce.parse(data, self.key, self.cfg.fleet, self.cfg.group, require_signature=self.require)
        except BundleError as exc:
            self.report(None, "ignored", str(exc))
            return None
        with self._lock:
            newest = self._latest.order if self._latest else tuple(self.state.last_seen)
            if a.order < newest:
                self.report(a.release, "ignored", f"replayed announcement (release {a.release} seq {a.seq}) is "
                                                  f"older than release {newest[0]} seq {newest[1]}")
                return None
            self._latest = a
        self._wake.set()
        return a

    def take(self, timeout_s: float) -> Optional[announce.Announcement]:
        """Wait up to ``timeout_s`` for an announcement to act on."""
        if not self._wake.wait(timeout_s):
            return None
        with self._lock:
            self._wake.clear()
            a, self._latest = self._latest, None
        return a

    # ------------------------------------------------------------------ the state machine
    def _save(self) -> None:
        self.state.save(self.state_path)

    def wants(self, a: announce.Announcement) -> Optional[str]:
        """Why not to install ``a`` (None: install it)."""
        if a.halted:
            return "rollout halted"
        if str(a.release) in self.state.failed:
            return f"release {a.release} failed here before: {self.state.failed[str(a.release)]}"
        if self.state.committed is not None and a.release <= self.state.committed:
            return f"release {self.state.committed} is committed"
        if not in_wave(a.fleet, a.group, self.cfg.device_id, a.percent):
            return f"not in the {a.percent:g}% wave"
        return None

    def handle(self, a: announce.Announcement) -> str:
        """Act on one announcement; return the final state (or why it was skipped)."""
        if a.order > tuple(self.state.last_seen):
            self.state.last_seen = a.order
            self._save()
        why = self.wants(a)
        if why is not None:
            return f"skipped: {why}"
        try:
            path, device_data = self._download(a)
            info = verify_bundle(path, self.key, require_signature=self.require)
            m = info.manifest
            if (m.fleet, m.group, m.release, info.manifest_sha256) != (a.fleet, a.group, a.release, a.manifest_sha256):
                raise BundleError(f"{a.url}: refused: bundle is {m.fleet}/{m.group} release {m.release}, not the "
                                  f"announced {a.fleet}/{a.group} release {a.release}")
            device_cfg = None
            if device_data is not None:
                device_cfg = verify_device_file(device_data, self.key, fleet=a.fleet, group=a.group,
                                                manifest_sha256=a.manifest_sha256, device_id=self.cfg.device_id,
                                                origin=a.device_file_url(self.cfg.device_id) or "device file",
                                                require_signature=self.require)
        except download.DownloadError as exc:
            self.report(a.release, "download_failed", str(exc))  # not marked failed: retried on the next announcement
            return "download_failed"
        except BundleError as exc:
            return self._fail(a.release, str(exc))
        self.report(a.release, "installing")
        try:
            inst = install_bundle(path, self.root, self.key, require_signature=self.require, keep=self.cfg.keep)
        except BundleError as exc:
            return self._fail(a.release, str(exc))
        self.state.pending = {"release": a.release, "release_id": inst.release_id, "previous": inst.previous}
        self._save()
        if device_cfg is not None and device_data is not None:
            try:
                store_device_file(self.root, inst.release_id, self.cfg.device_id, device_data, device_cfg)
            except (OSError, BundleError) as exc:
                return self._roll_back(a.release, f"cannot keep this device's config: {exc}")
        self.report(a.release, "installed")
        download.clean(self.downloads, keep=set())
        return self.health_check()

    def _download(self, a: announce.Announcement) -> tuple[Path, Optional[bytes]]:
        self.report(a.release, "downloading")

        def count(n: int) -> None:
            self.bytes_downloaded += n

        path = download.fetch(a.url, self.downloads, a.sha256, a.size, timeout_s=self.cfg.download.timeout_s,
                              retries=self.cfg.download.retries, on_bytes=count)
        device_data = None
        url = a.device_file_url(self.cfg.device_id)
        if url:
            device_data = download.fetch_small(url, timeout_s=self.cfg.download.timeout_s)
            if device_data is not None:
                self.bytes_downloaded += len(device_data)
        return path, device_data

    def _fail(self, release: int, reason: str) -> str:
        self.state.failed[str(release)] = reason
        self._save()
        self.report(release, "failed", reason)
        return "failed"

    def reload_daemon(self) -> None:
        """Make the daemon serve ``current``: the test hook, a command, or a signal to a pid file."""
        r = self.cfg.reload
        if self._reload is not None:
            self._reload()
        elif r.command:
            subprocess.run(r.command, check=True, timeout=r.timeout_s, stdout=subprocess.DEVNULL)
        elif r.pid_file:
            pid = int(Path(r.pid_file).read_text().strip())
            os.kill(pid, getattr(_signal, f"SIG{r.signal.upper().removeprefix('SIG')}"))

    def health_check(self) -> str:
        """Reload the daemon on the pending release, gate on /healthz, then commit or roll back."""
        p = self.state.pending
        if p is None:
            return "nothing pending"
        release = int(p["release"])
        if current_release(self.root) != p["release_id"]:  # killed before the switch: nothing to check
            self.state.pending = None
            self._save()
            return "nothing pending"
        h = self.cfg.health
        try:
            self.reload_daemon()
            self.report(release, "checking", f"waiting for {h.commit_after_s:g} s of ok from {h.url}")
            ok, why = gate(h.url, h.commit_after_s, h.timeout_s, h.interval_s, h.max_unhealthy)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            ok, why = False, f"reloading the daemon failed: {exc}"
        if ok:
            self.state.committed = release
            self.state.pending = None
            self._save()
            self.report(release, "committed")
            return "committed"
        return self._roll_back(release, why)

    def _roll_back(self, release: int, why: str) -> str:
        p = self.state.pending or {}
        try:
            if p.get("previous"):
                rollback_bundle(self.root, self.key, require_signature=self.require)
                self.reload_daemon()
                state = "rolled_back"
            else:
                state, why = "failed", f"{why}; no previous release to roll back to"
        except (EdgeRuntimeError, OSError, subprocess.SubprocessError) as exc:
            state, why = "failed", f"{why}; rollback failed: {exc}"
        self.state.failed[str(release)] = why
        self.state.pending = None
        self._save()
        self.report(release, state, why)
        return state

    def run(self, stop: threading.Event, max_seconds: Optional[float] = None, poll_s: float = 0.5) -> None:
        """Finish a pending install, then act on announcements until ``stop`` (or ``max_seconds``)."""
        if self.state.pending is not None:
            self.health_check()
        end = None if max_seconds is None else time.monotonic() + max_seconds
        retry: Optional[announce.Announcement] = None
        retry_at, attempts = 0.0, 0
        while not stop.is_set() and (end is None or time.monotonic() < end):
            a = self.take(poll_s)
            if a is None:
                if retry is None or time.monotonic() < retry_at:
                    continue
                a, attempts = retry, attempts + 1  # the server was unreachable: try the same announcement again
            else:
                attempts = 0
            retry = None
            try:
                result = self.handle(a)
            except (OSError, EdgeRuntimeError) as exc:  # e.g. the state disk is full: report, keep running
                self.report(a.release, "failed", f"agent error: {exc}")
                result = "failed"
            if result == "download_failed" and attempts < self.RETRIES:
                retry, retry_at = a, time.monotonic() + min(2.0 * 2 ** attempts, 60.0)

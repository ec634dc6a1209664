"""``fleet publish``: place bundles on an HTTP server's root and roll them out in waves over MQTT.

1. Stage: each group's bundle goes to ``HTTP_ROOT/<fleet>/<group>/<release>/<group>.tar.gz``
   and its per-device files to ``.../<release>/devices/<id>.json`` (copied beside, renamed
   into place; an existing release with other bytes is refused: numbers are never reused).
2. Roll out: announce the release (signed, retained) to the canary percentage; watch the
   agents' statuses; widen to the next wave when every device of the wave has finished
   with at most ``max_failures`` failures; otherwise re-announce it as halted, so no
   other device installs it.

Wave membership is the agents' stable hash (:mod:`edge_runtime.agent.wave`), so the
publisher knows which devices belong to each wave from the group's device list.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from converters.fleet.keys import Signer
from converters.fleet.status import FAILURES, TERMINAL, StatusBoard
from edge_runtime.agent import announce
from edge_runtime.agent.mqtt_link import MqttAuth
from edge_runtime.agent.signed import seal
from edge_runtime.agent.wave import in_wave
from edge_runtime.bundle import verify_bundle
from edge_runtime.errors import ConfigError, EdgeRuntimeError


@dataclass
class Staged:
    """One group's release, placed under the HTTP root."""

    fleet: str
    group: str
    release: int
    manifest_sha256: str
    url: str
    sha256: str
    size: int
    device_url: Optional[str]
    devices: list[str]
    bytes_placed: int


@dataclass
class Wave:
    """What one wave did."""

    percent: float
    devices: int
    committed: int
    failures: int
    unfinished: int
    seconds: float


@dataclass
class Rollout:
    """The outcome of a group's rollout."""

    staged: Staged
    waves: list[Wave] = field(default_factory=list)
    halted: bool = False
    reason: str = ""
    seconds: float = 0.0
    halt_seconds: Optional[float] = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place(src: Path, dest: Path) -> int:
    """Copy ``src`` to ``dest`` atomically; refuse to replace different bytes. Returns bytes written."""
    if dest.exists():
        if _sha256(dest) == _sha256(src):
            return 0
        raise ConfigError(f"{dest}: already published with other bytes; release numbers are never reused "
                          f"(build a new release)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    return dest.stat().st_size


def _bar(total: int, desc: str):  # type: ignore[no-untyped-def]
    """A progress bar on a terminal for many files, else None."""
    if total < 500:
        return None
    from edge_runtime.progress import progress_bar

    return progress_bar(total, desc, unit="file", leave=True)


def stage(dist: Union[str, os.PathLike], http_root: Union[str, os.PathLike], base_url: str,
          groups: Optional[list[str]] = None) -> list[Staged]:
    """Place every (or the named) group's bundle and device files under ``http_root``."""
    d = Path(dist)
    try:
        index = json.loads((d / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{d}: no readable index.json (run 'edge-convert fleet build' first): {exc}") from None
    out = []
    names = [b["group"] for b in index["bundles"]]
    for g in groups or []:
        if g not in names:
            raise ConfigError(f"{d}: no bundle for group '{g}' (groups: {', '.join(names)})")
    for b in index["bundles"]:
        if groups and b["group"] not in groups:
            continue
        src = d / b["file"]
        info = verify_bundle(src, None, require_signature=False)
        m = info.manifest
        if not m.release:
            raise ConfigError(f"{src}: has no release number; rebuild it with this version of 'fleet build'")
        rel_dir = Path(m.fleet) / m.group / str(m.release)
        root = Path(http_root) / rel_dir
        placed = _place(src, root / src.name)
        devices = sorted(m.device_configs)
        device_url = None
        dev_src = d / f"{m.group}.devices"
        if b.get("device_files") and dev_src.is_dir():
            files = sorted(dev_src.glob("*.json"))
            devices = sorted({*devices, *(f.stem for f in files)})
            bar = _bar(len(files), f"staging {m.group}")
            for f in files:
                placed += _place(f, root / "devices" / f.name)
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            device_url = f"{base_url.rstrip('/')}/{rel_dir.as_posix()}/devices/{{device_id}}.json"
        out.append(Staged(m.fleet, m.group, m.release, info.manifest_sha256,
                          f"{base_url.rstrip('/')}/{rel_dir.as_posix()}/{src.name}", _sha256(src),
                          src.stat().st_size, device_url, devices, placed))
    return out


class Announcer:
    """Publishes a group's signed, retained announcements."""

    def __init__(self, client: Any, prefix: str, signer: Optional[Signer]) -> None:
        self.client, self.prefix, self.signer = client, prefix, signer
        self._seq = 0

    def announce(self, s: Staged, percent: float, halted: bool = False) -> dict[str, Any]:
        """Publish (retained, QoS 1) and wait for the broker's acknowledgement."""
        self._seq = max(self._seq + 1, int(time.time() * 1000))  # rises across publisher runs too
        p = announce.payload(s.fleet, s.group, s.release, self._seq, s.manifest_sha256, s.url, s.sha256, s.size,
                             s.device_url, percent, halted)
        info = self.client.publish(announce.topic(self.prefix, s.fleet, s.group, "announce"), seal(p, self.signer),
                                   qos=1, retain=True)
        info.wait_for_publish(10)
        return p


def roll_out(s: Staged, board: StatusBoard, announcer: Announcer, waves: list[float], max_failures: int,
             wave_timeout_s: float, log: Callable[[str], None] = lambda _m: None) -> Rollout:
    """Announce ``s`` wave by wave; halt when failures pass ``max_failures`` or a wave times out."""
    r = Rollout(s)
    t0 = time.monotonic()
    for pct in waves:
        members = [dev for dev in s.devices if in_wave(s.fleet, s.group, dev, pct)]
        announcer.announce(s, pct)
        log(f"{s.group}: release {s.release} announced to {pct:g}% ({len(members)} device(s))")
        tw = time.monotonic()
        end = tw + wave_timeout_s
        first_failure: Optional[float] = None
        while True:
            counts = board.counts(s.fleet, s.group, s.release)
            failures = sum(counts[k] for k in FAILURES)
            if failures and first_failure is None:
                first_failure = time.monotonic()
            finished = [dev for dev in members
                        if (board.state_of(s.fleet, s.group, dev) or {}).get("release") == s.release
                        and (board.state_of(s.fleet, s.group, dev) or {}).get("state") in TERMINAL]
            if members:
                done = len(finished) == len(members)
            else:  # no known device in this wave: nothing to wait for, unless the device list is unknown
                done = bool(s.devices) or time.monotonic() >= end
            if failures > max_failures or done or time.monotonic() >= end:
                break
            board.wait(0.2)
        wave = Wave(pct, len(members), counts["committed"], failures, len(members) - len(finished),
                    round(time.monotonic() - tw, 3))
        r.waves.append(wave)
        log(f"{s.group}: wave {pct:g}%: {wave.committed} committed, {wave.failures} failed or rolled back, "
            f"{wave.unfinished} unfinished, {wave.seconds:.1f} s")
        if failures > max_failures or wave.unfinished:
            r.halted = True
            r.reason = (f"{failures} device(s) failed or rolled back (limit {max_failures})" if failures > max_failures
                        else f"{wave.unfinished} device(s) of the {pct:g}% wave did not finish within "
                             f"{wave_timeout_s:g} s")
            announcer.announce(s, pct, halted=True)
            r.halt_seconds = round(time.monotonic() - (first_failure or tw), 3)
            log(f"{s.group}: rollout of release {s.release} HALTED: {r.reason}")
            break
    r.seconds = round(time.monotonic() - t0, 3)
    return r


def parse_waves(canary: float, waves: str) -> list[float]:
    """``canary`` then the comma-separated wave percentages, rising, ending at 100."""
    rest = [float(x) for x in waves.split(",") if x.strip()] if waves else []
    out = [canary] + [w for w in rest if w > canary]
    if any(not 0 < w <= 100 for w in out) or out != sorted(out):
        raise ConfigError(f"waves must rise within (0, 100]: got canary {canary:g} then {waves!r}")
    if out[-1] != 100:
        out.append(100.0)
    return out


def publish(dist: Union[str, os.PathLike], http_root: Union[str, os.PathLike], base_url: str, mqtt_url: str, *,
            sign_key: Optional[Union[str, os.PathLike]], canary: float = 10.0, waves: str = "25,100",
            max_failures: int = 0, wave_timeout_s: float = 600.0, prefix: str = "edge-runtime/fleet",
            groups: Optional[list[str]] = None, stage_only: bool = False,
            log: Optional[Callable[[str], None]] = None, auth: Optional[MqttAuth] = None) -> list[Rollout]:
    """Stage, then roll out every staged group; see the module docstring."""
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    plan = parse_waves(canary, waves)
    if max_failures < 0:
        raise ConfigError(f"--max-failures must be 0 or more, got {max_failures}")
    signer = Signer(sign_key) if sign_key is not None else None
    staged = stage(dist, http_root, base_url, groups)
    for s in staged:
        say(f"{s.group}: release {s.release} staged ({s.size:,} bytes, {len(s.devices)} known device(s))")
    if stage_only:
        return [Rollout(s) for s in staged]
    board = StatusBoard(mqtt_url, prefix, auth=auth)
    try:
        if not board.subscribed.wait(10):
            raise EdgeRuntimeError(f"cannot reach the MQTT broker at {mqtt_url} within 10 s")
        board.settle(3.0)
        announcer = Announcer(board.client, prefix, signer)
        return [roll_out(s, board, announcer, plan, max_failures, wave_timeout_s, say) for s in staged]
    finally:
        board.close()

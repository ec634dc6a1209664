"""Release numbers per group: a small JSON state file that only goes up.

``fleet build`` takes the next number from the state file (``DIST/releases.json`` by
default) or from ``--release N``; a number at or below the group's last one is refused, so
a release number is never reused. The file is updated under an exclusive lock and replaced
atomically, after the bundle is written.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from edge_runtime.errors import ConfigError

STATE_NAME = "releases.json"


class ReleaseState:
    """The last release number of each group, with a short history."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {"version": 1, "groups": {}}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                if not isinstance(raw, dict) or not isinstance(raw.get("groups"), dict):
                    raise ValueError("expected {'version': 1, 'groups': {...}}")
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.path}: release state file is unreadable: {exc}") from None
            self.data = raw

    def last(self, group: str) -> int:
        """The group's last release number (0 before the first)."""
        return int(self.data["groups"].get(group, {}).get("last", 0))

    def next_release(self, group: str, explicit: Optional[int] = None) -> int:
        """The number the next build of ``group`` gets; refuse an explicit one that is not above the last."""
        last = self.last(group)
        if explicit is None:
            return last + 1
        if explicit < 1:
            raise ConfigError(f"--release must be at least 1, got {explicit}")
        if explicit <= last:
            raise ConfigError(f"group '{group}': release {explicit} is not above the last release {last} "
                              f"(recorded in {self.path}); release numbers are never reused")
        return explicit

    def record(self, group: str, release: int, manifest_sha256: str, build_time: str) -> None:
        """Remember a written release (in memory; :meth:`save` writes the file)."""
        g = self.data["groups"].setdefault(group, {"last": 0, "history": []})
        g["last"] = max(int(g.get("last", 0)), release)
        g.setdefault("history", []).append({"release": release, "manifest_sha256": manifest_sha256,
                                            "build_time": build_time})
        g["history"] = g["history"][-50:]

    def save(self) -> None:
        """Write the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@contextmanager
def locked_state(path: Union[str, os.PathLike]) -> Iterator[ReleaseState]:
    """Open the state file under an exclusive lock (two builds never hand out the same number)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(p) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:
            pass
        yield ReleaseState(p)
    finally:
        os.close(fd)

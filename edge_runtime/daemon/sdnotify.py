"""systemd's notify protocol: one datagram to ``$NOTIFY_SOCKET`` per state change.

No dependency on libsystemd. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""
from __future__ import annotations

import os
import socket
from typing import Optional


class Notifier:
    """Sends ``READY=1``, ``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1`` and ``STATUS=...``."""

    def __init__(self, env: Optional[dict[str, str]] = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        self.address = addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() and int(usec) > 0 else 0
        if pid.isdigit() and int(pid) != os.getpid():
            self.watchdog_usec = 0  # the watchdog is meant for another process
        self._sock: Optional[socket.socket] = None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with Type=notify."""
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float:
        """Seconds between WATCHDOG=1 pings (half the timeout), 0 when no watchdog."""
        return self.watchdog_usec / 2e6

    def notify(self, state: str) -> bool:
        """Send one state string; False when not under systemd or the send failed."""
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode(), self.address)
            return True
        except OSError:
            return False

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

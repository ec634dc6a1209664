"""The health gate: commit only after the daemon's ``/healthz`` says ``ok`` for long enough."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Callable


def probe(url: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    """One GET: (healthy, what it said). Healthy means HTTP 200 and a body starting with ``ok``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            body = r.read(4096).decode("utf-8", "replace").strip()
            return r.status == 200 and body.startswith("ok"), body or f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(4096).decode("utf-8", "replace").strip() if exc.fp else ""
        return False, f"HTTP {exc.code}" + (f": {body}" if body else "")
    except (urllib.error.URLError, OSError) as exc:
        return False, f"unreachable: {getattr(exc, 'reason', exc)}"


def gate(url: str, commit_after_s: float, timeout_s: float, interval_s: float = 0.5, max_unhealthy: int = 5,
         sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """Poll until ``/healthz`` has been ok for ``commit_after_s`` in a row (True), or give up (False, why).

    Gives up after ``timeout_s``, or at once after ``max_unhealthy`` answers in a row that
    are not ok (a daemon that answers but is unhealthy; an unreachable one is waited for).
    """
    start = time.monotonic()
    ok_since = None
    bad = 0
    last = "no answer yet"
    while True:
        now = time.monotonic()
        healthy, last = probe(url, timeout_s=max(0.5, min(2.0, interval_s * 4)))
        if healthy:
            bad = 0
            ok_since = now if ok_since is None else ok_since
            if now - ok_since >= commit_after_s:
                return True, last
        else:
            ok_since = None
            if not last.startswith("unreachable"):
                bad += 1
                if bad >= max_unhealthy:
                    return False, f"/healthz not ok {bad} times in a row: {last}"
        if now - start > timeout_s:
            return False, f"/healthz not ok for {commit_after_s:g} s within {timeout_s:g} s (last: {last})"
        sleep(interval_s)

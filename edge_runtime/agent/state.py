"""The agent's persistent state: what it has seen, committed, refused, and what is pending."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class AgentState:
    """Saved as JSON in ``state_dir/state.json`` after every change."""

    last_seen: tuple[int, int] = (0, 0)
    committed: Optional[int] = None
    failed: dict[str, str] = field(default_factory=dict)
    pending: Optional[dict[str, Any]] = None

    @classmethod
    def load(cls, path: Path) -> "AgentState":
        """Read the file; a missing or unreadable one starts fresh."""
        try:
            raw = json.loads(path.read_text())
            return cls(tuple(raw.get("last_seen", (0, 0))), raw.get("committed"),  # type: ignore[arg-type]
                       dict(raw.get("failed", {})), raw.get("pending"))
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        """Write atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({**asdict(self), "last_seen": list(self.last_seen)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

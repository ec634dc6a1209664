"""Run every benchmark in this package in turn: ``python -m benchmarks [NAME ...]``.

Each benchmark is a module run as ``python -m benchmarks.NAME`` in its own process,
so one benchmark's memory or threads never affect the next one's figures.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run the named benchmarks, or all of them; return 1 if any failed."""
    here = Path(__file__).resolve().parent
    names = argv or sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    failed = []
    for name in names:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=here.parent)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

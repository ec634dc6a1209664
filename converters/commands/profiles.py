"""``edge-convert profiles``: list the shipped device profiles, or show one in full."""
from __future__ import annotations

import argparse
import json
from typing import Any

from device_profiles import DeviceProfile, list_profiles, load_profile

NAME = "profiles"
HELP = "list the device profiles (boards) models can be converted and sized for"
DESCRIPTION = """\
List the shipped device profiles: architecture, CPU, RAM, the RAM budget left for
inference, whether Python runs there, backends and accelerators.

Any command's --profile accepts one of these names or the path to your own YAML file
(copy a file from device_profiles/boards/ and edit it). Use --profile FILE here to
validate such a file and show it.

examples:
  edge-convert profiles
  edge-convert profiles --json
  edge-convert profiles --profile my-board.yaml --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``profiles``."""
    parser.add_argument("--json", action="store_true",
                        help="print the profiles as a JSON list of full profile objects (all fields, sizes in bytes)")
    parser.add_argument("--profile", metavar="NAME|FILE",
                        help="show only this profile (a shipped name or a YAML file, which is validated)")


def _mib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):g} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):g} MiB"
    return f"{n / 1024:g} KiB"


def profile_row(p: DeviceProfile) -> dict[str, Any]:
    """The table columns of one profile."""
    accel = ", ".join(a.provider or a.library or a.name for a in p.accelerators) or "-"
    return {
        "name": p.name,
        "arch": p.arch,
        "cpu": f"{p.cpu.cores}x {p.cpu.model} @ {p.cpu.clock_mhz} MHz",
        "ram": _mib(p.ram_bytes),
        "budget": _mib(p.inference_ram_budget_bytes),
        "python": "yes" if p.python else "no (MCU, sizing)" if p.microcontroller else "no",
        "backends": ",".join(p.backends) or "-",
        "accelerators": accel,
    }


def format_table(profiles: list[DeviceProfile]) -> str:
    """A plain-text table, one profile per line."""
    headers = ["name", "arch", "cpu", "ram", "budget", "python", "backends", "accelerators"]
    rows = [profile_row(p) for p in profiles]
    widths = {h: max([len(h)] + [len(str(r[h])) for r in rows]) for h in headers}
    lines = ["  ".join(h.upper().ljust(widths[h]) for h in headers).rstrip()]
    for r in rows:
        lines.append("  ".join(str(r[h]).ljust(widths[h]) for h in headers).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """List the profiles."""
    profiles = [load_profile(args.profile)] if args.profile else list_profiles()
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
    else:
        print(format_table(profiles))
    return 0

"""Fetch Debian bookworm packages for a foreign architecture and unpack them into a folder.

No ARM code runs: apt resolves and downloads with a private state and cache
(``APT::Architecture`` set to the target), and ``dpkg-deb -x`` unpacks each
package. Maintainer scripts never run; :mod:`firmware_sim.qemu.fixes` does what they would.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from firmware_sim.qemu.errors import QemuHarnessError
from firmware_sim.qemu.recipe import DEBIAN_PACKAGES, DEBIAN_SUITES, ArchRecipe

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def system_mirrors() -> tuple[Optional[str], Optional[str]]:
    """The host's own Debian mirror and security mirror, read from its apt sources (deb822 or one-line)."""
    uris: list[str] = []
    files: list[Path] = []
    for src in APT_SOURCES:
        if src.is_file():
            files.append(src)
        elif src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                uris += line.split()[1:]
            elif line.startswith("deb ") and not line.startswith("deb-src"):
                uris += [w for w in line.split()[1:] if "://" in w][:1]
    security = next((u for u in uris if u.rstrip("/").endswith("-security")), None)
    main = next((u for u in uris if not u.rstrip("/").endswith("-security")), None)
    return main, security


def _sources(arch: ArchRecipe) -> str:
    if not KEYRING.is_file():
        raise QemuHarnessError(
            f"{KEYRING} is missing; install the debian-archive-keyring package to fetch ARM packages"
        )
    sys_main, sys_security = system_mirrors()
    mirror = os.environ.get("EDGE_RUNTIME_DEBIAN_MIRROR") or sys_main
    security = os.environ.get("EDGE_RUNTIME_DEBIAN_SECURITY_MIRROR") or sys_security
    if not mirror:
        raise QemuHarnessError("no Debian mirror found in the host's apt sources; set EDGE_RUNTIME_DEBIAN_MIRROR")
    if not security:
        security = mirror.rstrip("/") + "-security"
    opts = f"[arch={arch.debian_arch} signed-by={KEYRING}]"
    lines = []
    for suite in DEBIAN_SUITES:
        uri = security if suite.endswith("-security") else mirror
        lines.append(f"deb {opts} {uri} {suite} main")
    return "\n".join(lines) + "\n"


def _apt_options(arch: ArchRecipe, state: Path) -> list[str]:
    opts = {
        "APT::Architecture": arch.debian_arch,
        "APT::Architectures": arch.debian_arch,
        "Dir::State": str(state / "state"),
        "Dir::State::status": str(state / "status"),
        "Dir::Cache": str(state / "cache"),
        "Dir::Etc::SourceList": str(state / "sources.list"),
        "Dir::Etc::SourceParts": str(state / "sources.list.d"),
        "Dir::Etc::Preferences": str(state / "preferences"),
        "Dir::Etc::PreferencesParts": str(state / "preferences.d"),
        "Dir::Etc::Trusted": str(state / "trusted.gpg"),
        "Dir::Etc::TrustedParts": str(state / "trusted.gpg.d"),
        "Debug::NoLocking": "1",
        "Acquire::Languages": "none",
        "APT::Install-Recommends": "0",
        "APT::Install-Suggests": "0",
        "APT::Sandbox::User": "root",
    }
    out: list[str] = []
    for k, v in opts.items():
        out += ["-o", f"{k}={v}"]
    return out


def _run(cmd: list[str], what: str, log: Path) -> subprocess.CompletedProcess:
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "LANG": "C.UTF-8"})
    if proc.returncode != 0 and what:
        raise QemuHarnessError(f"{what} failed (exit {proc.returncode}); see {log}")
    return proc


def download_debs(arch: ArchRecipe, state: Path, log: Path) -> list[Path]:
    """Resolve and download :data:`DEBIAN_PACKAGES` for ``arch``; return the .deb files."""
    for d in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d", "trusted.gpg.d"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    (state / "sources.list").write_text(_sources(arch))
    opts = _apt_options(arch, state)
    # A failing index (the armhf bookworm-security one on some mirrors reports a size
    # mismatch) makes `update` exit non-zero; main and updates suffice, so only missing
    # main lists are fatal.
    _run(["apt-get", *opts, "-q", "update"], "", log)
    lists = list((state / "state" / "lists").glob(f"*_dists_bookworm_main_binary-{arch.debian_arch}_Packages*"))
    if not lists:
        raise QemuHarnessError(
            f"could not download the Debian bookworm main index for {arch.debian_arch}; see {log}"
        )
    _run(["apt-get", *opts, "-q", "-y", "--download-only", "install", *DEBIAN_PACKAGES],
         f"downloading the {arch.debian_arch} Debian packages", log)
    debs = sorted((state / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise QemuHarnessError(f"apt downloaded no packages for {arch.debian_arch}; see {log}")
    return debs


def extract_debs(debs: list[Path], root: Path, log: Path) -> None:
    """Unpack each package's data into ``root`` (no maintainer scripts)."""
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}", log)

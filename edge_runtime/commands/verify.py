"""``edge-runtime verify BUNDLE --pubkey KEY``: check a bundle's hashes and signature (and install it)."""
from __future__ import annotations

import argparse
import json

NAME = "verify"
HELP = "check a model bundle's file hashes and Ed25519 signature; optionally install it atomically"
DESCRIPTION = """\
Verify a bundle (.tar.gz from 'edge-convert fleet build') before using it: every file's
sha256 and size against manifest.json, and manifest.json's Ed25519 signature against
the public key. Refused, with the reason: a changed file, a file missing or not listed,
the wrong key, an unsigned bundle, absolute paths, '..' or links in the archive.

With --install DIR the verified bundle is unpacked into DIR/releases/<id>/ (fsynced)
and DIR/current is switched to it atomically; a refused bundle leaves DIR/current as
it was. With --installed DIR the active release in DIR is re-checked on disk.

Signatures are checked with the 'cryptography' package when it is installed, and
otherwise with the built-in pure-Python RFC 8032 verifier (same results, slower).

exit status: 0 valid, 1 refused or error.

examples:
  edge-runtime verify kitchen.tar.gz --pubkey /etc/edge-runtime/fleet.pub
  edge-runtime verify kitchen.tar.gz --pubkey fleet.pub --install /var/lib/edge-runtime/bundles
  edge-runtime verify --installed /var/lib/edge-runtime/bundles --pubkey fleet.pub
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``verify``."""
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the bundle (.tar.gz)")
    parser.add_argument("--pubkey", metavar="KEY",
                        help="the fleet's public key (PEM from 'edge-convert fleet keygen', or hex/base64 of 32 bytes)")
    parser.add_argument("--insecure-skip-signature", action="store_true",
                        help="without --pubkey: check hashes only and accept unsigned bundles (NOT a security check)")
    parser.add_argument("--install", metavar="DIR", help="after verifying, install atomically under DIR")
    parser.add_argument("--installed", metavar="DIR", help="re-check the active release under DIR instead of a bundle")
    parser.add_argument("--allow-downgrade", action="store_true",
                        help="with --install: install even if the bundle is not newer than the installed release "
                             "(same fleet group; compared by release number, then build time)")
    parser.add_argument("--keep", type=int, default=2, metavar="N", help="releases to keep when installing (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Verify (and maybe install) a bundle."""
    from edge_runtime.bundle import install_bundle, key_id, load_installed, load_public_key, verify_bundle
    from edge_runtime.ed25519 import backend
    from edge_runtime.errors import ConfigError

    if args.pubkey is None and not args.insecure_skip_signature:
        raise ConfigError("give --pubkey KEY (or --insecure-skip-signature to check hashes only)")
    key = load_public_key(args.pubkey) if args.pubkey else None
    require = key is not None
    if args.installed:
        inst = load_installed(args.installed, key, require_signature=require)
        result = {"status": "ok", "installed": str(inst.path), "release": inst.release_id,
                  "group": inst.manifest.group, "profile": inst.manifest.profile, "files": len(inst.manifest.files),
                  "signature": "verified" if key else "NOT CHECKED"}
    else:
        if not args.bundle:
            raise ConfigError("give a BUNDLE to verify (or --installed DIR)")
        if args.install:
            inst = install_bundle(args.bundle, args.install, key, require_signature=require, keep=args.keep,
                                  allow_downgrade=args.allow_downgrade)
            signer = key_id(key) if key is not None else None
            m, release, n = inst.manifest, inst.release_id, len(inst.manifest.files)
        else:
            info = verify_bundle(args.bundle, key, require_signature=require)
            m, release, signer, n = info.manifest, info.release_id, info.signed_by, info.files_checked
        result = {"status": "ok", "bundle": args.bundle, "fleet": m.fleet, "group": m.group, "profile": m.profile,
                  "converter_version": m.converter_version, "build_time": m.build_time,
                  "release_number": m.release, "files": n,
                  "release": release, "signature": "verified" if key else "NOT CHECKED",
                  "signed_by": signer, "verifier": backend() if key else None}
        if args.install:
            result["installed"] = str(inst.path)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        what = result.get("bundle") or result.get("installed")
        print(f"{what}: OK  group {result['group']}, profile {result['profile']}, {result['files']} files verified"
              + (f", signature {result['signature']}" if "signature" in result else ""))
        if "installed" in result and args.install:
            print(f"installed: {result['installed']} (current -> releases/{result['release']})")
    return 0

"""``edge-runtime rollback --root DIR``: go back to the previous installed release."""
from __future__ import annotations

import argparse
import json

NAME = "rollback"
HELP = "switch an install root back to its previous release (atomically, after re-verifying it)"
DESCRIPTION = """\
Point DIR/current back at the release installed before the current one. The previous
release is re-verified on disk (hashes and, with --pubkey, the signature) before the
switch; the switch itself is one atomic symlink replacement. DIR/previous then names the
release rolled back from, so running rollback twice returns to it.

Restart or signal the daemon afterwards (the agent does this by itself).

exit status: 0 rolled back, 1 nothing to roll back to or the previous release is damaged.

examples:
  edge-runtime rollback --root /var/lib/edge-runtime/bundles --pubkey /etc/edge-runtime/fleet.pub
  edge-runtime rollback --root /var/lib/edge-runtime/bundles --pubkey fleet.pub --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rollback``."""
    parser.add_argument("--root", required=True, metavar="DIR", help="the install root (as given to verify --install)")
    parser.add_argument("--pubkey", metavar="KEY", help="the fleet's public key, to re-check the previous release")
    parser.add_argument("--insecure-skip-signature", action="store_true",
                        help="without --pubkey: check hashes only (NOT a security check)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Roll back one release."""
    from edge_runtime.bundle import load_public_key, rollback_bundle
    from edge_runtime.errors import ConfigError

    if args.pubkey is None and not args.insecure_skip_signature:
        raise ConfigError("give --pubkey KEY (or --insecure-skip-signature to check hashes only)")
    key = load_public_key(args.pubkey) if args.pubkey else None
    inst = rollback_bundle(args.root, key, require_signature=key is not None)
    result = {"status": "rolled_back", "root": str(inst.root), "current": inst.release_id,
              "release_number": inst.manifest.release, "group": inst.manifest.group, "rolled_back_from": inst.previous}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        num = f" (release {inst.manifest.release})" if inst.manifest.release else ""
        print(f"{inst.root}: current -> releases/{inst.release_id}{num}; rolled back from {inst.previous}")
    return 0

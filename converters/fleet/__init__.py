"""Fleet builds: a fleet file (defaults -> groups -> devices) to one signed bundle per group.

- :func:`load_fleet` validates a fleet file (precise errors: file, line, path, problem).
- :func:`build_fleet` converts each (model, profile) pair once (content-hash cache) and
  writes ``DIST/<group>.tar.gz`` bundles with a manifest and an Ed25519 signature.
- :func:`keygen` writes a signing key pair.

The device side verifies and installs bundles with :mod:`edge_runtime.bundle`.
"""
from __future__ import annotations

from converters.fleet.build import BuildResult, build_fleet
from converters.fleet.keys import Signer, keygen
from converters.fleet.loader import Fleet, load_fleet

__all__ = ["build_fleet", "BuildResult", "load_fleet", "Fleet", "keygen", "Signer"]

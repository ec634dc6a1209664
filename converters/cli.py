"""The ``edge-convert`` command (host side). Subcommands live in :mod:`converters.commands`."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from edge_runtime.cli_support import run_cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``edge-convert``."""
    return run_cli(
        prog="edge-convert",
        description="Convert float ONNX/TFLite models to int8 TFLite and ONNX, sized to a device profile.",
        package="converters.commands",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())

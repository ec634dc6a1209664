"""The ``edge-convert`` command (host side). Subcommands live in :mod:`converters.commands`."""
from __future__ import annotations

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


def console_main() -> None:
    """The installed ``edge-convert`` script: :func:`main`, then a fast exit (:mod:`edge_runtime.process_exit`)."""
    from edge_runtime.process_exit import exit_process

    exit_process(main())


if __name__ == "__main__":
    console_main()

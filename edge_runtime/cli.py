"""The ``edge-runtime`` command (device side).

Each subcommand lives in its own module under :mod:`edge_runtime.commands`; see
:func:`edge_runtime.cli_support.run_cli`.
"""
from __future__ import annotations

from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``edge-runtime``."""
    from edge_runtime.cli_support import guard_out_of_memory

    def start() -> int:
        from edge_runtime.cli_support import run_cli

        return run_cli(
            prog="edge-runtime",
            description="Run int8 models on a device: LiteRT, ONNX Runtime or the pure-numpy micro backend.",
            package="edge_runtime.commands",
            argv=argv,
        )

    return guard_out_of_memory("edge-runtime", start)


def console_main() -> None:
    """The installed ``edge-runtime`` script: :func:`main`, then a fast exit (:mod:`edge_runtime.process_exit`)."""
    from edge_runtime.process_exit import exit_process

    exit_process(main())


if __name__ == "__main__":
    console_main()

"""The ``edge-convert`` command (host side). Subcommands live in :mod:`converters.commands`."""
from __future__ import annotations

import os
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


#: How long (log2 of CPU cycles) numpy's OpenBLAS threads busy-wait for work before they sleep: its
#: default, 28, keeps a thread per core spinning ~0.1 s after numpy's import and after every
#: multi-threaded BLAS call, on cores the converter's ONNX Runtime and numpy threads need (measured on
#: 2 cores: ``import numpy`` 0.14-0.19 s against 0.08-0.12 s). 4, OpenBLAS's minimum, lets them sleep
#: at once; a later BLAS call wakes them (microseconds). Threads and results are unchanged.
OPENBLAS_THREAD_TIMEOUT = "4"


def console_main() -> None:
    """The installed ``edge-convert`` script: :func:`main`, then a fast exit (:mod:`edge_runtime.process_exit`).

    Before numpy is loaded, OpenBLAS's idle threads are told to sleep rather than spin
    (:data:`OPENBLAS_THREAD_TIMEOUT`, unless the environment already sets it; a setting of the process,
    which the library functions leave alone)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    from edge_runtime.process_exit import exit_process

    exit_process(main())


if __name__ == "__main__":
    console_main()

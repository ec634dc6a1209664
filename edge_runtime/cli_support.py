"""Shared machinery for the ``edge-runtime`` and ``edge-convert`` commands.

A subcommand is a module in a commands package that defines:

- ``NAME`` (str) and ``HELP`` (one line),
- ``add_arguments(parser)``,
- ``run(args) -> int`` (the exit code).

Errors derived from :class:`EdgeRuntimeError` print one line, ``error: ...``, and
exit with the error's code; no traceback. ``EDGE_RUNTIME_DEBUG=1`` shows tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from typing import Optional, Sequence

from typing import Callable

from edge_runtime.errors import (EXIT_CODES_HELP, EdgeRuntimeError, OutOfMemoryError, is_out_of_memory,
                                 out_of_memory_message)


def _discover(package: str, argv: Sequence[str]) -> list:
    """Import the command modules of ``package``.

    A module's file name is its command name, so when ``argv`` names a command only
    that module is imported: one command's heavy imports never slow another's start-up.
    """
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted in names:
        names = [wanted]
    mods = []
    for name in names:
        mod = importlib.import_module(f"{package}.{name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def package_version() -> str:
    """The installed edge-runtime version ("unknown" when run from a source tree that is not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("edge-runtime")
    except (ImportError, PackageNotFoundError):
        return "unknown"


def run_cli(prog: str, description: str, package: str, argv: Optional[Sequence[str]] = None) -> int:
    """Build the parser from ``package``'s command modules, parse ``argv`` and run the command."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_CODES_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action="version", version=f"{prog} {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    argv = list(sys.argv[1:] if argv is None else argv)
    for mod in sorted(_discover(package, argv), key=lambda m: m.NAME):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP)
        mod.add_arguments(p)
        commands[mod.NAME] = mod
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=f"{prog}: %(message)s", stream=sys.stderr)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(commands[args.command].run(args) or 0)
    except EdgeRuntimeError as exc:
        if os.environ.get("EDGE_RUNTIME_DEBUG"):
            raise
        if is_out_of_memory(exc) and not isinstance(exc, OutOfMemoryError):  # a wrapped allocation failure
            print(f"{prog}: error: {out_of_memory_message(exc)}", file=sys.stderr)
            return exc.exit_code
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def guard_out_of_memory(prog: str, start: Callable[[], int]) -> int:
    """Run ``start()``; turn a memory shortage anywhere (imports included) into one error line, exit 1."""
    try:
        return start()
    except BaseException as exc:  # noqa: BLE001 - re-raised unless it is a memory shortage
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) or not is_out_of_memory(exc):
            raise
        if os.environ.get("EDGE_RUNTIME_DEBUG"):
            raise
        try:
            sys.stderr.write(f"{prog}: error: {out_of_memory_message(exc)}\n")
        except MemoryError:
            os.write(2, f"{prog}: error: out of memory\n".encode())
        return 1

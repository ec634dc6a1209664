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
import functools
import importlib
import os
import sys
from typing import Any, Callable, Optional, Sequence

from edge_runtime.errors import (EXIT_CODES_HELP, EdgeRuntimeError, OutOfMemoryError, is_out_of_memory,
                                 out_of_memory_message)


def _discover(package: str, argv: Sequence[str]) -> list:
    """Import the command modules of ``package``.

    A module's file name is its command name, so when ``argv`` names a command only
    that module is imported (without listing the package): one command's heavy imports
    never slow another's start-up.
    """
    pkg = importlib.import_module(package)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    if wanted and wanted.isidentifier() and not wanted.startswith("_"):
        try:
            mod = importlib.import_module(f"{package}.{wanted}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{wanted}":
                raise
        else:
            if hasattr(mod, "NAME") and hasattr(mod, "run"):
                return [mod]
    import pkgutil

    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))
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


@functools.lru_cache(maxsize=1)
def _terminal_width() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil (bz2 and lzma with it, ~0.5 MiB);
    asked once per process, not once per argument."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class _TerminalWidth:
    """Formatter mixin: argparse builds a formatter for every ``add_argument`` and each one asks shutil
    for the terminal width; this asks :func:`os.get_terminal_size` directly."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,  # type: ignore[call-arg]
                         _terminal_width() - 2 if width is None else width)


class HelpFormatter(_TerminalWidth, argparse.HelpFormatter):
    """argparse's default formatter."""


class RawDescriptionHelpFormatter(_TerminalWidth, argparse.RawDescriptionHelpFormatter):
    """argparse's formatter that keeps the description's line breaks (the commands' examples)."""


class _VersionAction(argparse.Action):
    """``--version`` that looks the installed version up only when asked: importlib.metadata costs
    about 20 ms and 2.5 MiB, which every other command would pay at start-up."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit()


def configure_logging(prog: str, verbose: bool) -> None:
    """Log records go to stderr as ``prog: message``: INFO and up, DEBUG with ``-v``.

    Configured eagerly, although a plain ``edge-runtime run`` never logs: deferring it with an import
    hook (a meta-path finder in front of every import) was measured to turn out-of-memory failures
    under an address-space limit into ``SystemError: error return without exception set`` tracebacks
    (tests/test_memory_limit.py, 12 of 12 runs at 0.75 of the budget), and one clear error line matters
    more than ~2 ms.
    """
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format=f"{prog}: %(message)s", stream=sys.stderr)


def run_cli(prog: str, description: str, package: str, argv: Optional[Sequence[str]] = None) -> int:
    """Build the parser from ``package``'s command modules, parse ``argv`` and run the command."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_CODES_HELP,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    argv = list(sys.argv[1:] if argv is None else argv)
    for mod in sorted(_discover(package, argv), key=lambda m: m.NAME):
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP)
        mod.add_arguments(p)
        commands[mod.NAME] = mod
    args = parser.parse_args(argv)
    configure_logging(prog, args.verbose)
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

"""Shared machinery for the ``edge-runtime`` and ``edge-convert`` commands.

A subcommand is a module in a commands package that defines:

- ``NAME`` (str) and ``HELP`` (one line),
- ``add_arguments(parser)``,
- ``run(args) -> int`` (the exit code).

Errors derived from :class:`EdgeRuntimeError` print one line, ``error: ...``, and
exit with the error's code; no traceback. ``EDGE_RUNTIME_DEBUG=1`` shows tracebacks.

A command line made only of what :func:`parse_light` can reproduce exactly (the command
name, its positionals, ``--option VALUE`` and flags, spelled out in full) is parsed without
argparse, which with the gettext/locale lookups it makes costs ~0.6 MiB of RSS at start-up;
anything else (``--help``, a mistake, an abbreviation, ``--opt=value``) goes to argparse,
which gives its usual help and error messages. A command module may also set
``LAZY_LOGGING = True`` when every module it reaches logs through :mod:`edge_runtime.log`:
``logging`` is then imported only when a message is emitted.
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from edge_runtime import log
from edge_runtime.errors import (EXIT_CODES_HELP, EdgeRuntimeError, OutOfMemoryError, is_out_of_memory,
                                 out_of_memory_message)

if TYPE_CHECKING:
    import argparse


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


@functools.lru_cache(maxsize=1)
def _argparse_classes() -> dict[str, type]:
    """The argparse subclasses below, defined on first use so that importing this module needs no argparse."""
    import argparse

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

    class VersionAction(argparse.Action):
        """``--version`` that looks the installed version up only when asked: importlib.metadata costs
        about 20 ms and 2.5 MiB, which every other command would pay at start-up."""

        def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                     default: Any = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
            super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: Optional[str] = None) -> None:
            print(f"{parser.prog} {package_version()}")
            parser.exit()

    return {"HelpFormatter": HelpFormatter, "RawDescriptionHelpFormatter": RawDescriptionHelpFormatter,
            "VersionAction": VersionAction}


def __getattr__(name: str) -> Any:
    """``HelpFormatter`` and ``RawDescriptionHelpFormatter``, built (with argparse) when first asked for."""
    if name in ("HelpFormatter", "RawDescriptionHelpFormatter"):
        return _argparse_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Namespace:
    """What :func:`parse_light` returns: ``argparse.Namespace``'s behaviour (attributes, ``==``, ``in``,
    ``vars``) without importing argparse."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        if not hasattr(other, "__dict__") or type(other).__name__ != "Namespace":
            return NotImplemented
        return vars(self) == vars(other)

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __repr__(self) -> str:
        return "Namespace(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


class _NeedsArgparse(Exception):
    """The command line, or a command's ``add_arguments``, uses something only argparse reproduces exactly."""


class _Arg:
    """One recorded argument: a positional, a ``--option VALUE`` store, or a ``store_true`` flag."""

    __slots__ = ("choices", "default", "dest", "flag", "required", "type")

    def __init__(self, dest: str, flag: bool, kw: dict[str, Any]) -> None:
        self.dest, self.flag = dest, flag
        self.type = kw.get("type")
        self.choices = kw.get("choices")
        self.default = kw.get("default", False if flag else None)
        self.required = bool(kw.get("required", False))

    def value(self, text: str) -> Any:
        """``text`` converted and checked as argparse does; :class:`_NeedsArgparse` where argparse would
        complain (it then gives the error message)."""
        try:
            v = text if self.type is None else self.type(text)
        except Exception:  # noqa: BLE001 - argparse repeats the conversion and reports it its own way
            raise _NeedsArgparse(self.dest) from None
        if self.choices is not None and v not in self.choices:
            raise _NeedsArgparse(self.dest)
        return v


class _ArgRecorder:
    """Takes a command's ``add_argument`` calls in place of an ``ArgumentParser``, keeping the kinds
    :func:`parse_light` reproduces exactly; any other call or keyword raises :class:`_NeedsArgparse`."""

    _KEYWORDS = frozenset({"action", "type", "choices", "default", "required", "help", "metavar", "dest"})

    def __init__(self, taken: Sequence[str]) -> None:
        self.positionals: list[_Arg] = []
        self.options: dict[str, _Arg] = {}
        self.args: list[_Arg] = []
        self._dests = set(taken)

    def add_argument(self, *names: str, **kw: Any) -> None:
        """Record one argument (same signature as ``ArgumentParser.add_argument``)."""
        action = kw.get("action", "store")
        typ = kw.get("type")
        if (not names or set(kw) - self._KEYWORDS or action not in ("store", "store_true")
                or not all(isinstance(n, str) and n for n in names) or (typ is not None and not callable(typ))):
            raise _NeedsArgparse(str(names))
        flag = action == "store_true"
        if flag and ("type" in kw or "choices" in kw):
            raise _NeedsArgparse(str(names))
        if isinstance(kw.get("default"), str) and typ is not None:  # argparse converts such a default itself
            raise _NeedsArgparse(str(names))
        if "==SUPPRESS==" in (kw.get("dest"), kw.get("default")):  # argparse.SUPPRESS: no attribute at all
            raise _NeedsArgparse(str(names))
        if names[0][0] != "-":
            if len(names) != 1 or flag or "dest" in kw or "required" in kw:
                raise _NeedsArgparse(str(names))
            arg = _Arg(names[0], False, {**kw, "required": True})
            self.positionals.append(arg)
        else:
            if not all(n[0] == "-" and len(n) > 1 and n not in self.options for n in names):
                raise _NeedsArgparse(str(names))
            longs = [n for n in names if n[1] == "-"]
            dest = kw.get("dest") or (longs[0] if longs else names[0]).lstrip("-").replace("-", "_")
            arg = _Arg(dest, flag, kw)
            for n in names:
                self.options[n] = arg
        if arg.dest in self._dests:
            raise _NeedsArgparse(arg.dest)
        self._dests.add(arg.dest)
        self.args.append(arg)

    def __getattr__(self, name: str) -> Any:
        raise _NeedsArgparse(name)


#: The top-level options :func:`parse_light` accepts before the command (``run_cli`` defines them too).
_GLOBAL_FLAGS = {"-v": "verbose", "--verbose": "verbose"}


def parse_light(argv: Sequence[str], mod: Any) -> Optional[Namespace]:
    """``argv`` parsed as ``run_cli``'s argparse parser would parse it for command module ``mod``, or
    ``None`` when argparse is needed (help, usage errors, abbreviations, ``--opt=value``, attached short
    values, a value starting with ``-``, or arguments of kinds this parser does not reproduce)."""
    try:
        rec = _ArgRecorder(taken=("command", *_GLOBAL_FLAGS.values()))
        mod.add_arguments(rec)
        values: dict[str, Any] = {"verbose": False}
        i = 0
        while i < len(argv) and argv[i] in _GLOBAL_FLAGS:
            values[_GLOBAL_FLAGS[argv[i]]] = True
            i += 1
        if i >= len(argv) or argv[i] != mod.NAME:
            return None
        values["command"] = mod.NAME
        values.update((a.dest, a.default) for a in rec.args)
        given: set[str] = set()
        positionals = iter(rec.positionals)
        i += 1
        while i < len(argv):
            token = argv[i]
            if token.startswith("-"):
                arg = rec.options.get(token)
                if arg is None:
                    return None
                if arg.flag:
                    values[arg.dest] = True
                    i += 1
                else:
                    if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                        return None
                    values[arg.dest] = arg.value(argv[i + 1])
                    i += 2
            else:
                arg = next(positionals, None)
                if arg is None:
                    return None
                values[arg.dest] = arg.value(token)
                i += 1
            given.add(arg.dest)
        if any(a.required and a.dest not in given for a in rec.args):
            return None
    except _NeedsArgparse:
        return None
    return Namespace(**values)


def configure_logging(prog: str, verbose: bool, lazy: bool = False) -> None:
    """Log records go to stderr as ``prog: message``: INFO and up, DEBUG with ``-v``.

    ``lazy`` (a command whose modules all log through :mod:`edge_runtime.log`): ``logging`` is imported
    and configured when the first message is emitted, not now; a plain ``edge-runtime run`` never logs.
    No import hook is involved: an earlier attempt that deferred it with a meta-path finder in front of
    every import turned out-of-memory failures under an address-space limit into ``SystemError: error
    return without exception set`` tracebacks (tests/test_memory_limit.py).
    """
    log.configure(prog, verbose, lazy=lazy)


def _build_parser(prog: str, description: str, mods: Sequence[Any]) -> argparse.ArgumentParser:
    """The argparse parser of every command in ``mods`` (help, usage errors and everything
    :func:`parse_light` leaves to it)."""
    import argparse

    classes = _argparse_classes()
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_CODES_HELP,
                                     formatter_class=classes["HelpFormatter"])
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")  # also in _GLOBAL_FLAGS
    parser.add_argument("--version", action=classes["VersionAction"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in mods:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=classes["RawDescriptionHelpFormatter"], epilog=EXIT_CODES_HELP)
        mod.add_arguments(p)
    return parser


def run_cli(prog: str, description: str, package: str, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` for ``package``'s command modules (see the module docstring) and run the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    mods = sorted(_discover(package, argv), key=lambda m: m.NAME)
    commands = {mod.NAME: mod for mod in mods}
    args: Any = parse_light(argv, mods[0]) if len(mods) == 1 else None
    parser = None
    if args is None:
        parser = _build_parser(prog, description, mods)
        args = parser.parse_args(argv)
    mod = commands.get(args.command) if args.command else None
    configure_logging(prog, args.verbose, lazy=bool(getattr(mod, "LAZY_LOGGING", False)))
    if mod is None:  # no command given (parse_light always names one)
        (parser or _build_parser(prog, description, mods)).print_help()
        return 2
    try:
        return int(mod.run(args) or 0)
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

"""One clear message for each way reading a user's file can fail: I/O, YAML syntax, validation.

Shared by device profiles, bundles and (host side) fleet files, so that every loader names
the file and the problem the same way. Imports neither yaml nor pydantic: it reads the
attributes of the exceptions those raise.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from edge_runtime.errors import ConfigError, EdgeRuntimeError


@contextmanager
def read_errors(path: str, what: str, error: type[EdgeRuntimeError] = ConfigError, *,
                denied: Optional[str] = None, text_hint: Optional[str] = None,
                cannot_read: Optional[str] = None) -> Iterator[None]:
    """Turn the errors of reading ``path`` (a ``what``, e.g. "fleet file") into one ``error``.

    Missing file: "no such {what}"; a directory: "is a directory, not a {what}"; with
    ``denied``, a PermissionError gives that message; with ``text_hint``, bytes that are not
    UTF-8 give "not a text file ({text_hint})"; with ``cannot_read``, any other OSError gives
    "{cannot_read}: {reason}". Every message starts with the path. Other errors pass through.
    """
    try:
        yield
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except PermissionError as exc:
        if denied is not None:
            raise error(f"{path}: {denied}") from None
        if cannot_read is None:
            raise
        raise error(f"{path}: {cannot_read}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        if text_hint is None:
            raise
        raise error(f"{path}: not a text file ({text_hint})") from None
    except OSError as exc:
        if cannot_read is None:
            raise
        raise error(f"{path}: {cannot_read}: {exc.strerror or exc}") from None


def yaml_problem(exc: Exception) -> tuple[Optional[tuple[int, int]], str]:
    """(line, column) of a YAML syntax error, both from 1 (None when PyYAML gives no position),
    and the problem in a few words."""
    mark = getattr(exc, "problem_mark", None)
    where = (mark.line + 1, mark.column + 1) if mark is not None else None
    return where, getattr(exc, "problem", None) or str(exc).splitlines()[0]


def field_message(err: dict[str, Any], unknown: str, missing: str) -> tuple[str, bool]:
    """The message for one pydantic error: ``unknown`` for a field the schema does not allow,
    ``missing`` for a required one, else pydantic's own; and whether it was one of those two."""
    if err["type"] == "extra_forbidden":
        return unknown, True
    if err["type"] == "missing":
        return missing, True
    return err["msg"], False

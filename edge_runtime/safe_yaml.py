"""Read a user's YAML file (configs, profiles, preprocessing, fleet files) safely, with one clear error.

What it refuses, each with one :class:`~edge_runtime.errors.ConfigError` naming the file:

- anything but a regular file (a FIFO or a device would block or never end), or a file over
  :data:`MAX_BYTES`;
- bytes that are not UTF-8 text (UTF-16 included);
- YAML aliases (``*name``) in device-side files (daemon, preprocessing and profile configs):
  an alias can expand exponentially (a "billion laughs" bomb) and these files have no need
  of them, so they are refused outright. Host-side fleet files may use aliases (the example
  fleet does), within an expansion budget of :data:`MAX_EXPANDED_NODES` nodes;
- nesting deeper than :data:`MAX_DEPTH` (PyYAML would otherwise recurse until Python's
  recursion limit);
- YAML syntax errors, with the line and column.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Optional

from edge_runtime.config_errors import read_errors, yaml_problem
from edge_runtime.errors import ConfigError

MAX_BYTES = 4 << 20
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000


def _loader_class(allow_aliases: bool) -> Any:
    import yaml

    class CheckedLoader(yaml.SafeLoader):  # the pure-Python loader: its composer can be checked node by node
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
            if not allow_aliases and self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.YAMLError(f"a YAML alias (*{event.anchor}) at line {event.start_mark.line + 1}: aliases are "
                                     "not allowed in configuration files (write the value out)")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nesting deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_document(self, node: Any) -> Any:  # noqa: D102
            if allow_aliases:
                _check_expansion(node)
            return super().construct_document(node)

    return CheckedLoader


def _check_expansion(root: Any) -> None:
    """Refuse a document whose aliases expand past MAX_EXPANDED_NODES nodes (counted without expanding)."""
    import yaml

    sizes: dict[int, int] = {}

    stack = [root]
    while stack:  # post-order without recursion; shared (aliased) nodes are sized once
        node = stack.pop()
        if id(node) in sizes:
            continue
        kids = ([k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode)
                else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        pending = [k for k in kids if id(k) not in sizes]
        if pending:
            stack.append(node)
            stack.extend(pending)
            continue
        sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            raise yaml.YAMLError(f"aliases expand this document past {MAX_EXPANDED_NODES} values (a YAML bomb?)")



def check_regular_file(path: str, what: str) -> None:
    """Refuse a path that is not a regular file (FIFO, socket, device) before anything opens it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: is not a regular file (a FIFO, socket or device); give a {what} file")
    if st.st_size > MAX_BYTES:
        raise ConfigError(f"{path}: the {what} is {st.st_size} bytes; the limit is {MAX_BYTES}")


def parse_yaml_text(text: str, origin: str, allow_aliases: bool = False, line_prefix: bool = False) -> Any:
    """Parse YAML text with nesting bounded and aliases refused (or budgeted); ConfigError naming ``origin``.

    ``line_prefix`` writes syntax errors as ``origin:LINE: ...`` (the fleet file's style) instead of
    ``origin: ... at line L, column C``.
    """
    import yaml

    try:
        return yaml.load(text, Loader=_loader_class(allow_aliases))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        pos, problem = yaml_problem(exc)
        if line_prefix:
            raise ConfigError(f"{origin}{f':{pos[0]}' if pos else ''}: not valid YAML: {problem}") from None
        where = f" at line {pos[0]}, column {pos[1]}" if pos else ""
        raise ConfigError(f"{origin}: not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid YAML: nested too deeply") from None


def load_yaml_file(path: "str | os.PathLike[str]", what: str = "config file", hint: Optional[str] = None) -> Any:
    """Read and parse one YAML file safely (see the module docstring)."""
    p = os.fspath(path)
    check_regular_file(p, what)
    with read_errors(p, what, denied=f"permission denied reading the {what}",
                     text_hint=hint or f"a {what} is UTF-8 YAML", cannot_read=f"cannot read the {what}"):
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ConfigError(f"{p}: the {what} is UTF-16 text; save it as UTF-8")
        text = raw.decode("utf-8")
    return parse_yaml_text(text, p)

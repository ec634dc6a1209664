"""Identical constants written once: a generated constant (``static const`` array or block) whose
contents equal an earlier one's is not emitted, and every reference to its name is pointed at the
earlier one (flash holds each distinct constant once; they are read-only, so sharing is exact)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: parameter blocks are packed (er_kernels.h ER_PACKED): without this GCC word-aligns them on ARM
BLOCK_ALIGN = " ER_BYTES"


@dataclass
class SharedConstants:
    """The constants written so far, by contents, and the names folded into them."""

    by_body: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def rename(self, text: str) -> str:
        """``text`` with every folded name replaced by the constant that holds its contents."""
        for old, new in self.aliases.items():
            if old in text:
                text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        return text

    def add(self, name: str, text: str) -> bool:
        """Record the definition ``text`` of ``name``; False when an identical one exists (the name
        is then folded into it and ``text`` must not be written)."""
        key = re.sub(rf"\b{re.escape(name)}\b", "@", text, count=1)  # the definition, without its name
        first = self.by_body.setdefault(key, name)
        if first == name:
            return True
        self.aliases[name] = first
        return False

    def block(self, name: str, struct: str, init: str, out: list[str]) -> str:
        """The name of a parameter block ``struct`` = ``init``: ``name`` (appended to ``out``), or an
        identical block's."""
        text = f"static const {struct} {name}{BLOCK_ALIGN} = {init};\n"
        if self.add(name, text):
            out.append(text)
            return name
        return self.aliases[name]


__all__ = ["BLOCK_ALIGN", "SharedConstants"]

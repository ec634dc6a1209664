"""Fresh names for tensors and nodes that graph rewrites add to an ONNX graph."""
from __future__ import annotations


class FreshNames:
    """``fresh(want)`` -> ``want``, or ``want_1``, ``want_2``, ... : the first not yet taken (then taken)."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = taken

    def __call__(self, want: str) -> str:
        name, k = want, 1
        while name in self.taken:
            name, k = f"{want}_{k}", k + 1
        self.taken.add(name)
        return name


__all__ = ["FreshNames"]

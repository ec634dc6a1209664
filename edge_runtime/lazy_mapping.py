"""A read-only mapping whose values are loaded on first lookup from a static index.

The op registries (micro's kernels, both importers' handlers) keep an index ``name -> where`` that
answers ``in``, ``len`` and iteration without importing anything; the value behind a name (a kernel
class, a handler function) is loaded by ``load(name, where)`` the first time it is looked up, so
opening a model imports the modules of its ops only.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LazyMapping(Mapping[str, V], Generic[K, V]):
    """``name -> load(name, index[name])``, each value loaded once; ``KeyError`` for a name not indexed."""

    def __init__(self, index: Mapping[str, K], load: Callable[[str, K], V]) -> None:
        self._index = index
        self._load = load
        self._loaded: dict[str, V] = {}

    def __getitem__(self, name: str) -> V:
        try:
            return self._loaded[name]
        except KeyError:
            value = self._loaded[name] = self._load(name, self._index[name])
            return value

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


__all__ = ["LazyMapping"]

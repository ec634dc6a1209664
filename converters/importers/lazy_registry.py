"""An importer's op registry read from a static index: the handler's module is imported on first lookup.

Both importers (:mod:`converters.importers.onnx_ops`, :mod:`converters.importers.tflite_ops`) keep one
module per op group, each with its own ``REGISTRY`` dict, and an index ``module -> op names`` in their
``__init__``. :class:`LazyRegistry` answers ``in``, ``len`` and iteration from the index alone, so
importing a model imports the handlers of its ops only.
"""
from __future__ import annotations

import importlib
from typing import Callable

from edge_runtime.lazy_mapping import LazyMapping

Handler = Callable[..., None]


def op_index(module_ops: dict[str, tuple[str, ...]], what: str) -> dict[str, str]:
    """Op name -> handler module from ``module -> op names``, refusing an op listed under two modules
    (``what`` names the registry in the error)."""
    index: dict[str, str] = {}
    for module, ops in module_ops.items():
        for op in ops:
            if op in index:
                raise RuntimeError(f"{what} registry: {op} is registered twice ({index[op]} and {module})")
            index[op] = module
    return index


def eager_registry(package: str, module_ops: dict[str, tuple[str, ...]], what: str) -> dict[str, Handler]:
    """Every handler: each module of ``module_ops`` (in ``package``) imported and its ``REGISTRY`` merged."""
    merged: dict[str, Handler] = {}
    for module in module_ops:
        for op, handler in importlib.import_module(f"{package}.{module}").REGISTRY.items():
            if op in merged:
                raise RuntimeError(f"{what} registry: {op} is registered twice")
            merged[op] = handler
    return merged


class LazyRegistry(LazyMapping[str, Handler]):
    """Op name -> handler, importing the handler's module (``package.<index[op]>``) on first lookup."""

    def __init__(self, package: str, index: dict[str, str], what: str) -> None:
        def load(op: str, module: str) -> Handler:
            own = importlib.import_module(f"{package}.{module}").REGISTRY
            if op not in own:
                raise RuntimeError(f"{what} registry: the index puts {op} in {module}, "
                                   f"whose REGISTRY does not have it")
            return own[op]

        super().__init__(index, load)


__all__ = ["Handler", "LazyRegistry", "eager_registry", "op_index"]

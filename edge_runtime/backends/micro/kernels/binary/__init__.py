"""Binary elementwise ops (arithmetic, comparisons, logic, selection): op name -> kernel class.

``REGISTRY`` is built on first access: the kernels' own lookup goes through the generated index
(:mod:`edge_runtime.backends.micro.kernels.index`), and modules that only need this family's shared
helpers (``binary.common``, e.g. the ADD/SUB/MUL kernel) then import none of the other kernels.
"""
from __future__ import annotations

from typing import Any

from edge_runtime.backends.micro.kernels.base import Kernel


def _registry() -> dict[str, type[Kernel]]:
    from edge_runtime.backends.micro.kernels.binary.add_n import AddN
    from edge_runtime.backends.micro.kernels.binary.div import Div
    from edge_runtime.backends.micro.kernels.binary.equal import Equal
    from edge_runtime.backends.micro.kernels.binary.floor_div import FloorDiv
    from edge_runtime.backends.micro.kernels.binary.floor_mod import FloorMod
    from edge_runtime.backends.micro.kernels.binary.greater import Greater
    from edge_runtime.backends.micro.kernels.binary.greater_equal import GreaterEqual
    from edge_runtime.backends.micro.kernels.binary.less import Less
    from edge_runtime.backends.micro.kernels.binary.less_equal import LessEqual
    from edge_runtime.backends.micro.kernels.binary.logical_and import LogicalAnd
    from edge_runtime.backends.micro.kernels.binary.logical_or import LogicalOr
    from edge_runtime.backends.micro.kernels.binary.maximum import Maximum
    from edge_runtime.backends.micro.kernels.binary.minimum import Minimum
    from edge_runtime.backends.micro.kernels.binary.not_equal import NotEqual
    from edge_runtime.backends.micro.kernels.binary.prelu import Prelu
    from edge_runtime.backends.micro.kernels.binary.select_v2 import SelectV2
    from edge_runtime.backends.micro.kernels.binary.squared_difference import SquaredDifference

    registry: dict[str, type[Kernel]] = {
        "DIV": Div,
        "FLOOR_DIV": FloorDiv,
        "FLOOR_MOD": FloorMod,
        "MAXIMUM": Maximum,
        "MINIMUM": Minimum,
        "SQUARED_DIFFERENCE": SquaredDifference,
        "EQUAL": Equal,
        "NOT_EQUAL": NotEqual,
        "GREATER": Greater,
        "GREATER_EQUAL": GreaterEqual,
        "LESS": Less,
        "LESS_EQUAL": LessEqual,
        "LOGICAL_AND": LogicalAnd,
        "LOGICAL_OR": LogicalOr,
        "SELECT_V2": SelectV2,
        "ADD_N": AddN,
        "PRELU": Prelu,
    }
    return registry


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":
        registry = _registry()
        globals()["REGISTRY"] = registry
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

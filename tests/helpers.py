"""Helpers shared by several test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def micro_available() -> bool:
    """True once the micro backend (another issue's work) is installed; then it must load our models."""
    try:
        return hasattr(importlib.import_module("edge_runtime.backends.micro"), "open_model")
    except ModuleNotFoundError:
        return False


def board_variant(tmp_path: Path, board: str, name: str, **fields: int) -> Path:
    """A copy of the shipped profile ``board`` renamed ``name``, with top-level ``fields`` replaced
    (for example ``model_flash_budget_bytes=11000``), written under ``tmp_path``; its path."""
    lines = []
    for line in (ROOT / "device_profiles" / "boards" / f"{board}.yaml").read_text().splitlines():
        if line.startswith("name:"):
            line = f"name: {name}"
        for key, value in fields.items():
            if line.startswith(f"{key}:"):
                line = f"{key}: {value}"
        lines.append(line)
    p = tmp_path / f"{name}.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


class IRTensors:
    """Builds the tensor table of a small converter IR graph: ``const`` and ``act`` register a tensor and
    return its name, ``graph`` wraps the table with ops, inputs and outputs."""

    def __init__(self) -> None:
        self.tensors: dict = {}

    def const(self, name: str, a) -> str:  # type: ignore[no-untyped-def]
        """A float32 constant (weights, biases)."""
        import numpy as np

        from converters.ir import Tensor

        self.tensors[name] = Tensor(name, a.shape, np.asarray(a).astype(np.float32))
        return name

    def act(self, name: str, shape: tuple) -> str:
        """An activation of a static shape."""
        from converters.ir import Tensor

        self.tensors[name] = Tensor(name, shape)
        return name

    def graph(self, name: str, ops: list, inputs: list, outputs: list):  # type: ignore[no-untyped-def]
        """The :class:`converters.ir.Graph` of these tensors."""
        from converters.ir import Graph

        return Graph(name, self.tensors, ops, inputs, outputs)

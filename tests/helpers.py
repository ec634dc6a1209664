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

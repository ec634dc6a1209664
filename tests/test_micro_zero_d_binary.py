"""Binary ops on 0-d tensors (a loss, a scalar statistic): micro == tflite-micro (np.array_equal).

micro cut its output into chunk views with ``y[index]``; on a 0-d output that gave a numpy scalar instead of a
view, so every int8 table op (DIV, ...) raised "output must be an array". Reference: tflite-micro.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import T, assert_exact, build, opts

OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions",
           "SQUARED_DIFFERENCE": "SquaredDifferenceOptions", "MAXIMUM": "MaximumMinimumOptions",
           "MINIMUM": "MaximumMinimumOptions"}
INT8_OPS = ("ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM")
FLOAT_OPS = ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "FLOOR_DIV", "FLOOR_MOD")


def _model(tmp_path: Path, op: str, dtype: str, a_shape: list[int], b_shape: list[int]) -> Path:
    quant = {"scale": 0.05, "zp": 3} if dtype == "int8" else {}
    quant_b = {"scale": 0.04, "zp": -2} if dtype == "int8" else {}
    quant_y = {"scale": 0.1, "zp": 1} if dtype == "int8" else {}
    options = opts(OPTIONS[op]) if op in OPTIONS else None
    return build(tmp_path / f"{op}_{dtype}_{len(a_shape)}{len(b_shape)}.tflite", op,
                 [T(a_shape, dtype, **quant), T(b_shape, dtype, **quant_b)], [T([], dtype, **quant_y)], options)


@pytest.mark.parametrize("op", INT8_OPS)
def test_int8_binary_op_on_0d_tensors(op: str, tmp_path: Path) -> None:
    path = _model(tmp_path, op, "int8", [], [])
    rng = np.random.default_rng(1)
    sets = [[np.array(rng.integers(-128, 128), np.int8), np.array(rng.integers(-128, 128), np.int8)]
            for _ in range(6)]
    sets = [[a, b if not (op == "DIV" and int(b) == -2) else np.array(5, np.int8)] for a, b in sets]
    assert_exact(path, sets)


@pytest.mark.parametrize("op", FLOAT_OPS)
def test_float_binary_op_on_0d_tensors(op: str, tmp_path: Path) -> None:
    path = _model(tmp_path, op, "float32", [], [])
    sets = [[np.array(v, np.float32), np.array(w, np.float32)] for v, w in ((3.5, -1.25), (-7.0, 2.0), (0.5, 4.0))]
    assert_exact(path, sets)

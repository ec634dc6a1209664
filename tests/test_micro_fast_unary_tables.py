"""[SPEED] Table-driven int8 unary kernels (HARD_SWISH, ELU, LEAKY_RELU, ABS) on micro's compiled path.

Each of these kernels builds a 256-entry table at prepare time (kernels/unary/*.py); on the compiled path
(`edge_runtime/backends/micro/fast/lut.py`) the same table is looked up in one compiled pass. Reference:
tflite-micro, against both of micro's paths (numba and numpy), in place on and off, with the 64-at-a-time
(AVX512-VBMI, where the CPU has it) and the scalar lookup loops.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_micro_fast_real_ops import _settings, lookups, three_way  # noqa: F401  (lookups: a fixture)
from test_micro_ops_binary import scales
from tflite_builder import ModelFolder, T, build, opts

_MODELS = ModelFolder("micro_fast_tables_")  # this module's own folder


@pytest.fixture(scope="module", autouse=True)
def _cleanup_models() -> Iterator[None]:
    yield
    _MODELS.remove()


def _path(op: str) -> Path:
    return _MODELS.path(op)


@pytest.mark.parametrize("op", ["HARD_SWISH", "ELU", "LEAKY_RELU", "ABS"])
@_settings(20)
@given(data=st.data())
def test_unary_table_int8_bit_exact(lookups: str, op: str, data: Any) -> None:  # noqa: F811  (the fixture)
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    sx, zx = data.draw(scales()), data.draw(st.integers(-128, 127))
    sy, zy = data.draw(scales()), data.draw(st.integers(-128, 127))
    if op == "HARD_SWISH":  # TFLM needs output scale >= input scale / 128
        sy = max(sy, sx / 64)
    options = opts("LeakyReluOptions", alpha=data.draw(st.floats(0.01, 0.9))) if op == "LEAKY_RELU" else None
    p = build(_path(op), op, [T(shape, "int8", scale=sx, zp=zx)], [T(shape, "int8", scale=sy, zp=zy)], options)
    three_way(p, op, data.draw(st.integers(0, 99)))

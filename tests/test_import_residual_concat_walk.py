"""A Concat after a deep chain of residual blocks (scouting round 3, ``benchmarks/real_models_onnx.py``).

captcha-whisperer's CRNN (an LSTM unrolled into Gemm/Sigmoid/Tanh by torch.onnx) and atspm-detector's TCN
(``x100_w32full_pair.onnx``: 15 residual dilated-conv blocks) hung at import: the Concat handler asks
``ImportContext.is_int`` whether an input carries integer indices, and ``is_int`` walked every path of the
whole float graph above it (each residual Add doubles the paths, 2^depth calls) although only RESHAPE,
STRIDED_SLICE and CONCATENATION can pass integers on. ``converters/importers/onnx_ops/context.py`` now stops
the walk at any other op kind and remembers answers; this test counts the calls on such a graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.importers.onnx_ops import context
from converters.pipeline import import_model

DEPTH = 14


def _residual_concat(path: Path, depth: int) -> Path:
    """x [1, 8, 16] -> depth x (y = y + relu(y * w_k)) -> Concat(y, relu(y)) on axis 1 -> [1, 16, 16]."""
    nodes, inits, y = [], [], "x"
    for k in range(depth):
        inits.append(numpy_helper.from_array(np.full((1, 8, 1), 0.5 + 0.01 * k, np.float32), f"w{k}"))
        nodes += [helper.make_node("Mul", [y, f"w{k}"], [f"m{k}"]), helper.make_node("Relu", [f"m{k}"], [f"r{k}"]),
                  helper.make_node("Add", [y, f"r{k}"], [f"y{k}"])]
        y = f"y{k}"
    nodes += [helper.make_node("Relu", [y], ["last"]), helper.make_node("Concat", [y, "last"], ["out"], axis=1)]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_concat_after_deep_residual_chain_asks_is_int_a_few_times(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    original = context.ImportContext.is_int

    def counting(self: context.ImportContext, n: str) -> bool:
        calls[0] += 1
        return original(self, n)

    monkeypatch.setattr(context.ImportContext, "is_int", counting)
    g = import_model(str(_residual_concat(tmp_path / "res.onnx", DEPTH)))
    assert [op.kind for op in g.ops].count("CONCATENATION") == 1
    assert calls[0] <= 8 * DEPTH, f"is_int called {calls[0]} times for {DEPTH} residual blocks (2^depth walk)"

"""One constant initializer read by several scale-joining ops must not tie their int8 scales (ONNX side).

int8 MAXIMUM, MINIMUM and CONCATENATION (and SELECT_V2's two choices) keep their inputs and output on one
scale, so :func:`converters.quantize.plan_quantization` puts them in one quantization group. torch's
exporter stores a repeated constant once (``torch.maximum(x, c)``, ``torch.cat([x, row])``,
``torch.where(m, x, c)`` in every layer read the same initializer); were that one IR constant, every layer
would land in one group and the narrow layers would get the widest layer's scale (openWakeWord's TFLite
embedding model: 17.1 dB instead of 24.8). The import's folding step (onnxslim, ``importers/prepare.py``)
merges identical initializers as well, so even a model written with one constant per layer reaches the
importer with one. The ONNX importer gives each reader its own IR copy of a constant
(``ImportContext.add_const`` per use), so a model with shared initializers converts exactly like its twin
with one initializer per layer: same parameters, same SQNR (reference: onnxruntime on the float model), and
micro == tflite-micro.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from converters.ir import Graph
from converters.pipeline import convert_model, import_model
from converters.quantize import SHARED, SHARED_ALL_INPUTS
from tests.tflite_builder import assert_exact

sys.path.insert(0, str(Path(__file__).parent))
from fixtures.zoo.harness import float_outputs, qdq_outputs, sqnr_db, tflite_outputs

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper


def _model(path: Path, widths: list[float], rows: int, kind: str, shared: bool) -> Path:
    """x -> per layer k: Mul(x, w_k) -> kind(., bound) -> Concat(., row) on axis 1: one output per layer.

    ``kind`` is ``Max``, ``Min`` or ``Where`` (``Where(s > 0, s, bound)``). With ``shared`` every layer reads
    the same ``bound``, ``row`` (and comparison ``zero``) initializers, as torch's exporter writes them;
    otherwise each layer has its own copies with the same values (the twin)."""
    inits: list = []

    def const(name: str, value: np.ndarray) -> str:
        if name not in {i.name for i in inits}:
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    bound = {"Max": -0.4, "Min": 0.4, "Where": 0.1}[kind]
    nodes, outs = [], []
    for k, w in enumerate(widths):
        tag = "" if shared else str(k)
        c = const(f"bound{tag}", np.array(bound))
        row = const(f"row{tag}", np.full((1, 1, 5), 0.25))
        s, j = f"s{k}", f"j{k}"
        nodes.append(helper.make_node("Mul", ["x", const(f"w{k}", np.array(w))], [s]))
        if kind == "Where":
            nodes.append(helper.make_node("Greater", [s, const(f"zero{tag}", np.array(0.0))], [f"m{k}"]))
            nodes.append(helper.make_node("Where", [f"m{k}", s, c], [j]))
        else:
            nodes.append(helper.make_node(kind, [s, c], [j]))
        nodes.append(helper.make_node("Concat", [j, row], [f"y{k}"], axis=1))
        outs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, (1, rows + 1, 5)))
    g = helper.make_graph(nodes, "shared_consts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, rows, 5))],
                          outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def _joined_constants_with_other_readers(graph: Graph) -> list[str]:
    """Float constants that a scale-joining op reads and some other op reads too."""
    readers: dict[str, int] = {}
    for op in graph.ops:
        for i in set(op.inputs):
            readers[i] = readers.get(i, 0) + 1
    bad = []
    for op in graph.ops:
        if op.kind in SHARED_ALL_INPUTS:
            joined = op.inputs
        elif op.kind == "SELECT_V2":
            joined = op.inputs[1:]
        else:
            joined = op.inputs[:1] if op.kind in SHARED else []
        bad += [i for i in joined if graph.tensors[i].is_constant and graph.tensors[i].data.dtype.kind == "f"
                and readers[i] > 1]
    return bad


@pytest.mark.parametrize("kind", ["Max", "Min", "Where"])
def test_shared_initializer_does_not_tie_layer_scales(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng({"Max": 1, "Min": 2, "Where": 3}[kind])
    n_layers = int(rng.integers(2, 4))
    widths = sorted(float(10.0 ** e) for e in rng.uniform(-1.5, 1.5, n_layers))  # ranges 100x .. 1000x apart
    widths[-1] = max(widths[-1], 40.0 * widths[0])
    rows = int(rng.integers(3, 8))
    calib = rng.normal(0, 1, (24, 1, rows, 5)).astype(np.float32)
    held = rng.normal(0, 1, (8, 1, rows, 5)).astype(np.float32)
    results = {}
    for shared in (True, False):
        path = _model(tmp_path / f"{kind}_{shared}.onnx", widths, rows, kind, shared)
        if shared:  # the importer reads one initializer into one IR constant per reader
            assert _joined_constants_with_other_readers(import_model(str(path))) == []
        res = convert_model(str(path), "rpi4-4gb", calib, str(tmp_path / f"out_{shared}"), report_samples=4, plot=False)
        ref = float_outputs(str(path), held)  # reference: onnxruntime on the float model
        results[shared] = (res, sqnr_db(ref, tflite_outputs(res, held)), sqnr_db(ref, qdq_outputs(res, held)))
    (res_s, tfl_s, qdq_s), (res_u, tfl_u, qdq_u) = results[True], results[False]
    joined = [f"j{k}" for k in range(n_layers)]
    scales = [res_s.plan.activations[j].scale for j in joined]
    assert len(set(scales)) == n_layers, f"layers of widths {widths} share int8 scales {scales}"
    assert scales == [res_u.plan.activations[j].scale for j in joined]  # each layer keeps its own range
    assert abs(tfl_s - tfl_u) <= 0.1, (tfl_s, tfl_u)  # int8 .tflite on LiteRT
    assert abs(qdq_s - qdq_u) <= 0.1, (qdq_s, qdq_u)  # QDQ .onnx on onnxruntime
    assert tfl_s > 25.0, tfl_s  # one tied group would clip the narrow layers to a few codes (< 15 dB)
    assert_exact(Path(res_s.tflite_path), n=3)  # micro == tflite-micro on the shared-constant model

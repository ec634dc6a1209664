"""Integer DIV by an activation: the converter writes it as a float island (LiteRT's int8 DIV fails when a
divisor equals its zero point), refuses a constant divisor at its zero point, and the LiteRT backend warns at
load and explains the failure in one line (reference: tflite-micro for micro's outputs)."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tflite_builder import T, build, opts, run_micro, run_tflm

from converters.ir import Graph, Op, Tensor
from converters.quantize import plan_quantization
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import integer_div_hazard

_DIV = opts("DivOptions", fusedActivationFunction=0)


def _div_model(tmp_path: Path, divisor: T, name: str = "div.tflite") -> Path:
    return build(tmp_path / name, "DIV", [T([1, 4], "int8", 0.1, 3), divisor], [T([1, 4], "int8", 0.2, 0)], _DIV)


_RUN = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()
a, b = it.get_input_details()
it.set_tensor(a['index'], np.full(a['shape'], 10, a['dtype'])); it.set_tensor(b['index'], np.full(b['shape'], int(sys.argv[2]), b['dtype']))
try:
    it.invoke(); print('ran')
except RuntimeError as exc:
    print('error', str(exc).splitlines()[0])
"""


def test_litert_fails_on_a_zero_point_divisor_without_crashing(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    p = _div_model(tmp_path, T([1, 4], "int8", 0.05, -5))
    r = subprocess.run([sys.executable, "-c", _RUN, str(p), "-5"], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr[-300:]  # a process abort would give a negative return code
    assert r.stdout.startswith("error") and "zero_point" in r.stdout
    r = subprocess.run([sys.executable, "-c", _RUN, str(p), "7"], capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ran"


def test_hazard_names_the_div(tmp_path: Path) -> None:
    act = TFLiteModel.open(str(_div_model(tmp_path, T([1, 4], "int8", 0.05, -5), "act.tflite")))
    why = integer_div_hazard(act)
    assert why is not None and "operator 0 (DIV)" in why and "micro" in why and "\n" not in why
    bad = build(tmp_path / "c0.tflite", "DIV", [T([1, 4], "int8", 0.1, 3),
                                              T([4], "int8", 0.05, 2, data=np.array([4, 2, 9, 1], np.int8))],
                [T([1, 4], "int8", 0.2, 0)], _DIV)
    assert "holds its zero point (2)" in integer_div_hazard(TFLiteModel.open(str(bad)))
    ok = build(tmp_path / "c1.tflite", "DIV", [T([1, 4], "int8", 0.1, 3),
                                             T([4], "int8", 0.05, 2, data=np.array([4, 3, 9, 1], np.int8))],
               [T([1, 4], "int8", 0.2, 0)], _DIV)
    assert integer_div_hazard(TFLiteModel.open(str(ok))) is None
    f32 = build(tmp_path / "f.tflite", "DIV", [T([1, 4], "float32"), T([1, 4], "float32")], [T([1, 4], "float32")], _DIV)
    assert integer_div_hazard(TFLiteModel.open(str(f32))) is None


def test_litert_backend_warns_at_load_and_explains_the_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("ai_edge_litert")
    import edge_runtime

    p = _div_model(tmp_path, T([1, 4], "int8", 0.05, -5))
    with caplog.at_level(logging.WARNING):
        m = edge_runtime.load(str(p), backend="litert")
    assert any("(DIV)" in r.getMessage() for r in caplog.records)
    x = np.full((1, 4), 10, np.int8)
    assert m.run([x, np.full((1, 4), 7, np.int8)])[0].shape == (1, 4)
    with pytest.raises(UnsupportedModelError) as exc:
        m.run([x, np.full((1, 4), -5, np.int8)])
    assert "divisor held its zero point" in str(exc.value) and "backend='micro'" in str(exc.value)
    xs = [[x, np.full((1, 4), 7, np.int8)], [x, np.arange(-4, 0, dtype=np.int8).reshape(1, 4)]]
    for a, b in zip(run_tflm(p, xs), run_micro(p, xs)):  # away from the zero point micro is tflite-micro
        assert np.array_equal(a[0], b[0])
    assert run_micro(p, [[x, np.full((1, 4), -5, np.int8)]])[0][0].shape == (1, 4)  # micro returns a value


def _graph(divisor_const: np.ndarray | None) -> Graph:
    y = Tensor("y", (1, 4), None if divisor_const is None else divisor_const.astype(np.float32))
    tensors = {"x": Tensor("x", (1, 4)), "y": y, "q": Tensor("q", (1, 4))}
    return Graph("div", tensors, [Op("DIV", ["x", "y"], ["q"], {"act": "NONE"}, "div")],
                 ["x", "y"] if divisor_const is None else ["x"], ["q"])


def test_converter_float_island_and_constant_refusal() -> None:
    ranges = {"x": (-3.0, 3.0), "y": (0.0, 2.0), "q": (-10.0, 10.0)}
    plan = plan_quantization(_graph(None), ranges)
    assert plan.op_precision.get("q") == "float" and "div" in plan.float_islands
    plan = plan_quantization(_graph(np.array([[1.0, 2.0, -1.5, 0.5]])), {"x": ranges["x"], "q": ranges["q"]})
    assert plan.op_precision.get("q") is None  # a safe constant divisor stays int8, as before
    with pytest.raises(UnsupportedModelError) as exc:
        plan_quantization(_graph(np.array([[1.0, 0.0, -1.5, 100.0]])), {"x": ranges["x"], "q": ranges["q"]})
    assert "DIV 'div'" in str(exc.value) and "zero point" in str(exc.value) and "\n" not in str(exc.value)


def test_mod_chain_float_on_os_profiles_only() -> None:
    """The Mod remainder chain (as converters/importers/onnx_ops/mod.py writes it) runs in float with an OS."""
    import converters.quality.default_precision as dp

    names = ["x", "inv", "q", "k", "f", "r"]
    tensors = {n: Tensor(n, (1, 4)) for n in names}
    tensors["inv"] = Tensor("inv", (1, 4), np.full((1, 4), 0.5, np.float32))
    ops = [Op("MUL", ["x", "inv"], ["q"], {"act": "NONE"}, "q"), Op("FLOOR", ["q"], ["k"], {}, "k"),
           Op("SUB", ["q", "k"], ["f"], {"act": "NONE"}, "f"), Op("MUL", ["f", "inv"], ["r"], {"act": "NONE"}, "r")]
    g = Graph("mod", tensors, ops, ["x"], ["r"])
    assert [[o.kind for o in c] for c in dp.mod_chains(g)] == [["MUL", "FLOOR", "SUB", "MUL"]]
    on_os = dp.choose(g, True)
    assert on_os.precision == {"q": "float", "k": "float", "f": "float", "r": "float"}
    assert set(on_os.reasons.values()) == {dp.MOD}
    assert dp.choose(g, False).precision == {}
    g.outputs = ["r", "k"]  # the rounding read outside the chain: not a Mod remainder
    assert dp.mod_chains(g) == []


_CONSTANT_INPUTS = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()
d = it.get_input_details()[0]
failed = []
for v in range(-128, 128):
    it.set_tensor(d['index'], np.full(d['shape'], v, d['dtype']))
    try:
        it.invoke()
    except RuntimeError:
        failed.append(v)
print(failed)
"""


def test_converted_min_max_normalisation_runs_on_every_input(tmp_path: Path) -> None:
    """(x - min) / max(x - min) (basic-pitch's normalized_log): the DIV by an activation is a float island; LiteRT
    runs the written model on every constant input (the int8 DIV failed where the divisor reached its zero point);
    micro == tflite-micro; int8 against onnxruntime float on held-out data."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from onnx import TensorProto, helper

    from converters.pipeline import convert_model

    f = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 6, 10])
    g = helper.make_graph([helper.make_node("ReduceMin", ["x"], ["mn"], axes=[1, 2], keepdims=1),
                           helper.make_node("Sub", ["x", "mn"], ["num"]),
                           helper.make_node("ReduceMax", ["num"], ["den"], axes=[1, 2], keepdims=1),
                           helper.make_node("Div", ["num", "den"], ["y"])], "norm", [f("x")], [f("y")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(1)
    np.save(tmp_path / "c.npy", rng.normal(0, 20, (8, 1, 6, 10)).astype(np.float32))
    res = convert_model(str(tmp_path / "m.onnx"), "stm32h743", str(tmp_path / "c.npy"), str(tmp_path / "out"),
                        report_samples=2)
    p = next((tmp_path / "out").glob("*.tflite"))
    sg = TFLiteModel.open(str(p)).subgraphs[0]
    div = [op for op in sg.operators if op.name == "DIV"]
    assert len(div) == 1 and sg.tensors[div[0].inputs[1]].type_name == "FLOAT32"  # on a microcontroller too
    assert integer_div_hazard(TFLiteModel.open(str(p))) is None
    r = subprocess.run([sys.executable, "-c", _CONSTANT_INPUTS, str(p)], capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr[-300:])
    import edge_runtime

    mm = edge_runtime.load(str(p), backend="micro")
    si, so = mm.inputs[0], mm.outputs[0]
    held = np.random.default_rng(5).normal(0, 20, (32, 1, 6, 10)).astype(np.float32)
    xs = [[np.clip(np.round(x / si.scale) + si.zero_point, -128, 127).astype(np.int8)] for x in held]
    xs += [[np.full(si.shape, v, np.int8)] for v in (-128, 0, si.zero_point)]
    for a, b in zip(run_tflm(p, xs), run_micro(p, xs)):
        assert np.array_equal(a[0], b[0])
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    sig = noise = 0.0
    for x, q in zip(held, xs):
        ref = sess.run(None, {"x": x})[0]
        got = (mm.run(q)[0].astype(np.float32) - so.zero_point) * so.scale
        sig += float((ref ** 2).sum())
        noise += float(((ref - got.reshape(ref.shape)) ** 2).sum())
    assert 10 * np.log10(sig / noise) > 30.0  # reference: onnxruntime float (measured 33.8 dB, as the int8 DIV)
    assert res is not None

"""[IMPORT] HardSwish written out as arithmetic becomes one HARD_SWISH op on microcontroller profiles.

PaddlePaddle's exporter (PP-OCR, PP-LCNet) and older Keras/torch graphs write
``x * relu6(x + 3) / 6`` as Add, Clip, Mul, Div, sometimes with the 1/6 merged into a following
learnable scale. ``converters/importers/hard_swish.py`` makes each one HARD_SWISH (plus a MUL by the
remaining scale) for microcontroller profiles; on OS profiles the three int8 ops stay (LiteRT's XNNPACK
delegate runs them, not an int8 HARD_SWISH). What is not exactly the pattern is left alone.
Reference: the float ONNX model on onnxruntime; micro is compared with tflite-micro (np.array_equal).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_real_patterns_onnx import _micro_equals_tflm, _sqnr

from converters.importers.hard_swish import fuse_hard_swish
from converters.pipeline import convert_model, import_model

RNG = np.random.default_rng(11)
#: held-out SQNR bound: measured 29.3 dB for each form (the unfused four-op chain: 29.2 dB)
SQNR_DB = {"mul_then_div": 27.0, "div_then_mul": 27.0, "scaled": 27.0}


def _conv(name: str, x: str, cin: int, cout: int) -> tuple[list, list]:
    w = numpy_helper.from_array((RNG.standard_normal((cout, cin, 3, 3)) * 0.4).astype(np.float32), f"{name}_w")
    b = numpy_helper.from_array((RNG.standard_normal(cout) * 0.5).astype(np.float32), f"{name}_b")
    return [helper.make_node("Conv", [x, w.name, b.name], [name], pads=[1, 1, 1, 1])], [w, b]


def _const(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.float32), name)


def _written_out(form: str, x: str, out: str) -> tuple[list, list]:
    """``x * relu6(x + 3) / 6`` in one of the spellings real exporters use."""
    n = helper.make_node
    inits = [_const(f"{out}_three", 3.0), _const(f"{out}_zero", 0.0), _const(f"{out}_six", 6.0)]
    nodes = [n("Add", [x, f"{out}_three"], [f"{out}_a"]),
             n("Clip", [f"{out}_a", f"{out}_zero", f"{out}_six"], [f"{out}_c"])]
    if form == "mul_then_div":  # PP-OCR: x * clip(x + 3, 0, 6) / 6
        nodes += [n("Mul", [x, f"{out}_c"], [f"{out}_m"]), n("Div", [f"{out}_m", f"{out}_six"], [out])]
    elif form == "div_then_mul":  # x * (relu6(x + 3) / 6), the HardSigmoid written out
        nodes += [n("Div", [f"{out}_c", f"{out}_six"], [f"{out}_m"]), n("Mul", [f"{out}_m", x], [out])]
    elif form == "scaled":  # the 1/6 followed by a learnable scale (PP-LCNet's affine block)
        inits.append(_const(f"{out}_k", 1.7))
        nodes += [n("Mul", [x, f"{out}_c"], [f"{out}_m"]), n("Div", [f"{out}_m", f"{out}_six"], [f"{out}_d"]),
                  n("Mul", [f"{out}_d", f"{out}_k"], [out])]
    return nodes, inits


def _model(path: Path, form: str) -> None:
    nodes, inits = [], []
    for name, x, cin, cout in (("c1", "x", 3, 8), ("c2", "h1", 8, 8)):
        cn, ci = _conv(name, x, cin, cout)
        hn, hi = _written_out(form, name, "h" + name[1])
        nodes += cn + hn
        inits += ci + hi
    cn, ci = _conv("y", "h2", 8, 4)
    g = helper.make_graph(nodes + cn, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12])], inits + ci)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


@pytest.mark.parametrize("form", ["mul_then_div", "div_then_mul", "scaled"])
def test_written_out_hard_swish_becomes_one_op(tmp_path: Path, form: str) -> None:
    import onnxruntime as ort

    path = tmp_path / "hs.onnx"
    _model(path, form)
    kinds = [op.kind for op in fuse_hard_swish(import_model(str(path))).ops]
    assert kinds.count("HARD_SWISH") == 2 and "ADD" not in kinds and "RELU6" not in kinds
    assert kinds.count("MUL") == (2 if form == "scaled" else 0)
    data = RNG.standard_normal((64, 1, 3, 12, 12)).astype(np.float32)
    res = convert_model(str(path), "stm32h743", data[:48], str(tmp_path / "out"), formats=("tflite",),
                        report_samples=4)
    assert [op.kind for op in res.graph.ops].count("HARD_SWISH") == 2
    from converters.report import TFLiteRunner

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lite = TFLiteRunner(res.tflite_path)
    held = data[48:]
    ref = np.stack([sess.run(None, {"x": x})[0] for x in held])
    got = np.stack([lite.run(res.graph.to_ir_layout("x", x))[0] for x in held])  # NHWC
    got = got.reshape(len(held), 12, 12, 4).transpose(0, 3, 1, 2)
    assert _sqnr(ref.reshape(len(held), 4, 12, 12), got) > SQNR_DB[form]
    _micro_equals_tflm(res.tflite_path, res.graph, held[:4])


def test_os_profiles_keep_the_ops_litert_delegates(tmp_path: Path) -> None:
    path = tmp_path / "hs.onnx"
    _model(path, "mul_then_div")
    data = RNG.standard_normal((40, 1, 3, 12, 12)).astype(np.float32)
    res = convert_model(str(path), "rpi4-4gb", data, str(tmp_path / "out"), formats=("tflite",), report_samples=4)
    assert "HARD_SWISH" not in [op.kind for op in res.graph.ops]


def test_not_the_pattern_is_left_alone(tmp_path: Path) -> None:
    """x + 3 read by another op too, or a constant other than 3: no HARD_SWISH."""
    path = tmp_path / "hs.onnx"
    _model(path, "mul_then_div")
    m = onnx.load(str(path))
    for init in m.graph.initializer:
        if init.name == "h1_three":
            init.CopyFrom(numpy_helper.from_array(np.array(2.5, np.float32), "h1_three"))
    m.graph.node.append(helper.make_node("Relu", ["h2_a"], ["extra"]))
    m.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 8, 12, 12]))
    onnx.save(m, str(path))
    kinds = [op.kind for op in fuse_hard_swish(import_model(str(path))).ops]
    assert "HARD_SWISH" not in kinds

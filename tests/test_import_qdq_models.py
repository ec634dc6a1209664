"""Already-quantized QDQ ONNX models convert from their dequantized weights (converters/importers/qdq.py).

- Constant DequantizeLinear in every form (int8/uint8/int16/int32, per tensor, per axis with a negative axis,
  blocked at opset 21, a constant QuantizeLinear -> DequantizeLinear pair) folds to exactly the float values
  onnxruntime computes for the same node (``np.array_equal``).
- A model made by onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights) from a small Conv/MatMul
  model, at opsets 13 and 21: converts with the one-line "already quantized" log (and the line saying what it
  kept of the model's parameters), its int8 output on LiteRT is
  within a few dB of the float model on onnxruntime (the reference) and of the QDQ model on onnxruntime, and
  micro equals tflite-micro (``np.array_equal``).
- The QOperator format and Q/DQ uses that have no float meaning are refused in one line naming the node.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from helpers import micro_available
from onnx import TensorProto, helper, numpy_helper
from test_import_ops_common import make_model

from converters.importers.prepare import prepare_onnx_model
from converters.importers.qdq import dequantize_qdq_model
from edge_runtime.errors import UnsupportedModelError

n = helper.make_node
CALIB, HELD = 24, 16


def _vi(name: str, shape: list, elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def _ort(model: onnx.ModelProto, optimize: bool = True) -> Any:
    """An onnxruntime session; ``optimize=False`` runs each node as ONNX defines it (no QDQ fusion)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    noise = float(np.sum((ref - got.astype(np.float64).reshape(ref.shape)) ** 2))
    return 99.0 if noise == 0 else float(10 * np.log10(float(np.sum(ref ** 2)) / noise))


# ---------------------------------------------------------------- constant DequantizeLinear forms
def _dq_case(rng: np.random.Generator, qtype: Any, shape: tuple, axis: int | None, block: int,
             with_zero: bool) -> tuple[list, list, dict]:
    """Initializers and DQ attributes: per tensor (axis None), per axis, or blocked along ``axis``."""
    info = np.iinfo(qtype)
    x = rng.integers(info.min, info.max, shape, endpoint=True).astype(qtype)
    if axis is None:
        pshape: tuple = ()
    elif block:
        pshape = tuple(-(-d // block) if k == axis % len(shape) else d for k, d in enumerate(shape))
    else:
        pshape = (shape[axis],)
    scale = rng.uniform(1e-3, 0.1, pshape).astype(np.float32)
    inits = [numpy_helper.from_array(x, "xq"), numpy_helper.from_array(scale, "s")]
    names = ["xq", "s"]
    if with_zero:
        lo, hi = (0, 0) if qtype == np.int32 else (info.min // 4, info.max // 4)
        inits.append(numpy_helper.from_array(rng.integers(lo, hi, pshape, endpoint=True).astype(qtype), "z"))
        names.append("z")
    attrs: dict = {} if axis is None else {"axis": axis}
    if block:
        attrs["block_size"] = block
    return inits, names, attrs


DQ_FORMS = {  # name: (qtype, shape, axis, block_size, zero point, opset)
    "int8_per_tensor": (np.int8, (6, 5), None, 0, True, 13),
    "uint8_per_tensor_no_zero": (np.uint8, (3, 4, 5), None, 0, False, 10),
    "int8_per_axis_conv_weight": (np.int8, (8, 3, 3, 3), 0, 0, True, 13),
    "int8_per_axis_negative_axis": (np.int8, (4, 7), -1, 0, True, 13),
    "uint8_per_axis": (np.uint8, (5, 6), 1, 0, True, 19),
    "int32_bias": (np.int32, (9,), None, 0, False, 13),
    "int32_bias_per_axis": (np.int32, (9,), 0, 0, True, 13),
    "int16_per_tensor": (np.int16, (4, 6), None, 0, True, 21),
    "int8_blocked": (np.int8, (6, 10), 1, 4, True, 21),
    "uint8_blocked_axis0": (np.uint8, (7, 3), 0, 3, True, 21),
}


@pytest.mark.parametrize("form", sorted(DQ_FORMS))
def test_constant_dequantize_equals_onnxruntime(form: str) -> None:
    qtype, shape, axis, block, with_zero, opset = DQ_FORMS[form]
    inits, names, attrs = _dq_case(np.random.default_rng(len(form)), qtype, shape, axis, block, with_zero)
    model = make_model([n("DequantizeLinear", names, ["y"], name="dq", **attrs)], [], [_vi("y", list(shape))],
                       inits, opset=opset)
    ref = _ort(model).run(None, {})[0]  # the reference: onnxruntime running the node
    dequantize_qdq_model(model, form)
    assert not model.graph.node
    got = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "y"))
    assert got.dtype == ref.dtype and np.array_equal(got, ref), form
    assert {t.name for t in model.graph.initializer} == {"y"}  # the integer data and its parameters are gone


def test_constant_quantize_dequantize_pair_is_the_fake_quantized_constant() -> None:
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((5, 4)) * 0.7).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(0.01), "s"),
             numpy_helper.from_array(np.int8(3), "z")]
    nodes = [n("QuantizeLinear", ["w", "s", "z"], ["wq"]), n("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
             n("MatMul", ["x", "wd"], ["y"])]
    model = make_model(nodes, [_vi("x", [2, 5])], [_vi("y", [2, 4])], inits, opset=13)
    x = rng.standard_normal((2, 5)).astype(np.float32)
    ref = _ort(model, optimize=False).run(None, {"x": x})[0]  # onnxruntime runs the QDQ model node by node
    dequantize_qdq_model(model)
    assert [nd.op_type for nd in model.graph.node] == ["MatMul"]
    assert np.array_equal(_ort(model, optimize=False).run(None, {"x": x})[0], ref)


def test_activation_pairs_are_removed_fan_out_and_graph_output() -> None:
    """One Q feeding two DQs, and a DQ whose output is the graph output: the float tensor flows through."""
    s, z = numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [n("Relu", ["x"], ["r"]), n("QuantizeLinear", ["r", "s", "z"], ["rq"], name="q_r"),
             n("DequantizeLinear", ["rq", "s", "z"], ["r1"]), n("DequantizeLinear", ["rq", "s", "z"], ["r2"]),
             n("Add", ["r1", "r2"], ["a"]), n("QuantizeLinear", ["a", "s", "z"], ["aq"]),
             n("DequantizeLinear", ["aq", "s", "z"], ["y"])]
    model = make_model(nodes, [_vi("x", [1, 6])], [_vi("y", [1, 6])], [s, z], opset=13)
    assert dequantize_qdq_model(model) == 5
    assert [nd.op_type for nd in model.graph.node] == ["Relu", "Add", "Identity"]
    x = np.linspace(-1, 1, 6, dtype=np.float32)[None]
    assert np.allclose(_ort(model).run(None, {"x": x})[0], 2 * np.maximum(x, 0), atol=1e-7)
    assert not model.graph.initializer


# ---------------------------------------------------------------- onnxruntime quantize_static models
def _float_model(opset: int) -> onnx.ModelProto:
    """Conv + bias -> Relu -> Flatten -> MatMul + Add: a small image classifier head."""
    rng = np.random.default_rng(opset)
    f = np.float32
    inits = [numpy_helper.from_array((rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(f), "cw"),
             numpy_helper.from_array((rng.standard_normal(6) * 0.1).astype(f), "cb"),
             numpy_helper.from_array((rng.standard_normal((6 * 4 * 4, 5)) * 0.1).astype(f), "fw"),
             numpy_helper.from_array((rng.standard_normal(5) * 0.1).astype(f), "fb")]
    nodes = [n("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]), n("Relu", ["c"], ["r"]),
             n("Flatten", ["r"], ["fl"]), n("MatMul", ["fl", "fw"], ["m"]), n("Add", ["m", "fb"], ["y"])]
    return make_model(nodes, [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 5])], inits, opset=opset)


def _ort_qdq(fm: onnx.ModelProto, calib: np.ndarray, tmp_path: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"x": x}

    src, out = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(fm, str(src))
    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(out))


@pytest.mark.parametrize("opset", [13, 21])
def test_ort_quantize_static_model_converts(opset: int, tmp_path: Path, caplog: Any) -> None:
    from converters.pipeline import convert_model
    from converters.report import TFLiteRunner

    fm = _float_model(opset)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:8, 0:8] / 8.0
    data = np.stack([np.sin(xx * rng.uniform(1, 6) + yy * rng.uniform(1, 6) + rng.uniform(0, 6))[None].repeat(3, 0)
                     * rng.uniform(0.3, 1.0, (3, 1, 1)) for _ in range(CALIB + HELD)])[:, None].astype(np.float32)
    qm = _ort_qdq(fm, data[:CALIB], tmp_path)
    kinds = {(nd.op_type, tuple(a.name for a in nd.attribute)) for nd in qm.graph.node}
    assert ("DequantizeLinear", ("axis",)) in kinds  # per-channel weights
    assert max(o.version for o in qm.opset_import if o.domain in ("", "ai.onnx")) >= opset
    assert "Relu" not in {nd.op_type for nd in qm.graph.node}  # onnxruntime folded it into the Conv's pair...
    prepared = prepare_onnx_model(onnx.load_from_string(qm.SerializeToString()), source="qdq")
    assert [nd.op_type for nd in prepared.graph.node].count("Relu") == 1  # ...and it is back, once
    path = tmp_path / "qdq_in.onnx"
    onnx.save(qm, str(path))
    with caplog.at_level(logging.INFO, logger="converters.importers.onnx"):
        res = convert_model(str(path), "rpi4-4gb", data[:CALIB], str(tmp_path / "out"), formats=("tflite",),
                            report_samples=4)
    lines = [r.getMessage() for r in caplog.records if "already quantized" in r.getMessage()]
    assert lines and "QuantizeLinear/DequantizeLinear pairs" in lines[0]
    # the model's own activation ranges are kept now (tests/test_convert_qdq_ranges.py), no longer re-calibrated
    assert any("kept the model's scale and zero point" in r.getMessage() for r in caplog.records)
    held = data[CALIB:]
    f_ref = np.stack([_ort(fm).run(None, {"x": x})[0] for x in held])  # reference: float model, onnxruntime
    q_ref = np.stack([_ort(qm).run(None, {"x": x})[0] for x in held])  # onnxruntime running the QDQ model
    g = res.graph
    runner = TFLiteRunner(res.tflite_path)
    ours = np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in held])
    direct = convert_model(str(tmp_path / "float.onnx"), "rpi4-4gb", data[:CALIB], str(tmp_path / "direct"),
                           formats=("tflite",), report_samples=4)  # the float model converted by us
    d_runner = TFLiteRunner(direct.tflite_path)
    from_float = np.stack([d_runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in held])
    db_float, db_qdq, db_ort = _sqnr(f_ref, ours), _sqnr(q_ref, ours), _sqnr(f_ref, q_ref)
    db_direct = _sqnr(f_ref, from_float)
    # from the QDQ model about as good as from the float model, and not worse than onnxruntime's own int8 run
    print(f"opset {opset}: ours from QDQ {db_float:.2f} dB, ours from float {db_direct:.2f} dB, ORT QDQ "
          f"{db_ort:.2f} dB (all against the float model on onnxruntime); ours vs ORT QDQ {db_qdq:.2f} dB")
    assert db_float > 12.0 and db_float > db_direct - 2.0 and db_float > db_ort - 2.0, (db_float, db_direct, db_ort)
    assert db_qdq > 12.0, db_qdq
    if micro_available():
        from tflite_micro.python.tflite_micro import runtime

        import edge_runtime

        tflm = runtime.Interpreter.from_file(res.tflite_path)
        micro = edge_runtime.load(res.tflite_path, backend="micro")
        for x in held[:3]:
            q = TFLiteRunner._q(g.to_ir_layout(g.inputs[0], x), runner.inp).reshape(runner.inp["shape"])
            tflm.set_input(q, 0)
            tflm.invoke()
            assert np.array_equal(np.asarray(micro.run(q)[0]), tflm.get_output(0))


# ---------------------------------------------------------------- refusals
S = numpy_helper.from_array(np.float32(0.1), "s")
Z8 = numpy_helper.from_array(np.int8(0), "z")
ZU = numpy_helper.from_array(np.uint8(128), "zu")
X = _vi("x", [1, 8])
REFUSED = {  # name: (nodes, inits, inputs, output, words)
    "matmul_integer": ([n("MatMulInteger", ["xu", "wq"], ["y"], name="mmi")],
                       [numpy_helper.from_array(np.ones((8, 4), np.uint8), "wq")],
                       [_vi("xu", [1, 8], TensorProto.UINT8)], _vi("y", [1, 4], TensorProto.INT32),
                       ["MatMulInteger", "mmi", "QOperator format"]),
    "dynamic_quantize_linear": ([n("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"], name="dql")], [], [X],
                                _vi("y", [1, 8], TensorProto.UINT8), ["DynamicQuantizeLinear", "dql", "QOperator"]),
    "contrib_qlinear_add": ([n("QLinearAdd", ["xu", "s", "zu", "xu", "s", "zu", "s", "zu"], ["y"], name="qadd",
                               domain="com.microsoft")], [S, ZU], [_vi("xu", [1, 8], TensorProto.UINT8)],
                            _vi("y", [1, 8], TensorProto.UINT8), ["com.microsoft.QLinearAdd", "qadd", "QOperator"]),
    "quantized_output": ([n("QuantizeLinear", ["x", "s", "z"], ["y"], name="q_out")], [S, Z8], [X],
                         _vi("y", [1, 8], TensorProto.INT8), ["QuantizeLinear", "q_out", "graph output"]),
    "q_feeds_other_op": ([n("QuantizeLinear", ["x", "s", "z"], ["q"], name="q_in"),
                          n("Cast", ["q"], ["y"], name="to_float", to=TensorProto.FLOAT)], [S, Z8], [X],
                         _vi("y", [1, 8]), ["QuantizeLinear", "q_in", "to_float", "Cast"]),
    "dq_of_uint8_input": ([n("DequantizeLinear", ["xu", "s", "zu"], ["y"], name="dq_in")], [S, ZU],
                          [_vi("xu", [1, 8], TensorProto.UINT8)], _vi("y", [1, 8]),
                          ["DequantizeLinear", "dq_in", "graph input", "xu"]),
    "runtime_scale": ([n("ReduceMax", ["x"], ["m"], keepdims=0), n("QuantizeLinear", ["x", "m", "z"], ["q"], name="dyn_q"),
                       n("DequantizeLinear", ["q", "m", "z"], ["y"], name="dyn_dq")], [Z8], [X], _vi("y", [1, 8]),
                      ["QuantizeLinear", "dyn_q", "run time"]),
    "bad_per_axis_scale": ([n("DequantizeLinear", ["wq", "s3", "z"], ["w"], name="bad_dq", axis=1),
                            n("MatMul", ["x", "w"], ["y"])],
                           [numpy_helper.from_array(np.ones((8, 4), np.int8), "wq"),
                            numpy_helper.from_array(np.ones(3, np.float32), "s3"), Z8], [X], _vi("y", [1, 4]),
                           ["DequantizeLinear", "bad_dq", "axis 1"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_naming_the_node(case: str) -> None:
    nodes, inits, inputs, output, words = REFUSED[case]
    g = helper.make_graph(nodes, "q", inputs, [output], inits)
    domains = sorted({nd.domain for nd in nodes if nd.domain})
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]
                              + [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = 8
    with pytest.raises(UnsupportedModelError) as info:
        prepare_onnx_model(model, source=f"{case}.onnx")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{case}.onnx: ")
    for w in words:
        assert w in msg, (w, msg)


def test_float_model_is_left_untouched() -> None:
    fm = _float_model(13)
    before = fm.SerializeToString()
    assert dequantize_qdq_model(fm) == 0 and fm.SerializeToString() == before

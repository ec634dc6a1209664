"""Mixed precision: 16x8 layers, float islands, ``--activations int16`` and the ``--target-sqnr`` search.

The fixture (tests/fixtures/collapse_model.py) has one output that collapses under plain int8; the
search must fix it with few layers on an OS profile and on a microcontroller (int16 only), or stop
with exit code 3 naming what stopped it. Every int16 / mixed .tflite must run bit-exactly on micro
against tflite-micro, and the QDQ .onnx must run on ONNX Runtime.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.collapse_model import build_collapse_model, calibration_data
from helpers import board_variant

from converters.pipeline import convert_model
from converters.quantize import INT16_KINDS
from converters.report import OnnxRunner, TFLiteRunner

DATA = Path(__file__).resolve().parents[1] / "converters" / "data"


@pytest.fixture(scope="module")
def collapse(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("collapse")
    np.save(d / "calib.npy", calibration_data())
    return build_collapse_model(d / "collapse.onnx", ratio=300.0), d / "calib.npy"


@pytest.fixture(scope="module")
def hopeless(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The small branch below one int16 step: only float islands rescue it."""
    d = tmp_path_factory.mktemp("hopeless")
    np.save(d / "calib.npy", calibration_data())
    return build_collapse_model(d / "collapse.onnx", ratio=1e5), d / "calib.npy"


def _db(report: dict) -> dict[str, float]:
    return {r["name"]: r["sqnr_db"] for r in report["calibration_outputs"]["outputs"]}


def _assert_bit_exact(tflite: str, graph, plan, n: int = 4) -> None:  # type: ignore[no-untyped-def]
    """micro == tflite-micro (np.array_equal, every output) on quantized calibration-like inputs."""
    from tflite_builder import run_micro, run_tflm

    rng = np.random.default_rng(0)
    qp = plan.activations[graph.inputs[0]]
    shape = graph.tensors[graph.inputs[0]].shape
    sets = [[qp.quantize(rng.random(shape).astype(np.float32))] for _ in range(n)]
    ref, got = run_tflm(Path(tflite), sets), run_micro(Path(tflite), sets)
    for a, b in zip(ref, got):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y)


def _onnx_db(res, calib: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Every output's SQNR of the QDQ .onnx on ONNX Runtime against the float graph."""
    from converters.calibrate import float_session, run_float
    from converters.quality.metrics import sqnr_db

    g = res.graph
    runner = OnnxRunner(res.onnx_path, res.plan, g)
    sess = float_session(g)
    sig = {o: 0.0 for o in g.outputs}
    noise = {o: 0.0 for o in g.outputs}
    for x in np.load(calib)[:16]:
        x = x.reshape(g.source_shape(g.inputs[0]))
        f = run_float(sess, g, g.to_ir_layout(g.inputs[0], x))
        for o, q in zip(g.outputs, runner.run(x)):
            fo = f[o].reshape(-1).astype(np.float64)
            sig[o] += float(np.sum(fo ** 2))
            noise[o] += float(np.sum((fo - q.reshape(-1)) ** 2))
    return {o: sqnr_db(sig[o], noise[o]) for o in g.outputs}


def test_plain_int8_report_shows_the_collapse_and_the_target_fixes_it_on_an_os_profile(collapse, tmp_path):
    model, calib = collapse
    base = convert_model(model, "rpi4-4gb", calib, tmp_path / "int8")
    db = _db(base.report)
    assert db["collapsed"] < 5.0 and db["fine"] > 40.0  # the collapse shows, on that output only
    assert base.report["calibration_outputs"]["worst_output"] == "collapsed"
    assert base.report["quantization"]["precision"]["activations"] == "int8"

    res = convert_model(model, "rpi4-4gb", calib, tmp_path / "target", target_sqnr=30.0)
    mp = res.report["mixed_precision"]
    assert mp["met"] and all(v >= 30.0 for v in _db(res.report).values())
    assert all(v >= 30.0 for v in mp["sqnr_after_db"].values()) and mp["sqnr_before_db"]["collapsed"] < 5.0
    changed = {r["name"]: r for r in mp["changed_layers"]}
    assert 1 <= len(changed) <= 4 and "/small/Conv" in changed and "/stem/Conv" not in changed
    assert all(r["to"] == "int16" for r in changed.values())  # int16 suffices: no float island needed
    assert all(isinstance(r["flash_bytes"], int) and isinstance(r["arena_bytes"], int) for r in changed.values())
    assert mp["flash_bytes"]["after"] > mp["flash_bytes"]["before"] and mp["host_latency_ms"]["after"] > 0
    prec = res.report["quantization"]["precision"]
    assert prec["activations"] == "mixed int8/int16" and prec["int16_biases"] == "int64"
    assert set(prec["int16_intermediates"]) == {r["tensor"] for r in changed.values()}
    md = (tmp_path / "target" / "report.md").read_text()
    assert "## Mixed precision" in md and "/small/Conv" in md
    _assert_bit_exact(res.tflite_path, res.graph, res.plan)
    assert all(v >= 30.0 for v in _onnx_db(res, calib).values())  # int16 QDQ on ONNX Runtime


def test_target_on_a_microcontroller_uses_int16_only_and_runs_bit_exact(collapse, tmp_path):
    model, calib = collapse
    res = convert_model(model, "stm32h743", calib, tmp_path, formats=("tflite",), target_sqnr=30.0)
    mp = res.report["mixed_precision"]
    assert mp["met"] and 1 <= len(mp["changed_layers"]) <= 4
    assert {r["to"] for r in mp["changed_layers"]} == {"int16"}
    assert res.plan.float_islands == []
    _assert_bit_exact(res.tflite_path, res.graph, res.plan)
    it = TFLiteRunner(res.tflite_path)  # LiteRT runs it too
    assert len(it.run(np.zeros(res.graph.tensors[res.graph.inputs[0]].shape, np.float32))) == 2


def test_float_islands_rescue_what_int16_cannot_on_an_os_profile(hopeless, tmp_path):
    model, calib = hopeless
    res = convert_model(model, "rpi4-4gb", calib, tmp_path, target_sqnr=30.0)
    mp = res.report["mixed_precision"]
    assert mp["met"] and mp["sqnr_before_db"]["collapsed"] < 5.0
    assert "float" in {r["to"] for r in mp["changed_layers"]} and len(mp["changed_layers"]) <= 4
    assert res.plan.float_islands and res.report["quantization"]["precision"]["float_islands"]
    assert all(v >= 30.0 for v in _onnx_db(res, calib).values())  # float islands as float ops in the QDQ
    it = TFLiteRunner(res.tflite_path)
    assert len(it.run(np.zeros(res.graph.tensors[res.graph.inputs[0]].shape, np.float32))) == 2


def test_microcontroller_that_int16_cannot_rescue_exits_3_saying_why(hopeless, tmp_path, capsys):
    from converters.cli import main as edge_convert

    model, calib = hopeless
    rc = None
    try:
        rc = edge_convert(["convert", str(model), "--profile", "stm32h743", "--calib", str(calib),
                           "--target-sqnr", "30", "-o", str(tmp_path / "out")])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3
    line = [ln for ln in err if "--target-sqnr 30 dB not met" in ln]
    assert len(line) == 1 and "'collapsed'" in line[0] and "dB short" in line[0] and "microcontroller" in line[0]
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["mixed_precision"]["met"] is False and "microcontroller" in rep["mixed_precision"]["stopped_by"]


def test_flash_budget_stops_the_search_with_exit_3(collapse, tmp_path, capsys):
    from converters.cli import main as edge_convert

    model, calib = collapse
    base = convert_model(model, "stm32h743", calib, tmp_path / "int8", formats=("tflite",))
    flash = base.report["fit"]["flash_bytes"]
    tight = board_variant(tmp_path, "stm32h743", "tight-flash", model_flash_budget_bytes=flash + 8)
    try:
        rc = edge_convert(["convert", str(model), "--profile", str(tight), "--calib", str(calib),
                           "--target-sqnr", "30", "-o", str(tmp_path / "out")])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 3 and "flash budget" in err and "dB short" in err


def test_activations_int16_on_digits_beats_int8_and_is_bit_exact(tmp_path):
    calib = DATA / "digits_calib.npz"
    base = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", calib, tmp_path / "int8", formats=("tflite",))
    res = convert_model(DATA / "digits_cnn.onnx", "rpi4-4gb", calib, tmp_path / "int16", activations="int16")
    prec = res.report["quantization"]["precision"]
    assert prec["activations"] in ("int16", "mixed int8/int16")
    kept = res.report["mixed_precision"]["kept_int8"]
    assert all(r["op"] not in INT16_KINDS for r in kept)
    assert sorted(prec["int8_ops"]) == sorted(r["name"] for r in kept)
    assert min(_db(res.report).values()) > min(_db(base.report).values())
    _assert_bit_exact(res.tflite_path, res.graph, res.plan)


def test_activations_int16_on_an_mlperf_model_beats_int8_and_is_bit_exact(mlperf_models, tmp_path):
    from edge_runtime.reference_data import (
        KWS_INPUT_SCALE,
        KWS_INPUT_ZERO_POINT,
        load_kws01,
    )

    x, _, _ = load_kws01(60)
    xf = ((x.astype(np.float32) - KWS_INPUT_ZERO_POINT) * np.float32(KWS_INPUT_SCALE)).astype(np.float32)
    model = mlperf_models / "kws_ref_model_float32.tflite"
    base = convert_model(model, "stm32h743", xf, tmp_path / "int8", formats=("tflite",))
    res = convert_model(model, "stm32h743", xf, tmp_path / "int16", formats=("tflite",), activations="int16")
    prec = res.report["quantization"]["precision"]
    assert prec["activations"] == "int16" and res.report["mixed_precision"]["kept_int8"] == []
    assert min(_db(res.report).values()) > min(_db(base.report).values()) + 3.0
    _assert_bit_exact(res.tflite_path, res.graph, res.plan, n=3)


def test_int16_for_an_op_without_int16_kernel_is_refused(collapse):
    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.pipeline import import_model
    from converters.quantize import op_key, plan_quantization
    from edge_runtime.errors import ConfigError

    model, calib = collapse
    g = import_model(model)
    data = open_calibration(calib, g.source_shape(g.inputs[0]), g.inputs[0], limit=4)
    ranges = calibrate(g, data, "minmax", session=float_session(g))
    mean = next(op for op in g.ops if op.kind == "MEAN")
    with pytest.raises(ConfigError, match="no int16 kernel"):
        plan_quantization(g, ranges, precision={op_key(mean): "int16"})


def _every_int16_kind_graph():  # type: ignore[no-untyped-def]
    """One IR graph chaining every op of INT16_KINDS."""
    from converters.ir import Op
    from helpers import IRTensors

    rng = np.random.default_rng(3)
    b = IRTensors()
    const, act = b.const, b.act

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32) * 0.5

    x = act("x", (1, 4, 4, 3))
    conv = {"stride": (1, 1), "dilation": (1, 1), "pads": (1, 1, 1, 1), "act": "NONE"}
    ops = [
        Op("CONV_2D", [x, const("w1", r(3, 3, 3, 3)), const("b1", r(3))], [act("c1", (1, 4, 4, 3))], conv, "conv"),
        Op("DEPTHWISE_CONV_2D", [act("c1", (1, 4, 4, 3)), const("w2", r(1, 3, 3, 3)), const("b2", r(3))],
           [act("d1", (1, 4, 4, 3))], dict(conv, multiplier=1), "dw"),
        Op("ADD", ["c1", "d1"], [act("a1", (1, 4, 4, 3))], {"act": "NONE"}, "add"),
        Op("SUB", ["a1", x], [act("s1", (1, 4, 4, 3))], {"act": "NONE"}, "sub"),
        Op("MUL", ["s1", "c1"], [act("m1", (1, 4, 4, 3))], {"act": "NONE"}, "mul"),
        Op("RELU", ["m1"], [act("r1", (1, 4, 4, 3))], {}, "relu"),
        Op("LEAKY_RELU", ["m1"], [act("lr", (1, 4, 4, 3))], {"alpha": 0.1}, "leaky"),
        Op("MAXIMUM", ["r1", "lr"], [act("mx", (1, 4, 4, 3))], {}, "max"),
        Op("MINIMUM", ["mx", "d1"], [act("mn", (1, 4, 4, 3))], {}, "min"),
        Op("LOGISTIC", ["mn"], [act("lg", (1, 4, 4, 3))], {}, "sigmoid"),
        Op("TANH", ["mn"], [act("th", (1, 4, 4, 3))], {}, "tanh"),
        Op("CONCATENATION", ["lg", "th"], [act("cat", (1, 4, 4, 6))], {"axis": 3, "act": "NONE"}, "concat"),
        Op("PAD", ["cat"], [act("p", (1, 6, 6, 6))], {"pads": ((0, 0), (1, 1), (1, 1), (0, 0))}, "pad"),
        Op("MAX_POOL_2D", ["p"], [act("mp", (1, 3, 3, 6))],
           {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0), "act": "NONE"}, "maxpool"),
        Op("AVERAGE_POOL_2D", ["p"], [act("ap", (1, 3, 3, 6))],
           {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0), "act": "NONE"}, "avgpool"),
        Op("ADD", ["mp", "ap"], [act("pa", (1, 3, 3, 6))], {"act": "NONE"}, "add_pools"),
        Op("TRANSPOSE", ["pa"], [act("tr", (1, 3, 3, 6))], {"perm": (0, 2, 1, 3)}, "transpose"),
        Op("STRIDED_SLICE", ["tr"], [act("ss", (1, 3, 3, 4))],
           {"begin": (0, 0, 0, 0), "end": (1, 3, 3, 4), "strides": (1, 1, 1, 1)}, "slice"),
        Op("RESHAPE", ["ss"], [act("rs", (1, 36))], {}, "reshape"),
        Op("FULLY_CONNECTED", ["rs", const("w3", r(5, 36)), const("b3", r(5))], [act("fc", (1, 5))],
           {"act": "NONE"}, "fc"),
        Op("SOFTMAX", ["fc"], [act("sm", (1, 5))], {"beta": 1.0}, "softmax"),
        Op("TRANSPOSE_CONV", [x, const("w4", r(2, 2, 2, 3)), const("b4", r(2))], [act("tc", (1, 8, 8, 2))],
           {"stride": (2, 2)}, "tconv"),
    ]
    return b.graph("every_int16", ops, [x], ["fc", "tc", "r1", "sm"])


def test_every_int16_kind_runs_on_litert_and_bit_exact_on_micro(tmp_path):
    """The claim behind INT16_KINDS: each op, in 16x8, runs on LiteRT and micro == tflite-micro."""
    from converters.calibrate import calibrate, float_session, run_float
    from converters.quality.metrics import sqnr_db
    from converters.quality.mixed_precision import all_int16
    from converters.quantize import plan_quantization
    from converters.writers.tflite import write_tflite

    g = _every_int16_kind_graph()
    assert {op.kind for op in g.ops} == set(INT16_KINDS)
    xs = [np.random.default_rng(k).uniform(-1, 1, (1, 4, 4, 3)).astype(np.float32) for k in range(16)]

    class Data(list):
        describe = "random"

    sess = float_session(g)
    ranges = calibrate(g, Data(xs), "minmax", session=sess)
    plan = plan_quantization(g, ranges, precision=all_int16(g))
    assert not plan.int8_ops and plan.precision()["activations"] == "int16"
    path = write_tflite(g, plan, tmp_path / "every.tflite")
    _assert_bit_exact(path, g, plan)
    runner = TFLiteRunner(path, preserve=True)
    for o in g.outputs:  # LiteRT's int16 kernels agree with float (each output requantized to int8 at the end)
        f = np.stack([run_float(sess, g, x)[o] for x in xs]).astype(np.float64)
        q = np.stack([runner.run(x)[g.outputs.index(o)] for x in xs]).astype(np.float64)
        db = sqnr_db(float(np.sum(f ** 2)), float(np.sum((f - q) ** 2)))
        assert db > 25.0, o


def test_ceilings_name_the_limit_no_layer_change_can_beat(collapse, tmp_path):
    """The diagnostics behind a missed target: the model input's and the int8 weights' own SQNR ceilings."""
    import dataclasses

    from converters.calibrate import calibrate, float_session
    from converters.calibration_data import open_calibration
    from converters.pipeline import import_model
    from converters.quality.mixed_precision import (
        Evaluator, _output_ceiling_note, input_ceiling_db, weights_ceiling_db,
    )
    from converters.quantize import QParams, plan_quantization

    model, calib = collapse
    g = import_model(model)
    data = open_calibration(calib, g.source_shape(g.inputs[0]), g.inputs[0], limit=8)
    sess = float_session(g)
    plan = plan_quantization(g, calibrate(g, data, "minmax", session=sess))
    ev = Evaluator(g, sess, list(data), str(tmp_path / "w.tflite"), None)
    fine = input_ceiling_db(ev, plan)
    assert set(fine) == set(g.outputs) and min(fine.values()) > 30.0  # a calibrated int8 input costs little
    w = weights_ceiling_db(ev, plan)
    assert set(w) == set(g.outputs) and min(w.values()) > 30.0
    coarse = dataclasses.replace(plan, activations={**plan.activations, g.inputs[0]: QParams(4.0, 0)})
    capped = input_ceiling_db(ev, coarse)
    assert max(capped.values()) < 20.0  # a 4.0 input step destroys the signal: the ceiling says so
    note = _output_ceiling_note(ev, coarse, list(g.outputs), 30.0)
    assert "model input" in note and "not a layer" in note

"""The per-op output checks that ``check_structure`` (plan_arena, the micro Interpreter) and the full
``check_tflite_model`` share: both entry points refuse the same defects with the same one-line message,
and the full check keeps its order (a read of an unwritten tensor is reported before a constant write)."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_builder import ModelBuilder, T

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import check_structure, check_tflite_model

CHECKS = {"structure": check_structure, "full": check_tflite_model}


def _model(build) -> TFLiteModel:  # type: ignore[no-untyped-def]
    mb = ModelBuilder()
    build(mb.subgraph("main"))
    return TFLiteModel(mb.to_bytes(), "bad.tflite")


def _missing_output(sg) -> None:  # type: ignore[no-untyped-def]
    x, y = sg.tensor(T([4], "float32", name="x")), sg.tensor(T([4], "float32", name="y"))
    sg.op("RELU", [x], [y])
    sg.op("RELU", [y], [-1])
    sg.io([x], [y])


def _writes_constant(sg) -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([4], "float32", name="x"))
    c = sg.tensor(T([4], "float32", data=np.zeros(4, np.float32), name="c"))
    y = sg.tensor(T([4], "float32", name="y"))
    sg.op("RELU", [x], [y])
    sg.op("RELU", [y], [c])
    sg.io([x], [y])


def _writes_variable(sg) -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([4], "float32", name="x"))
    v = sg.tensor(T([4], "float32", data=np.zeros(4, np.float32), variable=True, name="state"))
    sg.op("RELU", [x], [v])
    sg.io([x], [v])


def _reads_unwritten_and_writes_constant(sg) -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([4], "float32", name="x"))
    orphan = sg.tensor(T([4], "float32", name="orphan"))
    c = sg.tensor(T([4], "float32", data=np.zeros(4, np.float32), name="c"))
    y = sg.tensor(T([4], "float32", name="y"))
    sg.op("ADD", [x, orphan], [c])
    sg.op("RELU", [x], [y])
    sg.io([x], [y])


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("build, message", [
    (_missing_output, "bad.tflite: subgraph 0 operator 1 (RELU) has a missing output"),
    (_writes_constant, "bad.tflite: subgraph 0 operator 1 (RELU) writes into constant tensor 1"),
])
def test_both_checks_refuse_an_op_output_defect_with_one_message(check: str, build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFormatError) as ei:
        CHECKS[check](_model(build))
    assert str(ei.value) == message


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_an_op_may_write_a_variable(check: str) -> None:
    CHECKS[check](_model(_writes_variable))


def test_the_full_check_reports_an_unwritten_read_before_a_constant_write() -> None:
    """Same op, two defects: the full check names the read (as it always has); the structural check,
    which does not look at reads, names the constant write."""
    with pytest.raises(ModelFormatError) as full:
        check_tflite_model(_model(_reads_unwritten_and_writes_constant))
    assert str(full.value) == ("bad.tflite: subgraph 0 operator 0 (ADD) reads tensor 1 ('orphan') "
                               "before anything writes it")
    with pytest.raises(ModelFormatError) as structure:
        check_structure(_model(_reads_unwritten_and_writes_constant))
    assert str(structure.value) == "bad.tflite: subgraph 0 operator 0 (ADD) writes into constant tensor 2"


def _softmax_int8_to_int16(sg, zp: int = -32768, in_type: str = "int8") -> None:  # type: ignore[no-untyped-def]
    x = sg.tensor(T([2, 600], in_type, 0.1, 0 if in_type == "int16" else 3, name="logits"))
    y = sg.tensor(T([2, 600], "int16", 1.0 / 65536.0, zp, name="probs"))
    sg.op("SOFTMAX", [x], [y], ("SoftmaxOptions", _softmax_options()))
    sg.io([x], [y])


def _softmax_options():  # type: ignore[no-untyped-def]
    from tflite_builder import opts

    return opts("SoftmaxOptions", beta=1.0)[1]


def test_int8_to_int16_softmax_output_loads_and_runs_as_tflite_micro(tmp_path):
    """TFLite's one asymmetric int16 tensor (SOFTMAX int8 -> int16, zero point -32768) passes the model
    checks; edge_runtime.load runs it on micro, equal to tflite-micro. Any other int16 zero point is refused."""
    import edge_runtime
    from tflite_builder import run_tflm

    path = tmp_path / "softmax16.tflite"
    mb = ModelBuilder()
    _softmax_int8_to_int16(mb.subgraph("main"))
    mb.write(path)
    check_tflite_model(TFLiteModel(path.read_bytes(), str(path)))
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 600)).astype(np.int8)
    x[1] = 127  # a flat row: 600 classes at the maximum
    ours = edge_runtime.load(str(path), backend="micro").run(x)[0]
    assert np.array_equal(ours, run_tflm(path, [[x]])[0][0])
    for build in (lambda sg: _softmax_int8_to_int16(sg, zp=-5), lambda sg: _softmax_int8_to_int16(sg, in_type="int16")):
        with pytest.raises(ModelFormatError, match="zero point"):
            check_tflite_model(_model(build))


def test_an_unwritten_tensor_of_no_elements_may_be_read(tmp_path):
    """A RESHAPE whose shape input is a zero-element int32 tensor with an empty buffer (written so by
    converters; wyoming-openwakeword's hey_jarvis model has one): nothing is read, so both checks accept
    it, and micro runs it as tflite-micro does (the shape from the options). A tensor with elements that
    nothing writes is still refused."""
    import edge_runtime
    from tflite_builder import opts, run_tflm

    def build(sg, n: int = 0) -> None:  # type: ignore[no-untyped-def]
        x = sg.tensor(T([1, 4, 6], "float32", name="x"))
        s = sg.tensor(T([n], "int32", name="shape"))
        y = sg.tensor(T([1, 24], "float32", name="y"))
        sg.op("RESHAPE", [x, s], [y], opts("ReshapeOptions", newShape=[1, 24]))
        sg.io([x], [y])

    for check in CHECKS.values():
        check(_model(build))
    with pytest.raises(ModelFormatError, match="before anything writes it"):  # the full check looks at reads
        check_tflite_model(_model(lambda sg: build(sg, 2)))
    path = tmp_path / "empty_shape.tflite"
    mb = ModelBuilder()
    build(mb.subgraph("main"))
    mb.write(path)
    x = np.random.default_rng(0).standard_normal((1, 4, 6)).astype(np.float32)
    ours = edge_runtime.load(str(path), backend="micro").run(x)[0]
    assert ours.shape == (1, 24) and np.array_equal(ours, run_tflm(path, [[x]])[0][0])

"""[SPEED] The .tflite writer's schema table (converters/writers/tflite_schema_table.py) and its bytes.

The writer writes tables through the flatbuffers Builder with facts generated from the ``tflite``
schema package, and vectors as blocks of bytes, so that converting does not import that package.
References: the installed ``tflite`` package (the table must equal what introspecting it gives), and
the package's own generated functions writing the same tables, with vectors prepended element by
element (the written models must be byte-identical to what that path writes).
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import flatbuffers
import numpy as np
import pytest

import converters.writers.tflite as tflite_writer
from converters.pipeline import convert_model
from converters.writers import flatbuf, tflite_schema_table
from converters.writers.tflite_schema_table import BUILTIN_OPERATOR, BUILTIN_OPTIONS, TABLES, VECTORS

pytest.importorskip("tflite", reason="the tflite schema package is a dev dependency")

ROOT = Path(__file__).resolve().parents[1]
DIGITS, DIGITS_CALIB = ROOT / "converters/data/digits_cnn.onnx", ROOT / "converters/data/digits_calib.npz"


def _package_table(b: flatbuffers.Builder, table: str, fields: Sequence[tuple[str, object]]) -> int:
    """``flatbuf.write_table`` done with the tflite package's generated Start/Add/End functions."""
    mod = importlib.import_module(f"tflite.{table}")
    getattr(mod, f"{table}Start")(b)
    for name, value in fields:
        getattr(mod, f"{table}Add{name}")(b, value)
    return getattr(mod, f"{table}End")(b)


def _package_vector(b: flatbuffers.Builder, table: str, field: str, values: Any, kind: str = "Int32") -> int:
    """``flatbuf.vector`` done with the package's StartXVector and one Builder.Prepend per element."""
    mod = importlib.import_module(f"tflite.{table}")
    getattr(mod, f"{table}Start{field}Vector")(b, len(values))
    prepend = getattr(b, f"Prepend{kind}")
    for v in reversed(list(values)):
        prepend(v.item() if isinstance(v, np.generic) else v)
    return b.EndVector()


def _both(monkeypatch: pytest.MonkeyPatch, build: Callable[[], bytes]) -> tuple[bytes, bytes]:
    """``build()`` with the writer's table facts, then with the tflite package's functions."""
    ours = build()
    with monkeypatch.context() as m:
        m.setattr(flatbuf, "write_table", _package_table)
        m.setattr(flatbuf, "vector", _package_vector)
        package = build()
    return ours, package


def test_table_equals_what_the_installed_package_gives() -> None:
    tables, vectors, operators, options = tflite_schema_table.introspect()
    assert TABLES == tables
    assert VECTORS == vectors
    assert BUILTIN_OPERATOR == operators and BUILTIN_OPTIONS == options
    assert tflite_schema_table.generate() in Path(tflite_schema_table.__file__).read_text()
    # the facts the writer relies on, spelled out
    assert TABLES["Conv2DOptions"][1]["DilationWFactor"] == (4, "PrependInt32Slot", 1)
    assert BUILTIN_OPERATOR["CONV_2D"] == 3 and BUILTIN_OPTIONS["ReshapeOptions"] == 17


def test_the_writer_writes_tables_only_through_flatbuf() -> None:
    """Else the comparisons below would not reach every table the writer writes."""
    assert not hasattr(tflite_writer, "write_table") and not hasattr(tflite_writer, "vector")


def _non_default(method: str, default: object, offset: int) -> object:
    if method == "PrependUOffsetTRelativeSlot":
        return offset
    if method == "PrependBoolSlot":
        return not default
    if method in ("PrependFloat32Slot", "PrependFloat64Slot"):
        return float(default) + 0.75
    return int(default) + 1  # integer defaults are small (-1 to 2): +1 stays in range of any type


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_table_writes_the_bytes_of_the_package_functions(monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    def build() -> bytes:
        b = flatbuffers.Builder(64)
        offset = b.CreateString("x")
        spec = TABLES[table][1]
        fields = [(name, _non_default(method, default, offset)) for name, (_, method, default) in spec.items()]
        flatbuf.write_table(b, table, fields)
        # and with every field at its default (left out of the table)
        b.Finish(flatbuf.write_table(b, table, [(name, default) for name, (_, _, default) in spec.items()]))
        return bytes(b.Output())

    ours, package = _both(monkeypatch, build)
    assert ours == package


VALUES = {"Int32": [7, -2, 2**31 - 1, 0, -(2**31)], "Int64": [3, -(2**40), 0], "Float32": [0.1, -3.5e-7, 1e30, 0.0]}


@pytest.mark.parametrize("key", sorted(k for k, (size, _) in VECTORS.items() if size in (4, 8)),
                         ids=lambda key: ".".join(key))
def test_every_vector_field_writes_the_bytes_of_prepending(monkeypatch: pytest.MonkeyPatch,
                                                           key: tuple[str, str]) -> None:
    table, field = key
    kinds = ["Int64"] if VECTORS[key][0] == 8 else ["Int32", "Float32", "UOffsetTRelative"]

    def build() -> bytes:
        b = flatbuffers.Builder(16)
        strings = [b.CreateString("a" * n) for n in (1, 5, 2)]  # odd lengths: vectors start unaligned
        offs = []
        for kind in kinds:
            if kind == "UOffsetTRelative":
                offs.append(flatbuf.vector(b, table, field, strings, kind))
                continue
            values = VALUES[kind]
            offs.append(flatbuf.vector(b, table, field, values, kind))
            offs.append(flatbuf.vector(b, table, field, np.array(values, {"Int32": "<i4", "Int64": "<i8"}.get(
                kind, "<f4")), kind))
            offs.append(flatbuf.vector(b, table, field, [], kind))
            b.CreateString("odd")
        b.Finish(flatbuf.vector(b, "SubGraph", "Tensors", offs, "UOffsetTRelative"))
        return bytes(b.Output())

    ours, package = _both(monkeypatch, build)
    assert ours == package


def test_a_vector_of_the_wrong_element_size_is_refused() -> None:
    b = flatbuffers.Builder(16)
    with pytest.raises(ValueError, match="ZeroPoint holds 8-byte elements"):
        flatbuf.vector(b, "QuantizationParameters", "ZeroPoint", [1, 2], "Int32")


def _converted(monkeypatch: pytest.MonkeyPatch, out: Path, model: Any, calib: Any, profile: str = "rpi4-4gb",
               **kw: Any) -> list[tuple[Any, Any, bytes]]:
    """Convert ``model`` and return each (graph, plan, bytes) the .tflite writer was given and wrote."""
    calls: list[tuple[Any, Any, bytes]] = []
    real = tflite_writer.build_tflite

    def spy(graph: Any, plan: Any) -> bytes:
        data = real(graph, plan)
        calls.append((graph, plan, data))
        return data

    with monkeypatch.context() as m:
        m.setattr(tflite_writer, "build_tflite", spy)
        res = convert_model(model, profile, calib, out, formats=("tflite",), report_samples=4, **kw)
    assert calls and Path(res.tflite_path).read_bytes() == calls[-1][2]
    return calls


def _check_written(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Any, Any, bytes]]) -> None:
    for graph, plan, data in calls:
        ours, package = _both(monkeypatch, lambda: tflite_writer.build_tflite(graph, plan))
        assert ours == data
        assert ours == package, graph.name


DIGITS_CASES = {"int8": {}, "uint8_io": {"io_dtype": "uint8"}, "float_io": {"io_dtype": "float32"},
                "int16": {"activations": "int16"}, "mcu": {"profile": "stm32h743"}}


@pytest.mark.parametrize("case", sorted(DIGITS_CASES))
def test_digits_cnn_is_written_as_the_package_writes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        case: str) -> None:
    _check_written(monkeypatch, _converted(monkeypatch, tmp_path, DIGITS, DIGITS_CALIB, **DIGITS_CASES[case]))


def test_allops_graph_is_written_as_the_package_writes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from test_convert_onnx_ops import _build

    _build(tmp_path / "allops.onnx")
    x = np.random.default_rng(1).random((8, 1, 3, 16, 16), dtype=np.float32)
    _check_written(monkeypatch, _converted(monkeypatch, tmp_path / "out", tmp_path / "allops.onnx", x))


def _op_test_model(case: str) -> tuple[Any, tuple[int, ...]]:
    """A model of the op tests (``vision:<case>`` or ``elementwise:<case>``) and its input shape."""
    from test_import_ops_common import make_model

    family, name = case.split(":")
    if family == "vision":
        import test_import_ops_vision as vision

        nodes, inits, out_shape, opset = vision.CASES[name]()
        x, y = vision.vi("x", list(vision.IN)), vision.vi("y", out_shape)
        return make_model(nodes, [x], [y], inits, opset), vision.IN
    import test_import_ops_elementwise as elementwise

    nodes, inits = elementwise.CASES[name]
    return make_model(nodes, [elementwise.X], [elementwise.Y], inits, elementwise.OPSET.get(name, 13)), (1, 8, 6, 6)


def _op_test_cases() -> list[str]:
    import test_import_ops_elementwise as elementwise
    import test_import_ops_vision as vision

    return [f"vision:{c}" for c in sorted(vision.CASES)] + [f"elementwise:{c}" for c in sorted(elementwise.CASES)]


@pytest.mark.parametrize("case", _op_test_cases())
def test_op_test_models_are_written_as_the_package_writes_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               case: str) -> None:
    import onnx

    model, shape = _op_test_model(case)
    onnx.save(model, tmp_path / "model.onnx")
    x = np.random.default_rng(0).uniform(-2.0, 2.0, (8,) + shape).astype(np.float32)
    _check_written(monkeypatch, _converted(monkeypatch, tmp_path / "out", tmp_path / "model.onnx", x))


def test_index_and_scan_ops_are_written_as_the_package_writes_them(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """ARG_MAX/ARG_MIN (an int32 output), CUMSUM, LEAKY_RELU and DIV: options tables the CNNs above lack."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = helper.make_node
    inits = [numpy_helper.from_array(np.array(-1, np.int64), "ax"),
             numpy_helper.from_array(np.array(1, np.int64), "ax1")]
    nodes = [n("CumSum", ["x", "ax"], ["cum"], name="cumsum"),
             n("CumSum", ["x", "ax1"], ["cum_c"], name="cumsum_c", exclusive=1, reverse=1),
             n("LeakyRelu", ["cum"], ["lk"], name="leaky", alpha=0.2),
             n("Relu", ["cum_c"], ["r"], name="relu"), n("Add", ["r", "lk"], ["d"], name="add"),
             n("Sigmoid", ["d"], ["sd"], name="sig"), n("Div", ["x", "sd"], ["y"], name="div"),
             n("ArgMax", ["y"], ["idx"], name="argmax", axis=1, keepdims=1),
             n("ArgMin", ["y"], ["idx_min"], name="argmin", axis=3, keepdims=0)]
    g = helper.make_graph(nodes, "index_scan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6]),
                           helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 1, 6, 6]),
                           helper.make_tensor_value_info("idx_min", TensorProto.INT64, [1, 4, 6])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "index_scan.onnx")
    x = np.random.default_rng(0).uniform(-2.0, 2.0, (8, 1, 4, 6, 6)).astype(np.float32)
    calls = _converted(monkeypatch, tmp_path / "out", tmp_path / "index_scan.onnx", x)
    _check_written(monkeypatch, calls)
    kinds = {op.kind for op in calls[-1][0].ops}
    assert {"ARG_MAX", "ARG_MIN", "CUMSUM", "LEAKY_RELU", "DIV"} <= kinds, kinds


@pytest.mark.slow
def test_cnn96_is_written_as_the_package_writes_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from benchmarks.convert_speed import build_cnn96

    build_cnn96(tmp_path / "cnn96.onnx", tmp_path / "calib.npz", 4)
    calls = _converted(monkeypatch, tmp_path / "out", tmp_path / "cnn96.onnx", tmp_path / "calib.npz")
    _check_written(monkeypatch, calls)


ZOO = [("ssd", "rpi4-4gb"), ("gru_kws", "rpi4-4gb"), ("lstm_kws", "stm32h743"), ("transformer", "rpi4-4gb"),
       ("mobilevit", "rpi4-4gb"), ("unet", "rpi4-4gb"), ("mobilenet_v3", "stm32h743"), ("shufflenet", "rpi4-4gb")]


@pytest.mark.slow
@pytest.mark.parametrize("name,profile", ZOO, ids=[n for n, _ in ZOO])
def test_zoo_models_are_written_as_the_package_writes_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           name: str, profile: str) -> None:
    pytest.importorskip("torch")
    from fixtures.zoo import MODELS, export_onnx, sample_inputs

    path = export_onnx(name, 13, tmp_path)
    calls = _converted(monkeypatch, tmp_path / "out", path, sample_inputs(name, 8, seed=1), profile,
                       input_shapes=MODELS[name].input_shapes)
    _check_written(monkeypatch, calls)


MLPERF = {"vww_96_float.tflite": (1, 96, 96, 3), "pretrainedResnet.tflite": (1, 32, 32, 3),
          "ad01_fp32.tflite": (1, 640), "kws_ref_model_float32.tflite": (1, 49, 10, 1)}


@pytest.mark.parametrize("name", sorted(MLPERF))
def test_mlperf_float_models_are_written_as_the_package_writes_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                    mlperf_models: Path, name: str) -> None:
    x = np.random.default_rng(0).random((8,) + MLPERF[name], dtype=np.float32)
    _check_written(monkeypatch, _converted(monkeypatch, tmp_path, mlperf_models / name, x))


def test_test_builder_models_are_written_as_the_package_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from delegate.tflite_builder import T, Op, add_mul_fc_model, build_model, edgetpu_model

    def quantized() -> bytes:
        tensors = [T("x", (1, 16), np.int8, scale=0.5, zero_point=-3), T("w", (4, 16), np.int8,
                   data=np.arange(64, dtype=np.int8).reshape(4, 16), scale=0.25), T("y", (1, 4), np.int8, scale=1.0)]
        return build_model(tensors, [Op("FULLY_CONNECTED", [0, 1, -1], [2], activation="RELU6")], [0], [2])

    for build in (lambda: add_mul_fc_model()[0], edgetpu_model, quantized):
        ours, package = _both(monkeypatch, build)
        assert ours == package


def test_converting_does_not_import_the_tflite_package(tmp_path: Path) -> None:
    code = ("import sys\nfrom converters.cli import main\nassert main(sys.argv[1:]) == 0\n"
            "print(sorted(m for m in sys.modules if m == 'tflite' or m.startswith('tflite.')))")
    args = ["convert", str(DIGITS), "--profile", "rpi4-4gb", "--calib", str(DIGITS_CALIB), "-o", str(tmp_path)]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout[-2000:]
    assert (tmp_path / "digits_cnn_int8.tflite").exists()

"""ONNX models at opset 6 (before numpy broadcasting) convert with their opset-6 meaning; sequence ops are
refused in one line.

Opset 6 differs from 7+ in two ways the upgrade (:func:`converters.importers.prepare.prepare_onnx_model`,
``onnx.version_converter``) must keep: Add/Sub/Mul/Div with ``broadcast=1`` align B with A from ``axis``
(the version converter's adapter unsqueezes B), and PRelu applies a 1-D slope ``[C]`` along axis 1
(prepare reshapes it to ``[C, 1, ..., 1]``; the adapter leaves it, which from opset 7 on broadcasts
against the last axis). Each model is built with ``onnx.helper`` at opset 6, its opset-6 meaning is
computed with numpy (the golden data), onnxruntime on the prepared (upgraded) model must give the same
floats, and the conversion goes through :func:`check_graph` (SQNR >= 30 dB on LiteRT and on the QDQ
model against onnxruntime on the upgraded model, micro == tflite-micro with ``np.array_equal``). The onnx
wheel's own opset-6 backend-test files are checked against their golden outputs (skipped when the wheel
ships no test data).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import_breadth_onnx import check_graph, ir_layout, uniform

from converters.importers.onnx import import_onnx
from converters.importers.prepare import MIN_OPSET, prepare_onnx, prepare_onnx_model
from edge_runtime.errors import UnsupportedModelError

WHEEL_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _save(nodes: list, in_shape: list[int], path: Path, inits: tuple = (), out_shape: list[int] | None = None,
          opset: int = 6, ir: int = 3) -> str:
    """A one-input, one-output float model at ``opset`` (the output's shape is the input's unless given); IR 3
    lists the initializers among the inputs, as exporters of that time wrote them."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)]
    if ir < 4:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "old", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape or in_shape)],
                          list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def _prepared_reference(path: str) -> tuple[Any, Callable[[np.ndarray], list[np.ndarray]]]:
    """The prepared (upgraded to opset 13) model and onnxruntime on it (ORT runs no opset-6 model)."""
    prepared = prepare_onnx(path)
    sess = ort.InferenceSession(prepared.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    return prepared, lambda x: [ir_layout(v, True) for v in sess.run(None, {feed: x})]


def _check_against_golden(path: str, golden: Callable[[np.ndarray], np.ndarray], data: np.ndarray,
                          tmp_path: Path) -> Any:
    """ORT on the prepared model equals the numpy opset-6 meaning; then convert and run every check."""
    prepared, reference = _prepared_reference(path)
    for x in data[-4:]:
        want = golden(x)
        np.testing.assert_allclose(reference(x)[0], ir_layout(want, True), rtol=1e-5, atol=1e-5)
    check_graph(import_onnx(path), data, reference, tmp_path, min_sqnr=30.0)
    return prepared


def _conv(rng: np.random.Generator, cin: int, cout: int, name: str = "c") -> tuple[Any, Any, Any]:
    """A 3x3 'same' Conv (so the pattern reads a computed activation), its weight and bias."""
    w = (rng.standard_normal((cout, cin, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], [name], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    return node, numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")


def _conv_np(x: np.ndarray, w: Any, b: Any) -> np.ndarray:
    """The 3x3 'same' convolution of ``x`` ``[1, C, H, W]`` in numpy."""
    wv, bv = numpy_helper.to_array(w), numpy_helper.to_array(b)
    _, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, wv.shape[0], h, wd), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], wv[:, :, i, j])
    return (out + bv.reshape(1, -1, 1, 1)).astype(np.float32)


# ---------------------------------------------------------------- broadcast=1 with axis
def _binary_cases() -> list[tuple[str, int, int]]:
    """(op, rank of B, axis or -1 for none), over Add/Sub/Mul/Div."""
    return [("Add", 1, 1), ("Mul", 2, 1), ("Sub", 2, 0), ("Div", 1, 1), ("Add", 1, 2), ("Add", 1, -1),
            ("Mul", 3, 1), ("Sub", 2, 2), ("Div", 2, -1)]


@pytest.mark.parametrize("op,b_rank,axis", _binary_cases())
def test_opset6_broadcast_with_axis(op: str, b_rank: int, axis: int, tmp_path: Path) -> None:
    """B aligned with A from ``axis`` (the trailing axes when no axis is given), random shapes."""
    rng = np.random.default_rng(zlib.crc32(f"{op}{b_rank}{axis}".encode()))
    c, h, w = (int(v) for v in rng.integers(4, 9, 3))
    conv, wt, bs = _conv(rng, 3, c)
    a_shape = (1, c, h, w)
    start = axis if axis >= 0 else 4 - b_rank
    b_shape = a_shape[start:start + b_rank]
    sign = 1 if op == "Div" else rng.choice([-1, 1], b_shape)
    lo, hi = (0.5, 1.5) if op in ("Mul", "Div") else (0.1, 0.5)  # an offset in the activations' range
    b = (rng.uniform(lo, hi, b_shape) * sign).astype(np.float32)
    attrs = {"broadcast": 1} | ({"axis": axis} if axis >= 0 else {})
    node = helper.make_node(op, ["c", "bval"], ["y"], name="binop", **attrs)
    path = _save([conv, node], [1, 3, h, w], tmp_path / "bin.onnx", (wt, bs, numpy_helper.from_array(b, "bval")),
                 list(a_shape))
    b_full = b.reshape(b_shape + (1,) * (4 - start - b_rank))  # opset 6: B's axes start at `axis` of A
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    _check_against_golden(path, lambda x: fn(_conv_np(x, wt, bs), b_full), uniform((1, 3, h, w)), tmp_path)


# ---------------------------------------------------------------- PRelu per channel
@pytest.mark.parametrize("shape", [(1, 4, 3, 4), (1, 3, 5, 6), (1, 5, 7), (1, 4, 4)])
def test_opset6_prelu_slope_applies_per_channel(shape: tuple[int, ...], tmp_path: Path) -> None:
    """A slope ``[C]`` applies along axis 1: also where C equals the last axis (4 in ``(1, 4, 3, 4)``), which
    opset 7's broadcasting would take silently along that axis instead."""
    rng = np.random.default_rng(sum(shape))
    c = shape[1]
    slope = rng.uniform(0.05, 0.6, c).astype(np.float32)
    node = helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")
    path = _save([node], list(shape), tmp_path / "prelu.onnx", (numpy_helper.from_array(slope, "slope"),))
    per_channel = slope.reshape((c,) + (1,) * (len(shape) - 2))
    prepared = _check_against_golden(path, lambda x: np.where(x < 0, x * per_channel, x), uniform(shape), tmp_path)
    kept = {t.name: tuple(t.dims) for t in prepared.graph.initializer}
    assert tuple(per_channel.shape) in kept.values() and (c,) not in kept.values()


def test_opset6_prelu_computed_slope_gets_an_unsqueeze(tmp_path: Path) -> None:
    """A slope that is not an initializer (a Constant node feeding Abs) is unsqueezed to ``[C, 1, 1]``."""
    rng = np.random.default_rng(3)
    conv, wt, bs = _conv(rng, 3, 5)
    slope = rng.uniform(-0.5, 0.5, 5).astype(np.float32)
    nodes = [conv, helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(slope, "s0")),
             helper.make_node("Abs", ["s0"], ["s"]), helper.make_node("PRelu", ["c", "s"], ["y"], name="prelu")]
    path = _save(nodes, [1, 3, 6, 5], tmp_path / "prelu_c.onnx", (wt, bs), [1, 5, 6, 5])
    per_channel = np.abs(slope).reshape(5, 1, 1)

    def golden(x: np.ndarray) -> np.ndarray:
        v = _conv_np(x, wt, bs)
        return np.where(v < 0, v * per_channel, v)

    _check_against_golden(path, golden, uniform((1, 3, 6, 5)), tmp_path)


def test_opset6_prelu_slope_shared_with_another_node_is_kept(tmp_path: Path) -> None:
    """A slope also read by a Mul keeps its ``[C]`` value for the Mul (opset-6 broadcast there: trailing axis);
    the PRelu reads a reshaped copy."""
    slope = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["p"], name="prelu"),
             helper.make_node("Mul", ["p", "slope"], ["y"], broadcast=1)]
    path = _save(nodes, [1, 4, 2, 4], tmp_path / "shared.onnx", (numpy_helper.from_array(slope, "slope"),))
    golden = lambda x: np.where(x < 0, x * slope.reshape(4, 1, 1), x) * slope
    prepared, reference = _prepared_reference(path)
    for x in uniform((1, 4, 2, 4), n=4):
        np.testing.assert_allclose(reference(x)[0], ir_layout(golden(x), True), rtol=1e-5, atol=1e-6)
    assert sorted(tuple(t.dims) for t in prepared.graph.initializer) == [(4,), (4, 1, 1)]


def test_opset6_prelu_on_rank2_and_single_slope_are_left_alone(tmp_path: Path) -> None:
    """``[N, C]`` with a slope ``[C]`` (the last axis already) and a slope ``[1]`` keep their shapes."""
    nodes = [helper.make_node("PRelu", ["x", "s4"], ["p"]), helper.make_node("PRelu", ["p", "s1"], ["y"])]
    inits = (numpy_helper.from_array(np.full(4, 0.2, np.float32), "s4"),
             numpy_helper.from_array(np.array([0.5], np.float32), "s1"))
    prepared = prepare_onnx(_save(nodes, [1, 4], tmp_path / "rank2.onnx", inits))
    assert sorted(tuple(t.dims) for t in prepared.graph.initializer) == [(1,), (4,)]


def test_opset6_broadcast_of_unknown_rank_is_refused_in_one_line() -> None:
    """A PRelu slope ``[C]`` on a tensor whose rank nothing tells (the output of an op outside the standard
    domain) cannot be aligned: one line naming the node, not a silent guess."""
    nodes = [helper.make_node("Mystery", ["x"], ["m"], domain="example.custom"),
             helper.make_node("PRelu", ["m", "slope"], ["y"], name="prelu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.full(3, 0.1, np.float32), "slope")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 6), helper.make_opsetid("example.custom", 1)])
    m.ir_version = 4
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx_model(m, source="odd.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "'prelu' (PRelu)" in msg and "rank of 'm' is unknown" in msg


# ---------------------------------------------------------------- Conv + BatchNormalization (opset 6 attributes)
def _conv_bn(tmp_path: Path, **bn_attrs: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(11)
    conv, wt, bs = _conv(rng, 3, 6)
    scale, bias, mean = (rng.standard_normal(6).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    inits = (wt, bs) + tuple(numpy_helper.from_array(v, n) for v, n in
                             ((scale, "scale"), (bias, "bias"), (mean, "mean"), (var, "var")))
    bn = helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"], name="bn",
                          epsilon=1e-5, **bn_attrs)
    path = _save([conv, bn], [1, 3, 7, 6], tmp_path / "conv_bn.onnx", inits, [1, 6, 7, 6])

    def golden(x: np.ndarray) -> np.ndarray:
        r = lambda v: v.reshape(1, -1, 1, 1)
        return (_conv_np(x, wt, bs) - r(mean)) / np.sqrt(r(var) + 1e-5) * r(scale) + r(bias)

    return path, golden


@pytest.mark.parametrize("attrs", [{"is_test": 1}, {"is_test": 1, "spatial": 1}, {"is_test": 1, "momentum": 0.9}])
def test_opset6_conv_batchnorm_converts(attrs: dict, tmp_path: Path) -> None:
    path, golden = _conv_bn(tmp_path, **attrs)
    _check_against_golden(path, golden, uniform((1, 3, 7, 6)), tmp_path)


@pytest.mark.parametrize("attrs,says", [({"is_test": 0}, "is_test must not have value 0"),
                                        ({"is_test": 1, "spatial": 0}, "spatial must have value 1")])
def test_opset6_training_or_per_element_batchnorm_is_refused_in_one_line(attrs: dict, says: str,
                                                                          tmp_path: Path) -> None:
    path, _ = _conv_bn(tmp_path, **attrs)
    with pytest.raises(UnsupportedModelError) as e:
        prepare_onnx(path)
    msg = str(e.value)
    assert "\n" not in msg and "'BatchNormalization' (node 'bn')" in msg and says in msg


def test_opset_range() -> None:
    """Opset 6 is the oldest accepted; opset 5 is refused in one line naming the range."""
    assert MIN_OPSET == 6
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]),
                          opset_imports=[helper.make_opsetid("", 5)])
    m.ir_version = 3
    with pytest.raises(UnsupportedModelError, match="opset 5 is outside the supported range 6-22") as e:
        prepare_onnx_model(m, source="old.onnx")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- the onnx wheel's opset-6 files
def _wheel_opset6() -> list[Path]:
    found = []
    for folder in ("pytorch-converted", "pytorch-operator"):
        d = WHEEL_DATA / folder
        if d.is_dir():
            for m in sorted(d.glob("*/model.onnx")):
                proto = onnx.load(str(m), load_external_data=False)
                if max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 6:
                    found.append(m)
    return found


def test_wheel_opset6_models_prepare_to_their_golden_outputs() -> None:
    """Every opset-6 file of the onnx wheel, prepared (upgraded), gives its golden outputs on onnxruntime."""
    models = _wheel_opset6()
    if not models:
        pytest.skip(f"the installed onnx package ships no opset-6 test models under {WHEEL_DATA}")
    bad = []
    for path in models:
        ds = path.parent / "test_data_set_0"
        xs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(ds.glob("input_*.pb"))]
        ys = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(ds.glob("output_*.pb"))]
        proto = onnx.load(str(path))
        inits = {t.name for t in proto.graph.initializer}
        names = [vi.name for vi in proto.graph.input if vi.name not in inits]
        prepared = prepare_onnx(path, dict(zip(names, (tuple(x.shape) for x in xs))))
        sess = ort.InferenceSession(prepared.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})
        if not all(o.shape == y.shape and np.allclose(o, y, rtol=1e-3, atol=1e-4, equal_nan=True)
                   for o, y in zip(outs, ys)):
            bad.append(path.parent.name)
    assert len(models) >= 100 and not bad, bad


@pytest.mark.parametrize("name", ["test_PReLU_1d_multiparam", "test_PReLU_2d_multiparam", "test_PReLU_3d_multiparam",
                                  "test_BatchNorm2d_eval", "test_Conv2d_depthwise"])
def test_wheel_opset6_models_convert(name: str) -> None:
    """Converted as they are (opset 6): SQNR >= 30 dB against the golden output on LiteRT, micro ==
    tflite-micro (``benchmarks/onnx_backend_models.measure``)."""
    from benchmarks.onnx_backend_models import measure

    path = WHEEL_DATA / "pytorch-converted" / name / "model.onnx"
    if not path.is_file():
        pytest.skip(f"the installed onnx package ships no pytorch-converted/{name}")
    row = measure(name, "pytorch-converted", path)
    assert row.get("ok"), row.get("error")
    assert str(row["opset"]).startswith("6") and min(row["ours_db"]) >= 30.0, (row["opset"], row["ours_db"])
    assert row["micro"] == "equal", row["micro"]


# ---------------------------------------------------------------- sequence ops
def _sequence_model(kind: str) -> Any:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    if kind == "split":
        nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("SplitToSequence", ["r"], ["s"], axis=1, name="to_seq"),
                 helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=1, name="from_seq")]
    else:
        nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("SequenceConstruct", ["x", "r"], ["s"], name="make_seq"),
                 helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(np.array(1, np.int64))),
                 helper.make_node("SequenceAt", ["s", "i"], ["y"], name="at")]
    m = helper.make_model(helper.make_graph(nodes, "seq", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("kind,op,node", [("split", "SplitToSequence", "to_seq"),
                                          ("construct", "SequenceConstruct", "make_seq")])
def test_sequence_ops_are_refused_in_one_line(kind: str, op: str, node: str, tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.onnx"
    onnx.save(_sequence_model(kind), str(path))
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(str(path))
    msg = str(e.value)
    assert "\n" not in msg and f"ONNX node '{node}' ({op})" in msg
    assert "sequence ops are not supported" in msg and "TFLite has no sequence type" in msg
    assert "--input-shape" not in msg and "data-dependent" not in msg

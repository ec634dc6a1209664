"""Every output in the report: a multi-output model where plain int8 collapses one output.

The model: two fully-connected branches from one input, one with a range of ~0.05 and one of ~50,
concatenated (int8 CONCATENATION shares one scale between its inputs, so the small branch rounds to
almost nothing) and read by two heads, one per branch, plus a softmax over the large head.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters.pipeline import convert_model
from converters.quality.metrics import grade, output_kinds
from converters.report import TFLiteRunner

IN, HID, OUT = 16, 8, 4


def _build(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, a: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(a.astype(np.float32), name)

    w_small = rng.standard_normal((IN, HID)) * 0.01
    w_large = rng.standard_normal((IN, HID)) * 10.0
    head_small = np.zeros((2 * HID, OUT))
    head_small[:HID] = rng.standard_normal((HID, OUT)) * 10.0  # reads only the small branch
    head_large = np.zeros((2 * HID, OUT))
    head_large[HID:] = rng.standard_normal((HID, OUT)) * 0.05  # reads only the large branch
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w_small"], ["small"], name="branch_small"),
             n("MatMul", ["x", "w_large"], ["large"], name="branch_large"),
             n("Concat", ["small", "large"], ["both"], name="concat", axis=1),
             n("MatMul", ["both", "head_small"], ["small_head"], name="head_small"),
             n("MatMul", ["both", "head_large"], ["large_head"], name="head_large"),
             n("Softmax", ["large_head"], ["probs"], name="softmax", axis=-1)]
    inits = [init("w_small", w_small), init("w_large", w_large), init("head_small", head_small),
             init("head_large", head_large)]
    g = helper.make_graph(nodes, "two_ranges", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, IN])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, OUT])
                           for o in ("large_head", "small_head", "probs")], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("two_ranges")
    _build(d / "two_ranges.onnx")
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (96, 1, IN)).astype(np.float32)
    res = convert_model(d / "two_ranges.onnx", "rpi4-4gb", x[:48], d / "out", held_out=x[48:], analyze=True,
                        plot=True)
    return res, x


def _row(stats: dict, name: str) -> dict:
    return next(r for r in stats["outputs"] if r["name"] == name)


def test_report_shows_the_collapsed_output(converted):  # type: ignore[no-untyped-def]
    res, _ = converted
    for k in ("tflite", "onnx"):
        s = res.report["held_out"][k]
        assert [r["name"] for r in s["outputs"]] == ["large_head", "small_head", "probs"]
        small, large = _row(s, "small_head"), _row(s, "large_head")
        assert large["sqnr_db"] > 30 and large["grade"] == "fine", large
        assert small["sqnr_db"] < 10 and small["grade"] == "bad", small  # collapsed
        assert s["worst_output"] == "small_head" and s["output_sqnr_db"] == small["sqnr_db"]
        for r in s["outputs"]:
            assert {"sqnr_db", "max_abs_error", "mean_abs_error", "range"} <= set(r)
            assert r["range"][0] < r["range"][1]
    cal = res.report["calibration_outputs"]
    assert cal["worst_output"] == "small_head" and _row(cal, "small_head")["sqnr_db"] < 10
    assert any("worst output 'small_head'" in line for line in res.report["summary"])


def test_top1_only_for_the_class_distribution(converted):  # type: ignore[no-untyped-def]
    res, _ = converted
    s = res.report["held_out"]["tflite"]
    assert _row(s, "probs")["kind"] == "class" and "top1_agreement_with_float" in _row(s, "probs")
    for name in ("small_head", "large_head"):
        assert _row(s, name)["kind"] == "regression" and "top1_agreement_with_float" not in _row(s, name)
    assert output_kinds(res.graph, "classify")["small_head"] == "class"
    assert set(output_kinds(res.graph, "regress").values()) == {"regression"}


def test_markdown_lists_every_output_and_the_sensitivity(converted):  # type: ignore[no-untyped-def]
    res, _ = converted
    out = Path(res.report_path).parent
    md = (out / "report.md").read_text()
    for name in ("large_head", "small_head", "probs"):
        assert f"`{name}`" in md
    assert "worst output 'small_head'" in md and "## Sensitivity" in md
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](report.png)" in md
    assert json.loads((out / "report.json").read_text())["held_out"]["tflite"]["worst_output"] == "small_head"


def test_sensitivity_names_the_shared_scale(converted):  # type: ignore[no-untyped-def]
    """Quantizing the concatenation (or the small branch that shares its scale) alone collapses the
    small head; leaving either in float is what gives most back."""
    res, _ = converted
    sens = res.report["sensitivity"]
    ops = {r["index"]: r for r in sens["layers"]}
    guilty = {i for i, op in enumerate(res.graph.ops) if op.name in ("concat", "branch_small")}
    assert len(guilty) == 2 and set(sens["top"][:2]) == guilty
    assert sens["all_quantized_db"] < 10 and sens["worst_output"] == "small_head"
    assert all(ops[i]["only_quantized_db"] < 10 for i in guilty)
    innocent = [r for r in sens["layers"] if r["index"] not in guilty]
    assert min(r["only_quantized_db"] for r in innocent) > 25
    assert "most sensitive" in sens["summary"]


def test_layer_grades_follow_absolute_thresholds(converted):  # type: ignore[no-untyped-def]
    res, _ = converted
    assert grade(38.0) == "fine" and grade(25.0) == "warn" and grade(12.0) == "bad"
    for r in res.report["layers"]:
        assert r["grade"] == grade(r["sqnr_db"])


def test_tflite_runner_feeds_every_input_and_returns_every_output(tmp_path):  # type: ignore[no-untyped-def]
    from converters.ir import Graph, Op, Tensor
    from converters.quantize import plan_quantization
    from converters.writers.tflite import write_tflite

    shape = (1, 4)
    g = Graph("two_in", {n: Tensor(n, shape) for n in ("a", "b", "s", "m")},
              [Op("ADD", ["a", "b"], ["s"]), Op("MUL", ["a", "b"], ["m"])], ["a", "b"], ["s", "m"])
    plan = plan_quantization(g, {"a": (-1.0, 1.0), "b": (-2.0, 2.0), "s": (-3.0, 3.0), "m": (-2.0, 2.0)})
    path = write_tflite(g, plan, str(tmp_path / "two_in.tflite")) or str(tmp_path / "two_in.tflite")
    r = TFLiteRunner(str(path))
    a = np.array([[0.5, -0.25, 0.75, 0.0]], np.float32)
    b = np.array([[1.0, 1.5, -0.5, -2.0]], np.float32)
    s, m = r.run([a, b])
    np.testing.assert_allclose(s, a + b, atol=0.03)
    np.testing.assert_allclose(m, a * b, atol=0.03)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        r.run(a)


def test_cli_names_the_worst_output_and_the_guilty_layers(tmp_path, capsys):  # type: ignore[no-untyped-def]
    from converters.cli import main as edge_convert

    _build(tmp_path / "m.onnx")
    x = np.random.default_rng(2).uniform(-1.0, 1.0, (64, 1, IN)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x[:32])
    np.savez(tmp_path / "held.npz", x=x[32:])
    rc = edge_convert(["convert", str(tmp_path / "m.onnx"), "--profile", "rpi4-4gb", "--calib",
                       str(tmp_path / "calib.npy"), "--held-out", str(tmp_path / "held.npz"), "--analyze",
                       "--task", "regress", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "worst output 'small_head'" in out and "sensitivity:" in out and "most sensitive: " in out
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all(r["kind"] == "regression" for r in rep["held_out"]["tflite"]["outputs"])  # --task regress
    with pytest.raises(SystemExit) as exc:
        edge_convert(["convert", str(tmp_path / "m.onnx"), "--profile", "rpi4-4gb", "--calib",
                      str(tmp_path / "calib.npy"), "--task", "detect", "-o", str(tmp_path / "out2")])
    assert exc.value.code == 2


def test_labels_make_logits_a_class_output_but_not_a_box_head():
    """A 10-logit head with labels 0..9 is a classifier; its 4-value box head next to it is not, and
    neither is any vector once the model has a softmax output of its own."""
    from converters.ir import Graph, Op, Tensor

    t = {n: Tensor(n, s) for n, s in (("x", (1, 8)), ("logits", (1, 10)), ("boxes", (1, 4)), ("p", (1, 10)))}
    g = Graph("det", t, [Op("RELU", ["x"], ["logits"]), Op("RELU", ["x"], ["boxes"])], ["x"], ["logits", "boxes"])
    labels = np.arange(10) % 10
    assert output_kinds(g, "auto", labels) == {"logits": "class", "boxes": "regression"}
    assert output_kinds(g, "auto", None) == {"logits": "regression", "boxes": "regression"}
    g.ops.append(Op("SOFTMAX", ["logits"], ["p"]))
    g.outputs.append("p")
    assert output_kinds(g, "auto", labels) == {"logits": "regression", "boxes": "regression", "p": "class"}

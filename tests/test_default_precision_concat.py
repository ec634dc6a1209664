"""The mixed-range concatenation rule of the default precision policy (converters/quality/concat_ranges.py).

A YOLO-like torch head exported to ONNX: a small conv backbone, a box branch scaled to pixels (sigmoid x 640)
and a sigmoid class-score branch, joined by Concat into [1, 4 + classes, anchors], as Ultralytics exports end.
In int8 the concat's one shared scale (~640/255) leaves the scores a single code; the rule runs the concat in
16x8 and writes the output in int16. Checked: the rule fires there and not on an ordinary channel concat (nor on
a concat read by a conv); the score slice's SQNR against onnxruntime float and top-1 class per anchor, with the
rule and with ``--precision-policy int8``; micro bit-exact with tflite-micro on the written int16-concat model
(on a profile with an OS and on a microcontroller); ``--precision-policy int8`` writes the model the rule-less
policy writes; the float island an OS profile gets where int16 would be too coarse.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import micro_available

from converters.pipeline import convert_model, import_model
from converters.quality import default_precision as dp
from converters.quality.concat_ranges import MIN_LEVELS, input_levels, mixed_range_concats
from converters.quantize import op_key
from converters.report import TFLiteRunner

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
nn = torch.nn

OS_PROFILE, MCU_PROFILE = "rpi4-4gb", "stm32h743"
CLASSES, SIDE, BOXES = 6, 16, 4


class _YoloHead(nn.Module):
    """conv backbone -> (sigmoid(box) * 640, sigmoid(class logits)) -> Concat on the channel axis."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU())
        self.box, self.cls = nn.Conv2d(24, BOXES, 1), nn.Conv2d(24, CLASSES, 1)
        with torch.no_grad():  # class logits spread over a few units, as a trained detector's
            self.cls.weight.mul_(10.0)

    def forward(self, x):  # type: ignore[no-untyped-def]
        f = self.body(x)
        boxes = torch.sigmoid(self.box(f).flatten(2)) * 640.0
        return torch.cat([boxes, torch.sigmoid(self.cls(f).flatten(2))], 1)


class _ChannelConcat(nn.Module):
    """Two conv branches concatenated on channels; ``head``: the concat is the output, else a conv reads it."""

    def __init__(self, head: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(3, 8, 3, 2, 1)
        self.fuse = None if head else nn.Conv2d(16, 4, 1)
        self.head = head

    def forward(self, x):  # type: ignore[no-untyped-def]
        a = torch.relu(self.a(x))[:, :, ::2, ::2]
        y = torch.cat([a, torch.relu(self.b(x))], 1)
        return y if self.head else self.fuse(y)


class _NarrowInside(nn.Module):
    """Boxes and scores joined, then read by a conv: the rule must not fire (the conv is int8)."""

    def __init__(self) -> None:
        super().__init__()
        self.head, self.mix = _YoloHead(), nn.Conv1d(BOXES + CLASSES, 3, 1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.mix(self.head(x))


def _export(model: nn.Module, path: Path) -> Path:
    torch.onnx.export(model.eval(), torch.randn(1, 3, SIDE, SIDE), str(path), input_names=["x"],
                      output_names=["y"], opset_version=13, dynamo=False)
    return path


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 3, SIDE, SIDE)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("concat_ranges")
    np.save(d / "calib.npy", _images(24, 1))
    paths = {"yolo": _export(_YoloHead(), d / "yolo.onnx"), "channel": _export(_ChannelConcat(True), d / "ch.onnx"),
             "channel_conv": _export(_ChannelConcat(False), d / "chc.onnx"),
             "inside": _export(_NarrowInside(), d / "inside.onnx")}
    return paths, d / "calib.npy"


@pytest.fixture(scope="module")
def yolo(models, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The YOLO head converted for the OS profile with the default policy and with ``int8``."""
    paths, calib = models
    d = tmp_path_factory.mktemp("yolo_out")
    return {pol: convert_model(paths["yolo"], OS_PROFILE, calib, d / pol, formats=("tflite",), report_samples=2,
                               precision_policy=pol) for pol in ("auto", "int8")}


def _float_and_tflite(res, path: Path, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """onnxruntime float outputs and the written .tflite's (LiteRT, dequantized) on the same inputs."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.stack([s.run(None, {"x": x})[0] for x in xs]).astype(np.float64)
    runner, g = TFLiteRunner(res.tflite_path), res.graph
    got = np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in xs]).astype(np.float64)
    return ref, got.reshape(ref.shape)


def _db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))


def _assert_bit_exact(res) -> None:  # type: ignore[no-untyped-def]
    """micro == tflite-micro (np.array_equal, same dtype) on quantized held-out images."""
    from tflite_builder import assert_exact

    g = res.graph
    qp = res.plan.activations[g.inputs[0]]
    assert_exact(Path(res.tflite_path), [[qp.quantize(g.to_ir_layout(g.inputs[0], x))] for x in _images(3, 7)])


def _concat_types(path: str) -> list[str]:
    """The output tensor type of each CONCATENATION in a written .tflite (LiteRT's op details)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    types = {d["index"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}
    return [types[op["outputs"][0]] for op in it._get_ops_details() if op["op_name"] == "CONCATENATION"]


def test_fires_on_yolo_head_only(models, yolo):  # type: ignore[no-untyped-def]
    paths, calib = models
    pol = yolo["auto"].report["quantization"]["precision"]["default_policy"]
    (why, entry), = pol.items()
    assert why.startswith("mixed-range concatenation") and entry["precision"] == "int16"
    g = yolo["auto"].graph
    # the concat and the ADD(x, 0) requantizing the sigmoid scores (converters/importers/fixed_joins.py)
    assert sorted(op.kind for op in g.ops if op_key(op) in entry["ops"]) == ["ADD", "CONCATENATION"]
    assert _concat_types(yolo["auto"].tflite_path) == ["int16"]
    assert _concat_types(yolo["int8"].tflite_path) == ["int8"]
    assert yolo["auto"].plan.wide_outputs == g.outputs
    # an ordinary channel concat (as the output, or read by a conv) and a narrow concat read by a conv: nothing
    from converters.calibrate import calibrate

    data = np.load(calib)
    for name in ("channel", "channel_conv", "inside"):
        graph = import_model(str(paths[name]))
        ranges = calibrate(graph, data, "minmax")
        concats = [op for op in graph.ops if op.kind == "CONCATENATION"]
        assert concats and mixed_range_concats(graph, ranges) == []
        if name == "inside":  # narrow enough, but a conv reads the concat in int8
            assert min(input_levels(graph, concats[0], ranges)) < MIN_LEVELS
        else:
            assert min(input_levels(graph, concats[0], ranges)) > 3 * MIN_LEVELS
        assert not dp.choose(graph, True, "auto", ranges=ranges).precision


def test_score_slice_sqnr_and_top1(models, yolo):  # type: ignore[no-untyped-def]
    """Measured (16 held-out images): score slice 0.2 -> 36.2 dB, boxes 51.2 -> 51.2 dB, top-1 class per
    anchor 0.21 -> 0.90 (int8 -> rule), against onnxruntime float."""
    paths, _ = models
    held = _images(16, 2)
    ref, on = _float_and_tflite(yolo["auto"], paths["yolo"], held)
    _, off = _float_and_tflite(yolo["int8"], paths["yolo"], held)
    score_on, score_off = _db(ref[:, :, BOXES:], on[:, :, BOXES:]), _db(ref[:, :, BOXES:], off[:, :, BOXES:])
    box_on, box_off = _db(ref[:, :, :BOXES], on[:, :, :BOXES]), _db(ref[:, :, :BOXES], off[:, :, :BOXES])
    assert score_off < 8.0 and score_on > 30.0 and score_on > score_off + 25.0, (score_on, score_off)
    assert box_on > box_off - 0.5, (box_on, box_off)
    top1 = [float(np.mean(ref[:, 0, BOXES:].argmax(0) == q[:, 0, BOXES:].argmax(0))) for q in (on, off)]
    assert top1[0] > 0.8 and top1[0] > top1[1] + 0.3, top1
    print(f"score {score_off:.1f} -> {score_on:.1f} dB, boxes {box_off:.1f} -> {box_on:.1f} dB, top-1 {top1[1]:.3f} -> "
          f"{top1[0]:.3f}")


def test_micro_bit_exact(models, yolo, tmp_path):  # type: ignore[no-untyped-def]
    """The int16-concat model runs on micro bit-exact with tflite-micro; on the microcontroller profile the rule
    gives int16 too (every op involved has an int16 kernel in TFLite Micro)."""
    if not micro_available():
        pytest.skip("micro backend not installed")
    _assert_bit_exact(yolo["auto"])
    paths, calib = models
    mcu = convert_model(paths["yolo"], MCU_PROFILE, calib, tmp_path / "mcu", formats=("tflite",), report_samples=2)
    assert _concat_types(mcu.tflite_path) == ["int16"]
    _assert_bit_exact(mcu)


def test_int8_policy_unchanged(models, yolo, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """``--precision-policy int8`` is today's model: the same bytes as the default policy without the rule."""
    paths, calib = models
    monkeypatch.setitem(dp.RULES_ON, "concat_ranges", False)
    off = convert_model(paths["yolo"], OS_PROFILE, calib, tmp_path / "off", formats=("tflite",), report_samples=2)
    assert Path(off.tflite_path).read_bytes() == Path(yolo["int8"].tflite_path).read_bytes()
    assert Path(off.tflite_path).read_bytes() != Path(yolo["auto"].tflite_path).read_bytes()


def test_float_island_when_int16_is_too_coarse(models, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """Where int16 would still leave the narrow input fewer than MIN_LEVELS levels (here: the threshold raised to
    100, the head's scores get ~40 int16 levels), an OS profile gets a float island: the sigmoid, its
    requantization and the concat in float, a float32 output; the microcontroller keeps int16."""
    import converters.quality.concat_ranges as cr

    paths, calib = models
    monkeypatch.setattr(cr, "MIN_LEVELS", 100.0)
    res = convert_model(paths["yolo"], OS_PROFILE, calib, tmp_path / "f", formats=("tflite",), report_samples=2)
    (why, entry), = res.report["quantization"]["precision"]["default_policy"].items()
    assert entry["precision"] == "float" and "float island (int16 would leave it" in why
    assert sorted(op.kind for op in res.graph.ops if op_key(op) in entry["ops"]) == ["ADD", "CONCATENATION", "LOGISTIC"]
    assert _concat_types(res.tflite_path) == ["float32"]
    ref, got = _float_and_tflite(res, paths["yolo"], _images(16, 2))
    assert _db(ref[:, :, BOXES:], got[:, :, BOXES:]) > 40.0  # measured 44.3 dB (int16: 36.2 dB)
    if micro_available():
        _assert_bit_exact(res)
    mcu = convert_model(paths["yolo"], MCU_PROFILE, calib, tmp_path / "m", formats=("tflite",), report_samples=2)
    assert _concat_types(mcu.tflite_path) == ["int16"]


@pytest.mark.parametrize("name", ["unet", "squeezenet", "shufflenet"])
def test_the_rule_leaves_the_zoos_channel_concats_alone(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Real architectures' channel concats (skip connections, fire modules, channel shuffles; torch zoo, opset 13,
    the calibration of ``benchmarks.import_zoo``): the rule finds no mixed-range concat, and each has at least one
    CONCATENATION whose narrowest input keeps far more than MIN_LEVELS levels."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures.zoo import export_onnx, sample_inputs

    from converters.calibrate import calibrate
    from converters.pipeline import import_model
    from converters.quality.concat_ranges import MIN_LEVELS, input_levels, mixed_range_concats

    graph = import_model(export_onnx(name, 13, str(tmp_path)))
    ranges = calibrate(graph, sample_inputs(name, 32, seed=1), "auto")
    concats = [op for op in graph.ops if op.kind == "CONCATENATION"]
    assert concats, f"{name}: no CONCATENATION imported"
    assert min(min(input_levels(graph, op, ranges)) for op in concats) > 4 * MIN_LEVELS
    assert mixed_range_concats(graph, ranges) == []

"""Cross-layer equalization: the float function is kept, the shared channels' weight ranges are
equalized, ReLU6 pairs are left alone, and a depthwise-separable model with badly balanced
channels quantizes clearly better."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest

from converters.calibrate import float_session
from converters.ir import Graph, Op
from converters.quality.equalization import equalize, find_pairs, in_range, out_range
from helpers import IRTensors

ROOT = Path(__file__).resolve().parents[1]
#: Per-channel gains of the first layer spread over four decades (undone by the pointwise layer).
SPREAD = np.logspace(-2, 2, 16)


def _ds_graph(act_mid: str = "RELU", seed: int = 0) -> Graph:
    """conv 3x3 (4 -> 16) -> max pool -> depthwise 3x3 -> pointwise 1x1 (16 -> 8) -> FC, with the
    first layer's channels scaled by SPREAD and the depthwise input compensating."""
    rng = np.random.default_rng(seed)
    b = IRTensors()
    const, act = b.const, b.act

    same = {"stride": (1, 1), "dilation": (1, 1), "pads": (1, 1, 1, 1)}
    w1 = rng.standard_normal((16, 3, 3, 4)) * SPREAD[:, None, None, None]
    wd = rng.standard_normal((1, 3, 3, 16)) / SPREAD
    ops = [
        Op("CONV_2D", [act("x", (1, 8, 8, 4)), const("w1", w1), const("b1", rng.standard_normal(16) * SPREAD)],
           [act("y1", (1, 8, 8, 16))], dict(same, act="RELU"), "conv"),
        Op("MAX_POOL_2D", ["y1"], [act("p1", (1, 4, 4, 16))],
           {"kernel": (2, 2), "stride": (2, 2), "pads": (0, 0, 0, 0), "act": "NONE"}, "pool"),
        Op("DEPTHWISE_CONV_2D", ["p1", const("wd", wd), const("bd", rng.standard_normal(16) * 0.1)],
           [act("y2", (1, 4, 4, 16))], dict(same, act=act_mid, multiplier=1), "dw"),
        Op("CONV_2D", ["y2", const("wp", rng.standard_normal((8, 1, 1, 16))), const("bp", np.zeros(8))],
           [act("y3", (1, 4, 4, 8))], {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "act": "RELU"},
           "pw"),
        Op("RESHAPE", ["y3"], [act("flat", (1, 128))], {}, "flatten"),
        Op("FULLY_CONNECTED", ["flat", const("wf", rng.standard_normal((10, 128)) * 0.1),
                               const("bf", np.zeros(10))], [act("out", (1, 10))], {"act": "NONE"}, "fc"),
    ]
    return b.graph("ds", ops, ["x"], ["out"])


def _outputs(graph: Graph, xs: np.ndarray) -> np.ndarray:
    sess = float_session(graph, expose_all=False)
    return np.stack([sess.run(None, {"x": x})[0] for x in xs])


def test_function_is_preserved_and_ranges_equalized():
    g = _ds_graph()
    before = copy.deepcopy(g)
    xs = np.random.default_rng(1).standard_normal((8, 1, 8, 8, 4)).astype(np.float32)
    info = equalize(g)
    assert info["pairs"] == 2  # conv -> (pool) -> depthwise, depthwise -> pointwise; not through RESHAPE to FC
    assert [tuple(p) for p in info["layers"]] == [("conv", "dw"), ("dw", "pw")]
    ref, got = _outputs(before, xs), _outputs(g, xs)
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
    for p in find_pairs(g):  # each shared channel: the same range on both sides
        r1 = out_range(p.first, g.tensors[p.first.inputs[1]].data)
        r2 = in_range(p.second, g.tensors[p.second.inputs[1]].data)
        np.testing.assert_allclose(r1, r2, rtol=0.02)
    r_before = out_range(before.ops[0], before.tensors["w1"].data)
    r_after = out_range(g.ops[0], g.tensors["w1"].data)
    assert r_before.max() / r_before.min() > 1000 and r_after.max() / r_after.min() < 30
    assert info["max_ratio_before"] > 1000 and info["max_ratio_after"] < 1.05


def test_relu6_between_layers_is_not_equalized():
    g = _ds_graph(act_mid="RELU6")
    w_pw = g.tensors["wp"].data.copy()
    info = equalize(g)
    assert [tuple(p) for p in info["layers"]] == [("conv", "dw")]  # dw (RELU6) -> pw is skipped
    assert np.array_equal(g.tensors["wp"].data, w_pw)


def test_real_models_keep_their_function():
    from converters.pipeline import import_model

    g = import_model(ROOT / "converters" / "data" / "digits_cnn.onnx")
    before = copy.deepcopy(g)
    xs = np.random.default_rng(2).uniform(0, 16, (8,) + g.tensors[g.inputs[0]].shape).astype(np.float32)
    info = equalize(g)
    assert info["pairs"] >= 1
    sess_b, sess_a = float_session(before, expose_all=False), float_session(g, expose_all=False)
    ref = np.stack([sess_b.run(None, {g.inputs[0]: x})[0] for x in xs])
    got = np.stack([sess_a.run(None, {g.inputs[0]: x})[0] for x in xs])
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_kws_keeps_its_function(mlperf_models):  # type: ignore[no-untyped-def]
    from converters.pipeline import import_model

    g = import_model(mlperf_models / "kws_ref_model_float32.tflite")
    before = copy.deepcopy(g)
    xs = np.random.default_rng(3).uniform(-20, 20, (4,) + g.tensors[g.inputs[0]].shape).astype(np.float32)
    assert equalize(g)["pairs"] == 8
    ref = np.stack([float_session(before, expose_all=False).run(None, {g.inputs[0]: x})[0] for x in xs])
    got = np.stack([float_session(g, expose_all=False).run(None, {g.inputs[0]: x})[0] for x in xs])
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))


def _torch_ds_model(path: Path) -> None:
    """The badly balanced depthwise-separable model of :func:`_ds_graph` in torch, exported to ONNX."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),
                          nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
    gain = torch.tensor(SPREAD, dtype=torch.float32)
    with torch.no_grad():
        model[0].weight.mul_(gain[:, None, None, None])
        model[0].bias.mul_(gain)
        model[3].weight.div_(gain[:, None, None, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 4, 8, 8),), str(path), dynamo=False, input_names=["x"])


def test_equalization_helps_a_badly_balanced_depthwise_separable_model(tmp_path):  # type: ignore[no-untyped-def]
    """The same model converted with and without equalization: the int8 output's SQNR against float
    rises by more than 6 dB (the conv's small channels no longer vanish under one int8 scale)."""
    import onnxruntime as ort

    from converters.pipeline import convert_model
    from converters.quality.metrics import sqnr_db
    from converters.report import TFLiteRunner

    path = tmp_path / "ds.onnx"
    _torch_ds_model(path)
    rng = np.random.default_rng(4)
    calib = rng.standard_normal((64, 1, 4, 8, 8)).astype(np.float32)
    held = rng.standard_normal((64, 1, 4, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {"x": x})[0] for x in held]).reshape(len(held), -1).astype(np.float64)
    db = {}
    for eq in (False, True):
        res = convert_model(path, "rpi4-4gb", calib, tmp_path / str(eq), formats=["tflite"], equalize=eq,
                            report_samples=4)
        info = res.report["quantization"]["equalization"]
        assert (info is not None and info["pairs"] == 2) if eq else info is None
        got = TFLiteRunner(res.tflite_path).run_batch(held.transpose(0, 1, 3, 4, 2)).astype(np.float64)
        db[eq] = sqnr_db(float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2)))
    assert db[True] > db[False] + 6.0, db


def test_cli_equalizes_by_default_and_no_equalize_turns_it_off(tmp_path):  # type: ignore[no-untyped-def]
    import json

    from converters.cli import main as edge_convert

    data = ROOT / "converters" / "data"
    pairs = {}
    for flag in ([], ["--no-equalize"]):
        out = tmp_path / ("off" if flag else "on")
        rc = edge_convert(["convert", str(data / "digits_cnn.onnx"), "--profile", "rpi4-4gb", "--calib",
                           str(data / "digits_calib.npz"), "--format", "tflite", "-o", str(out)] + flag)
        assert rc == 0
        eq = json.loads((out / "report.json").read_text())["quantization"]["equalization"]
        pairs[bool(flag)] = None if eq is None else eq["pairs"]
    assert pairs == {False: 1, True: None}

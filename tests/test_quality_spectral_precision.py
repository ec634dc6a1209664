"""The log-spectrum rule of the default precision policy (converters/quality/spectral_precision.py).

Small ONNX front ends built with onnx.helper: frames -> DFT-matrix MatMuls (re, im) -> re^2 + im^2 -> mel
MatMul -> Log(x + eps) ("power"), and the magnitude form sqrt(re^2 + im^2) -> mel -> Log(max(x, eps)) * k
("magnitude"). Each converted with the rule on and off (``RULES_ON["spectral"]``): the chain found, int8 SQNR
against onnxruntime float higher with the rule on a profile with an OS, micro == tflite-micro on the written
.tflite, and the microcontroller profile's model unchanged by the rule.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import micro_available

from converters.pipeline import convert_model, import_model
from converters.quality import default_precision as dp
from converters.quality.spectral_precision import log_spectrum_chains
from converters.report import TFLiteRunner

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper

OS_PROFILE, MCU_PROFILE = "rpi4-4gb", "stm32h743"
FRAMES, N, MELS = 6, 64, 10
BINS = N // 2 + 1


def _mel(bins: int, mels: int) -> np.ndarray:
    """A triangular, non-negative filterbank [bins, mels] (linear spacing is enough here)."""
    edges = np.linspace(0, bins - 1, mels + 2)
    k = np.arange(bins)[:, None]
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    return np.maximum(0, np.minimum((k - lo) / (mid - lo), (hi - k) / (hi - mid))).astype(np.float32)


def _model(kind: str, path: Path) -> Path:
    """``power``: log(mel @ (re^2 + im^2) + eps); ``magnitude``: log(max(mel @ sqrt(re^2 + im^2), eps)) * k;
    ``plain``: log(relu(x @ W) + 1), a LOG that is no spectrum."""
    n = np.arange(N)[:, None] * np.arange(BINS)[None]
    cos = (np.cos(2 * np.pi * n / N) * np.hanning(N)[:, None]).astype(np.float32)
    sin = (-np.sin(2 * np.pi * n / N) * np.hanning(N)[:, None]).astype(np.float32)
    inits = [numpy_helper.from_array(cos, "C"), numpy_helper.from_array(sin, "S"),
             numpy_helper.from_array(_mel(BINS, MELS), "M"), numpy_helper.from_array(np.float32([1e-6]), "eps"),
             numpy_helper.from_array(np.float32([0.4343]), "k"), numpy_helper.from_array(np.float32([1.0]), "one")]
    nodes = [helper.make_node("MatMul", ["x", "C"], ["re"]), helper.make_node("MatMul", ["x", "S"], ["im"])]
    if kind == "power":
        nodes += [helper.make_node("Mul", ["re", "re"], ["re2"]), helper.make_node("Mul", ["im", "im"], ["im2"]),
                  helper.make_node("Add", ["re2", "im2"], ["p"]), helper.make_node("MatMul", ["p", "M"], ["mel"]),
                  helper.make_node("Add", ["mel", "eps"], ["me"]), helper.make_node("Log", ["me"], ["y"])]
    elif kind == "magnitude":
        nodes += [helper.make_node("Pow", ["re", "two"], ["re2"]), helper.make_node("Pow", ["im", "two"], ["im2"]),
                  helper.make_node("Add", ["re2", "im2"], ["p"]), helper.make_node("Sqrt", ["p"], ["a"]),
                  helper.make_node("MatMul", ["a", "M"], ["mel"]), helper.make_node("Max", ["mel", "eps"], ["me"]),
                  helper.make_node("Log", ["me"], ["l"]), helper.make_node("Mul", ["l", "k"], ["y"])]
        inits.append(numpy_helper.from_array(np.float32(2.0), "two"))
    else:
        nodes += [helper.make_node("Relu", ["re"], ["r"]), helper.make_node("Add", ["r", "one"], ["r1"]),
                  helper.make_node("Log", ["r1"], ["y"])]
    out = MELS if kind != "plain" else BINS
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, FRAMES, N])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, FRAMES, out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    p = path / f"{kind}.onnx"
    onnx.save(m, str(p))
    return p


def _frames(n: int, seed: int) -> np.ndarray:
    """Speech-like frames: a few tones whose levels span two decades, plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(N)
    out = np.zeros((n, 1, FRAMES, N), np.float32)
    for i in range(n):
        for f in range(FRAMES):
            amps = 10.0 ** rng.uniform(-2, 0, 4)
            freqs = rng.uniform(1, BINS - 2, 4)
            x = sum(a * np.sin(2 * np.pi * fr * t / N + rng.uniform(0, 6.3)) for a, fr in zip(amps, freqs))
            out[i, 0, f] = x + 1e-3 * rng.standard_normal(N)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("spectral_precision")
    np.save(d / "calib.npy", _frames(24, 1))
    return {k: _model(k, d) for k in ("power", "magnitude", "plain")}, d / "calib.npy"


def _sqnr_vs_onnxruntime(res, path: Path, xs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """SQNR (dB) of the written .tflite against onnxruntime float on the same inputs."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.stack([s.run(None, {"x": x})[0] for x in xs]).astype(np.float64)
    runner, g = TFLiteRunner(res.tflite_path), res.graph
    got = np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in xs]).astype(np.float64).reshape(ref.shape)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))


def _assert_bit_exact(res) -> None:  # type: ignore[no-untyped-def]
    """micro == tflite-micro (np.array_equal) on quantized held-out inputs."""
    from tflite_builder import assert_exact

    g = res.graph
    qp = res.plan.activations[g.inputs[0]]
    assert_exact(Path(res.tflite_path), [[qp.quantize(g.to_ir_layout(g.inputs[0], x))] for x in _frames(3, 7)])


def test_chains_found_by_structure(models):  # type: ignore[no-untyped-def]
    paths, _ = models
    kinds = {k: [[op.kind for op in c] for c in log_spectrum_chains(import_model(str(p)))] for k, p in paths.items()}
    power, = kinds["power"]
    assert power[-1] == "LOG" and power.count("MUL") == 2
    magnitude, = kinds["magnitude"]
    assert "SQRT" in magnitude and "MAXIMUM" in magnitude and magnitude[-2:] == ["LOG", "MUL"]
    assert kinds["plain"] == []  # a LOG that is not fed by squares
    # the two DFT MatMuls (re, im) and the mel MatMul; nothing before the DFT (the input stays int8)
    assert all(k in ("MUL", "SQUARE", "ADD", "FULLY_CONNECTED", "BATCH_MATMUL", "SQRT", "MAXIMUM", "LOG", "RESHAPE")
               for k in power + magnitude)
    assert power.count("FULLY_CONNECTED") + power.count("BATCH_MATMUL") == 3


@pytest.mark.parametrize("kind", ["power", "magnitude"])
def test_rule_beats_int8_on_os_profile(models, tmp_path, monkeypatch, kind):  # type: ignore[no-untyped-def]
    paths, calib = models
    held = _frames(16, 2)
    on = convert_model(paths[kind], OS_PROFILE, calib, tmp_path / "on", formats=("tflite",), report_samples=4)
    pol = on.report["quantization"]["precision"]["default_policy"]
    assert any(why.startswith("log spectrum: float island") and e["precision"] == "float" for why, e in pol.items())
    monkeypatch.setitem(dp.RULES_ON, "spectral", False)
    off = convert_model(paths[kind], OS_PROFILE, calib, tmp_path / "off", formats=("tflite",), report_samples=4)
    assert not any(why.startswith("log spectrum") for why in off.report["quantization"]["precision"]
                   .get("default_policy", {}))
    db_on, db_off = _sqnr_vs_onnxruntime(on, paths[kind], held), _sqnr_vs_onnxruntime(off, paths[kind], held)
    # measured: power 11.2 vs -0.3 dB, magnitude 10.3 vs 8.2 dB (what is left is the int8 input frames)
    assert db_on > db_off + {"power": 6.0, "magnitude": 1.5}[kind], (db_on, db_off)
    if micro_available():
        _assert_bit_exact(on)


@pytest.mark.parametrize("kind", ["power", "plain"])
def test_unchanged_where_the_rule_does_not_apply(models, tmp_path, monkeypatch, kind):  # type: ignore[no-untyped-def]
    """The microcontroller profile's model, and a model without a log spectrum, are the same bytes with the
    rule on and off."""
    paths, calib = models
    profile = MCU_PROFILE if kind == "power" else OS_PROFILE
    on = convert_model(paths[kind], profile, calib, tmp_path / "on", formats=("tflite",), report_samples=2)
    monkeypatch.setitem(dp.RULES_ON, "spectral", False)
    off = convert_model(paths[kind], profile, calib, tmp_path / "off", formats=("tflite",), report_samples=2)
    assert Path(on.tflite_path).read_bytes() == Path(off.tflite_path).read_bytes()
    if micro_available() and kind == "power":
        _assert_bit_exact(on)

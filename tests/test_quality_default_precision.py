"""The default precision policy (converters/quality/default_precision.py).

Small torch models exported to ONNX: an LSTM and a GRU keyword spotter (the unrolled recurrence goes
16x8 on every profile), a LayerNorm MLP at opset 13 (torch's ReduceMean/Sub/Pow/Sqrt/Div decomposition)
and 17 (LayerNormalization; float island on an OS profile, int8 on a microcontroller). Each: the ops found,
the precisions chosen and the report's reasons, SQNR against float above the all-int8 model on held-out
inputs, micro bit-exact against tflite-micro, the QDQ .onnx on ONNX Runtime, and ``--precision-policy int8``
giving the all-int8 model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import micro_available

from converters.pipeline import convert_model, import_model
from converters.quality import default_precision as dp
from converters.quantize import INT16_KINDS, op_key
from converters.report import OnnxRunner, TFLiteRunner
from torch_export import export_cases

torch = pytest.importorskip("torch")
nn = torch.nn

OS_PROFILE, MCU_PROFILE = "rpi4-4gb", "stm32h743"
SEQ, FEAT = 12, 6


class _Rnn(nn.Module):
    def __init__(self, cell: str) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(FEAT, 16, batch_first=True)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


class _LayerNormMlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(FEAT, 24), nn.LayerNorm(24), nn.Linear(24, 5)
        with torch.no_grad():  # one large channel: the statistics int8 handles badly
            self.a.bias[0] = 6.0
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.2, 0.2)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.b(torch.relu(self.norm(self.a(x))))


class _Magnitude(nn.Module):
    """A learned "STFT" (one linear layer giving real and imaginary parts), its magnitude, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stft, self.b = nn.Linear(FEAT, 32), nn.Linear(16, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        z = self.stft(x)
        re, im = z[..., :16], z[..., 16:]
        return self.b(torch.sqrt(re ** 2 + im ** 2))


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(FEAT, 16), nn.Linear(16, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.b(torch.relu(self.a(x)))


CASES = {"lstm": (lambda: _Rnn("lstm"), 13), "gru": (lambda: _Rnn("gru"), 13),
         "layernorm13": (_LayerNormMlp, 13), "layernorm17": (_LayerNormMlp, 17), "mlp": (_Mlp, 13),
         "magnitude": (_Magnitude, 13)}


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, SEQ, FEAT)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("default_precision")
    paths = export_cases(CASES, d, _inputs(1, 0)[0])
    np.save(d / "calib.npy", _inputs(32, 1))
    return paths, d / "calib.npy"


def _float(path: Path, xs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {"x": x})[0] for x in xs])


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64).reshape(ref.shape)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))


def _tflite_db(res, path: Path, xs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    runner, g = TFLiteRunner(res.tflite_path), res.graph
    got = np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in xs])
    return _sqnr(_float(path, xs), got)


def _onnx_db(res, path: Path, xs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    runner = OnnxRunner(res.onnx_path, res.plan, res.graph)
    return _sqnr(_float(path, xs), np.stack([runner.run(x)[0] for x in xs]))


def _assert_bit_exact(res, n: int = 4) -> None:  # type: ignore[no-untyped-def]
    """micro == tflite-micro (np.array_equal) on quantized held-out inputs."""
    from tflite_builder import run_micro, run_tflm

    g, plan = res.graph, res.plan
    qp = plan.activations[g.inputs[0]]
    sets = [[qp.quantize(g.to_ir_layout(g.inputs[0], x))] for x in _inputs(n, 7)]
    ref, got = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)
    for a, b in zip(ref, got):
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and np.array_equal(x, y)


# -- detection from the graph's structure ---------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrence_found_and_int16_on_every_profile(models, cell):  # type: ignore[no-untyped-def]
    g = import_model(models[0][cell])
    rec = dp.recurrence_ops(g)
    kinds = {op.kind for op in rec}
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL", "ADD"} <= kinds <= set(INT16_KINDS)
    assert all(op.attrs["recurrence"] == cell.upper() for op in rec)
    head = [op for op in g.ops if op.kind == "FULLY_CONNECTED" and not op.attrs.get("recurrence")]
    assert len(head) == 1  # the classifier: reads the hidden state, not part of the recurrence
    for os_profile in (True, False):
        c = dp.choose(g, os_profile)
        assert all(c.precision[op_key(op)] == "int16" for op in rec)
        assert c.reasons[op_key(rec[0])] == f"{cell.upper()} recurrence: int16 as TFLM's integer LSTM"
        assert c.precision[op_key(head[0])] == "int16"  # reads the int16 state directly
        assert "recurrence output" in c.reasons[op_key(head[0])]
        assert set(c.precision.values()) == {"int16"}
    assert dp.choose(g, True, "int8").precision == {}


@pytest.mark.parametrize("name", ["layernorm13", "layernorm17"])
def test_layer_norm_chain_found(models, name):  # type: ignore[no-untyped-def]
    g = import_model(models[0][name])
    chains = dp.layer_norm_chains(g)
    assert len(chains) == 1
    assert [op.kind for op in chains[0]] == ["MEAN", "SUB", "MUL", "MEAN", "ADD", "RSQRT", "MUL", "MUL", "ADD"]
    on_os = dp.choose(g, os_profile=True)
    assert {on_os.precision[op_key(op)] for op in chains[0]} == {"float"}  # MEAN/RSQRT: no int16 kernel
    assert len(on_os.precision) == 9 and all(r.startswith("LayerNorm statistics: float island")
                                             for r in on_os.reasons.values())
    assert dp.choose(g, os_profile=False).precision == {}  # microcontroller: int8 rather than float


def test_layer_norm_int16_when_every_op_has_an_int16_kernel(models, monkeypatch):  # type: ignore[no-untyped-def]
    """The int16 branch: taken (on every profile) only when the whole chain has int16 kernels."""
    g = import_model(models[0]["layernorm17"])
    monkeypatch.setattr(dp, "INT16_KINDS", tuple(INT16_KINDS) + ("MEAN", "RSQRT"))
    for os_profile in (True, False):
        c = dp.choose(g, os_profile)
        assert set(c.precision.values()) == {"int16"} and len(c.precision) == 9
        assert all(r.startswith("LayerNorm statistics: int16") for r in c.reasons.values())


def test_plain_model_untouched(models):  # type: ignore[no-untyped-def]
    g = import_model(models[0]["mlp"])
    assert not dp.recurrence_ops(g) and not dp.layer_norm_chains(g) and not dp.magnitude_chains(g)
    assert dp.choose(g, True).precision == {}


def test_magnitude_chain_found_and_float_only_with_an_os(models):  # type: ignore[no-untyped-def]
    g = import_model(models[0]["magnitude"])
    (chain,) = dp.magnitude_chains(g)
    assert [op.kind for op in chain] == ["MUL", "MUL", "ADD", "SQRT"]
    assert set(dp.choose(g, True).precision.values()) == {"float"} and len(dp.choose(g, True).precision) == 4
    assert dp.choose(g, False).precision == {}


def test_unknown_policy_is_one_line_error(models):  # type: ignore[no-untyped-def]
    from edge_runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="--precision-policy must be one of auto, int8"):
        dp.choose(import_model(models[0]["mlp"]), True, "int4")


# -- converted models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,profile", [("lstm", OS_PROFILE), ("gru", OS_PROFILE), ("layernorm17", OS_PROFILE),
                                          ("layernorm13", OS_PROFILE), ("lstm", MCU_PROFILE),
                                          ("magnitude", OS_PROFILE)])
def test_policy_beats_int8_and_runs_everywhere(models, tmp_path, name, profile):  # type: ignore[no-untyped-def]
    paths, calib = models
    held = _inputs(64, 2)
    fmt = ("tflite", "onnx")
    auto = convert_model(paths[name], profile, calib, tmp_path / "auto", formats=fmt, report_samples=4)
    int8 = convert_model(paths[name], profile, calib, tmp_path / "int8", formats=fmt, report_samples=4,
                         precision_policy="int8")
    prec = auto.report["quantization"]["precision"]
    pol = prec["default_policy"]
    if name.startswith("layernorm"):
        (why, entry), = pol.items()
        assert why.startswith("LayerNorm statistics: float island") and entry["precision"] == "float"
        assert len(entry["ops"]) == 9 and len(prec["float_islands"]) == 9
    elif name == "magnitude":
        (why, entry), = pol.items()
        assert why.startswith("magnitude sqrt(sum of squares): float island") and entry["precision"] == "float"
        assert len(entry["ops"]) == 4
    else:
        cell = name.upper()
        assert pol[f"{cell} recurrence: int16 as TFLM's integer LSTM"]["precision"] == "int16"
        assert prec["int16_intermediates"] and prec["activations"] == "mixed int8/int16"
    assert "default_policy" not in int8.report["quantization"]["precision"]
    # int8 everywhere, except SQRT, which has no int8 kernel anywhere (always a float island)
    assert list(int8.plan.op_precision.values()) == (["float"] if name == "magnitude" else [])
    assert not int8.plan.tensor_dtypes
    db_auto, db_int8 = _tflite_db(auto, paths[name], held), _tflite_db(int8, paths[name], held)
    assert db_auto > db_int8 + 0.5, (db_auto, db_int8)
    assert abs(_onnx_db(auto, paths[name], held) - db_auto) < 1.0  # the QDQ .onnx on onnxruntime agrees
    if micro_available():
        _assert_bit_exact(auto)


def test_int8_policy_is_todays_model(models, tmp_path):  # type: ignore[no-untyped-def]
    """``int8`` writes the same bytes as a model the policy finds nothing in, and no int16/float op."""
    paths, calib = models
    a = convert_model(paths["mlp"], OS_PROFILE, calib, tmp_path / "a", formats=("tflite",), report_samples=4)
    b = convert_model(paths["mlp"], OS_PROFILE, calib, tmp_path / "b", formats=("tflite",), report_samples=4,
                      precision_policy="int8")
    assert Path(a.tflite_path).read_bytes() == Path(b.tflite_path).read_bytes()


def test_cli_flag(models, tmp_path, capsys):  # type: ignore[no-untyped-def]
    from converters.cli import main

    paths, calib = models
    assert main(["convert", str(paths["gru"]), "--profile", OS_PROFILE, "--calib", str(calib), "-o",
                 str(tmp_path / "o"), "--format", "tflite"]) == 0
    assert "precision policy (--precision-policy int8 turns it off):" in capsys.readouterr().out
    assert main(["convert", str(paths["gru"]), "--profile", OS_PROFILE, "--calib", str(calib), "-o",
                 str(tmp_path / "p"), "--format", "tflite", "--precision-policy", "int8", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert "default_policy" not in rep["quantization"]["precision"]
    with pytest.raises(SystemExit) as e:
        main(["convert", str(paths["gru"]), "--profile", OS_PROFILE, "--calib", str(calib), "--precision-policy",
              "int4"])
    assert e.value.code == 2


def test_target_sqnr_starts_from_the_policy(models, tmp_path):  # type: ignore[no-untyped-def]
    """``--target-sqnr`` searches from the policy's choices: an easy target keeps the int16 recurrence (the
    model is never worse than the default), and the report keeps the policy's reasons."""
    paths, calib = models
    auto = convert_model(paths["lstm"], OS_PROFILE, calib, tmp_path / "auto", formats=("tflite",), report_samples=4)
    easy = convert_model(paths["lstm"], OS_PROFILE, calib, tmp_path / "easy", formats=("tflite",), report_samples=4,
                         target_sqnr=5.0)
    assert easy.report["mixed_precision"]["met"] and easy.report["mixed_precision"]["changed_layers"] == []
    assert easy.plan.op_precision == auto.plan.op_precision
    assert Path(easy.tflite_path).read_bytes() != b"" and "default_policy" in easy.report["quantization"]["precision"]

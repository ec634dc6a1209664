"""[HARDEN] Hostile models through the weight decoders: sparse tensors (DENSIFY and the TFLite sparsity
format), float16 weights decoded by DEQUANTIZE, and MediaPipe's custom Convolution2DTransposeBias.

Every field those decoders read comes from the file. Each hand-written case below breaks one of them
(segments, indices, traversal order, block map, dimension sizes, index vector types and lengths, the
stored values, float16 data, a DENSIFY of an activation, the custom op's inputs, shapes and options)
and must give one clear line (an ``EdgeRuntimeError`` naming the tensor or op and the problem) from
``edge_runtime.load`` on micro and on LiteRT (whose native code must never see the model: the
structural check refuses it first) and from ``edge-convert convert``: no traceback, no signal, no
allocation of a dense shape the file cannot back. float16 weights holding NaN or infinity decode
like float32 ones: the runtimes load them, the converter refuses them as it refuses any non-finite
weight. A fixed-seed campaign of structure-aware mutants of small seed models of these paths
(tests/fuzz_structure.py) must end cleanly on both backends.
"""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import fuzz_structure as fz
import numpy as np
import pytest

from edge_runtime.errors import EdgeRuntimeError
from alloc_probe import traced_allocations

pytest.importorskip("ai_edge_litert")
schema = fz._schema()

Mutator = Callable[[Any], None]


def _tensor(m: Any, name: str) -> Any:
    return next(t for t in m.subgraphs[0].tensors if _name(t) == name)


def _name(t: Any) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _dm(m: Any, name: str, level: int) -> Any:
    return _tensor(m, name).sparsity.dimMetadata[level]


def _custom_op(m: Any) -> Any:
    return next(op for op in m.subgraphs[0].operators if op.customOptions is not None)


def _set_vector(dm: Any, attr: str, values: list[int]) -> None:
    vec = getattr(dm, attr)
    vec.values = np.array(values, np.asarray(vec.values).dtype)


def _huge_dense(m: Any) -> None:
    """w1 and its DENSIFY output 2^20 x 2^20 (2^40 elements), with dimension metadata that agree."""
    for t in m.subgraphs[0].tensors:
        if _name(t) in ("w1", "w1_densified"):
            t.shape = np.array([1 << 20, 1 << 20], np.int32)
    sp = _tensor(m, "w1").sparsity
    sp.blockMap = np.zeros(0, np.int32)
    sp.traversalOrder = np.array([0, 1], np.int32)
    rows, cols = copy.deepcopy(sp.dimMetadata[0]), copy.deepcopy(sp.dimMetadata[1])
    rows.denseSize = 1 << 20
    cols.denseSize = 1 << 20
    sp.dimMetadata = [rows, cols]


def _sparse_activation(m: Any) -> None:
    _tensor(m, "x").sparsity = copy.deepcopy(_tensor(m, "b").sparsity)


def _sparse_read_by_add(m: Any) -> None:
    """The sparse bias read as it is (compressed) by FULLY_CONNECTED's bias input instead of through DENSIFY."""
    sg = m.subgraphs[0]
    b = next(i for i, t in enumerate(sg.tensors) if _name(t) == "b")
    fc = sg.operators[-1]
    fc.inputs = np.array([fc.inputs[0], fc.inputs[1], b], np.int32)
    sg.operators = [op for op in sg.operators if not (len(op.inputs) == 1 and op.inputs[0] == b)]


def _densify_of_activation(m: Any) -> None:
    """DENSIFY reads the model input (an activation) instead of a sparse constant."""
    sg = m.subgraphs[0]
    x = next(i for i, t in enumerate(sg.tensors) if _name(t) == "x")
    w1 = next(i for i, t in enumerate(sg.tensors) if _name(t) == "w1")
    sg.tensors[x].shape = np.array(sg.tensors[w1].shape, np.int32)
    sg.operators[0].inputs = np.array([x], np.int32)


def _decoded_weight_written_twice(m: Any) -> None:
    """A copy of w2's DEQUANTIZE placed first (reading the DENSIFY output before it is written; found by the
    campaign): once the weights are folded into a constant, it would write into them."""
    sg = m.subgraphs[0]
    deq = next(op for op in sg.operators if m.operatorCodes[op.opcodeIndex].builtinCode == 6)
    sg.operators.insert(0, copy.deepcopy(deq))


def _fp16_buffer(m: Any, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    t = _tensor(m, "conv_w_fp16")
    m.buffers[t.buffer].data = fn(np.array(m.buffers[t.buffer].data, np.uint8))


def _fp16_special(value: float) -> Mutator:
    def mutate(m: Any) -> None:
        def put(data: np.ndarray) -> np.ndarray:
            h = data.view(np.float16).copy()
            h[3] = np.float16(value)
            return h.view(np.uint8)
        _fp16_buffer(m, put)
    return mutate


def _dequantize_out_type(m: Any) -> None:
    _tensor(m, "conv_w").type = 9  # INT8: a float16 -> int8 "DEQUANTIZE"


def _custom_inputs(inputs: Callable[[list[int]], list[int]]) -> Mutator:
    def mutate(m: Any) -> None:
        op = _custom_op(m)
        op.inputs = np.array(inputs(list(op.inputs)), np.int32)
    return mutate


def _custom_options(raw: bytes | None) -> Mutator:
    def mutate(m: Any) -> None:
        _custom_op(m).customOptions = None if raw is None else np.frombuffer(raw, np.uint8)
    return mutate


def _custom_tensor(name: str, shape: list[int] | None = None, type_code: int | None = None) -> Mutator:
    def mutate(m: Any) -> None:
        t = _tensor(m, name)
        if shape is not None:
            t.shape = np.array(shape, np.int32)
        if type_code is not None:
            t.type = type_code
        if t.buffer:  # keep the constant's data the size its new shape and type need
            size = int(np.prod(t.shape, dtype=np.int64)) * {0: 4, 1: 2, 9: 1}[t.type]
            m.buffers[t.buffer].data = np.resize(np.array(m.buffers[t.buffer].data, np.uint8), size)
    return mutate


def _weights_not_constant(m: Any) -> None:
    _tensor(m, "up_w").buffer = 0


#: name -> (seed, mutation, words the one-line message must contain (case-insensitive))
SPARSE_CASES: dict[str, tuple[str, Mutator, tuple[str, ...]]] = {
    "segments_not_monotonic": ("sparse", lambda m: _set_vector(_dm(m, "w2", 1), "arraySegments", [0, 3, 1, 4, 6]),
                               ("w2", "segments")),
    "segments_wrong_length": ("sparse", lambda m: _set_vector(_dm(m, "w2", 1), "arraySegments", [0, 2, 4]),
                              ("w2", "segment")),
    "segments_past_indices": ("sparse", lambda m: _set_vector(
        _dm(m, "b", 0), "arraySegments", [0, 1 << 30]), ("'b'", "segments")),
    "indices_out_of_range": ("sparse", lambda m: _set_vector(
        _dm(m, "w2", 1), "arrayIndices", [99] + list(_dm(m, "w2", 1).arrayIndices.values[1:])),
        ("w2", "indices", "outside")),
    "indices_negative": ("sparse", lambda m: _set_vector(
        _dm(m, "b", 0), "arrayIndices", [-5] + list(_dm(m, "b", 0).arrayIndices.values[1:])), ("'b'", "indices")),
    "indices_not_increasing": ("sparse", lambda m: _set_vector(
        _dm(m, "w1", 1), "arrayIndices", [1, 0] + list(_dm(m, "w1", 1).arrayIndices.values[2:])),
        ("w1", "increasing")),
    "indices_wrong_length": ("sparse", lambda m: _set_vector(
        _dm(m, "w2", 1), "arrayIndices", list(_dm(m, "w2", 1).arrayIndices.values[:-1])), ("w2",)),
    "order_not_permutation": ("sparse", lambda m: setattr(
        _tensor(m, "w1").sparsity, "traversalOrder", np.array([0, 0, 2], np.int32)), ("w1", "traversal order")),
    "order_out_of_range": ("sparse", lambda m: setattr(
        _tensor(m, "w2").sparsity, "traversalOrder", np.array([1, 7], np.int32)), ("w2", "traversal order")),
    "block_map_missing_dim": ("sparse", lambda m: setattr(
        _tensor(m, "w1").sparsity, "blockMap", np.array([5], np.int32)), ("w1", "block map")),
    "block_map_not_ascending": ("sparse", lambda m: (
        setattr(_tensor(m, "w1").sparsity, "blockMap", np.array([1, 0], np.int32)),
        setattr(_tensor(m, "w1").sparsity, "traversalOrder", np.array([0, 1, 2, 3], np.int32)),
        _tensor(m, "w1").sparsity.dimMetadata.append(copy.deepcopy(_dm(m, "w1", 2)))), ("w1", "block map")),
    "block_size_not_dividing": ("sparse", lambda m: setattr(_dm(m, "w1", 2), "denseSize", 3), ("w1", "block")),
    "dense_size_mismatch": ("sparse", lambda m: setattr(_dm(m, "w1", 0), "denseSize", 1 << 30), ("w1", "dense")),
    "dense_product_2_pow_40": ("sparse", _huge_dense, ("w1",)),
    "unknown_level_format": ("sparse", lambda m: setattr(_dm(m, "w2", 1), "format", 2), ("w2", "format")),
    "metadata_count": ("sparse", lambda m: _tensor(m, "w2").sparsity.dimMetadata.pop(), ("w2",)),
    "index_type_unknown": ("sparse", lambda m: setattr(_dm(m, "w2", 1), "arraySegmentsType", 7),
                           ("w2", "index vector type")),
    "index_type_mismatch": ("sparse", lambda m: setattr(_dm(m, "w1", 1), "arrayIndicesType", 1), ("w1",)),
    "index_vector_missing": ("sparse", lambda m: setattr(_dm(m, "w2", 1), "arrayIndices", None),
                             ("w2", "missing")),
    "values_short": ("sparse", lambda m: setattr(
        m.buffers[_tensor(m, "w1").buffer], "data", np.zeros(4, np.uint8)), ("w1", "values")),
    "values_odd_bytes": ("sparse", lambda m: setattr(
        m.buffers[_tensor(m, "w2").buffer], "data", np.zeros(5, np.uint8)), ("w2",)),
    "sparse_activation": ("sparse", _sparse_activation, ("'x'", "sparse")),
    "sparse_read_without_densify": ("sparse", _sparse_read_by_add, ("'b'", "sparse")),
    "densify_of_activation": ("sparse", _densify_of_activation, ("DENSIFY", "constant")),
    "decoded_weight_written_twice": ("sparse", _decoded_weight_written_twice, ("w2_dequantized", "2 ops write")),
    "int8_fc_segments": ("sparse_int8", lambda m: _set_vector(
        _dm(m, "w_sparse_int8", 1), "arraySegments", [0, 1, 1, 2, 9]), ("w_sparse_int8",)),
    "int8_fc_order": ("sparse_int8", lambda m: setattr(
        _tensor(m, "w_sparse_int8").sparsity, "traversalOrder", np.array([1, 0, 2], np.int32)),
        ("w_sparse_int8",)),
    "float_fc_indices": ("sparse_float_fc", lambda m: _set_vector(
        _dm(m, "w_sparse_float", 1), "arrayIndices", [60000] * len(_dm(m, "w_sparse_float", 1).arrayIndices.values)),
        ("w_sparse_float", "indices")),
    "float_fc_levels": ("sparse_float_fc", lambda m: setattr(_dm(m, "w_sparse_float", 0), "format", 1),
                        ("w_sparse_float",)),
}
FLOAT16_CASES: dict[str, tuple[str, Mutator, tuple[str, ...]]] = {
    "fp16_buffer_short": ("float16", lambda m: _fp16_buffer(m, lambda d: d[:-6]), ("conv_w_fp16", "bytes")),
    "fp16_buffer_odd": ("float16", lambda m: _fp16_buffer(m, lambda d: np.append(d, np.uint8(1))),
                        ("conv_w_fp16", "bytes")),
    "fp16_shape_2_pow_40": ("float16", lambda m: [setattr(_tensor(m, n), "shape", np.array([1 << 20, 1 << 20], np.int32))
                                                  for n in ("conv_w_fp16", "conv_w")], ("conv_w",)),
    "dequantize_to_int8": ("float16", _dequantize_out_type, ("DEQUANTIZE",)),
}
CUSTOM_CASES: dict[str, tuple[str, Mutator, tuple[str, ...]]] = {
    "custom_two_inputs": ("float16", _custom_inputs(lambda i: i[:2]), ("Convolution2DTransposeBias", "3 inputs")),
    "custom_four_inputs": ("float16", _custom_inputs(lambda i: i + [i[2]]), ("Convolution2DTransposeBias", "inputs")),
    "custom_bias_absent": ("float16", _custom_inputs(lambda i: i[:2] + [-1]), ("Convolution2DTransposeBias", "bias")),
    "custom_options_missing": ("float16", _custom_options(None), ("Convolution2DTransposeBias", "options")),
    "custom_options_short": ("float16", _custom_options(b"\x01\x00\x00\x00\x02\x00\x00\x00"),
                             ("Convolution2DTransposeBias", "options")),
    "custom_padding_code": ("float16", _custom_options(np.array([7, 2, 2], "<i4").tobytes()),
                            ("Convolution2DTransposeBias", "padding")),
    "custom_stride_zero": ("float16", _custom_options(np.array([1, 0, 2], "<i4").tobytes()),
                           ("Convolution2DTransposeBias", "stride")),
    "custom_stride_negative": ("float16", _custom_options(np.array([1, 2, -3], "<i4").tobytes()),
                               ("Convolution2DTransposeBias", "stride")),
    "custom_stride_huge": ("float16", _custom_options(np.array([2, 2**31 - 1, 2**31 - 1], "<i4").tobytes()),
                           ("Convolution2DTransposeBias",)),
    "custom_output_shape": ("float16", _custom_tensor("y", [1, 13, 12, 2]), ("Convolution2DTransposeBias", "output")),
    "custom_weights_rank": ("float16", _custom_tensor("up_w", [2, 27]), ("Convolution2DTransposeBias",)),
    "custom_weights_channels": ("float16", _custom_tensor("up_w", [2, 3, 3, 2]),
                                ("Convolution2DTransposeBias",)),
    "custom_bias_length": ("float16", _custom_tensor("up_b", [1]), ("Convolution2DTransposeBias", "bias")),
    "custom_weights_type": ("float16", _custom_tensor("up_w", type_code=9), ("Convolution2DTransposeBias",)),
    "custom_weights_activation": ("float16", _weights_not_constant, ("Convolution2DTransposeBias", "up_w")),
}
ALL_CASES = {**SPARSE_CASES, **FLOAT16_CASES, **CUSTOM_CASES}
SEEDS: dict[str, Callable[[], bytes]] = {
    "sparse": fz.sparse_seed_model, "float16": fz.float16_seed_model,
    "sparse_int8": lambda: fz.sparse_fc_seed_model("int8"),
    "sparse_float_fc": lambda: fz.sparse_fc_seed_model("float32"),
}


def hostile_model(name: str, out_dir: Path) -> Path:
    """Write case ``name`` of :data:`ALL_CASES` to ``out_dir``; return its path."""
    seed, mutate, _ = ALL_CASES[name]
    m = fz.unpack_tflite(SEEDS[seed]())
    mutate(m)
    p = out_dir / f"{name}.tflite"
    p.write_bytes(fz.pack_tflite(m))
    return p


def _one_clear_line(exc: BaseException, words: tuple[str, ...]) -> str:
    msg = str(exc)
    assert isinstance(exc, EdgeRuntimeError), f"{type(exc).__name__}: {msg}"
    assert "\n" not in msg and "Traceback" not in msg, msg
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in: {msg}"
    return msg


# ---------------------------------------------------------------------------------------- the seeds are sound

@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_models_load_on_both_backends(seed: str, tmp_path: Path) -> None:
    """The unmutated seeds run (micro refuses the float sparse FULLY_CONNECTED: its sparse kernels are int8)."""
    import edge_runtime

    p = tmp_path / f"{seed}.tflite"
    p.write_bytes(SEEDS[seed]())
    outs = {}
    for backend in ("micro", "litert"):
        if seed == "sparse_float_fc" and backend == "micro":
            with pytest.raises(EdgeRuntimeError, match="INT8"):
                edge_runtime.load(str(p), backend=backend)
            continue
        with edge_runtime.load(str(p), backend=backend) as m:
            outs[backend] = m.run([np.ones(s.shape, s.dtype) for s in m.inputs])
    if len(outs) == 2:
        for a, b in zip(outs["micro"], outs["litert"]):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- hand-written cases

@pytest.mark.parametrize("case", sorted(ALL_CASES))
@pytest.mark.parametrize("backend", ["micro", "litert"])
def test_hostile_decoder_input_is_one_clear_error(case: str, backend: str, tmp_path: Path) -> None:
    import edge_runtime

    p = hostile_model(case, tmp_path)
    with pytest.raises(Exception) as info, edge_runtime.load(str(p), backend=backend) as m:
        m.run([np.zeros(s.shape, s.dtype) for s in m.inputs])
    _one_clear_line(info.value, ALL_CASES[case][2])


CONVERTER_CASES = sorted(n for n, (seed, _, _) in ALL_CASES.items() if seed in ("sparse", "float16"))


def _calibration(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    p = tmp_path / "calib.npy"
    np.save(p, np.random.default_rng(0).normal(0, 1, (4,) + shape[1:]).astype(np.float32))
    return p


def _convert(p: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from converters.cli import main

    shape = (1, 8) if p.read_bytes().find(b"w1_densified") >= 0 else (1, 6, 6, 2)
    rc = main(["convert", str(p), "--profile", "rpi4-4gb", "--calib", str(_calibration(tmp_path, shape)),
               "-o", str(tmp_path / "out")])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", CONVERTER_CASES)
def test_converter_refuses_hostile_decoder_input_in_one_line(case: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    rc, err = _convert(hostile_model(case, tmp_path), tmp_path, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("edge-convert: error: "), err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------- NaN / Inf float16

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float16_weights_load_like_float32_but_do_not_convert(value: float, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Decoding float16 is exact, so a NaN/inf weight is what a float32 weight would be: the runtimes load
    and run it (LiteRT does the same); the converter refuses it, naming the constant, as for float32."""
    import edge_runtime

    m = fz.unpack_tflite(fz.float16_seed_model())
    _fp16_special(value)(m)
    p = tmp_path / "special.tflite"
    p.write_bytes(fz.pack_tflite(m))
    for backend in ("micro", "litert"):
        with edge_runtime.load(str(p), backend=backend) as model:
            # (an input of the weight's sign: tflite-micro's CONV_2D skips the taps in the padding, so with
            # a positive input a -inf weight reaches the output only as RELU's 0; 0 * -inf is not summed)
            y = model.run([np.full((1, 6, 6, 2), -1.0 if value < 0 else 1.0, np.float32)])[0]
        assert not np.all(np.isfinite(y))
    rc, err = _convert(p, tmp_path, capsys)
    assert rc != 0 and err.count("\n") == 1 and "conv_w" in err and "NaN or infinite" in err, err


# ---------------------------------------------------------------------------------------- memory

def test_a_2_pow_40_dense_shape_is_refused_before_allocation() -> None:
    """The decoder itself (the converter's importer does not run the structural check) refuses a dense
    shape the memory limit cannot hold, before allocating anything, also under a 1 GiB address space."""
    code = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
sys.path.insert(0, sys.argv[1])
import numpy as np
from pathlib import Path
import test_harden_decode as h
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_fold import fold_weight_decoders
p = h.hostile_model("dense_product_2_pow_40", Path(sys.argv[2]))
try:
    fold_weight_decoders(TFLiteModel.open(str(p)))
except EdgeRuntimeError as exc:
    print("REFUSED", exc)
"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), d], check=False,
                           capture_output=True,
                           text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("REFUSED") and "w1" in r.stdout, r.stdout + r.stderr
    assert "limit" in r.stdout or "memory" in r.stdout


def _table(sp: Any) -> Any:
    import flatbuffers

    from edge_runtime.formats.flatbuffer import Buffer

    b = flatbuffers.Builder(0)
    b.Finish(sp.Pack(b))
    return Buffer(bytes(b.Output())).root()


def test_densify_bounds_its_work_by_what_the_file_stores() -> None:
    """Dimension metadata that claim 2^28 storage positions (a 256 MiB int8 tensor, within the decode limit)
    for 32 stored values are refused before the traversal allocates its index arrays."""

    from edge_runtime.formats.tflite_sparsity import SparsityError, densify

    values, sp = fz.encode_sparse(np.ones((4, 8), np.int8), [0, 1], [], [], [0, 0])
    sp.dimMetadata[0].denseSize = 1 << 14
    sp.dimMetadata[1].denseSize = 1 << 14
    table = _table(sp)

    def refused() -> None:
        with pytest.raises(SparsityError, match="positions"):
            densify(table, (1 << 14, 1 << 14), values)

    _, peak = traced_allocations(refused, 1)
    assert peak < 1 << 20, peak


def test_decoded_weights_of_a_model_are_capped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Many sparse tensors may not together expand past the per-model decode limit."""
    import edge_runtime.formats.tflite_fold as fold
    from edge_runtime.formats.tflite import TFLiteModel

    p = tmp_path / "sparse.tflite"
    p.write_bytes(fz.sparse_seed_model())
    monkeypatch.setattr(fold, "MAX_DECODED_BYTES", 4 * 32 + 2 * 16)  # w1 (float32 4x8) and w2 (float16 4x4) fit
    with pytest.raises(EdgeRuntimeError, match=r"'b'.*decode limit"):
        fold.fold_weight_decoders(TFLiteModel.open(str(p)))
    monkeypatch.setattr(fold, "MAX_DECODED_BYTES", 4 * 32 + 2 * 16 + 4 * 4)
    assert [op.name for op in fold.fold_weight_decoders(TFLiteModel.open(str(p))).main.operators] == \
        ["FULLY_CONNECTED", "FULLY_CONNECTED"]


# ---------------------------------------------------------------------------------------- LiteRT itself

def test_litert_is_not_shown_hostile_sparsity() -> None:
    """A model whose sparsity metadata LiteRT would trust (block map naming a dimension the metadata lack)
    is refused by the structural check, so LiteRT's native code never reads it."""
    import tempfile

    from edge_runtime.model_file import inspect_model_file

    with tempfile.TemporaryDirectory() as d:
        for case in ("block_map_missing_dim", "indices_out_of_range", "sparse_read_without_densify",
                     "int8_fc_segments", "float_fc_indices", "custom_bias_absent"):
            with pytest.raises(EdgeRuntimeError):
                inspect_model_file(hostile_model(case, Path(d)))


# ---------------------------------------------------------------------------------------- fuzz campaign

N_PER_SEED = 150


def test_decoder_fuzz_campaign(tmp_path: Path) -> None:
    """A fixed-seed campaign on the decoder seeds: every mutant runs or is one clean error on both backends."""
    jobs = fz.make_mutants(fz.decoder_seeds(), N_PER_SEED * len(fz.decoder_seeds()), 0, tmp_path, seed=20261205,
                           mutations=fz.DECODER_CAMPAIGN)
    fz.run_campaign(jobs, "decoder fuzz")

"""Library callers get the project's errors: malformed .tflite models handed to the public functions.

Each model here is the minimal form of a mutant from the library fuzz campaign
(``python -m benchmarks.fuzz_campaign --library``) that made a public function raise a raw
IndexError / OverflowError / ValueError / FlatBufferError (or fail at invoke) before the fix:
``plan_arena``, ``format_plan`` (what ``edge-convert plan`` calls), the micro ``Interpreter``
constructor and ``invoke``, ``TFLiteModel`` parsing. Each must now raise one EdgeRuntimeError
subclass whose message is one line naming the tensor or op.
"""
from __future__ import annotations

import copy
import struct

import numpy as np
import pytest

import fuzz_structure as fz
from edge_runtime.arena.op_memory import ArenaPlanError
from edge_runtime.arena.plan import plan_arena
from edge_runtime.arena.report import format_plan
from edge_runtime.backends.micro.interpreter import Interpreter
from edge_runtime.errors import EdgeRuntimeError, ModelFormatError, UnsupportedModelError
from edge_runtime.formats.flatbuffer import Buffer
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_check import SparsityParametersError
from edge_runtime.formats.tflite_fold import fold_weight_decoders
from tflite_builder import ModelBuilder, T, opts


def _fc_model(in_scale: float = 0.05, w_scale: float = 0.02, outputs: bool = True, out_shape=(1, 4),
              out_dtype: str = "int8") -> bytes:
    """x[1,8] int8 -> FULLY_CONNECTED(w[4,8], b[4]) -> y."""
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8), "int8", scale=in_scale, zp=1, name="x"))
    w = sg.tensor(T((4, 8), "int8", scale=w_scale, zp=0, data=rng.integers(-127, 128, (4, 8)).astype(np.int8),
                    name="w"))
    b = sg.tensor(T((4,), "int32", scale=in_scale * w_scale, zp=0, data=np.arange(4, dtype=np.int32), name="b"))
    y = sg.tensor(T(out_shape, out_dtype, scale=0.1, zp=-2, name="y"))
    sg.op("FULLY_CONNECTED", [x, w, b], [y] if outputs else [], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.to_bytes()


def _one_line(exc: BaseException, *fragments: str) -> str:
    msg = str(exc)
    assert len(msg.splitlines()) == 1, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def _model(data: bytes) -> TFLiteModel:
    return TFLiteModel(data, "bad.tflite")


def test_the_unmutated_model_plans_and_runs() -> None:
    """The base of the malformed models below is sound (so each failure comes from its one defect)."""
    m = _model(_fc_model())
    assert plan_arena(m).arena_bytes > 0
    it = Interpreter(_model(_fc_model()))
    it.set_input(0, np.ones((1, 8), np.int8))
    it.invoke()
    assert it.output(0).shape == (1, 4)


@pytest.mark.parametrize("call", ["plan", "report", "interpreter"])
def test_op_without_its_output(call: str) -> None:
    """Was IndexError (tuple index out of range) in the kernel's prepare, called by plan_arena."""
    m = _model(_fc_model(outputs=False))
    with pytest.raises(ModelFormatError) as ei:
        _call(call, m)
    _one_line(ei.value, "operator 0 (FULLY_CONNECTED)", "missing output")


@pytest.mark.parametrize("scale", [float("inf"), float("nan")])
@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_non_finite_scale(call: str, scale: float) -> None:
    """Was OverflowError / ValueError (cannot convert float infinity / NaN to integer) in quantize_multiplier."""
    m = _model(_fc_model(w_scale=scale))
    with pytest.raises(ModelFormatError) as ei:
        _call(call, m)
    _one_line(ei.value, "tensor 1 ('w')", "non-finite quantization scale")


@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_zero_output_scale(call: str) -> None:
    """An int8 output with scale 0: was ZeroDivisionError (float division by zero) in plan_arena."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8), "int8", scale=0.05, zp=1, name="x"))
    w = sg.tensor(T((4, 8), "int8", scale=0.02, zp=0, data=np.ones((4, 8), np.int8), name="w"))
    y = sg.tensor(T((1, 4), "int8", scale=0.0, zp=0, name="y"))
    sg.op("FULLY_CONNECTED", [x, w, -1], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    with pytest.raises(ModelFormatError) as ei:
        _call(call, _model(mb.to_bytes()))
    _one_line(ei.value, "operator 0 (FULLY_CONNECTED)", "tensor 2 ('y') with a zero or negative scale")


@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_bias_of_the_wrong_size(call: str) -> None:
    """A bias of 5 values for 4 output channels: was ValueError (could not be broadcast) in plan_arena."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8), "int8", scale=0.05, zp=1, name="x"))
    w = sg.tensor(T((4, 8), "int8", scale=0.02, zp=0, data=np.ones((4, 8), np.int8), name="w"))
    b = sg.tensor(T((5,), "int32", scale=0.001, zp=0, data=np.arange(5, dtype=np.int32), name="bias5"))
    y = sg.tensor(T((1, 4), "int8", scale=0.1, zp=0, name="y"))
    sg.op("FULLY_CONNECTED", [x, w, b], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    with pytest.raises(ArenaPlanError if call == "plan" else UnsupportedModelError) as ei:
        _call(call, _model(mb.to_bytes()))
    _one_line(ei.value, "FULLY_CONNECTED", "bias 'bias5' has 5 values for 4 output channels")


def test_per_channel_scales_that_do_not_match_the_channels() -> None:
    """Float FULLY_CONNECTED with int8 weights of 3 scales for 4 units: was ValueError in plan_arena."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8), "float32", name="x"))
    w = sg.tensor(T((4, 8), "int8", scale=[0.01, 0.02, 0.03], zp=0, data=np.ones((4, 8), np.int8), name="w"))
    y = sg.tensor(T((1, 4), "float32", name="y"))
    sg.op("FULLY_CONNECTED", [x, w, -1], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    with pytest.raises(ModelFormatError) as ei:
        plan_arena(_model(mb.to_bytes()))
    _one_line(ei.value, "tensor 1 ('w')", "3 scales for 4 channels")


@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_hostile_shape_is_refused_before_any_allocation(call: str) -> None:
    """A 2^40-element activation: refused by its shape, never a MemoryError from numpy."""
    m = _model(_fc_model(out_shape=(1 << 16, 1 << 16, 256)))
    with pytest.raises(ModelFormatError) as ei:
        _call(call, m)
    _one_line(ei.value, "tensor 3 ('y')", "implausible shape")


def test_if_writing_into_a_constant() -> None:
    """IF whose output is a constant tensor: was ValueError (assignment destination is read-only) at invoke."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    c = sg.tensor(T([1], "bool", name="cond"))
    x = sg.tensor(T((1, 4), "int8", scale=0.05, zp=0, name="x"))
    y = sg.tensor(T((1, 4), "int8", scale=0.05, zp=0, data=np.zeros((1, 4), np.int8), name="y"))
    sg.op("IF", [c, x], [y], opts("IfOptions", thenSubgraphIndex=1, elseSubgraphIndex=1))
    sg.io([c, x], [y])
    br = mb.subgraph("branch")
    a = br.tensor(T((1, 4), "int8", scale=0.05, zp=0, name="a"))
    o = br.tensor(T((1, 4), "int8", scale=0.05, zp=0, name="o"))
    br.op("RESHAPE", [a], [o], opts("ReshapeOptions", newShape=[1, 4]))
    br.io([a], [o])
    with pytest.raises(ModelFormatError) as ei:
        it = Interpreter(_model(mb.to_bytes()))
        it.invoke()
    _one_line(ei.value, "operator 0 (IF)", "writes into constant tensor 2")


def _sparse_fc(mutate) -> bytes:  # type: ignore[no-untyped-def]
    m = fz.unpack_tflite(fz.sparse_fc_seed_model("int8"))
    t = next(t for t in m.subgraphs[0].tensors if t.sparsity is not None)
    mutate(t)
    return fz.pack_tflite(m)


def _wrong_dense_size(t) -> None:  # type: ignore[no-untyped-def]
    t.sparsity.dimMetadata[0].denseSize = 7


def _index_out_of_range(t) -> None:  # type: ignore[no-untyped-def]
    dm = t.sparsity.dimMetadata[1]
    dm.arrayIndices.values = np.full_like(dm.arrayIndices.values, 200)


def _segments_past_the_values(t) -> None:  # type: ignore[no-untyped-def]
    dm = t.sparsity.dimMetadata[1]
    dm.arraySegments.values = (np.asarray(dm.arraySegments.values) * 3).astype(dm.arraySegments.values.dtype)


@pytest.mark.parametrize("mutate", [_wrong_dense_size, _index_out_of_range, _segments_past_the_values])
@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_sparse_weights_that_do_not_describe_their_tensor(call: str, mutate) -> None:  # type: ignore[no-untyped-def]
    """Sparse FULLY_CONNECTED weights whose parameters do not describe the tensor: the sparsity check names
    the tensor (plan_arena used to report them as a kernel it could not prepare, ArenaPlanError)."""
    with pytest.raises(SparsityParametersError) as ei:
        _call(call, _model(_sparse_fc(mutate)))
    _one_line(ei.value, "w_sparse_int8")


def _sparsity_table(data: bytes):  # type: ignore[no-untyped-def]
    """The SparsityParameters table of the sparse weight tensor of ``data`` (this project's reader)."""
    root = Buffer(memoryview(data)).root()
    tensor = next(t for t in root.tables(2)[0].tables(0) if t.has(6))
    return tensor.table(6)


def _dim_metadata_offset_out_of_file(data: bytes) -> bytes:
    """dim_metadata[0]'s offset points 2 GiB past the end of the file."""
    start, _ = _sparsity_table(data).vector_info(2)
    b = bytearray(data)
    struct.pack_into("<I", b, start, 0x7FFFFF00)
    return bytes(b)


def _index_vector_too_long(data: bytes) -> bytes:
    """dim_metadata[1]'s array_indices vector claims 2^20 elements in a file of a few hundred bytes."""
    start, _ = _sparsity_table(data).tables(2)[1].table(5).vector_info(0)
    b = bytearray(data)
    struct.pack_into("<I", b, start - 4, 1 << 20)
    return bytes(b)


@pytest.mark.parametrize("patch", [_dim_metadata_offset_out_of_file, _index_vector_too_long])
@pytest.mark.parametrize("call", ["plan", "interpreter"])
def test_sparsity_table_pointing_outside_the_file(call: str, patch) -> None:  # type: ignore[no-untyped-def]
    """Bytes patched in the sparsity table (the parser does not read it): plan_arena raised the reader's
    raw FlatBufferError (a ValueError) from the sparse kernel's decoder."""
    with pytest.raises(ModelFormatError) as ei:
        _call(call, _model(patch(fz.sparse_fc_seed_model("int8"))))
    _one_line(ei.value, "sparsity", "outside the")


def test_activation_type_numpy_cannot_hold() -> None:
    """An INT4 graph input (never read by a kernel): was ValueError (cannot reshape) in the interpreter."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 4), "int8", scale=0.05, zp=0, name="x"))
    z = sg.tensor(T((1, 4, 4, 2), "int8", name="z4"))
    y = sg.tensor(T((1, 4), "int8", scale=0.05, zp=0, name="y"))
    sg.op("RESHAPE", [x], [y], opts("ReshapeOptions", newShape=[1, 4]))
    sg.io([x, z], [y])
    mb.m.subgraphs[0].tensors[z].type = 17  # INT4
    with pytest.raises(UnsupportedModelError) as ei:
        Interpreter(_model(mb.to_bytes()))
    _one_line(ei.value, "tensor 1 ('z4')", "INT4")


@pytest.mark.parametrize("cut", [0, 3, 7, 11, 40, 200])
def test_truncated_file(cut: int) -> None:
    """TFLiteModel parsing of a truncated file: one ModelFormatError line."""
    data = _fc_model()[:cut]
    with pytest.raises(ModelFormatError) as ei:
        TFLiteModel(data, "cut.tflite")
    _one_line(ei.value, "cut.tflite")


def test_check_runs_once_per_model() -> None:
    """A model that passed the check (e.g. loaded by edge_runtime.load) is not checked again by plan_arena."""
    m = _model(_fc_model())
    plan_arena(m)
    assert getattr(m, "_structure_checked", False)
    assert copy.copy(m)._structure_checked


def _call(call: str, model: TFLiteModel) -> None:
    if call == "plan":
        plan_arena(model)
    elif call == "report":
        format_plan(plan_arena(fold_weight_decoders(model), in_place=False))
    else:
        it = Interpreter(model)
        it.invoke()


def test_every_error_is_an_edge_runtime_error() -> None:
    """The fixed cases are EdgeRuntimeError subclasses (what the CLIs print as one line)."""
    assert issubclass(SparsityParametersError, EdgeRuntimeError)
    assert issubclass(ModelFormatError, EdgeRuntimeError)


# ----------------------------------------------------------------------------- loops that never end

def test_a_while_loop_that_never_ends_is_refused_instead_of_hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    """micro's WHILE stops after MAX_ITERATIONS iterations with one line naming the op (the library fuzz campaign
    found mutated WHILE models whose counter never changes: they looped forever, as they would on tflite-micro);
    a loop of exactly MAX_ITERATIONS iterations still runs."""
    import numpy as np

    from edge_runtime.backends.micro import open_model
    from edge_runtime.backends.micro.kernels.control import while_op
    from edge_runtime.errors import UnsupportedModelError
    from test_micro_control import while_model

    monkeypatch.setattr(while_op, "MAX_ITERATIONS", 100)
    x = np.ones((1, 4), np.float32)
    ok = open_model(str(while_model(tmp_path / "ok.tflite", "float32", (1, 4), 0.1, 0, 0.1, 0, 100, "ADD", 1)))
    y, i = ok.run([x])
    assert int(i.reshape(-1)[0]) == 100
    endless = open_model(str(while_model(tmp_path / "endless.tflite", "float32", (1, 4), 0.1, 0, 0.1, 0, 2**31 - 1,
                                         "ADD", 1)))
    with pytest.raises(UnsupportedModelError) as err:
        endless.run([x])
    msg = str(err.value)
    assert "WHILE" in msg and "still true after 100 iterations" in msg and "\n" not in msg

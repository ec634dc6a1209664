"""Embedding the arena plan as TFLM OfflineMemoryAllocation metadata (converters.offline_plan).

References: tflite-micro (x86_64 Python package) running the model without the plan, with
its own planner: outputs must be np.array_equal and the recorded head no larger; and the
original model's bytes (weights must survive repacking unchanged and 16-byte aligned).
"""
from __future__ import annotations

import copy

import flatbuffers
import numpy as np
import pytest

from converters.offline_plan import (
    METADATA_NAME, embed_offline_plan, offline_plan_array, read_offline_plan, run_tflm, tflm_available,
    unaligned_buffers, with_metadata,
)
from edge_runtime.arena.op_memory import ArenaPlanError, no_scratch_op_memory
from edge_runtime.arena.plan import ArenaPlan, PlanEntry, plan_arena
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel

MODELS = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite",
          "str_ww_ref_model.tflite"]
TFLM_HEAD = {"kws_ref_model.tflite": 16000, "vww_96_int8.tflite": 73728, "pretrainedResnet_quant.tflite": 49152,
             "ad01_int8.tflite": 768, "str_ww_ref_model.tflite": 6656}  # ../shared/models/README.md
needs_tflm = pytest.mark.skipif(not tflm_available(), reason="tflite-micro Python package (x86_64 only) not installed")


def sample_inputs(shared, name: str, model: TFLiteModel, n_random: int = 100) -> np.ndarray:
    """Sample inputs from ../shared (the first 200 kws01 inputs for KWS) plus 100 seeded random int8 inputs."""
    d = model.main.tensors[model.main.inputs[0]]
    rng = np.random.default_rng(3)
    rows = [rng.integers(-128, 128, size=d.shape, dtype=np.int8) for _ in range(n_random)]
    data = shared / "models" / "mlperf_tiny" / "data"
    if name.startswith("kws"):
        rows.append(np.load(data / "kws01" / "kws_g_kws_inputs_int8_1x49x10x1.npy").reshape(d.shape))
        files = sorted((data / "kws01").glob("tst_*.bin"))[:200]
        rows += [np.fromfile(p, dtype=np.int8).reshape(d.shape) for p in files]
    if name.startswith("str_ww"):
        rows += [np.load(p).reshape(d.shape) for p in sorted((data / "sww").glob("sww_test_input_*.npy"))]
    return np.stack(rows).astype(np.int8)


@pytest.mark.parametrize("name", MODELS)
def test_embedded_model_carries_the_plan_and_keeps_weights(mlperf_models, tmp_path, name):
    src = TFLiteModel.open(mlperf_models / name)
    out = tmp_path / name
    plan = embed_offline_plan(mlperf_models / name, out)
    m = TFLiteModel.open(out)
    offs = read_offline_plan(m)
    raw = np.frombuffer(m.metadata_bytes(METADATA_NAME).tobytes(), dtype="<i4")
    assert list(raw[:3]) == [1, 1, len(src.main.tensors)]  # version 1, one subgraph, every tensor
    for t in src.main.tensors:
        expect = plan.tensor_offset(t.index) if plan.has_tensor(t.index) else -1
        assert offs[t.index] == expect
        if t.is_constant or t.is_variable or t.nbytes == 0:
            assert offs[t.index] == -1
        else:
            assert offs[t.index] % 16 == 0
        if t.data is not None:
            assert np.array_equal(m.main.tensors[t.index].data, t.data)
    assert unaligned_buffers(m) == []  # the original files have 4-byte-aligned buffers; ours are 16
    assert set(src.metadata) <= set(m.metadata)  # other metadata kept
    assert not plan.in_place and plan.arena_bytes <= TFLM_HEAD[name]


def test_re_embedding_replaces_the_old_plan(mlperf_models, tmp_path):
    a = tmp_path / "a.tflite"
    b = tmp_path / "b.tflite"
    embed_offline_plan(mlperf_models / "kws_ref_model.tflite", a, planner="greedy")
    embed_offline_plan(a, b, planner="best")
    m = TFLiteModel.open(b)
    best = plan_arena(TFLiteModel.open(mlperf_models / "kws_ref_model.tflite"), in_place=False,
                      op_memory=no_scratch_op_memory)
    assert list(read_offline_plan(m)) == list(offline_plan_array(m, best)[3:])
    assert b.stat().st_size - a.stat().st_size < 64  # the old payload was dropped, not kept beside the new


def test_refuses_in_place_multi_subgraph_and_overlapping_plans(mlperf_models, tmp_path):
    model = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    with pytest.raises(ArenaPlanError, match="in-place"):
        offline_plan_array(model, plan_arena(model, in_place=True))
    good = plan_arena(model, in_place=False, op_memory=no_scratch_op_memory)
    e0, e1 = good.tensor_entries()[:2]
    bad_entries = [PlanEntry(e.name, e.kind, e.tensor, e.op, 0, e.size, e.first_op, e.last_op)
                   for e in good.entries]  # everything at offset 0: live tensors overlap
    bad = ArenaPlan(good.arena_bytes, good.lower_bound_bytes, False, "bad", bad_entries,
                    num_ops=good.num_ops, num_tensors=good.num_tensors)
    with pytest.raises(ArenaPlanError, match="overlaps"):
        offline_plan_array(model, bad)
    # a two-subgraph model (the KWS subgraph twice)
    from ai_edge_litert import schema_py_generated as schema

    mt = schema.ModelT.InitFromPackedBuf(bytearray(bytes(model.buf.data)), 0)
    mt.subgraphs.append(copy.deepcopy(mt.subgraphs[0]))
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(mt.Pack(builder), file_identifier=b"TFL3")
    two = tmp_path / "two.tflite"
    two.write_bytes(bytes(builder.Output()))
    with pytest.raises(UnsupportedModelError, match="2 subgraphs"):
        embed_offline_plan(two, tmp_path / "out.tflite")
    assert not (tmp_path / "out.tflite").exists()


def test_with_metadata_aligns_all_buffers(mlperf_models):
    data = (mlperf_models / "vww_96_int8.tflite").read_bytes()
    assert unaligned_buffers(TFLiteModel(data)) != []  # the shipped file is only 4-byte aligned
    out = with_metadata(data, "x", b"\x01\x02\x03")
    m = TFLiteModel(out)
    assert unaligned_buffers(m) == [] and bytes(m.metadata_bytes("x")) == b"\x01\x02\x03"


@needs_tflm
@pytest.mark.parametrize("name", MODELS)
def test_tflm_runs_our_plan_identically_and_no_larger(shared, mlperf_models, tmp_path, name):
    """tflite-micro with our embedded plan: outputs np.array_equal to tflite-micro without it,
    recorded head equal to our plan and no larger than with TFLM's own planner."""
    src = mlperf_models / name
    out = tmp_path / name
    plan = embed_offline_plan(src, out)
    x = sample_inputs(shared, name, TFLiteModel.open(src))
    own = run_tflm(src, x)
    ours = run_tflm(out, x)
    assert np.array_equal(ours.outputs, own.outputs)
    assert own.head_bytes == TFLM_HEAD[name]
    assert ours.head_bytes == plan.arena_bytes <= own.head_bytes


@needs_tflm
def test_tflm_follows_a_greedy_plan_exactly(mlperf_models, tmp_path):
    """TFLM's head with our greedy plan embedded equals that plan's size (VWW: 73,728 B, as TFLM's own)."""
    out = tmp_path / "vww.tflite"
    plan = embed_offline_plan(mlperf_models / "vww_96_int8.tflite", out, planner="greedy")
    x = np.random.default_rng(0).integers(-128, 128, size=(3, 1, 96, 96, 3), dtype=np.int8)
    assert run_tflm(out, x).head_bytes == plan.arena_bytes == 73728

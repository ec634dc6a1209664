"""Memory behaviour of the micro backend (issue 3, section 2, and the zero-allocation acceptance).

References: tracemalloc (growth and per-call peak over >= 1000 invokes), the arena
plan from edge_runtime.arena.plan (offsets), the memory map of the model file
(zero-copy weights), and tflite-micro's recorded heads from ../shared/models/README.md.
"""
from __future__ import annotations


import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.backends.micro.memory_traits import make_op_memory
from edge_runtime.formats.tflite import TFLiteModel
from alloc_probe import traced_allocations

# numpy 2.x allocates one iterator buffer (bufsize = 8192 elements, <= 64 KiB for int64)
# inside ufunc calls whose operands broadcast (per-channel requantization, depthwise taps),
# and frees it before the call returns; plus a few small Python objects. Bound per invoke:
PER_CALL_PEAK_BOUND = 80 * 1024
# tracemalloc's own bookkeeping between the two measurements
GROWTH_BOUND = 4 * 1024

TFLM_HEAD = {"kws_ref_model": 16000, "vww_96_int8": 73728, "pretrainedResnet_quant": 49152, "ad01_int8": 768,
             "str_ww_ref_model": 6656}


def _measure(fn, n: int) -> tuple[int, int]:
    """(growth, peak above the start) of traced memory over ``n`` calls of ``fn``."""
    return traced_allocations(fn, n, warmup=20, traced_warmup=20)


@pytest.mark.parametrize("name,in_place", [("kws_ref_model", True), ("kws_ref_model", False),
                                           ("ad01_int8", True), ("kws_ref_model_float32", True)])
def test_steady_state_invoke_does_not_allocate(mlperf_models, name, in_place):
    m = open_model(str(mlperf_models / f"{name}.tflite"), in_place=in_place)
    it = m.interpreter
    x = np.zeros(m.inputs[0].shape, m.inputs[0].dtype)

    def step() -> None:
        it.set_input(0, x)
        it.invoke()

    growth, peak = _measure(step, 1000)
    assert growth <= GROWTH_BOUND, f"memory grew by {growth} bytes over 1000 invokes"
    assert peak <= PER_CALL_PEAK_BOUND, f"an invoke allocated {peak} bytes at its peak"


def test_model_run_allocates_only_the_output_copy(mlperf_models):
    """Model.run returns copies of the outputs (12 int8 values for KWS): bounded, no growth."""
    m = open_model(str(mlperf_models / "kws_ref_model.tflite"))
    x = np.zeros(m.inputs[0].shape, np.int8)
    growth, peak = _measure(lambda: m.run(x), 1000)
    assert growth <= GROWTH_BOUND
    assert peak <= PER_CALL_PEAK_BOUND + 4096


def test_activations_are_views_into_one_arena_at_planned_offsets(mlperf_models):
    m = open_model(str(mlperf_models / "pretrainedResnet_quant.tflite"), in_place=False)
    it = m.interpreter
    base = it.arena.__array_interface__["data"][0]
    assert it.arena.nbytes == it.plan.arena_bytes == m.info["arena_bytes"]
    assert it.views, "no activation views"
    for t, view in it.views.items():
        assert np.shares_memory(view, it.arena)
        assert view.__array_interface__["data"][0] - base == it.plan.tensor_offset(t)
        assert view.shape == it.sg.tensors[t].shape


def test_weights_are_zero_copy_views_over_the_model_file(mlperf_models):
    m = open_model(str(mlperf_models / "vww_96_int8.tflite"))
    it = m.interpreter
    model_bytes = np.frombuffer(it.model._data, dtype=np.uint8)
    n = 0
    for op in it.sg.operators:
        for i in op.inputs:
            if i >= 0 and it.sg.tensors[i].data is not None:
                w = it._tensor(i)
                assert not w.flags.owndata and not w.flags.writeable
                assert np.shares_memory(w, model_bytes)
                n += 1
    assert n >= 2 * 28


@pytest.mark.parametrize("name", sorted(TFLM_HEAD))
def test_arena_no_larger_than_tflm_head(mlperf_models, name):
    """Without in-place, the arena (activations + declared scratch) is at most TFLM's head; with it, smaller."""
    path = str(mlperf_models / f"{name}.tflite")
    off = open_model(path, in_place=False)
    on = open_model(path, in_place=True)
    assert off.info["arena_bytes"] <= TFLM_HEAD[name]
    assert on.info["arena_bytes"] < TFLM_HEAD[name]
    if name == "kws_ref_model":
        assert on.info["arena_bytes"] <= 10000


def test_in_place_plans_really_alias(mlperf_models):
    """KWS in place: depthwise and 1x1 convolutions write over their input buffers."""
    m = open_model(str(mlperf_models / "kws_ref_model.tflite"), in_place=True)
    it = m.interpreter
    aliased = set()
    for op in it.sg.operators:
        x, y = op.inputs[0], op.outputs[0]
        if x in it.views and y in it.views and np.shares_memory(it.views[x], it.views[y]):
            assert it.views[x].__array_interface__["data"][0] == it.views[y].__array_interface__["data"][0]
            aliased.add(op.name)
    assert {"DEPTHWISE_CONV_2D", "CONV_2D", "RESHAPE"} <= aliased


@pytest.mark.parametrize("name,limit,n", [("kws_ref_model", 12 * 1024, 30), ("vww_96_int8", 24 * 1024, 5),
                                          ("pretrainedResnet_quant", 24 * 1024, 5)])
def test_chunked_in_place_with_line_buffers_is_bit_exact(mlperf_models, name, limit, n):
    """A small workspace forces several chunks per convolution, so in-place ops need line buffers in the
    arena (rows a chunk overwrites but the next one still reads). Reference: tflite-micro."""
    tflm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    path = str(mlperf_models / f"{name}.tflite")
    m = open_model(path, in_place=True, workspace_limit=limit)
    it = m.interpreter
    model = TFLiteModel.open(path)
    fn = make_op_memory(limit)
    line_ops = [op.index for op in model.main.operators
                if fn(model, model.main, op).inplace_scratch_bytes > 0 and it.plan.runs_in_place(op.index)]
    assert line_ops, "no op ran in place with a line buffer"
    for i in line_ops:
        assert it.plan.scratch(i)[1] >= fn(model, model.main, model.main.operators[i]).inplace_scratch_bytes
    if name == "kws_ref_model":
        dw = [i for i in line_ops if model.main.operators[i].name == "DEPTHWISE_CONV_2D"]
        assert dw and all(fn(model, model.main, model.main.operators[i]).inplace_scratch_bytes == 5 * 64
                          for i in dw)  # one input row (5 x 64 int8) for a 3x3 stride-1 depthwise
    ref = tflm.Interpreter.from_file(path)
    rng = np.random.default_rng(3)
    for _ in range(n):
        x = rng.integers(-128, 128, size=m.inputs[0].shape).astype(np.int8)
        ref.set_input(x, 0)
        ref.invoke()
        assert np.array_equal(m.run(x)[0], ref.get_output(0))


def test_workspace_is_bounded_by_the_limit(mlperf_models):
    """Kernels chunk their widened copies to the workspace limit (plus one op's widened weights)."""
    small = open_model(str(mlperf_models / "vww_96_int8.tflite"), workspace_limit=64 * 1024)
    big = open_model(str(mlperf_models / "vww_96_int8.tflite"))
    assert small.info["workspace_bytes"] < big.info["workspace_bytes"]
    assert small.info["workspace_bytes"] <= 64 * 1024 + 256 * 256 * 4 + 64 * 16
    x = np.random.default_rng(1).integers(-128, 128, size=(1, 96, 96, 3)).astype(np.int8)
    assert np.array_equal(small.run(x)[0], big.run(x)[0])  # reference: the unchunked run

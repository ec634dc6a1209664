"""plan_arena: aliasing, scratch, validation and the memory acceptance on MLPerf Tiny int8 models.

References: TFLM's recorded head on x86_64 from ../shared/models/README.md (tflite-micro
package, its own greedy planner), and each plan's own lower bound.
"""
from __future__ import annotations

import importlib.util
import json

import pytest

from edge_runtime.arena.op_memory import ArenaPlanError, conservative_op_memory, resolve_op_memory
from edge_runtime.arena.plan import ArenaPlan, PlanEntry, plan_arena
from edge_runtime.arena.traits import OpMemory
from edge_runtime.arena.validate import validate_plan
from edge_runtime.formats.tflite import TFLiteModel

# TFLM head (planned activations + scratch), bytes, from ../shared/models/README.md.
TFLM_HEAD = {
    "kws_ref_model.tflite": 16000,
    "vww_96_int8.tflite": 73728,
    "pretrainedResnet_quant.tflite": 49152,
    "ad01_int8.tflite": 768,
    "str_ww_ref_model.tflite": 6656,
}
KERNEL_TRAITS = importlib.util.find_spec("edge_runtime.backends.micro") is not None and \
    importlib.util.find_spec("edge_runtime.backends.micro.memory_traits") is not None


def example_traits(model, sg, op) -> OpMemory:
    """Traits of a hypothetical kernel set (for testing the planner, not the real kernels):
    every conv/FC/elementwise op may overwrite input 0 with a one-row scratch."""
    out = sg.tensors[op.outputs[0]]
    row = out.nbytes // max(out.shape[1] if len(out.shape) > 2 else 1, 1)
    if op.name in ("RESHAPE", "SQUEEZE"):
        return OpMemory(alias_input=0)
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"):
        return OpMemory(scratch_bytes=100, inplace_input=0, inplace_scratch_bytes=row)
    return OpMemory()


def _entry(plan: ArenaPlan, t: int) -> PlanEntry:
    return next(e for e in plan.entries if e.tensor == t)


@pytest.mark.parametrize("name", sorted(TFLM_HEAD))
def test_no_in_place_plan_fits_in_tflm_head(mlperf_models, name):
    """Acceptance: with in-place off, activations + scratch (the kernels' traits) <= TFLM's head."""
    plan = plan_arena(TFLiteModel.open(mlperf_models / name), in_place=False)
    validate_plan(plan)
    assert not plan.in_place and all(e.alias_of is None for e in plan.entries)
    assert plan.lower_bound_bytes <= plan.arena_bytes <= TFLM_HEAD[name], plan.op_memory_source


@pytest.mark.skipif(not KERNEL_TRAITS, reason="the micro kernels' memory_traits.op_memory has not landed yet")
@pytest.mark.parametrize("name", sorted(TFLM_HEAD))
def test_in_place_plan_beats_tflm_head(mlperf_models, name):
    """Acceptance: with in-place on (the kernels' traits), KWS <= 10,000 B, every model below TFLM's head."""
    plan = plan_arena(TFLiteModel.open(mlperf_models / name), in_place=True)
    assert plan.arena_bytes < TFLM_HEAD[name]
    if name == "kws_ref_model.tflite":
        assert plan.arena_bytes <= 10000


def test_greedy_matches_tflm_head_without_scratch(mlperf_models):
    """Our greedy planner, on tensors only, gives exactly TFLM's recorded head on every model."""
    from edge_runtime.arena.op_memory import no_scratch_op_memory

    for name, head in TFLM_HEAD.items():
        plan = plan_arena(TFLiteModel.open(mlperf_models / name), in_place=False, planner="greedy",
                          op_memory=no_scratch_op_memory)
        assert plan.arena_bytes == head, name


def test_best_planner_reaches_bound_where_greedy_misses(mlperf_models):
    m = TFLiteModel.open(mlperf_models / "vww_96_int8.tflite")
    greedy = plan_arena(m, in_place=False, planner="greedy", op_memory=conservative_op_memory)
    best = plan_arena(m, in_place=False, planner="best", op_memory=conservative_op_memory)
    assert greedy.arena_bytes > greedy.lower_bound_bytes
    assert best.arena_bytes == best.lower_bound_bytes == 55296


def test_in_place_aliases_only_dying_inputs(mlperf_models):
    """IC ResNet: conv at op 4 reads the ADD output that op 6 reads again, so op 4 must not
    overwrite it; op 6 (its last reader) may; op 3's ADD overwrites its dying first input."""
    m = TFLiteModel.open(mlperf_models / "pretrainedResnet_quant.tflite")
    plan = plan_arena(m, in_place=True, op_memory=example_traits)
    validate_plan(plan)
    assert _entry(plan, 26).alias_of is None  # op 4 output: t25 still live until op 6
    assert plan.scratch(4) == (plan.scratch(4)[0], 100)  # not in place -> scratch_bytes
    root25 = _entry(plan, 25).alias_of
    root28 = _entry(plan, 28).alias_of
    assert root28 is not None and root28 == (root25 if root25 is not None else 25)  # op 6 in place on t25
    root = _entry(plan, 25).alias_of
    assert root == 22 or _entry(plan, 22).alias_of == root  # ADD at op 3 wrote over t22 (dies at 3)
    assert plan.tensor_offset(25) == plan.tensor_offset(22)
    assert plan.arena_bytes < TFLM_HEAD["pretrainedResnet_quant.tflite"]


def test_in_place_kws_with_row_scratch(mlperf_models):
    """KWS with in-place convs needs the conv outputs plus the input and a row of scratch."""
    m = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    plan = plan_arena(m, in_place=True, op_memory=example_traits)
    validate_plan(plan)
    assert plan.arena_bytes <= 10000
    assert plan.scratch(1) == (plan.scratch(1)[0], 8000 // 25)
    assert _entry(plan, 32).alias_of is not None  # RESHAPE output shares its input's bytes
    off = plan.tensor_offset(22)
    assert all(plan.tensor_offset(t) == off for t in range(23, 31))


def test_no_in_place_gives_every_tensor_its_own_buffer(mlperf_models):
    m = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    plan = plan_arena(m, in_place=False, op_memory=example_traits)
    assert all(e.alias_of is None for e in plan.entries)
    for i in range(len(m.main.operators) - 1):  # RESHAPE and SOFTMAX have no scratch in these traits
        s = plan.scratch(i)
        if m.main.operators[i].name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert s is not None and s[1] == 100
    assert plan.scratch(10) is None
    assert plan.tensor_offset(32) != plan.tensor_offset(31)  # RESHAPE copies: own buffer, both live at op 10


def test_conservative_fallback_when_kernel_traits_absent():
    fn, source = resolve_op_memory(None)
    if KERNEL_TRAITS:
        assert "memory_traits" in source
    else:
        assert fn is conservative_op_memory and "conservative" in source


def test_plan_helpers_and_json(mlperf_models):
    m = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    plan = plan_arena(m, in_place=False, op_memory=example_traits)
    d = json.loads(plan.to_json())
    assert d["arena_bytes"] == plan.arena_bytes and d["lower_bound_bytes"] == plan.lower_bound_bytes
    assert d["in_place"] is False
    names = {t["name"] for t in d["tensors"]}
    assert len(d["tensors"]) == 14 and m.main.tensors[0].name in names
    for t in d["tensors"]:
        assert set(t) >= {"name", "offset", "size", "first_op", "last_op"}
        assert plan.tensor_offset(t["tensor"]) == t["offset"]
    with pytest.raises(KeyError, match="tensor 1 has no place"):
        plan.tensor_offset(1)  # a constant


def test_bad_traits_and_bad_planner_name_the_problem(mlperf_models):
    m = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    with pytest.raises(ArenaPlanError, match=r"op 0 \(CONV_2D\).*scratch_bytes=-5"):
        plan_arena(m, op_memory=lambda model, sg, op: OpMemory(scratch_bytes=-5))
    with pytest.raises(ArenaPlanError, match=r"inplace_input=7.*3 inputs"):
        plan_arena(m, op_memory=lambda model, sg, op: OpMemory(inplace_input=7))
    with pytest.raises(ArenaPlanError, match="returned dict"):
        plan_arena(m, op_memory=lambda model, sg, op: {})
    with pytest.raises(ArenaPlanError, match="unknown planner 'fast'"):
        plan_arena(m, planner="fast")
    with pytest.raises(ArenaPlanError, match="subgraph 3 does not exist"):
        plan_arena(m, 3)


def _plan(entries: list[PlanEntry], arena: int = 256) -> ArenaPlan:
    return ArenaPlan(arena, 0, False, "test", entries, num_ops=3)


def test_validator_rejects_live_overlap_and_accepts_aliases():
    a = PlanEntry("a", "tensor", 0, None, 0, 64, 0, 1)
    b = PlanEntry("b", "tensor", 1, None, 48, 64, 1, 2)  # live at op 1 with a, bytes 48..64 shared
    with pytest.raises(ArenaPlanError, match="'a' .* overlaps 'b'"):
        validate_plan(_plan([a, b]))
    validate_plan(_plan([a, PlanEntry("b", "tensor", 1, None, 48, 64, 2, 2)]))  # not live together
    validate_plan(_plan([a, PlanEntry("b", "tensor", 1, None, 0, 64, 1, 2, alias_of=0)]))  # declared alias
    s = PlanEntry("scratch", "scratch", None, 1, 64, 16, 1, 1)
    with pytest.raises(ArenaPlanError, match="overlaps"):
        validate_plan(_plan([a, PlanEntry("b", "tensor", 1, None, 64, 16, 1, 1), s]))
    with pytest.raises(ArenaPlanError, match="not a non-negative multiple of 16"):
        validate_plan(_plan([PlanEntry("c", "tensor", 0, None, 8, 8, 0, 0)]))
    with pytest.raises(ArenaPlanError, match="past the arena"):
        validate_plan(_plan([PlanEntry("c", "tensor", 0, None, 0, 300, 0, 0)]))


@pytest.mark.parametrize("name", sorted(TFLM_HEAD))
def test_in_place_decisions_are_safe_and_pay_off(mlperf_models, name):
    """Every op run in place overwrites an input whose group dies there; in-place never costs more
    than in-place off (AD: with these traits, running its FC layers in place would grow the arena)."""
    m = TFLiteModel.open(mlperf_models / name)
    on = plan_arena(m, in_place=True, op_memory=example_traits)
    off = plan_arena(m, in_place=False, op_memory=example_traits)
    assert on.arena_bytes <= off.arena_bytes
    for i in on.in_place_ops:
        op = m.main.operators[i]
        src, out = op.inputs[0], op.outputs[0]
        assert on.tensor_offset(src) == on.tensor_offset(out)
        group = [e for e in on.entries if e.kind == "tensor" and on.tensor_offset(e.tensor) == on.tensor_offset(src)
                 and e.first_op <= i]
        assert max(e.last_op for e in group if e.tensor != out) == i  # nothing else still needs those bytes
        assert on.scratch(i) is None or on.scratch(i)[1] == example_traits(m, m.main, op).inplace_scratch_bytes

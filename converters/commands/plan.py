"""``edge-convert plan``: the static arena plan of a .tflite model, as text, JSON or SVG, or embedded for TFLM."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge_runtime.arena.op_memory import ArenaPlanError, no_scratch_op_memory
from edge_runtime.arena.plan import plan_arena
from edge_runtime.arena.planners import PLANNER_HELP, PLANNERS
from edge_runtime.arena.report import format_plan
from edge_runtime.arena.svg import plan_svg
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_fold import fold_weight_decoders

NAME = "plan"
HELP = "plan the activation arena of a .tflite model: exact bytes, lower bound, per-tensor offsets"
DESCRIPTION = """\
Compute the static memory plan of a .tflite model: every activation tensor's offset,
size and lifetime (first..last op, inclusive) inside one 16-byte-aligned arena, plus
kernel scratch, the total arena bytes and the lower bound (the most bytes live at
once at any op; no plan can be smaller).

Lifetimes: graph inputs live from op 0, graph outputs from their producer to the last
op; constants and variables take no arena space. Multi-subgraph models are planned as
TensorFlow Lite Micro does: one arena for every subgraph, the subgraphs an IF, WHILE or
CALL_ONCE invokes planned inside that op's time span (op indices become steps of that
timeline). Variable tensors and resource variables (sized by their first ASSIGN_VARIABLE)
are persistent and reported apart. Every op must have a micro kernel: otherwise its
scratch is unknown and the plan is refused rather than under-reported.

By default ops may run in place where the micro kernels allow it (RESHAPE/SQUEEZE
share their input's bytes; elementwise, 1x1 and depthwise convolutions may overwrite
an input that dies there). --no-in-place gives a plan TensorFlow Lite Micro can run,
and is required with --embed-offline-plan.

examples:
  edge-convert plan kws_ref_model.tflite
  edge-convert plan vww_96_int8.tflite --no-in-place --planner greedy
  edge-convert plan kws_ref_model.tflite --json > plan.json
  edge-convert plan kws_ref_model.tflite --svg plan.svg
  edge-convert plan kws_ref_model.tflite --no-in-place --embed-offline-plan kws_planned.tflite
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``plan``."""
    parser.add_argument("model", metavar="MODEL", help="a .tflite model file")
    parser.add_argument("--no-in-place", dest="in_place", action="store_false",
                        help="give every tensor its own buffer (no aliasing, no in-place ops): "
                             "a plan TensorFlow Lite Micro can execute")
    planners = "; ".join(f"{k}: {v}" for k, v in PLANNER_HELP.items())
    parser.add_argument("--planner", default="best", choices=sorted(PLANNERS), metavar="NAME",
                        help=f"offset planner ({planners})")
    parser.add_argument("--subgraph", type=int, default=0, metavar="N",
                        help="entry subgraph to plan from (default 0); the subgraphs it invokes are planned with it")
    parser.add_argument("--json", action="store_true",
                        help="print the plan as JSON (arena_bytes, lower_bound_bytes, in_place, planner, "
                             "tensors: name/offset/size/first_op/last_op, scratch) instead of the text report")
    parser.add_argument("--svg", metavar="FILE",
                        help="also write a picture of the plan to FILE: op index on x, arena address on y")
    parser.add_argument("--embed-offline-plan", metavar="OUT.tflite",
                        help="write a copy of MODEL carrying the plan (tensors only; TFLM places its own "
                             "kernel scratch) as TFLite Micro's OfflineMemoryAllocation metadata; "
                             "needs --no-in-place; multi-subgraph models get tensors of the same index "
                             "co-located, as TFLM reads one offset list for every subgraph")


def _write(path: str, data: "str | bytes") -> None:
    try:
        p = Path(path)
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    except OSError as exc:
        raise EdgeRuntimeError(f"cannot write {path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Plan, print, and write the optional SVG and embedded model."""
    if args.embed_offline_plan and args.in_place:
        raise EdgeRuntimeError("--embed-offline-plan needs --no-in-place: TensorFlow Lite Micro cannot run "
                               "an in-place plan, so one is never embedded")
    model = TFLiteModel.open(args.model)
    name = os.path.basename(args.model)
    folded = fold_weight_decoders(model)  # float16 DEQUANTIZE / DENSIFY of weights, decoded as micro loads them
    if folded is not model:
        print(f"note: {len(model.main.operators) - len(folded.main.operators)} weight decoder op(s) (float16 "
              "DEQUANTIZE, DENSIFY) folded into constants, as the micro backend loads the model; op indices "
              "below are those of the folded model", file=sys.stderr)
        model = folded
    try:
        plan = plan_arena(model, args.subgraph, in_place=args.in_place, planner=args.planner)
    except ArenaPlanError as exc:
        if not args.embed_offline_plan or "arena needs" not in str(exc):
            raise
        # TFLM places its kernels' scratch itself: the tensors-only plan it would get is still exact.
        plan = plan_arena(model, args.subgraph, in_place=False, planner=args.planner,
                          op_memory=no_scratch_op_memory)
        print(f"note: {exc}; showing the tensors-only plan that is embedded (TFLM adds its kernels' scratch)",
              file=sys.stderr)
    print(plan.to_json() if args.json else format_plan(plan, name))
    if args.svg:
        _write(args.svg, plan_svg(plan, name))
    if args.embed_offline_plan:
        from converters.offline_plan import embed_offline_plan

        if os.path.abspath(args.embed_offline_plan) == os.path.abspath(args.model):
            raise EdgeRuntimeError("--embed-offline-plan must name a new file, not the input model")
        if args.subgraph != 0:
            raise EdgeRuntimeError("--embed-offline-plan plans the model from subgraph 0, as TFLite Micro runs it; "
                                   "drop --subgraph")
        embedded = embed_offline_plan(args.model, args.embed_offline_plan, planner=args.planner)
        if not args.json:
            print(f"\nwrote {args.embed_offline_plan}: OfflineMemoryAllocation for {embedded.num_tensors} tensors, "
                  f"tensor arena {embedded.arena_bytes:,} B (TFLM adds its own kernel scratch)")
    return 0

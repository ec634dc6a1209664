"""Check an arena plan: alignment, and no two buffers live at the same op share bytes.

The only allowed sharing is a declared alias (``alias_of``): tensors of one alias
group share one buffer on purpose. TFLite Micro checks none of this when it reads
an offline plan, so every plan is validated here before it is used or embedded.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from edge_runtime.arena.align import align_up
from edge_runtime.arena.op_memory import ArenaPlanError

if TYPE_CHECKING:
    from edge_runtime.arena.plan import ArenaPlan, PlanEntry


def _group(e: "PlanEntry") -> object:
    if e.kind == "scratch":
        return ("scratch", e.subgraph, e.op)
    return ("tensor", e.subgraph, e.alias_of if e.alias_of is not None else e.tensor)


def overlapping_pairs(plan: "ArenaPlan") -> list[tuple["PlanEntry", "PlanEntry"]]:
    """Pairs of entries that are live at a common op, share bytes, and are not declared aliases."""
    live_at: dict[int, list["PlanEntry"]] = defaultdict(list)
    for e in plan.entries:
        for i in range(e.first_op, e.last_op + 1):
            live_at[i].append(e)
    bad: list[tuple["PlanEntry", "PlanEntry"]] = []
    seen: set[tuple[int, int]] = set()
    for i in sorted(live_at):
        live = sorted(live_at[i], key=lambda e: e.offset)
        for a_i, a in enumerate(live):
            a_end = a.offset + align_up(a.size)
            for b in live[a_i + 1:]:
                if b.offset >= a_end:
                    break
                key = (id(a), id(b))
                if _group(a) != _group(b) and key not in seen:
                    seen.add(key)
                    bad.append((a, b))
    return bad


def validate_plan(plan: "ArenaPlan") -> None:
    """Raise :class:`ArenaPlanError` naming the first problem: misalignment, overrun or a live overlap."""
    for e in plan.entries:
        if e.offset < 0 or e.offset % plan.alignment:
            raise ArenaPlanError(f"{e.kind} '{e.name}' is at offset {e.offset}, not a non-negative "
                                 f"multiple of {plan.alignment}")
        if e.offset + align_up(e.size, plan.alignment) > plan.arena_bytes:
            raise ArenaPlanError(f"{e.kind} '{e.name}' ends at {e.offset + e.size}, past the arena "
                                 f"({plan.arena_bytes} bytes)")
        if e.first_op > e.last_op:
            raise ArenaPlanError(f"{e.kind} '{e.name}' has an empty lifetime {e.first_op}..{e.last_op}")
    bad = overlapping_pairs(plan)
    if bad:
        a, b = bad[0]
        raise ArenaPlanError(
            f"invalid arena plan: '{a.name}' [{a.offset}, {a.offset + a.size}) ops {a.first_op}..{a.last_op} "
            f"overlaps '{b.name}' [{b.offset}, {b.offset + b.size}) ops {b.first_op}..{b.last_op}"
            + (f" (and {len(bad) - 1} more overlaps)" if len(bad) > 1 else "")
        )

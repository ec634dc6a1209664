"""Human-readable plan report: arena size, lower bound, and each buffer's place and lifetime."""
from __future__ import annotations

from edge_runtime.arena.plan import ArenaPlan


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def format_plan(plan: ArenaPlan, model_name: str = "", name_width: int = 72) -> str:
    """The plan as a text table (one line per buffer, by offset then first op); long names are cut."""
    ratio = plan.arena_bytes / plan.lower_bound_bytes if plan.lower_bound_bytes else 1.0
    subgraphs = getattr(plan, "subgraphs", (plan.subgraph,))
    scope = (f"subgraph {plan.subgraph}, {plan.num_ops} ops, {plan.num_tensors} tensors" if len(subgraphs) == 1 else
             f"subgraphs {', '.join(map(str, subgraphs))} from {plan.subgraph}, {plan.num_ops} steps")
    lines = [
        f"arena plan{' for ' + model_name if model_name else ''} ({scope})",
        f"  planner          {plan.planner}",
        f"  in-place         {'on' if plan.in_place else 'off (a plan TFLite Micro can execute)'}",
        f"  kernel traits    {plan.op_memory_source}",
        f"  arena bytes      {plan.arena_bytes:,}",
        f"  lower bound      {plan.lower_bound_bytes:,}  (arena / bound = {ratio:.3f})",
        f"  alignment        {plan.alignment} bytes",
    ]
    persistent = getattr(plan, "persistent_bytes", 0)
    if persistent:
        lines.append(f"  persistent bytes {persistent:,}  (variable tensors and resource variables, outside "
                     f"the arena plan; total {plan.arena_bytes + persistent:,})")
    lines.append("")
    multi = len(subgraphs) > 1
    rows = [("offset", "size", "ops", "kind", "name")]
    for e in sorted(plan.entries, key=lambda e: (e.offset, e.first_op, e.kind)):
        kind = e.kind if e.alias_of is None else f"alias of {e.alias_of}"
        tag = f"#{e.tensor}" if not multi else f"#{getattr(e, 'subgraph', 0)}:{e.tensor}"
        label = _short(e.name if e.tensor is None else f"{tag} {e.name}", name_width)
        rows.append((f"{e.offset:,}", f"{e.size:,}", f"{e.first_op}..{e.last_op}", kind, label))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        lines.append("  " + "  ".join(r[c].rjust(widths[c]) if c < 2 else r[c].ljust(widths[c])
                                      for c in range(4)) + "  " + r[4])
    return "\n".join(lines)

"""Draw an arena plan as SVG by hand (no plotting library): op index on x, arena address on y.

Each buffer is a rectangle spanning its lifetime (columns) and its bytes (rows),
labelled with its tensor index (``#58``) or ``s<op>`` for scratch. Scratch is
hatched, tensors sharing one buffer (aliases) share its colour, the lower bound is
a dashed line. Hovering a rectangle shows its name, offset, size and lifetime.
"""
from __future__ import annotations

from xml.sax.saxutils import escape

from edge_runtime.arena.align import align_up
from edge_runtime.arena.plan import ArenaPlan

_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac"]


def plan_svg(plan: ArenaPlan, title: str = "", width: int = 900, height: int = 480) -> str:
    """The plan as a standalone SVG document (a string)."""
    left, right, top, bottom = 80, 20, 40, 50
    pw, ph = width - left - right, height - top - bottom
    n_ops = max(plan.num_ops, 1)
    arena = max(plan.arena_bytes, 1)
    col = pw / n_ops

    def y(addr: float) -> float:
        return top + ph - ph * addr / arena

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="2"/></pattern></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">{escape(title or "arena plan")}: '
        f'{plan.arena_bytes:,} B (lower bound {plan.lower_bound_bytes:,} B), planner {escape(plan.planner)}, '
        f'in-place {"on" if plan.in_place else "off"}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#333"/>',
    ]
    # axes: op ticks and address ticks
    step = max(1, n_ops // 20)
    for i in range(0, n_ops, step):
        x = left + (i + 0.5) * col
        out.append(f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="middle">{i}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">op index (time)</text>')
    for k in range(5):
        addr = arena * k / 4
        out.append(f'<text x="{left - 6}" y="{y(addr) + 4:.1f}" text-anchor="end">{int(addr):,}</text>')
        out.append(f'<line x1="{left}" y1="{y(addr):.1f}" x2="{left + pw}" y2="{y(addr):.1f}" '
                   f'stroke="#e5e5e5"/>')
    out.append(f'<text x="14" y="{top + ph / 2:.1f}" transform="rotate(-90 14 {top + ph / 2:.1f})" '
               f'text-anchor="middle">arena offset (bytes)</text>')
    # buffers: one rectangle per alias group (drawn once), tensors coloured by group
    drawn: set[object] = set()
    for e in sorted(plan.entries, key=lambda e: (e.first_op, e.offset)):
        sg = getattr(e, "subgraph", 0)
        group = ("s", sg, e.op) if e.kind == "scratch" else \
            ("t", sg, e.alias_of if e.alias_of is not None else e.tensor)
        size = align_up(e.size, plan.alignment)
        x0, x1 = left + e.first_op * col, left + (e.last_op + 1) * col
        y0, y1 = y(e.offset + size), y(e.offset)
        fill = "url(#hatch)" if e.kind == "scratch" else _PALETTE[hash(group[1:]) % len(_PALETTE)]
        tip = (f"{e.name}: offset {e.offset:,}, {e.size:,} B, ops {e.first_op}..{e.last_op}"
               + (f", alias of tensor {e.alias_of}" if e.alias_of is not None else ""))
        opacity = "0.55" if group in drawn else "0.85"
        drawn.add(group)
        out.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0, 1):.1f}" height="{max(y1 - y0, 1):.1f}" '
                   f'fill="{fill}" fill-opacity="{opacity}" stroke="#222" stroke-width="0.6">'
                   f'<title>{escape(tip)}</title></rect>')
        if (x1 - x0) > 22 and (y1 - y0) > 12:
            short = f"#{e.tensor}" if e.kind == "tensor" else f"s{e.op}"
            full = f"{short} {e.size:,} B"
            label = full if len(full) * 7 < (x1 - x0) - 4 else short
            out.append(f'<text x="{x0 + 3:.1f}" y="{y0 + 11:.1f}" fill="#111">{escape(label)}</text>')
    yb = y(plan.lower_bound_bytes)
    out.append(f'<line x1="{left}" y1="{yb:.1f}" x2="{left + pw}" y2="{yb:.1f}" stroke="#c00" '
               f'stroke-dasharray="6 4"/>')
    out.append(f'<text x="{left + pw - 4}" y="{yb - 4:.1f}" text-anchor="end" fill="#c00">lower bound</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"

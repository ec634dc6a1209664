"""Loop and Scan: unrolled before import when their iteration count is known (:mod:`converters.importers.loop_unroll`);
one reaching the importer is refused in one line saying why."""
from __future__ import annotations

from typing import Any

from converters.importers.onnx_ops.context import ImportContext


def loop(ctx: ImportContext, node: Any, a: dict) -> None:
    """Refuse a Loop left after the unrolling pre-pass, naming what keeps it from being unrolled."""
    m_name = node.input[0] if len(node.input) > 0 else ""
    c_name = node.input[1] if len(node.input) > 1 else ""
    if m_name and not ctx.is_const(m_name):
        raise ctx.err(node, f"the trip count '{m_name}' is computed at run time; only a Loop whose iteration count "
                            f"is known when converting (a constant, or one that follows from static shapes) can be "
                            f"unrolled")
    if c_name and not ctx.is_const(c_name):
        raise ctx.err(node, f"the loop condition '{c_name}' is computed at run time; only a Loop whose iteration "
                            f"count is known when converting can be unrolled")
    raise ctx.err(node, "this Loop was not unrolled before import (a Loop inside an If branch, or a trip count "
                        "known only after import-time folding); fold constants before exporting "
                        "(do_constant_folding=True) so that its trip count is a constant")


def scan(ctx: ImportContext, node: Any, a: dict) -> None:
    """Refuse a Scan left after the unrolling pre-pass."""
    raise ctx.err(node, "this Scan was not unrolled before import (a Scan inside an If branch or a loop body whose "
                        "scan inputs have no static shape); give static input shapes with --input-shape")


REGISTRY = {"Loop": loop, "Scan": scan}

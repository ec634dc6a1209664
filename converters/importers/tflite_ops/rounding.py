"""FLOOR, CEIL, ROUND, SIN, COS: float islands in the int8 model (TFLite Micro runs them in float only)."""
from __future__ import annotations

from typing import Any

from converters.importers.tflite_ops.context import TFLiteContext

KINDS = ("FLOOR", "CEIL", "ROUND", "SIN", "COS")


def float_unary(ctx: TFLiteContext, op: Any) -> None:
    """One-input float math (kept as it is; the quantizer makes it a float island)."""
    ctx.emit(op, op.name, [ctx.act_in(op, 0)], ctx.name(op.outputs[0]))


REGISTRY = {k: float_unary for k in KINDS}

"""Floor, Ceil, Round, Sin, Cos (float islands: TFLite Micro runs them in float only), and Softsign and
Selu rewritten to ops with int8 kernels."""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

KINDS = {"Floor": "FLOOR", "Ceil": "CEIL", "Round": "ROUND", "Sin": "SIN", "Cos": "COS"}
#: ONNX's Selu defaults
SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875


def float_unary(ctx: ImportContext, node: Any, a: dict) -> None:
    """Floor/Ceil/Round (half to even in both ONNX and TFLite)/Sin/Cos."""
    ctx.emit(KINDS[node.op_type], [ctx.act(node, node.input[0])], node.output[0], {}, node)


def softsign(ctx: ImportContext, node: Any, a: dict) -> None:
    """Softsign: ``x / (1 + |x|)``."""
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)
    ab = ctx.emit("ABS", [x], ctx.tmp(f"{out}/abs", shape), {}, node, shape=shape)
    den = ctx.emit("ADD", [ab, ctx.add_const(f"{out}/one", np.array([1.0]))], ctx.tmp(f"{out}/den", shape),
                   {"act": "NONE"}, node, shape=shape)
    ctx.emit("DIV", [x, den], out, {"act": "NONE"}, node)


def selu(ctx: ImportContext, node: Any, a: dict) -> None:
    """Selu: ``gamma * relu(x) + gamma * alpha * min(elu(x), 0)`` (ELU's negative side is ``exp(x) - 1``)."""
    alpha, gamma = float(a.get("alpha", SELU_ALPHA)), float(a.get("gamma", SELU_GAMMA))
    x, out = ctx.act(node, node.input[0]), node.output[0]
    shape = ctx.ir_shape(x)

    def tmp(name: str) -> str:
        return ctx.tmp(f"{out}/{name}", shape)
    pos = ctx.emit("RELU", [x], tmp("relu"), {}, node, shape=shape)
    pos = ctx.emit("MUL", [pos, ctx.add_const(f"{out}/gamma", np.array([gamma]))], tmp("pos"), {"act": "NONE"},
                   node, shape=shape)
    elu = ctx.emit("ELU", [x], tmp("elu"), {}, node, shape=shape)
    neg = ctx.emit("MINIMUM", [elu, ctx.add_const(f"{out}/zero", np.array([0.0]))], tmp("neg"), {}, node, shape=shape)
    neg = ctx.emit("MUL", [neg, ctx.add_const(f"{out}/gamma_alpha", np.array([gamma * alpha]))], tmp("neg_scaled"),
                   {"act": "NONE"}, node, shape=shape)
    ctx.emit("ADD", [pos, neg], out, {"act": "NONE"}, node)


REGISTRY = {**{t: float_unary for t in KINDS}, "Softsign": softsign, "Selu": selu}

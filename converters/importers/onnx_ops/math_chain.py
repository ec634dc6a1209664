"""A small builder for ops written as a chain of elementwise IR ops (the math ops of ``trig`` and
``hyperbolic``): every step gets a fresh intermediate of the broadcast shape, scalar operands become
one-element constants, and the last step writes the node's output."""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

Operand = Union[str, float]
#: IR kinds that take a fused activation (``act``)
FUSED = ("ADD", "SUB", "MUL", "DIV")


class Chain:
    """Emits the elementwise steps of one ONNX node ``node`` whose first input is IR activation ``x``."""

    def __init__(self, ctx: ImportContext, node: Any, x: str) -> None:
        self.ctx, self.node, self.x = ctx, node, x
        self.out = node.output[0]

    def const(self, value: float) -> str:
        """A fresh one-element float constant (each reader its own: MAXIMUM/MINIMUM join their inputs'
        quantization)."""
        return self.ctx.add_const(f"{self.out}/c", np.array([value], np.float32))

    def op(self, kind: str, inputs: Sequence[Operand], tag: str = "", act: str = "NONE", last: bool = False) -> str:
        """``kind(inputs)`` into a fresh intermediate named after ``tag``, or into the node's output
        when ``last``; float operands become constants."""
        names = [i if isinstance(i, str) else self.const(float(i)) for i in inputs]
        attrs = {"act": act} if kind in FUSED else {}
        if last:
            return self.ctx.emit(kind, names, self.out, attrs, self.node)
        shape = tuple(np.broadcast_shapes(*[self.ctx.tensors[n].shape for n in names]))
        return self.ctx.emit(kind, names, self.ctx.tmp(f"{self.out}/{tag or kind.lower()}", shape), attrs,
                             self.node, shape=shape)

    def odd_poly(self, t: str, coeffs: Sequence[float], tag: str, last: bool = False) -> str:
        """``t * (c0 + c1 t^2 + c2 t^4 + ...)`` by Horner's rule in ``t^2`` (``coeffs`` from c0 up)."""
        s = self.op("MUL", [t, t], f"{tag}_square")
        p = self.op("MUL", [s, coeffs[-1]], f"{tag}_p{len(coeffs) - 1}")
        for k in range(len(coeffs) - 2, -1, -1):
            p = self.op("ADD", [p, coeffs[k]], f"{tag}_q{k}")
            if k:
                p = self.op("MUL", [p, s], f"{tag}_p{k}")
        return self.op("MUL", [p, t], tag, last=last)

"""PADV2: PAD with an explicit constant value (third input); the kernel is PAD's."""
from __future__ import annotations

from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.kernels.shape_ops import Pad


class PadV2(Pad):
    """PADV2: as PAD; the third input (same type as the data, one element) is the pad value."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        if len(ctx.op.inputs) < 3 or ctx.op.inputs[2] < 0:
            raise ctx.fail("PADV2 needs its constant-value input")
        super().__init__(ctx)

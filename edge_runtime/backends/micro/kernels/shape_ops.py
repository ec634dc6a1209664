"""PAD, CONCATENATION, STRIDED_SLICE and TRANSPOSE: data movement, same for int8 and float32.

Index parameters must be constant tensors; each op becomes one or a few numpy
copies between precomputed views.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.formats.tflite import TensorInfo
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_constant, require_type,
)

TYPES = ("INT8", "FLOAT32", "INT32")


def _same_quant(ctx: OpContext, a, b) -> None:
    qa, qb = qparams(a), qparams(b)
    if a.type_name == "INT8" and (np.float32(qa[0]), qa[1]) != (np.float32(qb[0]), qb[1]):
        raise ctx.fail("input and output quantization must be equal")


def _same_type_io(ctx: OpContext) -> tuple[TensorInfo, TensorInfo]:
    """Input 0 and the output of a data-movement op: the same type and, for int8, the same quantization."""
    x = require_type(ctx, ctx.input(0), TYPES, "input")
    y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
    _same_quant(ctx, x, y)
    return x, y


class _ViewCopy(Kernel):
    """An op that copies one source view (``self.src``, made at bind time) into ``self.y``."""

    def run(self) -> None:
        """Copy the source view into the output."""
        np.copyto(self.y, self.src)


class Pad(Kernel):
    """PAD (and PADV2 semantics without a custom value): pad value is the zero point."""

    max_version = 2

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x = require_type(ctx, ctx.input(0), TYPES, "input")
        p = require_constant(ctx, ctx.input(1), "paddings")
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        _same_quant(ctx, x, y)
        pads = p.array().astype(np.int64).reshape(-1, 2)
        if pads.shape[0] != len(x.shape) or np.any(pads < 0):
            raise ctx.fail(f"paddings {pads.tolist()} do not fit input shape {x.shape}")
        if tuple(int(s + a + b) for s, (a, b) in zip(x.shape, pads)) != tuple(y.shape):
            raise ctx.fail(f"output shape {y.shape} does not match the paddings")
        self.slices = tuple(slice(int(a), int(a) + s) for s, (a, _b) in zip(x.shape, pads))
        self.value = qparams(y)[1] if x.type_name == "INT8" else 0

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.y = inputs[0], outputs[0]
        self.inner = self.y[self.slices]

    def run(self) -> None:
        """Fill and copy."""
        self.y.fill(self.value)
        np.copyto(self.inner, self.x)


class Concatenation(Kernel):
    """CONCATENATION along one axis (int8 inputs must share the output's quantization)."""

    max_version = 3

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        y = require_type(ctx, ctx.output(0), TYPES, "output")
        o = opt.concatenation(ctx.op)
        if o["activation"] != 0:
            raise ctx.fail("fused activation on CONCATENATION is not supported")
        axis = o["axis"] % len(y.shape) if y.shape else 0
        self.axis = axis
        self.bounds = []
        pos = 0
        for i in range(len(ctx.op.inputs)):
            t = require_type(ctx, ctx.input(i), (y.type_name,), f"input {i}")
            _same_quant(ctx, t, y)
            if len(t.shape) != len(y.shape):
                raise ctx.fail("inputs and output must have the same rank")
            self.bounds.append((pos, pos + t.shape[axis]))
            pos += t.shape[axis]
        if pos != y.shape[axis]:
            raise ctx.fail("the inputs do not add up to the output along the axis")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Destination views."""
        y = outputs[0]
        self.pairs = []
        for x, (a, b) in zip(inputs, self.bounds):
            idx = [slice(None)] * y.ndim
            idx[self.axis] = slice(a, b)
            self.pairs.append((x, y[tuple(idx)]))

    def run(self) -> None:
        """Copy every input into place."""
        for x, dst in self.pairs:
            np.copyto(dst, x)


class StridedSlice(_ViewCopy):
    """STRIDED_SLICE with constant begin/end/strides (begin/end/shrink masks; no ellipsis or new axes)."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = _same_type_io(ctx)
        begin = require_constant(ctx, ctx.input(1), "begin").array().astype(np.int64).reshape(-1)
        end = require_constant(ctx, ctx.input(2), "end").array().astype(np.int64).reshape(-1)
        strides = require_constant(ctx, ctx.input(3), "strides").array().astype(np.int64).reshape(-1)
        o = opt.strided_slice(ctx.op)
        if o["ellipsis_mask"] or o["new_axis_mask"]:
            raise ctx.fail("ellipsis and new-axis masks are not supported")
        if o["offset"]:
            raise ctx.fail("the offset option is not supported")
        rank = len(x.shape)
        if not (len(begin) == len(end) == len(strides) == rank):
            raise ctx.fail("begin, end and strides must have one entry per input dimension")
        idx = []
        for d in range(rank):
            s = int(strides[d])
            if s == 0:
                raise ctx.fail("a stride is 0")
            b = None if (o["begin_mask"] >> d) & 1 else int(begin[d])
            e = None if (o["end_mask"] >> d) & 1 else int(end[d])
            if (o["shrink_axis_mask"] >> d) & 1:
                bb = int(begin[d]) % x.shape[d] if x.shape[d] else 0
                idx.append(bb)
            else:
                idx.append(slice(b, e, s))
        self.index = tuple(idx)
        probe = np.empty(x.shape, np.int8)[self.index]
        if probe.size != y.num_elements:
            raise ctx.fail(f"the slice has {probe.size} elements, the output {y.num_elements}")
        self.out_shape = tuple(y.shape)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Source view (``...`` keeps a 0-d result a view) and the output reshaped to it (a view)."""
        self.src = inputs[0][self.index + (Ellipsis,)]
        self.y = outputs[0].reshape(self.src.shape)


class Transpose(_ViewCopy):
    """TRANSPOSE with a constant permutation."""

    max_version = 6

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = _same_type_io(ctx)
        perm = require_constant(ctx, ctx.input(1), "permutation").array().astype(np.int64).reshape(-1)
        if sorted(perm.tolist()) != list(range(len(x.shape))):
            raise ctx.fail(f"invalid permutation {perm.tolist()} for rank {len(x.shape)}")
        self.perm = tuple(int(p) for p in perm)
        if tuple(x.shape[p] for p in self.perm) != tuple(y.shape):
            raise ctx.fail("output shape does not match the permutation")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Transposed source view."""
        self.src = inputs[0].transpose(self.perm)
        self.y = outputs[0]

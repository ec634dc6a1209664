"""PAD (and PADV2), CONCATENATION, STRIDED_SLICE and TRANSPOSE: data movement, the same for every type.

Index parameters must be constant tensors (TFLM requires it for these ops); each op
becomes one or a few numpy copies between views made at bind time. Types and limits
follow TFLM's kernels: PAD float32/int8/int16/int32 up to 5-D; CONCATENATION
float32/int8/int16/int32/int64/bool, at most 10 inputs, int8 inputs sharing the
output's scale and zero point; STRIDED_SLICE float32/int8/int16/int32/bool with int32
indices, where TFLM (up to 4-D) ignores the ellipsis and new-axis masks and the offset
option; TRANSPOSE float32/int8/int16 (and int32). Beyond TFLM's ranks (STRIDED_SLICE
4, TRANSPOSE 5) micro still runs the plain numpy view copy.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.formats.tflite import TensorInfo
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_constant, require_type, scales32,
)

PAD_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")
CONCAT_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "INT64", "BOOL")
SLICE_TYPES = ("FLOAT32", "INT8", "INT16", "INT32", "BOOL")
TRANSPOSE_TYPES = ("FLOAT32", "INT8", "INT16", "INT32")
PAD_MAX_DIMS = 5
SLICE_MAX_DIMS = 4
CONCAT_MAX_INPUTS = 10


def _same_type_io(ctx: OpContext, types: tuple[str, ...]) -> tuple[TensorInfo, TensorInfo]:
    """Input 0 and the output of a data-movement op: the same type (bytes are copied as they are)."""
    x = require_type(ctx, ctx.input(0), types, "input")
    y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
    return x, y


def _int32_constant(ctx: OpContext, t: Optional[TensorInfo], what: str) -> np.ndarray:
    """A constant int32 index tensor as a flat int64 array (TFLM reads these as int32 at prepare)."""
    require_type(ctx, t, ("INT32",), what)
    return require_constant(ctx, t, what).array().astype(np.int64).reshape(-1)


class _ViewCopy(Kernel):
    """An op that copies one source view (``self.src``, made at bind time) into ``self.y``."""

    def run(self) -> None:
        """Copy the source view into the output."""
        np.copyto(self.y, self.src)


class Pad(Kernel):
    """PAD and PADV2: pad with the constant value (PADV2's third input), else the int8 output zero point, else 0."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = _same_type_io(ctx, PAD_TYPES)
        if len(x.shape) > PAD_MAX_DIMS:
            raise ctx.fail(f"the input has {len(x.shape)} dimensions; TFLM pads at most {PAD_MAX_DIMS}")
        pads = _int32_constant(ctx, ctx.input(1), "paddings")
        if pads.size != 2 * len(y.shape) or len(x.shape) != len(y.shape):
            raise ctx.fail(f"paddings {pads.tolist()} do not fit input shape {x.shape}")
        pads = pads.reshape(-1, 2)
        if np.any(pads < 0):
            raise ctx.fail(f"negative paddings {pads.tolist()} are not supported")
        if tuple(int(s + a + b) for s, (a, b) in zip(x.shape, pads)) != tuple(y.shape):
            raise ctx.fail(f"output shape {y.shape} does not match the paddings")
        self.slices = tuple(slice(int(a), int(a) + s) for s, (a, _b) in zip(x.shape, pads))
        self.value = qparams(y)[1] if x.type_name == "INT8" else 0
        self.has_value = len(ctx.op.inputs) > 2 and ctx.op.inputs[2] >= 0
        if self.has_value:
            c = require_type(ctx, ctx.input(2), (x.type_name,), "constant value")
            if c.num_elements != 1:
                raise ctx.fail("the constant value must hold one element")
            if x.type_name == "INT8" and (qparams(c)[1] != qparams(y)[1] or scales32(c)[0] != scales32(y)[0]):
                raise ctx.fail("the int8 constant value must have the output's scale and zero point")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views."""
        self.x, self.y = inputs[0], outputs[0]
        self.inner = self.y[self.slices]
        self.v = inputs[2].reshape(()) if self.has_value else None

    def run(self) -> None:
        """Fill and copy."""
        if self.v is not None:
            np.copyto(self.y, self.v)
        else:
            self.y.fill(self.value)
        np.copyto(self.inner, self.x)


class Concatenation(Kernel):
    """CONCATENATION along one axis (int8 inputs must share the output's quantization, as TFLM requires)."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        y = require_type(ctx, ctx.output(0), CONCAT_TYPES, "output")
        o = opt.concatenation(ctx.op)
        if o["activation"] != 0:
            raise ctx.fail("fused activation on CONCATENATION is not supported (TFLM refuses it too)")
        n = len(ctx.op.inputs)
        if not 1 <= n <= CONCAT_MAX_INPUTS:
            raise ctx.fail(f"{n} inputs; TFLM concatenates at most {CONCAT_MAX_INPUTS}")
        rank = len(y.shape)
        if not -rank <= o["axis"] < rank:
            raise ctx.fail(f"axis {o['axis']} is out of range for rank {rank}")
        axis = o["axis"] % rank
        self.axis = axis
        self.bounds = []
        pos = 0
        qy = (scales32(y)[0], qparams(y)[1])
        for i in range(n):
            t = require_type(ctx, ctx.input(i), (y.type_name,), f"input {i}")
            if y.type_name == "INT8" and (scales32(t)[0], qparams(t)[1]) != qy:
                raise ctx.fail(f"int8 input {i} has a scale or zero point different from the output's "
                               "(TFLM does not requantize in CONCATENATION)")
            if len(t.shape) != rank or any(a != b for d, (a, b) in enumerate(zip(t.shape, y.shape)) if d != axis):
                raise ctx.fail(f"input {i} shape {tuple(t.shape)} does not fit output {tuple(y.shape)} "
                               f"along axis {axis}")
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


def strided_slice_axis(n: int, begin: int, end: int, stride: int, begin_masked: bool, end_masked: bool,
                       shrink: bool) -> tuple[int, int]:
    """TFLM's start and element count along one axis (negative indices wrap, then clamp per direction)."""
    lo, hi = (0, n) if stride > 0 else (-1, n - 1)
    if begin_masked:
        start = 0 if stride > 0 else n - 1
    else:
        start = begin + n if begin < 0 else begin
        start = min(max(start, lo), hi)
    if shrink:
        return start, 1
    if end_masked:
        stop = n if stride > 0 else -1
    else:
        stop = end + n if end < 0 else end
        stop = min(max(stop, lo), hi)
    return start, max(0, math.ceil((stop - start) / stride))


class StridedSlice(_ViewCopy):
    """STRIDED_SLICE with constant int32 begin/end/strides, begin/end/shrink masks (TFLM ignores the
    ellipsis and new-axis masks and the offset option, and so does this kernel)."""

    max_version = 8

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = _same_type_io(ctx, SLICE_TYPES)
        rank = len(x.shape)
        begin = _int32_constant(ctx, ctx.input(1), "begin")
        end = _int32_constant(ctx, ctx.input(2), "end")
        strides = _int32_constant(ctx, ctx.input(3), "strides")
        o = opt.strided_slice(ctx.op)
        if rank > SLICE_MAX_DIMS and (o["ellipsis_mask"] or o["new_axis_mask"] or o["offset"]):
            # Beyond TFLM's limit there is no reference for ignoring these, so they are refused.
            raise ctx.fail(f"ellipsis/new-axis masks and the offset option on a {rank}-D input are not supported "
                           f"(TFLM's STRIDED_SLICE stops at {SLICE_MAX_DIMS}-D)")
        if not (len(begin) == len(end) == len(strides) == rank):
            raise ctx.fail("begin, end and strides must have one entry per input dimension")
        idx: list = []
        out_shape = []
        for d in range(rank):
            s, n = int(strides[d]), int(x.shape[d])
            if s == 0:
                raise ctx.fail("a stride is 0")
            shrink = bool((o["shrink_axis_mask"] >> d) & 1)
            start, count = strided_slice_axis(n, int(begin[d]), int(end[d]), s, bool((o["begin_mask"] >> d) & 1),
                                              bool((o["end_mask"] >> d) & 1), shrink)
            if shrink:
                # TFLM's Eval writes nothing for these (its loop is empty), so there is no result to match.
                if not 0 <= start < n or s < 0:
                    raise ctx.fail(f"shrink axis {d} starts at {start} with stride {s}: TFLM leaves the output "
                                   "unwritten for a start outside the dimension or a negative stride")
                idx.append(start)
                continue
            out_shape.append(count)
            if count == 0:
                idx.append(slice(0, 0))
            else:
                last = start + (count - 1) * s
                stop = last + (1 if s > 0 else -1)
                idx.append(slice(start, stop if stop >= 0 else None, s))
        if tuple(out_shape) != tuple(y.shape):
            raise ctx.fail(f"the slice has shape {tuple(out_shape)}, the output {tuple(y.shape)}")
        self.index = tuple(idx)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Source view (``...`` keeps a 0-d result a view) and the output reshaped to it (a view)."""
        self.src = inputs[0][self.index + (Ellipsis,)]
        self.y = outputs[0].reshape(self.src.shape)


class Transpose(_ViewCopy):
    """TRANSPOSE with a constant int32 permutation."""

    max_version = 6

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        x, y = _same_type_io(ctx, TRANSPOSE_TYPES)
        perm = _int32_constant(ctx, ctx.input(1), "permutation")
        if sorted(perm.tolist()) != list(range(len(x.shape))):
            raise ctx.fail(f"invalid permutation {perm.tolist()} for rank {len(x.shape)}")
        self.perm = tuple(int(p) for p in perm)
        if tuple(x.shape[p] for p in self.perm) != tuple(y.shape):
            raise ctx.fail("output shape does not match the permutation")

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Transposed source view."""
        self.src = inputs[0].transpose(self.perm)
        self.y = outputs[0]

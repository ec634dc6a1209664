"""Shared pieces of the spatial and reduction kernels.

- builtin option decoders for the option tables this family reads (schema field
  numbers: TransposeConvOptions{padding, stride_w, stride_h,
  fused_activation_function}, BatchMatMulOptions{adj_x, adj_y},
  ResizeBilinearOptions{new_height, new_width, align_corners, half_pixel_centers},
  ResizeNearestNeighborOptions{align_corners, half_pixel_centers},
  DepthToSpace/SpaceToDepthOptions{block_size}); ReducerOptions and Pool2DOptions
  come from ``options.py``;
- :class:`Requantizer64`: TFLite's 64-bit ``MultiplyByQuantizedMultiplier`` (the
  multiplier reduced to 16 bits, one rounding shift), per channel, used by the
  16x8 kernels whose accumulators are int64;
- :class:`Reduction`: the base of SUM, REDUCE_MAX/MIN/ALL (axes, keep_dims, views);
- checks shared by several ops: :func:`constant_ints`, :func:`same_quantization`,
  :func:`io_same_type`, :func:`resize_target`, :func:`block_layout` (axes: ``reduce.reduction_axes``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import CLIP, Requantizer
from edge_runtime.backends.micro.kernels.reduce import reduction_axes
from edge_runtime.backends.micro.kernels.base import (
    Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, qparams, require_constant, require_type,
)
from edge_runtime.formats.tflite import Operator, TensorInfo

I64 = np.dtype(np.int64)
F64 = np.dtype(np.float64)


def _s(op: Operator, index: int, fmt: str, default):  # type: ignore[no-untyped-def]
    return op.options.scalar(index, fmt, default) if op.options is not None else default


def transpose_conv_options(op: Operator) -> dict[str, int]:
    """TRANSPOSE_CONV options."""
    return {"padding": int(_s(op, 0, "b", 0)), "stride_w": int(_s(op, 1, "i", 1)),
            "stride_h": int(_s(op, 2, "i", 1)), "activation": int(_s(op, 3, "b", 0))}


def batch_matmul_options(op: Operator) -> dict[str, bool]:
    """BATCH_MATMUL options."""
    return {"adj_x": bool(_s(op, 0, "?", False)), "adj_y": bool(_s(op, 1, "?", False))}


def resize_options(op: Operator) -> dict[str, bool]:
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR options (align_corners, half_pixel_centers)."""
    first = 2 if op.name == "RESIZE_BILINEAR" else 0
    return {"align_corners": bool(_s(op, first, "?", False)),
            "half_pixel_centers": bool(_s(op, first + 1, "?", False))}


def block_size(op: Operator) -> int:
    """DEPTH_TO_SPACE / SPACE_TO_DEPTH block size."""
    return int(_s(op, 0, "i", 0))


def constant_ints(ctx: OpContext, pos: int, what: str, types: tuple[str, ...] = ("INT32",)) -> np.ndarray:
    """A constant integer input as a flat int64 array."""
    t = require_type(ctx, ctx.input(pos), types, what)
    return require_constant(ctx, t, what).array().astype(np.int64).reshape(-1)


def same_quantization(ctx: OpContext, x: TensorInfo, y: TensorInfo) -> None:
    """Refuse quantized data movement that would change scale or zero point."""
    if x.type_name in ("INT8", "INT16"):
        sx, zx = qparams(x)
        sy, zy = qparams(y)
        if (np.float32(sx), zx) != (np.float32(sy), zy):
            raise ctx.fail("input and output quantization must be equal")


def io_same_type(ctx: OpContext, types: tuple[str, ...]) -> tuple[TensorInfo, TensorInfo]:
    """Input 0 and output 0 of a data-movement op: one of ``types``, equal types and quantization."""
    x = require_type(ctx, ctx.input(0), types, "input")
    y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
    same_quantization(ctx, x, y)
    return x, y


class Requantizer64:
    """TFLite's int64 ``MultiplyByQuantizedMultiplier`` per channel (last axis), zero point, clamp.

    The Q31 multiplier is reduced to 16 bits (``(m + 2**15) >> 16``, saturated at
    0x7FFF) and applied with one rounding shift by ``15 - shift``; accumulators must
    stay below 2**47 in magnitude (TFLite's precondition), so the products fit int64.
    """

    def __init__(self, multipliers: np.ndarray, shifts: np.ndarray, zero_point: int, act_min: int,
                 act_max: int, bias: Optional[np.ndarray] = None) -> None:
        m = np.asarray(multipliers, np.int64).reshape(-1)
        s = np.asarray(shifts, np.int64).reshape(-1)
        self.reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF).astype(np.int64)
        total = 15 - s
        self.total = total.astype(np.int64)
        self.round = np.left_shift(np.int64(1), total - 1).astype(np.int64)
        self.bias = None if bias is None else np.asarray(bias, np.int64).reshape(-1)
        self.zero_point = np.int64(zero_point)
        self.act_min, self.act_max = np.int64(act_min), np.int64(act_max)

    def apply(self, acc: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
        """Requantize int64 ``acc`` (…, C) in place and store it into ``out`` (``tmp`` is unused)."""
        if self.bias is not None:
            acc += self.bias
        acc *= self.reduced
        acc += self.round
        np.right_shift(acc, self.total, out=acc)
        # the C code keeps the shifted value in int32
        acc += 1 << 31
        acc &= (1 << 32) - 1
        acc -= 1 << 31
        acc += self.zero_point
        CLIP(acc, self.act_min, self.act_max, out=out, casting="unsafe")


def requantizer(wide: bool, multipliers: np.ndarray, shifts: np.ndarray, zero_point: int, act_min: int,
                act_max: int, bias: Optional[np.ndarray] = None) -> Requantizer | Requantizer64:
    """The 32-bit (int8 kernels) or 64-bit (16x8 kernels) output stage."""
    if wide:
        return Requantizer64(multipliers, shifts, zero_point, act_min, act_max, bias)
    return Requantizer(multipliers, shifts, zero_point, act_min, act_max, bias)


def resize_target(ctx: OpContext, x: TensorInfo, y: TensorInfo) -> tuple[int, int]:
    """The constant (height, width) of a resize op, checked against 4-D NHWC input and output."""
    size = constant_ints(ctx, 1, "size")
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise ctx.fail("input and output must be 4-D (NHWC)")
    if size.size != 2 or np.any(size <= 0):
        raise ctx.fail(f"size {size.tolist()} must hold two positive values")
    oh, ow = int(size[0]), int(size[1])
    if tuple(y.shape) != (x.shape[0], oh, ow, x.shape[3]):
        raise ctx.fail(f"output shape {y.shape} does not match size {[oh, ow]}")
    if min(x.shape) <= 0:
        raise ctx.fail("empty input")
    o = resize_options(ctx.op)
    if o["align_corners"] and o["half_pixel_centers"]:
        raise ctx.fail("half_pixel_centers and align_corners cannot both be set")
    return oh, ow


class Reduction(Kernel):
    """Base of the reductions over constant axes (input 0, axis input 1, ReducerOptions).

    Sets ``axes`` (resolved, sorted), ``kshape`` (the output with reduced dims kept as 1),
    ``count`` (elements per output) and binds ``x`` and ``y`` (viewed as ``kshape``).
    """

    max_version = 3
    types: tuple[str, ...] = ()

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        if len(ctx.op.inputs) != 2:
            raise ctx.fail("a reduction takes 2 inputs (data, axis)")
        self.xt = x = require_type(ctx, ctx.input(0), self.types, "input")
        self.yt = y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if x.num_elements == 0:
            raise ctx.fail("empty input tensors are not supported")
        self.axes, self.kshape = reduction_axes(ctx, x, y)
        self.count = int(np.prod([x.shape[a] for a in self.axes], dtype=np.int64)) if self.axes else 1

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views; subclasses keep their workspace arrays in ``ws``."""
        self.x = inputs[0].reshape(self.xt.shape)
        self.y = outputs[0].reshape(self.kshape)
        self.ws = ws


def block_layout(ctx: OpContext, x: TensorInfo) -> tuple[tuple[int, int], np.ndarray, tuple[int, int, int, int]]:
    """BATCH_TO_SPACE_ND / SPACE_TO_BATCH_ND: (block (h, w), the (2, 2) crops or paddings, the input
    as 4-D NHWC). 3-D inputs (N, H, C) get a width of 1 and a block width of 1, as TFLite does."""
    block = constant_ints(ctx, 1, "block_shape")
    pairs = constant_ints(ctx, 2, "crops/paddings")
    rank = len(x.shape)
    if rank not in (3, 4) or block.size != rank - 2 or pairs.size != 2 * (rank - 2):
        raise ctx.fail(f"needs a 3-D or 4-D input with one block size and pair per spatial dim (shape {x.shape})")
    if np.any(block < 1) or np.any(pairs < 0):
        raise ctx.fail(f"invalid block {block.tolist()} or crops/paddings {pairs.tolist()}")
    pairs = pairs.reshape(-1, 2)
    if rank == 3:
        return (int(block[0]), 1), np.vstack([pairs, [[0, 0]]]), (x.shape[0], x.shape[1], 1, x.shape[2])
    return (int(block[0]), int(block[1])), pairs, tuple(x.shape)  # type: ignore[return-value]

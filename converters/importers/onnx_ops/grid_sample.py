"""GridSample (opset 16's bilinear/nearest, opset 20's linear/nearest) on 4-D and 5-D inputs, the grid an
activation or a constant.

tflite-micro cannot gather from an activation at run-time indices, so the sampling is a matrix product:
each output pixel ``p`` weighs input pixel ``(h, w)`` by ``ky[p, h] * kx[p, w]`` with the tent
``k[p, h] = relu(1 - |iy[p] - h|)``, where ``iy`` is the grid's y unnormalised to pixels (and rounded for
``nearest``, clamped to the image for ``border`` padding). The tent gives bilinear interpolation exactly,
and pixels outside the image get no weight, which is ``zeros`` padding. So:

``A = ky (x) kx`` (``[N, P, H*W]``, one MUL with broadcasting), ``out = BATCH_MATMUL(A, x as [N, H*W, C])``,
which is already the NHWC output (5-D: a third tent, and a transpose back to ONNX's layout). Every op has an
int8 kernel (ROUND for ``nearest`` and FLOOR for ``reflection`` are float islands). Padding: ``zeros``,
``border``, and ``reflection`` (the position reflected at the borders with FLOOR and ABS). Precision: the
int8 grid holds a position to about ``W / 255`` pixels. Samplings of a computed grid whose weight matrix is
larger than :data:`MAX_WEIGHTS` elements are refused in one line.

A constant grid takes the sparse form instead: each output point reads its ``2`` (linear, nearest) or ``4``
(``cubic``/``bicubic``) taps per axis (index padding as onnxruntime: zeros, border-clamped or reflected), so
a constant GATHER of those ``2^d`` / ``4^d`` pixels from ``X`` as ``[N * H * W, C]`` and one BATCH_MATMUL with
the constant ``[N * P, 1, taps]`` weights: ``N * P * 4 * C`` MACs for bilinear 2-D (16 for bicubic) and
constants sized to the output, not the dense ``N * P * H * W`` matrix. Cubic mode needs a constant grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

#: Largest weight matrix (N x output pixels x input pixels) written.
MAX_WEIGHTS = 1 << 20
MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}
#: ONNX's cubic convolution coefficient (as onnxruntime and PyTorch)
CUBIC_ALPHA = -0.75


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _affine(ctx: ImportContext, node: Any, x: str, scale: float, offset: float, tag: str) -> str:
    """``x * scale + offset`` (MUL then ADD; either left out when it changes nothing)."""
    out, shape = node.output[0], ctx.ir_shape(x)
    if scale != 1.0:
        x = ctx.emit("MUL", [x, ctx.add_const(f"{out}/{tag}_scale", np.array([scale], np.float32))],
                     ctx.tmp(f"{out}/{tag}_scaled", shape), {"act": "NONE"}, node, shape=shape)
    if offset != 0.0:
        x = ctx.emit("ADD", [x, ctx.add_const(f"{out}/{tag}_offset", np.array([offset], np.float32))],
                     ctx.tmp(f"{out}/{tag}_shifted", shape), {"act": "NONE"}, node, shape=shape)
    return x


def _reflect(ctx: ImportContext, node: Any, i: str, lo: float, hi: float, tag: str) -> str:
    """Reflect pixel position ``i`` into ``[lo, hi]`` at both borders, as often as needed (a triangle wave of
    period ``2R``, ``R = hi - lo``): ``f = frac((i - lo) / 2R)``, ``lo + R * (1 - |2f - 1|)``."""
    out, shape = node.output[0], ctx.ir_shape(i)
    span = hi - lo
    q = _affine(ctx, node, i, 1.0 / (2 * span), -lo / (2 * span), f"{tag}_period")
    k = ctx.emit("FLOOR", [q], ctx.tmp(f"{out}/{tag}_periods", shape), {}, node, shape=shape)
    f = ctx.emit("SUB", [q, k], ctx.tmp(f"{out}/{tag}_phase", shape), {"act": "NONE"}, node, shape=shape)
    u = _affine(ctx, node, f, 2.0, -1.0, f"{tag}_centred")
    u = ctx.emit("ABS", [u], ctx.tmp(f"{out}/{tag}_fold", shape), {}, node, shape=shape)
    return _affine(ctx, node, u, -span, lo + span, f"{tag}_reflected")


def _clamp(ctx: ImportContext, node: Any, i: str, size: int, tag: str) -> str:
    """``i`` clamped to the pixel range ``[0, size - 1]``."""
    out, shape = node.output[0], ctx.ir_shape(i)
    i = ctx.emit("MAXIMUM", [i, ctx.add_const(f"{out}/{tag}_low", np.array([0.0], np.float32))],
                 ctx.tmp(f"{out}/{tag}_above", shape), {}, node, shape=shape)
    return ctx.emit("MINIMUM", [i, ctx.add_const(f"{out}/{tag}_high", np.array([size - 1.0], np.float32))],
                    ctx.tmp(f"{out}/{tag}_clamped", shape), {}, node, shape=shape)


def _tent(ctx: ImportContext, node: Any, g: str, size: int, align: bool, nearest: bool, padding: str,
          tag: str) -> str:
    """``relu(1 - |i - j|)`` for every pixel ``j < size`` of one image axis: ``[N, P, size]`` from the
    normalised coordinates ``g`` (``[N, P, 1]``). ``i - j`` is clamped to [-1, 1] by the SUB's fused
    RELU_N1_TO_1, so it is quantized over [-1, 1] rather than [-size, size] (``1 - |d|`` is then >= 0).

    ``border``: clamping the position to the image equals clamping every corner's index. ``reflection``:
    the position is reflected into ONNX's borders (``[-0.5, size - 0.5]``, or ``[0, size - 1]`` with
    ``align_corners``), then clamped, which is where ONNX reflects a corner index that falls outside."""
    out = node.output[0]
    shape = ctx.ir_shape(g)
    # align_corners: i = (g + 1) / 2 * (size - 1); otherwise i = ((g + 1) * size - 1) / 2
    i = _affine(ctx, node, g, (size - 1) / 2.0 if align else size / 2.0, (size - 1) / 2.0, f"{tag}_pixel")
    if nearest:  # half to even, as ONNX (np.rint) and TFLite's ROUND
        i = ctx.emit("ROUND", [i], ctx.tmp(f"{out}/{tag}_rounded", shape), {}, node, shape=shape)
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    if padding == "reflection" and hi > lo:
        i = _reflect(ctx, node, i, lo, hi, tag)
    if padding != "zeros":
        i = _clamp(ctx, node, i, size, tag)
    wide = shape[:-1] + (size,)
    pixels = ctx.add_const(f"{out}/{tag}_pixels", np.arange(size, dtype=np.float32).reshape(1, 1, size))
    d = ctx.emit("SUB", [i, pixels],
                 ctx.tmp(f"{out}/{tag}_distance", wide), {"act": "RELU_N1_TO_1"}, node, shape=wide)
    d = ctx.emit("ABS", [d], ctx.tmp(f"{out}/{tag}_abs", wide), {}, node, shape=wide)
    return ctx.emit("SUB", [ctx.add_const(f"{out}/{tag}_one", np.array([1.0], np.float32)), d],
                    ctx.tmp(f"{out}/{tag}_weight", wide), {"act": "NONE"}, node, shape=wide)


def grid_sample(ctx: ImportContext, node: Any, a: dict) -> None:
    """GridSample(X [N, C, H, W], grid [N, Ho, Wo, 2]) -> [N, C, Ho, Wo], and its volumetric form
    (X [N, C, D, H, W], grid [N, Do, Ho, Wo, 3])."""
    mode = _text(a, "mode", "bilinear" if ctx.opset < 20 else "linear")
    padding = _text(a, "padding_mode", "zeros")
    align = bool(int(a.get("align_corners", 0)))
    if mode not in MODES:
        raise ctx.err(node, f"mode '{mode}' is not supported (bilinear/linear, nearest and cubic convert)")
    if padding not in ("zeros", "border", "reflection"):
        raise ctx.err(node, f"padding_mode '{padding}' is not supported (zeros, border and reflection convert)")
    x_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    g_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[1]))
    rank = len(x_shape)
    if rank not in (4, 5) or len(g_shape) != rank or g_shape[-1] != rank - 2:
        raise ctx.err(node, f"only 4-D and 5-D inputs convert (X {x_shape}, grid {g_shape})")
    n, c, sizes = x_shape[0], x_shape[1], x_shape[2:]
    volume = int(np.prod(sizes))
    p = int(np.prod(g_shape[1:-1]))
    sparse = ctx.is_const(node.input[1])
    if MODES[mode] == "cubic" and not ctx.is_const(node.input[1]):
        raise ctx.err(node, "cubic mode needs a constant grid (linear and nearest take a computed one)")
    if n * p * volume > MAX_WEIGHTS and not sparse:
        raise ctx.err(node, f"the sampling's weight matrix would hold {n * p * volume} values (at most "
                            f"{MAX_WEIGHTS}: N x output pixels x input pixels)")
    out = node.output[0]
    if ctx.is_const(node.input[0]) and ctx.is_const(node.input[1]):
        raise ctx.err(node, "X and grid are both constants; fold the node before conversion")
    last = (0,) + tuple(range(2, rank)) + (1,)  # channels last, in ONNX's spatial order
    if ctx.is_const(node.input[0]):
        xv = np.asarray(ctx.const(node, node.input[0]), np.float32)
        pixels = ctx.add_const(f"{out}/pixels", xv.transpose(last).reshape(n, volume, c))
    else:
        x = ctx.act(node, node.input[0])  # 4-D: NHWC already; 5-D: ONNX layout
        if rank == 5:
            x = ctx.transpose(x, last)
        pixels = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/pixels", (n, volume, c)), {}, node, shape=(n, volume, c))
    nearest = MODES[mode] == "nearest"
    if sparse:
        gv = np.asarray(ctx.const(node, node.input[1]), np.float64).reshape(n, p, rank - 2)
        y = _sparse_sample(ctx, node, pixels, gv, sizes, align, MODES[mode], padding)
    else:
        grid = ctx.reshape(ctx.act(node, node.input[1]), (n, p, rank - 2), node=node)
        weights = ""
        done = 1
        for d, size in enumerate(sizes):  # grid component rank - 3 - d is the coordinate along spatial axis d
            k = rank - 3 - d
            g = ctx.emit("STRIDED_SLICE", [grid], ctx.tmp(f"{out}/grid{d}", (n, p, 1)),
                         {"begin": (0, 0, k), "end": (n, p, k + 1), "strides": (1, 1, 1), "end_mask": 0},
                         node, shape=(n, p, 1))
            tent = _tent(ctx, node, g, size, align, nearest, padding, f"axis{d}")
            if not weights:
                weights, done = tent, size
                continue
            a4 = ctx.emit("RESHAPE", [weights], ctx.tmp(f"{out}/outer{d}", (n, p, done, 1)), {}, node,
                          shape=(n, p, done, 1))
            b4 = ctx.emit("RESHAPE", [tent], ctx.tmp(f"{out}/inner{d}", (n, p, 1, size)), {}, node,
                          shape=(n, p, 1, size))
            both = ctx.emit("MUL", [a4, b4], ctx.tmp(f"{out}/product{d}", (n, p, done, size)), {"act": "NONE"},
                            node, shape=(n, p, done, size))
            done *= size
            weights = ctx.emit("RESHAPE", [both], ctx.tmp(f"{out}/weights{d}", (n, p, done)), {}, node,
                               shape=(n, p, done))
    if not sparse:
        y = ctx.emit("BATCH_MATMUL", [weights, pixels], ctx.tmp(f"{out}/sampled", (n, p, c)), {}, node,
                     shape=(n, p, c))
    if rank == 4:  # [N, Ho * Wo, C] is the NHWC output
        ctx.emit("RESHAPE", [y], out, {}, node, shape=(n,) + g_shape[1:3] + (c,))
        return
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/channels_last", (n,) + g_shape[1:-1] + (c,)), {}, node,
                 shape=(n,) + g_shape[1:-1] + (c,))
    ctx.transpose(y, (0, 4, 1, 2, 3), out, node)


def _axis_taps(g: np.ndarray, size: int, align: bool, mode: str, padding: str) -> tuple[np.ndarray, np.ndarray]:
    """Per point (``g``: normalised coordinates ``[...]``), the pixel index and weight of each tap along one
    axis: ``[..., 2]`` (linear, nearest: the tent of :func:`const_weights`) or ``[..., 4]`` (cubic, as
    onnxruntime and PyTorch: border and reflection padding move each tap's index, not the position; onnx's
    reference implementation also clamps/reflects the position first, which differs from them for border
    padding; zeros padding zeroes a tap outside the image). Indices always lie inside the image."""
    i = (g + 1) * ((size - 1) / 2.0 if align else size / 2.0) - (0.0 if align else 0.5)
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)

    def reflect(v: np.ndarray) -> np.ndarray:
        return lo + (hi - lo) - np.abs(np.mod(v - lo, 2 * (hi - lo)) - (hi - lo)) if hi > lo else v
    if mode == "nearest":
        i = np.rint(i)
    if padding == "reflection" and mode != "cubic":
        i = reflect(i)
    if padding != "zeros" and mode != "cubic":
        i = np.clip(i, 0, size - 1)
    base = np.floor(i)
    t = i - base
    if mode == "cubic":
        a = CUBIC_ALPHA
        w = np.stack([((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                      ((a + 2) * t - (a + 3)) * t * t + 1,
                      ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                      ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a], axis=-1)
        idx = base[..., None] + np.arange(-1, 3)
        if padding == "border":
            idx = np.clip(idx, 0, size - 1)
        elif padding == "reflection":
            idx = np.clip(np.trunc(reflect(idx)), 0, size - 1)
    else:
        w = np.stack([1.0 - t, t], axis=-1)
        idx = base[..., None] + np.arange(2)
    inside = (idx >= 0) & (idx < size)
    return np.where(inside, idx, 0).astype(np.int64), np.where(inside, w, 0.0)


def _sparse_sample(ctx: ImportContext, node: Any, pixels: str, grid: np.ndarray, sizes: tuple[int, ...],
                   align: bool, mode: str, padding: str) -> str:
    """A constant grid's sampling as a constant GATHER of every point's taps from ``pixels`` ``[N, V, C]``
    and a BATCH_MATMUL with the constant ``[N * P, 1, T]`` tap weights; returns ``[N, P, C]``."""
    n, p, dims = grid.shape
    volume = int(np.prod(sizes))
    c = ctx.ir_shape(pixels)[-1]
    index = np.zeros((n, p, 1), np.int64)
    weight = np.ones((n, p, 1))
    for d, size in enumerate(sizes):
        idx, w = _axis_taps(grid[..., dims - 1 - d], size, align, mode, padding)
        index = (index[..., :, None] * size + idx[..., None, :]).reshape(n, p, -1)
        weight = (weight[..., :, None] * w[..., None, :]).reshape(n, p, -1)
    taps = index.shape[-1]
    index = index + (np.arange(n) * volume)[:, None, None]
    out = node.output[0]
    flat = ctx.emit("RESHAPE", [pixels], ctx.tmp(f"{out}/pixel_rows", (n * volume, c)), {}, node,
                    shape=(n * volume, c))
    picked = ctx.emit("GATHER", [flat, ctx.add_const(f"{out}/taps", index.reshape(-1), np.int32)],
                      ctx.tmp(f"{out}/tap_values", (n * p * taps, c)), {"axis": 0}, node, shape=(n * p * taps, c))
    per_point = ctx.emit("RESHAPE", [picked], ctx.tmp(f"{out}/per_point", (n * p, taps, c)), {}, node,
                         shape=(n * p, taps, c))
    y = ctx.emit("BATCH_MATMUL", [ctx.add_const(f"{out}/tap_weights",
                                                weight.reshape(n * p, 1, taps).astype(np.float32)), per_point],
                 ctx.tmp(f"{out}/sampled_points", (n * p, 1, c)), {}, node, shape=(n * p, 1, c))
    return ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/sampled", (n, p, c)), {}, node, shape=(n, p, c))


REGISTRY = {"GridSample": grid_sample}

"""RoiAlign with constant ``rois`` and ``batch_indices`` (as an exported detector head with fixed anchors or
proposals holds them): bilinear sampling as constant interpolation matrices.

Per region ``r`` and output bin, ONNX samples a ``grid_h x grid_w`` lattice of points and interpolates each
bilinearly (corner rules as onnxruntime: a point outside ``[-1, size]`` counts as zero, a coordinate is
clamped at 0 and at the last pixel). The weight of pixel ``(h, w)`` in a point is ``ky(y)[h] * kx(x)[w]`` and
the lattice is a product, so the bin average is separable: ``out[r] = Ay[r] @ X[b_r] @ Ax[r]^T`` with
``Ay[r]`` ``[PH, H]`` (the mean of the row tents of the bin's sample rows) and ``Ax[r]`` ``[PW, W]``.

``avg``: one BATCH_MATMUL with the constant ``[R * PH, N * H]`` matrix (each region's ``Ay`` in its batch's
block of columns) over ``X`` as ``[N * H, W * C]``, then one with the constant ``[R * PH, PW, W]`` (``Ax[r]``
per output row) over that as ``[R * PH, W, C]``: ``R * PH * (N * H * W + PW * W) * C`` MACs, no transposes,
and matrices sized to one image axis (never ``(PH * PW) x (H * W)``).

``max`` (onnxruntime's definition: per sample point the largest of its four weighted corner values, then
the largest over the bin's points): a constant GATHER of the ``4 * grid_h * grid_w`` corner pixels of every
bin from ``X`` as ``[N * H * W, C]``, a MUL by their constant weights, and a MAX_POOL_2D over each bin's
terms.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext


def _text(a: dict, key: str, default: str) -> str:
    v = a.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _corners(pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sample coordinate: (low index, high index, low weight, high weight), zero weights outside."""
    valid = (pos >= -1.0) & (pos <= size)
    p = np.maximum(pos, 0.0)
    low = np.floor(p).astype(np.int64)
    at_end = low >= size - 1
    low = np.where(at_end, size - 1, low)
    high = np.where(at_end, size - 1, low + 1)
    p = np.where(at_end, low, p)
    frac = p - low
    return low, high, np.where(valid, 1.0 - frac, 0.0), np.where(valid, frac, 0.0)


def _samples(start: float, length: float, pooled: int, grid: int) -> np.ndarray:
    """Sample coordinates ``[pooled, grid]`` of one region along one axis."""
    bin_size = length / pooled
    return (start + np.arange(pooled)[:, None] * bin_size
            + (np.arange(grid)[None, :] + 0.5) * bin_size / max(grid, 1))


def _axis_matrix(pos: np.ndarray, size: int, grid: int) -> np.ndarray:
    """``[pooled, size]``: the mean over a bin's ``grid`` samples of their interpolation tents."""
    pooled = pos.shape[0]
    m = np.zeros((pooled, size))
    if grid == 0:
        return m
    low, high, wl, wh = _corners(pos, size)
    rows = np.repeat(np.arange(pooled), grid)
    np.add.at(m, (rows, low.reshape(-1)), wl.reshape(-1) / grid)
    np.add.at(m, (rows, high.reshape(-1)), wh.reshape(-1) / grid)
    return m


def region_axes(rois: np.ndarray, a: dict, opset: int, h: int, w: int, ph: int, pw: int
                ) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Per region: (sample rows ``[ph, gh]``, sample columns ``[pw, gw]``, gh, gw) in pixel coordinates."""
    mode = _text(a, "coordinate_transformation_mode", "half_pixel" if opset >= 16 else "output_half_pixel")
    half = mode == "half_pixel"
    scale = float(a.get("spatial_scale", 1.0))
    ratio = int(a.get("sampling_ratio", 0))
    out = []
    for x0, y0, x1, y1 in np.asarray(rois, np.float64).reshape(-1, 4):
        off = 0.5 if half else 0.0
        sx, sy, ex, ey = x0 * scale - off, y0 * scale - off, x1 * scale - off, y1 * scale - off
        rw, rh = ex - sx, ey - sy
        if not half:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = ratio if ratio > 0 else int(np.ceil(rh / ph))
        gw = ratio if ratio > 0 else int(np.ceil(rw / pw))
        out.append((_samples(sy, rh, ph, gh), _samples(sx, rw, pw, gw), gh, gw))
    return out


def roi_align(ctx: ImportContext, node: Any, a: dict) -> None:
    """RoiAlign(X [N, C, H, W], rois [R, 4] constant, batch_indices [R] constant) -> [R, C, PH, PW]."""
    mode = _text(a, "mode", "avg")
    if mode not in ("avg", "max"):
        raise ctx.err(node, f"mode '{mode}' is not supported (avg and max convert)")
    mode_ct = _text(a, "coordinate_transformation_mode", "half_pixel")
    if mode_ct not in ("half_pixel", "output_half_pixel"):
        raise ctx.err(node, f"coordinate_transformation_mode '{mode_ct}' is not supported")
    for i, what in ((1, "rois"), (2, "batch_indices")):
        if not ctx.is_const(node.input[i]):
            raise ctx.err(node, f"{what} must be constant (regions computed at run time are not supported)")
    x_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    if len(x_shape) != 4:
        raise ctx.err(node, f"X must be 4-D [N, C, H, W], not {x_shape}")
    n, c, h, w = x_shape
    rois = np.asarray(ctx.const(node, node.input[1]), np.float64)
    batch = np.asarray(ctx.const(node, node.input[2])).reshape(-1).astype(np.int64)
    if rois.ndim != 2 or rois.shape[1] != 4 or rois.shape[0] != batch.size:
        raise ctx.err(node, f"rois {rois.shape} and batch_indices {batch.shape} do not describe [R, 4] regions")
    if batch.size == 0 or batch.min() < 0 or batch.max() >= n:
        raise ctx.err(node, f"batch_indices {batch.tolist()} are outside the batch of {n}")
    ph, pw = int(a.get("output_height", 1)), int(a.get("output_width", 1))
    if ph < 1 or pw < 1:
        raise ctx.err(node, f"output size {ph} x {pw} must be positive")
    r = batch.size
    x = ctx.act(node, node.input[0])  # NHWC
    out = node.output[0]
    regions = region_axes(rois, a, ctx.opset, h, w, ph, pw)
    if mode == "max":
        _max_mode(ctx, node, x, regions, batch, (n, h, w, c), (ph, pw))
        return
    ay = np.zeros((r * ph, n * h))
    ax = np.zeros((r * ph, pw, w))
    for i, (ys, xs, gh, gw) in enumerate(regions):
        ay[i * ph:(i + 1) * ph, batch[i] * h:(batch[i] + 1) * h] = _axis_matrix(ys, h, gh)
        ax[i * ph:(i + 1) * ph] = _axis_matrix(xs, w, gw)[None]
    rows = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/rows", (1, n * h, w * c)), {}, node, shape=(1, n * h, w * c))
    t = ctx.emit("BATCH_MATMUL", [ctx.add_const(f"{out}/row_weights", ay.astype(np.float32)[None]), rows],
                 ctx.tmp(f"{out}/row_sampled", (1, r * ph, w * c)), {}, node, shape=(1, r * ph, w * c))
    t = ctx.emit("RESHAPE", [t], ctx.tmp(f"{out}/per_row", (r * ph, w, c)), {}, node, shape=(r * ph, w, c))
    y = ctx.emit("BATCH_MATMUL", [ctx.add_const(f"{out}/column_weights", ax.astype(np.float32)), t],
                 ctx.tmp(f"{out}/sampled", (r * ph, pw, c)), {}, node, shape=(r * ph, pw, c))
    ctx.emit("RESHAPE", [y], out, {}, node, shape=(r, ph, pw, c))


def _max_mode(ctx: ImportContext, node: Any, x: str, regions: list, batch: np.ndarray,
              nhwc: tuple[int, int, int, int], pooled: tuple[int, int]) -> None:
    """``max``: GATHER every bin's weighted corner pixels, MUL by the weights, MAX_POOL_2D per bin."""
    n, h, w, c = nhwc
    ph, pw = pooled
    out = node.output[0]
    grids = {(gh, gw) for _, _, gh, gw in regions}
    if len(grids) != 1 or 0 in next(iter(grids)):
        raise ctx.err(node, "max mode needs the same non-empty sampling grid in every region (set sampling_ratio)")
    gh, gw = next(iter(grids))
    terms = 4 * gh * gw
    index = np.zeros((len(regions), ph, pw, gh, gw, 4), np.int64)
    weight = np.zeros(index.shape)
    for i, (ys, xs, _, _) in enumerate(regions):
        yl, yh, wyl, wyh = (v[:, None, :, None] for v in _corners(ys, h))
        xl, xh, wxl, wxh = (v[None, :, None, :] for v in _corners(xs, w))
        base = batch[i] * h * w
        for k, (yy, xx, wy, wx) in enumerate(((yl, xl, wyl, wxl), (yl, xh, wyl, wxh),
                                              (yh, xl, wyh, wxl), (yh, xh, wyh, wxh))):
            index[i, ..., k] = base + yy * w + xx
            weight[i, ..., k] = wy * wx
    k_all = index.size
    bins = len(regions) * ph * pw
    flat = ctx.emit("RESHAPE", [x], ctx.tmp(f"{out}/pixels", (n * h * w, c)), {}, node, shape=(n * h * w, c))
    picked = ctx.emit("GATHER", [flat, ctx.add_const(f"{out}/corners", index.reshape(-1), np.int32)],
                      ctx.tmp(f"{out}/corner_values", (k_all, c)), {"axis": 0}, node, shape=(k_all, c))
    weighted = ctx.emit("MUL", [picked, ctx.add_const(f"{out}/corner_weights",
                                                      weight.reshape(-1, 1).astype(np.float32))],
                        ctx.tmp(f"{out}/weighted", (k_all, c)), {"act": "NONE"}, node, shape=(k_all, c))
    grouped = ctx.emit("RESHAPE", [weighted], ctx.tmp(f"{out}/per_bin", (bins, terms, 1, c)), {}, node,
                       shape=(bins, terms, 1, c))
    y = ctx.emit("MAX_POOL_2D", [grouped], ctx.tmp(f"{out}/bin_max", (bins, 1, 1, c)),
                 {"kernel": (terms, 1), "stride": (terms, 1), "pads": (0, 0, 0, 0), "act": "NONE"}, node,
                 shape=(bins, 1, 1, c))
    ctx.emit("RESHAPE", [y], out, {}, node, shape=(len(regions), ph, pw, c))


REGISTRY = {"RoiAlign": roi_align}

"""AffineGrid (constant ``size``): the sampling grid of an affine transform ``theta``, for GridSample.

Every output point is ``theta[n] @ [x, y, (z,) 1]`` of its base-grid position (the pixel centres in [-1, 1],
or the corners with ``align_corners``), so the grid is one FULLY_CONNECTED over ``theta``'s rows
(``[N * 2, 3]``, 3-D ``[N * 3, 4]``) with the constant homogeneous base grid ``[H * W, 3]`` as its weights,
then a TRANSPOSE to ``[N, H * W, 2]`` and a RESHAPE to the ONNX shape ``[N, H, W, 2]`` (``[N, D, H, W, 3]``).
The weights are sized to the output grid; ``theta`` may be an activation or a constant.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.axis_matmul import matmul_last
from converters.importers.onnx_ops.context import ImportContext


def base_grid(sizes: tuple[int, ...], align: bool) -> np.ndarray:
    """``[prod(sizes), len(sizes) + 1]``: each point's normalised ``(x, y[, z], 1)``, points in C order."""
    axes = []
    for s in sizes:
        if align:
            axes.append(np.linspace(-1.0, 1.0, s) if s > 1 else np.full(1, -1.0))
        else:
            axes.append((2.0 * np.arange(s) + 1.0) / s - 1.0)
    mesh = np.meshgrid(*axes, indexing="ij")  # spatial order (D,) H, W
    coords = [m.reshape(-1) for m in reversed(mesh)]  # x (W) first, as GridSample reads it
    return np.stack(coords + [np.ones(int(np.prod(sizes)))], axis=1)


def affine_grid(ctx: ImportContext, node: Any, a: dict) -> None:
    """AffineGrid(theta [N, 2, 3] or [N, 3, 4], size constant) -> grid [N, H, W, 2] or [N, D, H, W, 3]."""
    size = tuple(int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1))
    if len(size) not in (4, 5) or min(size) < 1:
        raise ctx.err(node, f"size {list(size)} is not a positive [N, C, H, W] or [N, C, D, H, W]")
    dims = len(size) - 2
    n, sizes = size[0], size[2:]
    theta_shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    if theta_shape != (n, dims, dims + 1):
        raise ctx.err(node, f"theta shape {theta_shape} is not {(n, dims, dims + 1)} for size {list(size)}")
    base = base_grid(sizes, bool(int(a.get("align_corners", 0))))
    points = base.shape[0]
    out = node.output[0]
    if ctx.is_const(node.input[0]):
        raise ctx.err(node, "theta and size are both constants; fold the node before conversion")
    theta = ctx.act(node, node.input[0])
    rows = ctx.emit("RESHAPE", [theta], ctx.tmp(f"{out}/theta_rows", (n * dims, dims + 1)), {}, node,
                    shape=(n * dims, dims + 1))
    y = matmul_last(ctx, node, rows, base.astype(np.float32), ctx.tmp(f"{out}/coords", (n * dims, points)))
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/per_axis", (n, dims, points)), {}, node, shape=(n, dims, points))
    y = ctx.transpose(y, (0, 2, 1), node=node)  # [n, points, dims]
    ctx.reshape(y, (n,) + tuple(sizes) + (dims,), out, node)


REGISTRY = {"AffineGrid": affine_grid}

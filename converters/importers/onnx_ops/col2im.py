"""Col2Im (constant ``image_shape`` and ``block_shape``) as a transposed convolution.

Col2Im adds column ``l`` (the sliding block at grid position ``(bh, bw)``) of channel ``c`` and kernel tap
``t = (i, j)`` into image pixel ``(bh * stride - pad + i * dilation, bw * stride - pad + j * dilation)``:
that is exactly ConvTranspose of the columns seen as an image ``[N, C * kk, L_h, L_w]`` with 0/1 weights
``w[c * kk + t, c', i, j] = [c == c'][t == (i, j)]``, the strides, dilations and begin pads of the op, and
the image size as output. 2-D: one group per image channel (``kk`` MACs per column value, which is a
factor ``kk`` over a plain scatter-add but one TRANSPOSE_CONV that rounds once, where a sum of ``kk``
shifted copies would round at every ADD); 3-D: the block-diagonal weights with one group (the 3-D lowering
in :mod:`conv_transpose3d` takes group 1). The weights are exact in int8 (one scale, values 0 and 127).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.context import ImportContext
from converters.importers.onnx_ops.conv_transpose3d import conv_transpose_any


def col2im(ctx: ImportContext, node: Any, a: dict) -> None:
    """Col2Im(input [N, C * prod(block), L], image_shape, block_shape) -> [N, C, *image_shape]."""
    from onnx import helper

    image = tuple(int(v) for v in np.asarray(ctx.const(node, node.input[1])).reshape(-1))
    block = tuple(int(v) for v in np.asarray(ctx.const(node, node.input[2])).reshape(-1))
    k = len(image)
    if k not in (2, 3) or len(block) != k:
        raise ctx.err(node, f"image_shape {list(image)} and block_shape {list(block)} must both have 2 or 3 values")
    shape = tuple(int(v) for v in ctx.src_shape(node, node.input[0]))
    if len(shape) != 3:
        raise ctx.err(node, f"input shape {shape} is not [N, C * prod(block_shape), L]")
    n, ckk, length = shape
    kk = int(np.prod(block))
    if kk < 1 or ckk % kk:
        raise ctx.err(node, f"input has {ckk} rows, not a multiple of prod(block_shape)={kk}")
    c = ckk // kk
    strides = [int(v) for v in a.get("strides", [1] * k)]
    dilations = [int(v) for v in a.get("dilations", [1] * k)]
    pads = [int(v) for v in a.get("pads", [0] * (2 * k))]
    if len(strides) != k or len(dilations) != k or len(pads) != 2 * k or min(strides + dilations) < 1:
        raise ctx.err(node, f"strides {strides}, dilations {dilations}, pads {pads} do not fit a {k}-D image")
    grid = tuple((image[i] + pads[i] + pads[i + k] - (block[i] - 1) * dilations[i] - 1) // strides[i] + 1
                 for i in range(k))
    if min(grid) < 1 or int(np.prod(grid)) != length:
        raise ctx.err(node, f"the input has {length} columns but image_shape {list(image)} and the blocks give "
                            f"{' x '.join(map(str, grid))}")
    group = c if k == 2 else 1
    w = np.zeros((ckk, c // group) + block, np.float32)
    taps = np.arange(kk)
    for ch in range(c):
        tap_index = (ch * kk + taps,) + ((np.zeros(kk, np.int64),) if group > 1 else (np.full(kk, ch),))
        w[tap_index + np.unravel_index(taps, block)] = 1.0
    out = node.output[0]
    cols = ctx.reshape(ctx.act(node, node.input[0]), (n, ckk) + grid, node=node)
    w_key = ctx._fresh(f"{out}/fold_weights")
    ctx.consts[w_key] = w
    stand_in = helper.make_node("ConvTranspose", [cols, w_key], [out], name=node.name or out,
                                strides=strides, dilations=dilations, pads=pads, group=group)
    ctx.shapes[cols] = (n, ckk) + grid
    try:
        conv_transpose_any(ctx, stand_in, {"strides": strides, "dilations": dilations, "pads": pads,
                                           "group": group})
    finally:
        del ctx.consts[w_key]


REGISTRY = {"Col2Im": col2im}

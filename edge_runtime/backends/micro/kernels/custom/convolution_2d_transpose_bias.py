"""MediaPipe's custom ``Convolution2DTransposeBias`` (float32): TRANSPOSE_CONV with a bias, as a custom op.

MediaPipe's segmentation models (selfie segmentation, hair segmentation) upsample with it. Inputs:
``input`` NHWC, ``weights`` OHWI, ``bias`` [O] (constants); the output shape is the output tensor's.
The custom options are MediaPipe's raw ``TfLiteTransposeConvParams`` struct, little-endian int32
``padding`` (TfLitePadding: 1 SAME, 2 VALID), ``stride_width``, ``stride_height``; no activation.
The arithmetic is the float TRANSPOSE_CONV kernel's (taps scattered onto a canvas, the output
window cut out, bias added), so a model with this op equals the same model written with
TRANSPOSE_CONV and a bias input. TFLite Micro has no kernel for it; LiteRT registers one.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from edge_runtime.backends.micro.kernels.base import Inputs, OpContext, Outputs, Scratch, Workspace, require_type
from edge_runtime.backends.micro.kernels.spatial.transpose_conv import TransposeConv
from edge_runtime.backends.micro.options import PADDING_SAME, PADDING_VALID

#: TfLitePadding -> schema Padding
_PADDING = {1: PADDING_SAME, 2: PADDING_VALID}


class Convolution2DTransposeBias(TransposeConv):
    """``Convolution2DTransposeBias(input, weights, bias)`` in float32."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        if len(ctx.op.inputs) != 3:
            raise ctx.fail("Convolution2DTransposeBias takes 3 inputs (input, weights, bias)")
        require_type(ctx, ctx.input(0), ("FLOAT32",), "input")
        x, w, b = ctx.op.inputs
        # TRANSPOSE_CONV's input order: output shape (unused: the output tensor's shape), weights, input, bias
        super().__init__(dataclasses.replace(ctx, op=dataclasses.replace(ctx.op, inputs=(-1, w, x, b))))
        self.ctx = ctx

    def options(self, ctx: OpContext) -> dict[str, int]:
        """Padding and strides from the raw ``TfLiteTransposeConvParams`` in the custom options."""
        raw = ctx.op.custom_options
        if raw is None or len(raw) < 12:
            raise ctx.fail("the custom options (padding, stride_width, stride_height) are missing")
        padding, sw, sh = (int(v) for v in np.frombuffer(np.asarray(raw, np.uint8).tobytes()[:12], "<i4"))
        if padding not in _PADDING:
            raise ctx.fail(f"padding code {padding} is neither SAME (1) nor VALID (2)")
        return {"padding": _PADDING[padding], "stride_w": sw, "stride_h": sh, "activation": 0}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Bind as TRANSPOSE_CONV does, with the inputs in its order."""
        super().bind([None, inputs[1], inputs[0], inputs[2]], outputs, scratch, ws)

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

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
    require_constant,
    require_type,
)
from edge_runtime.backends.micro.kernels.spatial.transpose_conv_float import TransposeConvFloat
from edge_runtime.backends.micro.options import PADDING_SAME, PADDING_VALID

#: TfLitePadding -> schema Padding
_PADDING = {1: PADDING_SAME, 2: PADDING_VALID}
#: Largest stride accepted (MediaPipe's upsampling layers use 2; the output size grows with the stride)
MAX_STRIDE = 1 << 12


class Convolution2DTransposeBias(TransposeConvFloat):
    """``Convolution2DTransposeBias(input, weights, bias)`` in float32."""

    max_version = 1

    def __init__(self, ctx: OpContext) -> None:
        if len(ctx.op.inputs) != 3 or len(ctx.op.outputs) != 1:
            raise ctx.fail("Convolution2DTransposeBias takes 3 inputs (input, weights, bias) and gives 1 output")
        require_type(ctx, ctx.input(0), ("FLOAT32",), "input")
        require_constant(ctx, require_type(ctx, ctx.input(2), ("FLOAT32",), "bias"), "bias")  # LiteRT needs it
        x, w, b = ctx.op.inputs
        # TRANSPOSE_CONV's input order: output shape (unused: the output tensor's shape), weights, input, bias
        super().__init__(dataclasses.replace(ctx, op=dataclasses.replace(ctx.op, inputs=(-1, w, x, b))))
        self.ctx = ctx
        same = self._padding_code == 1
        want = (self.h * self.sh, self.w * self.sw) if same else \
            ((self.h - 1) * self.sh + self.kh, (self.w - 1) * self.sw + self.kw)
        if (self.ho, self.wo) != want:
            raise ctx.fail(f"output {self.ho}x{self.wo} (HxW) is not the {want[0]}x{want[1]} that "
                           f"{'SAME' if same else 'VALID'} padding and strides {self.sh}x{self.sw} give for a "
                           f"{self.h}x{self.w} input and {self.kh}x{self.kw} weights")

    def options(self, ctx: OpContext) -> dict[str, int]:
        """Padding and strides from the raw ``TfLiteTransposeConvParams`` in the custom options."""
        raw = ctx.op.custom_options
        if raw is None or len(raw) < 12:
            raise ctx.fail("the custom options (padding, stride_width, stride_height) are missing")
        padding, sw, sh = (int(v) for v in np.frombuffer(np.asarray(raw, np.uint8).tobytes()[:12], "<i4"))
        if padding not in _PADDING:
            raise ctx.fail(f"padding code {padding} is neither SAME (1) nor VALID (2)")
        if not (0 < sw <= MAX_STRIDE and 0 < sh <= MAX_STRIDE):
            raise ctx.fail(f"strides {sh}x{sw} (HxW) are not between 1 and {MAX_STRIDE}")
        self._padding_code = padding
        return {"padding": _PADDING[padding], "stride_w": sw, "stride_h": sh, "activation": 0}

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Bind as TRANSPOSE_CONV does, with the inputs in its order."""
        super().bind([None, inputs[1], inputs[0], inputs[2]], outputs, scratch, ws)

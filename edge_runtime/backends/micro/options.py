"""Builtin options of the ops the micro backend runs, read from the operator's options table.

Field numbers follow the TFLite schema (``schema.fbs``): Conv2DOptions{padding,
stride_w, stride_h, fused_activation_function, dilation_w_factor,
dilation_h_factor}, DepthwiseConv2DOptions{padding, stride_w, stride_h,
depth_multiplier, fused_activation_function, dilation_w_factor,
dilation_h_factor}, FullyConnectedOptions{fused_activation_function,
weights_format, keep_num_dims, asymmetric_quantize_inputs}, Pool2DOptions{padding,
stride_w, stride_h, filter_width, filter_height, fused_activation_function},
Add/Sub/MulOptions{fused_activation_function}, SoftmaxOptions{beta},
ConcatenationOptions{axis, fused_activation_function}, ReducerOptions{keep_dims},
StridedSliceOptions{begin_mask, end_mask, ellipsis_mask, new_axis_mask,
shrink_axis_mask, offset}.
"""
from __future__ import annotations

from typing import Any

from edge_runtime.formats.tflite import Operator

PADDING_SAME = 0
PADDING_VALID = 1
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


def _s(op: Operator, index: int, fmt: str, default: Any) -> Any:
    return op.options.scalar(index, fmt, default) if op.options is not None else default


def conv2d(op: Operator) -> dict[str, Any]:
    """CONV_2D options."""
    return {"padding": int(_s(op, 0, "b", 0)), "stride_w": int(_s(op, 1, "i", 1)), "stride_h": int(_s(op, 2, "i", 1)),
            "activation": int(_s(op, 3, "b", 0)), "dilation_w": int(_s(op, 4, "i", 1)),
            "dilation_h": int(_s(op, 5, "i", 1))}


def depthwise(op: Operator) -> dict[str, Any]:
    """DEPTHWISE_CONV_2D options."""
    return {"padding": int(_s(op, 0, "b", 0)), "stride_w": int(_s(op, 1, "i", 1)), "stride_h": int(_s(op, 2, "i", 1)),
            "depth_multiplier": int(_s(op, 3, "i", 1)), "activation": int(_s(op, 4, "b", 0)),
            "dilation_w": int(_s(op, 5, "i", 1)), "dilation_h": int(_s(op, 6, "i", 1))}


def fully_connected(op: Operator) -> dict[str, Any]:
    """FULLY_CONNECTED options."""
    return {"activation": int(_s(op, 0, "b", 0)), "weights_format": int(_s(op, 1, "b", 0)),
            "keep_num_dims": bool(_s(op, 2, "?", False))}


def pool2d(op: Operator) -> dict[str, Any]:
    """AVERAGE_POOL_2D / MAX_POOL_2D options."""
    return {"padding": int(_s(op, 0, "b", 0)), "stride_w": int(_s(op, 1, "i", 1)), "stride_h": int(_s(op, 2, "i", 1)),
            "filter_w": int(_s(op, 3, "i", 1)), "filter_h": int(_s(op, 4, "i", 1)),
            "activation": int(_s(op, 5, "b", 0))}


def activation_only(op: Operator) -> dict[str, Any]:
    """ADD / SUB / MUL options (fused activation)."""
    return {"activation": int(_s(op, 0, "b", 0))}


def softmax(op: Operator) -> dict[str, Any]:
    """SOFTMAX options."""
    return {"beta": float(_s(op, 0, "f", 1.0))}


def concatenation(op: Operator) -> dict[str, Any]:
    """CONCATENATION options."""
    return {"axis": int(_s(op, 0, "i", 0)), "activation": int(_s(op, 1, "b", 0))}


def reducer(op: Operator) -> dict[str, Any]:
    """MEAN options."""
    return {"keep_dims": bool(_s(op, 0, "?", False))}


def strided_slice(op: Operator) -> dict[str, Any]:
    """STRIDED_SLICE options."""
    return {"begin_mask": int(_s(op, 0, "i", 0)), "end_mask": int(_s(op, 1, "i", 0)),
            "ellipsis_mask": int(_s(op, 2, "i", 0)), "new_axis_mask": int(_s(op, 3, "i", 0)),
            "shrink_axis_mask": int(_s(op, 4, "i", 0)), "offset": bool(_s(op, 5, "?", False))}

"""SPACE_TO_BATCH_ND -> CONV_2D / DEPTHWISE_CONV_2D -> BATCH_TO_SPACE_ND, TensorFlow's form of a
dilated convolution, folded back into one dilated convolution (what TensorFlow's converter does).

SPACE_TO_BATCH_ND pads the input and splits it into ``d x d`` phase images; a VALID, stride-1
convolution on each phase equals a convolution dilated by ``d`` on the padded input; BATCH_TO_SPACE_ND
interleaves the phases back and crops. So the three become one convolution with dilation ``d`` and
padding ``pad - crop`` on each side (:func:`converters.ir.legalize` makes padding that is neither
SAME nor VALID an explicit PAD). Either op outside this pattern is refused with one line.
"""
from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext

CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
#: per import: IR name of a SPACE_TO_BATCH_ND output -> (its input, block shape, paddings)
_PENDING: "weakref.WeakKeyDictionary[TFLiteContext, dict[str, tuple[str, tuple[int, int], np.ndarray]]]" = (
    weakref.WeakKeyDictionary())
REFUSE = ("only TensorFlow's dilated-convolution pattern (SPACE_TO_BATCH_ND -> VALID stride-1 CONV_2D or "
          "DEPTHWISE_CONV_2D -> BATCH_TO_SPACE_ND with the same block shape) is supported; "
          "export the convolution with its dilation_rate instead")


def _readers(ctx: TFLiteContext, idx: int) -> list[Any]:
    return [o for o in ctx.sg.operators if idx in o.inputs]


def _conv_ok(ctx: TFLiteContext, conv: Any) -> bool:
    """A VALID, stride-1, undilated convolution (the middle of the pattern)."""
    if conv.name == "CONV_2D":
        fields = {"padding": 0, "sw": 1, "sh": 2, "dw": 4, "dh": 5}
    else:
        fields = {"padding": 0, "sw": 1, "sh": 2, "dw": 5, "dh": 6}
    if int(ctx.option(conv, fields["padding"], "b", 0)) != 1:  # Padding.VALID
        return False
    return all(int(ctx.option(conv, fields[k], "i", 1)) == 1 for k in ("sw", "sh", "dw", "dh"))


def space_to_batch(ctx: TFLiteContext, op: Any) -> None:
    """SPACE_TO_BATCH_ND: recorded for the BATCH_TO_SPACE_ND that closes the pattern (no op emitted)."""
    x = ctx.act_in(op, 0)
    block = np.asarray(ctx.value(op, 1)).reshape(-1).astype(int)
    pads = np.asarray(ctx.value(op, 2)).reshape(-1, 2).astype(int)
    if len(ctx.shape(x)) != 4 or block.size != 2 or pads.shape != (2, 2):
        raise ctx.err(op, f"a 4-D input with a 2-D block shape is required; {REFUSE}")
    readers = _readers(ctx, op.outputs[0])
    if len(readers) != 1 or readers[0].name not in CONVS or not _conv_ok(ctx, readers[0]):
        raise ctx.err(op, REFUSE)
    after = _readers(ctx, readers[0].outputs[0])
    if (len(after) != 1 or after[0].name != "BATCH_TO_SPACE_ND" or ctx.sg.tensors[after[0].inputs[1]].data is None
            or not np.array_equal(np.asarray(ctx.sg.tensors[after[0].inputs[1]].array()).reshape(-1), block)):
        raise ctx.err(op, REFUSE)
    _PENDING.setdefault(ctx, {})[ctx.name(op.outputs[0])] = (x, (int(block[0]), int(block[1])), pads)


def batch_to_space(ctx: TFLiteContext, op: Any) -> None:
    """BATCH_TO_SPACE_ND closing the pattern: the convolution before it becomes one dilated convolution."""
    src = ctx.act_in(op, 0)
    crops = np.asarray(ctx.value(op, 2)).reshape(-1, 2).astype(int)
    conv = next((o for o in reversed(ctx.ops) if src in o.outputs), None)
    pending = _PENDING.get(ctx, {})
    if conv is None or conv.kind not in CONVS or conv.inputs[0] not in pending or crops.shape != (2, 2):
        raise ctx.err(op, REFUSE)
    x, (bh, bw), pads = pending.pop(conv.inputs[0])
    top, bottom = int(pads[0, 0] - crops[0, 0]), int(pads[0, 1] - crops[0, 1])
    left, right = int(pads[1, 0] - crops[1, 0]), int(pads[1, 1] - crops[1, 1])
    if min(top, bottom, left, right) < 0:
        raise ctx.err(op, f"crops {crops.tolist()} exceed the paddings {pads.tolist()} of its SPACE_TO_BATCH_ND; "
                          "export the convolution with its dilation_rate instead")
    out = ctx.name(op.outputs[0])
    ctx.tensors.pop(conv.inputs[0], None)
    ctx.tensors.pop(conv.outputs[0], None)
    conv.inputs = [x] + conv.inputs[1:]
    conv.outputs = [out]
    conv.attrs = dict(conv.attrs, dilation=(bh, bw), pads=(top, left, bottom, right))


REGISTRY = {"SPACE_TO_BATCH_ND": space_to_batch, "BATCH_TO_SPACE_ND": batch_to_space}

"""RFFT2D and the complex tensors it makes, written as real ops (TFLite Micro has no FFT and no complex type).

TensorFlow audio front ends in .tflite files take ``tf.signal.rfft`` of windowed frames (RFFT2D with an
``fft_length`` of ``[1, N]`` on frames of shape ``[..., 1, W]``) and then its magnitude (COMPLEX_ABS:
word-activation-recognition's classifier) or its real part (CAST to float32: BirdNET). A DFT of a fixed
length is a linear map, so the real and imaginary parts of the spectrum are two FULLY_CONNECTED layers with
constant Fourier bases (``re[k] = sum_n x[n] cos(2 pi k n / N)``, ``im[k] = -sum_n x[n] sin(2 pi k n / N)``
for ``k <= N / 2``; frames longer than N are cropped, shorter ones zero-padded, as TFLite's kernel does).
A complex tensor is kept as that pair of float tensors (:attr:`TFLiteContext.complex_parts`): reshapes move
both, COMPLEX_ABS becomes ``sqrt(re * re + im * im)``, CAST to float32 and REAL take the real part, IMAG
the imaginary one. Any other op reading a complex tensor is refused in one line.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.tflite_ops.context import TFLiteContext

#: the most weights the two Fourier bases may have together (a 2,048-point transform has 4.2 M)
MAX_WEIGHTS = 1 << 24
#: ops that move a complex tensor's values without arithmetic
_MOVES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
#: ops this module handles when they read a complex tensor
COMPLEX_READERS = _MOVES + ("COMPLEX_ABS", "CAST", "REAL", "IMAG")


def reads_complex(ctx: TFLiteContext, op: Any) -> bool:
    """True when ``op`` is RFFT2D or reads a complex tensor made by one."""
    return op.name == "RFFT2D" or any(i in ctx.complex_parts for i in op.inputs if i >= 0)


def fourier_bases(width: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``[length // 2 + 1, width]`` cosine and negative-sine bases of a real DFT of ``length`` points on frames
    of ``width`` values (columns past ``length`` are zero: the frame is cropped)."""
    n = np.arange(min(width, length), dtype=np.float64)
    k = np.arange(length // 2 + 1, dtype=np.float64)[:, None]
    angle = 2.0 * np.pi * ((k * n) % length) / length
    cos, sin = np.zeros((k.size, width)), np.zeros((k.size, width))
    cos[:, :n.size], sin[:, :n.size] = np.cos(angle), -np.sin(angle)
    return cos.astype(np.float32), sin.astype(np.float32)


def _rfft2d(ctx: TFLiteContext, op: Any) -> None:
    x = ctx.act_in(op, 0)
    shape = ctx.shape(x)
    fft = [int(v) for v in np.asarray(ctx.value(op, 1)).reshape(-1)]
    if len(fft) != 2 or len(shape) < 2 or fft[0] != 1 or shape[-2] != 1 or fft[1] < 1:
        raise ctx.err(op, f"fft_length {fft} on an input of shape {list(shape)}: only a 1-D transform (fft_length "
                          "[1, N] on frames [..., 1, W]) is supported")
    width, length = shape[-1], fft[1]
    bins = length // 2 + 1
    if 2 * bins * width > MAX_WEIGHTS:
        raise ctx.err(op, f"a {length}-point transform of {width} values needs {2 * bins * width} weights; "
                          f"at most {MAX_WEIGHTS} are supported")
    out = ctx.name(op.outputs[0])
    rows = int(np.prod(shape, dtype=np.int64)) // width
    flat = ctx.emit(op, "RESHAPE", [x], ctx.tmp(f"{out}/frames", (rows, width)))
    cos, sin = fourier_bases(width, length)
    out_shape = tuple(shape[:-1]) + (bins,)
    parts = []
    for tag, basis in (("re", cos), ("im", sin)):
        w = ctx.add_const(f"{out}/{tag}_basis", basis)
        b = ctx.add_const(f"{out}/{tag}_bias", np.zeros(bins, np.float32))
        y = ctx.emit(op, "FULLY_CONNECTED", [flat, w, b], ctx.tmp(f"{out}/{tag}_rows", (rows, bins)), {"act": "NONE"})
        parts.append(ctx.emit(op, "RESHAPE", [y], ctx.tmp(f"{out}/{tag}", out_shape)))
    ctx.complex_parts[op.outputs[0]] = (parts[0], parts[1])


def handle_complex(ctx: TFLiteContext, op: Any) -> None:
    """RFFT2D, or an op reading the complex tensor one made (see the module docstring)."""
    if op.name == "RFFT2D":
        _rfft2d(ctx, op)
        return
    src = op.inputs[0]
    if op.name not in COMPLEX_READERS or src not in ctx.complex_parts or any(
            i in ctx.complex_parts for i in op.inputs[1:] if i >= 0):
        raise ctx.err(op, "reads a complex tensor (an RFFT2D result); only reshapes, COMPLEX_ABS, REAL, IMAG and "
                          "CAST to float32 of one are supported")
    re, im = ctx.complex_parts[src]
    out_info = ctx.sg.tensors[op.outputs[0]]
    if op.name in _MOVES:
        shape = tuple(int(d) for d in out_info.shape)
        if int(np.prod(shape, dtype=np.int64)) != int(np.prod(ctx.shape(re), dtype=np.int64)):
            raise ctx.err(op, f"reshapes a complex tensor of shape {list(ctx.shape(re))} to {list(shape)}"
                              f"{ctx.dynamic_hint()}")
        base = ctx.name(op.outputs[0])
        ctx.complex_parts[op.outputs[0]] = (ctx.emit(op, "RESHAPE", [re], ctx.tmp(f"{base}/re", shape)),
                                            ctx.emit(op, "RESHAPE", [im], ctx.tmp(f"{base}/im", shape)))
        return
    if out_info.type_name != "FLOAT32":
        raise ctx.err(op, f"output is {out_info.type_name}; only float32 results of a complex tensor are supported")
    out = ctx.name(op.outputs[0])
    if op.name in ("CAST", "REAL", "IMAG"):
        ctx.emit(op, "RESHAPE", [im if op.name == "IMAG" else re], out)
        return
    shape = ctx.shape(re)
    re2 = ctx.emit(op, "MUL", [re, re], ctx.tmp(f"{out}/re2", shape), {"act": "NONE"})
    im2 = ctx.emit(op, "MUL", [im, im], ctx.tmp(f"{out}/im2", shape), {"act": "NONE"})
    power = ctx.emit(op, "ADD", [re2, im2], ctx.tmp(f"{out}/power", shape), {"act": "NONE"})
    ctx.emit(op, "SQRT", [power], out)

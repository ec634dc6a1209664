"""Shared pieces of the recurrent kernels: option tables, state-tensor checks, float activations.

Option field numbers follow the TFLite schema: UnidirectionalSequenceLSTMOptions{
fused_activation_function, cell_clip, proj_clip, time_major, asymmetric_quantize_inputs,
diagonal_recurrent_tensors}, SVDFOptions{rank, fused_activation_function,
asymmetric_quantize_inputs}.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import OpContext
from edge_runtime.backends.micro.libm_expf import ExpF
from edge_runtime.backends.micro.libm_tanhf import TanhF
from edge_runtime.formats.tflite import Operator, TensorInfo

#: TFLite's ActivationFunctionType codes.
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6, ACT_TANH, ACT_SIGN_BIT = 0, 1, 2, 3, 4, 5
#: TFLM's arena buffers are 16-byte aligned; each scratch request is rounded to this.
SCRATCH_ALIGN = 16


def _s(op: Operator, index: int, fmt: str, default: Any) -> Any:
    return op.options.scalar(index, fmt, default) if op.options is not None else default


def lstm_options(op: Operator) -> dict[str, Any]:
    """UNIDIRECTIONAL_SEQUENCE_LSTM options."""
    return {"activation": int(_s(op, 0, "b", 0)), "cell_clip": float(np.float32(_s(op, 1, "f", 0.0))),
            "proj_clip": float(np.float32(_s(op, 2, "f", 0.0))), "time_major": bool(_s(op, 3, "?", False)),
            "diagonal_recurrent": bool(_s(op, 5, "?", False))}


def svdf_options(op: Operator) -> dict[str, Any]:
    """SVDF options."""
    return {"rank": int(_s(op, 0, "i", 0)), "activation": int(_s(op, 1, "b", 0))}


def scratch_bytes(*sizes: int) -> int:
    """Total bytes of several TFLM scratch requests, each rounded up to the arena alignment."""
    return sum(-(-int(n) // SCRATCH_ALIGN) * SCRATCH_ALIGN for n in sizes)


def require_variable(ctx: OpContext, t: Optional[TensorInfo], what: str) -> TensorInfo:
    """The ``what`` state tensor, which must exist and be a variable tensor."""
    if t is None:
        raise ctx.fail(f"the {what} tensor is missing")
    if not t.is_variable:
        raise ctx.fail(f"the {what} tensor '{t.name}' must be a variable tensor")
    return t


def first_scale(ctx: OpContext, t: TensorInfo, what: str) -> tuple[float, int]:
    """(scale, zero point) as TFLM's ``params`` holds them: the first entry, scale as float32."""
    q = t.quantization
    if q is None or q.scale.size == 0:
        raise ctx.fail(f"the {what} tensor '{t.name}' is not quantized")
    scale = float(np.float32(q.scale[0]))
    if not scale > 0.0:
        raise ctx.fail(f"the {what} tensor '{t.name}' has a non-positive scale {scale}")
    return scale, int(q.zero_point[0]) if q.zero_point.size else 0


def check_shape(ctx: OpContext, t: TensorInfo, shape: tuple[int, ...], what: str) -> None:
    """Refuse a tensor whose shape is not ``shape``."""
    if tuple(t.shape) != tuple(shape):
        raise ctx.fail(f"the {what} tensor '{t.name}' has shape {tuple(t.shape)}; expected {tuple(shape)}")


def float_activation(ctx: OpContext, code: int, shape: tuple[int, ...]) -> Callable[[np.ndarray], None]:
    """An in-place float32 activation (TFLM's ``ActivationValFloat``) for arrays of ``shape``."""
    tmp = np.empty(shape, np.float32)
    if code == ACT_NONE:
        return lambda x: None
    if code == ACT_RELU:
        return lambda x: np.maximum(x, np.float32(0.0), out=x)
    if code == ACT_RELU_N1_TO_1:
        return lambda x: CLIP(x, np.float32(-1.0), np.float32(1.0), out=x)
    if code == ACT_RELU6:
        return lambda x: CLIP(x, np.float32(0.0), np.float32(6.0), out=x)
    if code == ACT_TANH:
        return Float32Tanh(shape).apply

    if code == ACT_SIGN_BIT:
        def sign_bit(x: np.ndarray) -> None:
            np.copysign(np.float32(1.0), x, out=tmp)  # -1 where the sign bit is set, else +1
            np.subtract(np.float32(1.0), tmp, out=x)
            np.multiply(x, np.float32(0.5), out=x)

        return sign_bit
    raise ctx.fail(f"fused activation {code} is not supported")


class Float32Sigmoid:
    """TFLite's float logistic (``reference_ops::Logistic``) on float32 arrays of one shape, in place, bit for
    bit with tflite-micro on glibc: ``x > 16.619047f ? 1 : x < -9 ? expf(x) : 1 / (1 + expf(-x))``, the
    division and the addition in float32, ``expf`` as glibc computes it
    (:class:`~edge_runtime.backends.micro.libm_expf.ExpF`; a float64 exponential rounded once differs from it
    in about 1 value in 1,300)."""

    LOWER, UPPER = np.float32(-9.0), np.float32(16.619047164916992)

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.e = np.empty(shape, np.float32)
        self.low = np.empty(shape, np.bool_)
        self.high = np.empty(shape, np.bool_)
        self.expf = ExpF(int(np.prod(shape, dtype=np.int64)))

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers kept (the masks, the exponentials and ExpF's work buffers)."""
        return _buffer_bytes(self) + _buffer_bytes(self.expf)

    def apply(self, x: np.ndarray) -> None:
        """``x`` (C-contiguous float32 of the shape given) <- sigmoid(x)."""
        e, low, high = self.e, self.low, self.high
        np.less(x, self.LOWER, out=low)
        np.greater(x, self.UPPER, out=high)
        np.negative(x, out=e)
        np.putmask(e, low, x)  # one expf pass: of x below -9, of -x elsewhere
        self.expf(e, e)
        np.add(e, np.float32(1.0), out=x)
        np.divide(np.float32(1.0), x, out=x)
        np.putmask(x, low, e)
        np.putmask(x, high, np.float32(1.0))


class Float32Tanh:
    """``std::tanh`` on float32 arrays of one shape, bit for bit with tflite-micro on glibc: glibc's ``tanhf``
    (:class:`~edge_runtime.backends.micro.libm_tanhf.TanhF`; the float64 tanh rounded once, which is
    correctly rounded, differs from it in the last bit on about 1 input in 5 of N(0, 2))."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.tanhf = TanhF(int(np.prod(shape, dtype=np.int64)))

    @property
    def nbytes(self) -> int:
        """Bytes of TanhF's work buffers (and its expm1f's)."""
        return _buffer_bytes(self.tanhf) + _buffer_bytes(self.tanhf.expm1)

    def apply(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> None:
        """``out`` (default ``x``; C-contiguous float32 of the shape given) <- tanh(x)."""
        self.tanhf(x, x if out is None else out)


def _buffer_bytes(f: object) -> int:
    """Bytes of the numpy buffers an object holds as attributes."""
    return int(sum(a.nbytes for a in vars(f).values() if isinstance(a, np.ndarray)))

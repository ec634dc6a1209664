"""Spectral ops with a constant size: DFT and STFT as FULLY_CONNECTED by constant Fourier bases; the window
functions (Hann, Hamming, Blackman) and MelWeightMatrix as constants.

TFLite has no FFT, but a DFT of a fixed length is a linear map of the ``[N, 1]`` (real) or ``[N, 2]``
(complex) values along its axis to ``[K, 2]`` (or ``[K, 1]`` for a one-sided inverse): one constant matrix,
built here by running numpy's FFT on the identity basis (so zero-padding or truncating to ``dft_length``,
``onesided`` and ``inverse`` follow the ONNX reference exactly). Each output row is one weight row, so the
weights quantize per channel. STFT gathers its frames with one constant-index GATHER (int8 values move
unchanged) and multiplies them by the DFT matrix with the window folded in.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converters.importers.onnx_ops.axis_matmul import matmul_last
from converters.importers.onnx_ops.context import ImportContext

#: the most weights a dense DFT matrix may have (64 MB of float32; a 2,048-point complex DFT is 16.8 M)
MAX_WEIGHTS = 1 << 24


def _scalar(ctx: ImportContext, node: Any, index: int, what: str) -> int | None:
    """Optional constant integer input ``index`` of ``node`` (None when absent); refuses a run-time value."""
    if len(node.input) <= index or not node.input[index]:
        return None
    if not ctx.is_const(node.input[index]):
        raise ctx.err(node, f"the {what} input must be a constant (it sets the size of a fixed matrix)")
    return int(np.asarray(ctx.const(node, node.input[index])).reshape(-1)[0])


def dft_matrix(n: int, channels: int, length: int, inverse: bool, onesided: bool) -> np.ndarray:
    """The ``[K * c_out, n * channels]`` matrix of ONNX DFT along one axis of ``n`` values of ``channels``
    (1 real, 2 complex) components, zero-padded or truncated to ``length``; K and c_out are
    ``length // 2 + 1`` and 2 for a one-sided forward DFT, ``length`` and 1 for a one-sided inverse (a real
    signal from half a spectrum), else ``length`` and 2."""
    basis = np.eye(n * channels).reshape(n * channels, n, channels)
    signal = basis[..., 0] + (1j * basis[..., 1] if channels == 2 else 0)
    if inverse and onesided:
        out = np.fft.irfft(signal, n=length, axis=1)[..., None]
    else:
        spec = np.fft.ifft(signal, n=length, axis=1) if inverse else np.fft.fft(signal, n=length, axis=1)
        if onesided:
            spec = spec[:, :length // 2 + 1]
        out = np.stack([spec.real, spec.imag], axis=-1)
    return out.reshape(n * channels, -1).T


def _check_size(ctx: ImportContext, node: Any, weights: int) -> None:
    """Refuse a DFT whose dense matrix would exceed :data:`MAX_WEIGHTS`."""
    if weights > MAX_WEIGHTS:
        raise ctx.err(node, f"a dense DFT matrix of {weights:,} weights is too large (at most {MAX_WEIGHTS:,}); "
                            f"use a shorter dft_length / frame_length")


def _along_axis(ctx: ImportContext, node: Any, x_src: str, shape: tuple[int, ...], axis: int, w: np.ndarray,
                k: int, c_out: int) -> str:
    """Apply ``w`` to axis ``axis`` and the trailing component axis of ONNX-layout ``x_src`` (``shape``);
    the result, in ONNX layout, has ``k`` at ``axis`` and ``c_out`` components."""
    rank = len(shape)
    perm = tuple(d for d in range(rank - 1) if d != axis) + (axis, rank - 1)
    moved = ctx.transpose(x_src, perm, node=node)
    lead = tuple(shape[d] for d in perm[:-2])
    rows = int(np.prod(lead, dtype=np.int64))
    flat = ctx.emit("RESHAPE", [moved], ctx.tmp(f"{node.output[0]}/frames", (rows, w.shape[1])), {}, node,
                    shape=(rows, w.shape[1]))
    y = matmul_last(ctx, node, flat, w)
    y = ctx.emit("RESHAPE", [y], ctx.tmp(f"{node.output[0]}/spectrum", lead + (k, c_out)), {}, node,
                 shape=lead + (k, c_out))
    return ctx.transpose(y, tuple(int(i) for i in np.argsort(perm)), node=node)


def _write(ctx: ImportContext, node: Any, y_src: str) -> None:
    """Write the ONNX-layout result ``y_src`` as the node's output (NHWC when 4-D)."""
    ctx.from_src(y_src, node.output[0], node)


def dft(ctx: ImportContext, node: Any, a: dict) -> None:
    """DFT (opset 17: ``axis`` attribute, default 1; opset 20: ``axis`` input, default -2) with a constant
    ``dft_length``: a FULLY_CONNECTED by the constant DFT matrix along the axis."""
    shape = tuple(ctx.src_shape(node, node.input[0]))
    rank = len(shape)
    channels = shape[-1] if rank else 0
    if rank < 2 or channels not in (1, 2):
        raise ctx.err(node, f"the input must end in a dimension of 1 (real) or 2 (complex), not shape {shape}")
    axis_in = _scalar(ctx, node, 2, "axis")
    axis = axis_in if axis_in is not None else int(a.get("axis", -2 if ctx.opset >= 20 else 1))
    if not -rank <= axis < rank or axis % rank == rank - 1:
        raise ctx.err(node, f"axis {axis} is not a signal axis of a tensor of shape {shape}")
    axis %= rank
    inverse, onesided = bool(a.get("inverse", 0)), bool(a.get("onesided", 0))
    if onesided and not inverse and channels == 2:
        raise ctx.err(node, "onesided=1 needs a real input (last dimension 1)")
    n = shape[axis]
    length = _scalar(ctx, node, 1, "dft_length")
    if length is None:
        length = 2 * (n - 1) if inverse and onesided else n
    if length < 1:
        raise ctx.err(node, f"dft_length {length} must be positive")
    k = length // 2 + 1 if onesided and not inverse else length
    c_out = 1 if inverse and onesided else 2
    _check_size(ctx, node, k * c_out * n * channels)
    w = dft_matrix(n, channels, length, inverse, onesided)
    x_src = ctx.to_src(ctx.act(node, node.input[0]))
    _write(ctx, node, _along_axis(ctx, node, x_src, shape, axis, w.astype(np.float32), k, c_out))


def stft(ctx: ImportContext, node: Any, a: dict) -> None:
    """STFT of a ``[batch, length, 1 or 2]`` signal with a constant frame_step, window and frame_length:
    a GATHER of the frames (constant indices) and a FULLY_CONNECTED by the windowed DFT matrix."""
    shape = tuple(ctx.src_shape(node, node.input[0]))
    if len(shape) != 3 or shape[-1] not in (1, 2):
        raise ctx.err(node, f"the signal must be [batch, length, 1 or 2], not of shape {shape}")
    batch, length, channels = shape
    step = _scalar(ctx, node, 1, "frame_step")
    window = None
    if len(node.input) > 2 and node.input[2]:
        if not ctx.is_const(node.input[2]):
            raise ctx.err(node, "the window input must be a constant (it is folded into the DFT matrix)")
        window = np.asarray(ctx.const(node, node.input[2]), np.float64).reshape(-1)
    frame = _scalar(ctx, node, 3, "frame_length")
    if frame is None:
        frame = window.size if window is not None else length
    if window is None:
        window = np.ones(frame)
    if window.size != frame:
        raise ctx.err(node, f"the window has {window.size} values but frame_length is {frame}")
    if step is None or step < 1 or not 1 <= frame <= length:
        raise ctx.err(node, f"frame_step {step} and frame_length {frame} do not frame a signal of {length}")
    onesided = bool(a.get("onesided", 1))
    if onesided and channels == 2:
        raise ctx.err(node, "onesided=1 needs a real signal (last dimension 1)")
    frames = 1 + (length - frame) // step
    k = frame // 2 + 1 if onesided else frame
    _check_size(ctx, node, k * 2 * frame * channels)
    w = dft_matrix(frame, channels, frame, False, onesided) * np.repeat(window, channels)[None, :]
    out = node.output[0]
    x = ctx.act(node, node.input[0])
    idx = (np.arange(frames)[:, None] * step + np.arange(frame)[None, :]).reshape(-1)
    y = x
    if not np.array_equal(idx, np.arange(length)):
        y = ctx.emit("GATHER", [x, ctx.add_const(f"{out}/frame_index", idx.astype(np.int32), np.int32)],
                     ctx.tmp(f"{out}/frames", (batch, idx.size, channels)), {"axis": 1}, node,
                     shape=(batch, idx.size, channels))
    rows = batch * frames
    flat = ctx.emit("RESHAPE", [y], ctx.tmp(f"{out}/rows", (rows, frame * channels)), {}, node,
                    shape=(rows, frame * channels))
    spec = matmul_last(ctx, node, flat, w.astype(np.float32))
    y4 = ctx.emit("RESHAPE", [spec], ctx.tmp(f"{out}/src", (batch, frames, k, 2)), {}, node,
                  shape=(batch, frames, k, 2))
    _write(ctx, node, y4)


# ---------------------------------------------------------------- constants
def window_values(op_type: str, size: int, periodic: bool) -> np.ndarray:
    """Hann, Hamming or Blackman window of ``size`` values (ONNX spec formulas; ``periodic`` divides by
    ``size`` instead of ``size - 1``)."""
    n = np.arange(size, dtype=np.float64)
    if size == 1 and not periodic:
        return np.ones(1)  # the spec's symmetric formula divides by 0 here; a 1-point window is 1 (as in torch)
    denom = size if periodic else size - 1
    phase = 2 * np.pi * n / denom if denom else np.zeros_like(n)
    if op_type == "HannWindow":
        return np.sin(phase / 2) ** 2
    if op_type == "HammingWindow":
        return 25 / 46 - 21 / 46 * np.cos(phase)
    return 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2 * phase)


def _np_dtype(ctx: ImportContext, node: Any, a: dict, default: int) -> Any:
    """The numpy type of the ``output_datatype`` attribute."""
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        return tensor_dtype_to_np_dtype(int(a.get("output_datatype", default)))
    except Exception:  # noqa: BLE001 - an unknown type code
        raise ctx.err(node, f"output_datatype {a.get('output_datatype')} is not a tensor type") from None


def window(ctx: ImportContext, node: Any, a: dict) -> None:
    """HannWindow/HammingWindow/BlackmanWindow of a constant size: a constant."""
    size = _scalar(ctx, node, 0, "size")
    if size is None or size < 0:
        raise ctx.err(node, f"window size {size} must be a non-negative constant")
    values = window_values(node.op_type, size, bool(a.get("periodic", 1)))
    ctx.consts[node.output[0]] = values.astype(_np_dtype(ctx, node, a, 1))


def mel_matrix(bins: int, dft_length: int, sample_rate: int, lower_hz: float, upper_hz: float) -> np.ndarray:
    """The ``[dft_length // 2 + 1, bins]`` triangular mel filter bank of the ONNX MelWeightMatrix spec
    (mel = 2595 log10(1 + hz / 700); bin edges floor((dft_length + 1) * hz / sample_rate))."""
    def to_mel(hz: float) -> float:
        return 2595 * np.log10(1 + hz / 700)

    lo, hi = to_mel(lower_hz), to_mel(upper_hz)
    points = np.arange(bins + 2) * ((hi - lo) / (bins + 2)) + lo
    hz = 700 * (10 ** (points / 2595) - 1)
    edges = np.floor((dft_length + 1) * hz / sample_rate).astype(np.int64)
    out = np.zeros((dft_length // 2 + 1, bins))
    if edges.min() < 0 or edges.max() >= out.shape[0]:
        raise ValueError(f"the band {lower_hz}..{upper_hz} Hz falls outside the {out.shape[0]} spectrogram bins "
                         f"of a {dft_length}-point DFT at {sample_rate} Hz")
    for i in range(bins):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            out[center, i] = 1
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    return out


def mel_weight_matrix(ctx: ImportContext, node: Any, a: dict) -> None:
    """MelWeightMatrix of constant inputs: a constant."""
    vals = []
    for i, what in enumerate(("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")):
        if len(node.input) <= i or not node.input[i] or not ctx.is_const(node.input[i]):
            raise ctx.err(node, f"the {what} input must be a constant")
        vals.append(np.asarray(ctx.const(node, node.input[i])).reshape(-1)[0])
    bins, length, rate = (int(v) for v in vals[:3])
    if bins < 1 or length < 1 or rate < 1:
        raise ctx.err(node, f"num_mel_bins {bins}, dft_length {length} and sample_rate {rate} must be positive")
    try:
        m = mel_matrix(bins, length, rate, float(vals[3]), float(vals[4]))
    except ValueError as exc:
        raise ctx.err(node, str(exc)) from None
    ctx.consts[node.output[0]] = m.astype(_np_dtype(ctx, node, a, 1))


REGISTRY = {"DFT": dft, "STFT": stft, "HannWindow": window, "HammingWindow": window, "BlackmanWindow": window,
            "MelWeightMatrix": mel_weight_matrix}

"""Images into a model's quantized input tensor: decode, centre crop, resize, normalise, layout.

One implementation serves whole images and camera rows: :class:`RowStream` takes source rows in
order, resizes each horizontally at once, keeps only the few resized rows the vertical filter
still needs (a ring of ``taps`` rows at output width) and quantizes every finished output row
straight into the input tensor. The full-resolution frame is never held. A whole image is just
all its rows pushed at once.

Resize methods (separable, pixel centres at +0.5):

- ``nearest``: source index ``floor((d + 0.5) * scale)`` (Pillow's NEAREST);
- ``bilinear``: sample at ``(d + 0.5) * scale - 0.5``, clamped at the edges, no antialiasing
  (TF ``resize(antialias=False)``, OpenCV INTER_LINEAR; equals Pillow BILINEAR when enlarging);
- ``area``: exact average over the output pixel's footprint, fractional overlaps weighted
  (OpenCV INTER_AREA; equals Pillow BOX for integer factors).
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.preprocess.config import PreprocessConfig, resolve_quantization
from edge_runtime.preprocess.quantize import Quantizer


def resize_taps(src: int, dst: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(dst, taps)`` and weights ``(dst, taps)`` of a 1-D resize; unused taps weigh 0."""
    if src < 1 or dst < 1:
        raise ValueError(f"resize sizes must be positive, got {src} -> {dst}")
    scale = src / dst
    d = np.arange(dst, dtype=np.float64)
    if method == "nearest":
        idx = np.minimum(np.floor((d + 0.5) * scale).astype(np.int64), src - 1)[:, None]
        return idx, np.ones((dst, 1))
    if method == "bilinear":
        c = np.clip((d + 0.5) * scale - 0.5, 0.0, src - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, src - 1)
        w1 = c - i0
        return np.stack([i0, i1], axis=1), np.stack([1.0 - w1, w1], axis=1)
    if method == "area":
        taps = int(math.ceil(scale)) + 1
        idx = np.zeros((dst, taps), dtype=np.int64)
        w = np.zeros((dst, taps))
        for k in range(dst):
            lo, hi = k * scale, (k + 1) * scale
            first = int(math.floor(lo))
            for t in range(taps):
                i = first + t
                if i >= src:
                    break
                overlap = min(hi, i + 1) - max(lo, i)
                if overlap > 0:
                    idx[k, t], w[k, t] = i, overlap / scale
            idx[k, w[k] == 0] = first if first < src else src - 1
        return idx, w
    raise ValueError(f"unknown resize method {method!r}; use nearest, bilinear or area")


def crop_box(height: int, width: int, out_h: int, out_w: int, fraction: float = 1.0,
             match_aspect: bool = False) -> tuple[int, int, int, int]:
    """Centre crop as (top, left, height, width): optional match of the output aspect, then ``fraction``."""
    ch, cw = height, width
    if match_aspect:
        if width * out_h > height * out_w:
            cw = max(1, round(height * out_w / out_h))
        else:
            ch = max(1, round(width * out_h / out_w))
    ch, cw = max(1, round(ch * fraction)), max(1, round(cw * fraction))
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def decode_image(data: Union[bytes, str, Path], channels: int) -> np.ndarray:
    """Decode an image file or bytes with Pillow (the ``image`` extra) to uint8 (H, W[, C])."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ConfigError("decoding image files needs Pillow: pip install 'edge-runtime[image]'") from None
    try:
        src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
        with Image.open(src) as im:
            im = im.convert("RGB" if channels == 3 else "L")
            return np.asarray(im)
    except FileNotFoundError:
        raise InputError(f"{data}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        where = "image bytes" if isinstance(data, (bytes, bytearray)) else str(data)
        raise InputError(f"{where}: not a decodable image ({exc})") from None


class ImagePreprocessor:
    """Configured image chain writing into ``self.input_tensor`` (shape and dtype of the model input)."""

    def __init__(self, size: tuple[int, int], channels: int, input_shape: tuple[int, ...], quant: dict[str, Any],
                 resize: str = "bilinear", layout: str = "NHWC", pixel_scale: float = 1.0 / 255.0,
                 mean: Optional[list[float]] = None, std: Optional[list[float]] = None,
                 crop_fraction: float = 1.0, match_aspect: bool = False) -> None:
        self.out_h, self.out_w = int(size[0]), int(size[1])
        self.channels, self.resize, self.layout = int(channels), resize, layout
        expect = (1, self.out_h, self.out_w, self.channels) if layout == "NHWC" else (1, self.channels, self.out_h, self.out_w)
        if tuple(input_shape) != expect:
            raise ConfigError(f"model input shape {tuple(input_shape)} does not match {layout} {expect} "
                              f"for a {self.out_h}x{self.out_w}x{self.channels} image")
        self.crop_fraction, self.match_aspect = crop_fraction, match_aspect
        mean = mean or [0.0]
        std = std or [1.0]
        for name, v in (("mean", mean), ("std", std)):
            if len(v) not in (1, self.channels):
                raise ConfigError(f"image {name} has {len(v)} values; give 1 or {self.channels}")
        # x*pixel_scale - mean)/std == x*a + b, per channel
        self._a = np.broadcast_to(np.asarray(pixel_scale / np.asarray(std, np.float64)), (self.channels,)).copy()
        self._b = np.broadcast_to(np.asarray(-np.asarray(mean, np.float64) / np.asarray(std, np.float64)), (self.channels,)).copy()
        self._quant = Quantizer((self.out_w, self.channels), **quant)
        self.input_tensor = np.zeros(input_shape, dtype=self._quant.dtype)
        self._streams: dict[tuple[int, int], RowStream] = {}

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, input_spec: Any = None) -> "ImagePreprocessor":
        """Build from a ``kind: image`` config; size and layout default from the model's input."""
        ic = cfg.image
        assert ic is not None
        size = ic.size
        if size is None:
            shape = tuple(input_spec.shape) if input_spec is not None else cfg.input_shape
            if shape is None or len(shape) != 4:
                raise ConfigError(f"config '{cfg.name}': give image.size or the model's 4-D input shape")
            size = (shape[1], shape[2]) if ic.layout == "NHWC" else (shape[2], shape[3])
        default = (1, size[0], size[1], ic.channels) if ic.layout == "NHWC" else (1, ic.channels, size[0], size[1])
        shape, quant = resolve_quantization(cfg, input_spec, default)
        return cls(size, ic.channels, shape, quant, ic.resize, ic.layout, ic.pixel_scale, ic.mean, ic.std,
                   ic.crop.fraction, ic.crop.match_aspect)

    def rows(self, src_height: int, src_width: int) -> "RowStream":
        """A row stream for frames of this source size (built once per size, then reused)."""
        key = (int(src_height), int(src_width))
        s = self._streams.get(key)
        if s is None:
            if len(self._streams) >= 4:  # bounded: a camera has one or two modes
                self._streams.pop(next(iter(self._streams)))
            s = self._streams[key] = RowStream(self, *key)
        s.reset()
        return s

    def __call__(self, image: Union[np.ndarray, bytes, str, Path]) -> np.ndarray:
        """Preprocess one whole image (array, encoded bytes or a file path) into ``input_tensor``."""
        arr = image if isinstance(image, np.ndarray) else decode_image(image, self.channels)
        arr = self._check(arr)
        s = self.rows(arr.shape[0], arr.shape[1])
        s.push(arr)
        return self.input_tensor

    def _check(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind not in "uif":
            raise InputError(f"image must hold numbers, got dtype {arr.dtype}")
        if arr.ndim == 2 and self.channels == 1:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] != self.channels:
            raise InputError(f"image must be (height, width, {self.channels}), got shape {arr.shape}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise InputError(f"image is empty: shape {arr.shape}")
        return arr


class RowStream:
    """Source rows in, finished output rows quantized into the tensor; holds ``taps`` resized rows."""

    def __init__(self, pre: ImagePreprocessor, src_h: int, src_w: int) -> None:
        self.pre, self.src_h, self.src_w = pre, src_h, src_w
        top, left, ch, cw = crop_box(src_h, src_w, pre.out_h, pre.out_w, pre.crop_fraction, pre.match_aspect)
        self.top, self.left, self.crop_h, self.crop_w = top, left, ch, cw
        self._hidx, self._hw = resize_taps(cw, pre.out_w, pre.resize)
        self._hidx = np.ascontiguousarray(self._hidx.T + left)   # (taps, out_w) absolute columns
        # (taps, out_w, C): same shape as the row it scales, so no broadcasting buffers
        self._hw = np.ascontiguousarray(np.broadcast_to(self._hw.T[:, :, None], (self._hw.shape[1], pre.out_w, pre.channels)))
        vidx, vw = resize_taps(ch, pre.out_h, pre.resize)
        self._vidx, self._vw = vidx, vw                           # rows relative to the crop
        self._last = vidx.max(axis=1)                             # last source row each output row needs
        span = int((vidx.max(axis=1) - vidx.min(axis=1)).max()) + 1
        self.ring_rows = span + 1
        C = pre.channels
        self._ring = np.zeros((self.ring_rows, pre.out_w, C))
        self._tmp = np.zeros((pre.out_w, C))
        self._rowbuf = np.zeros((src_w, C))
        self._a = np.ascontiguousarray(np.broadcast_to(pre._a, (pre.out_w, C)))
        self._b = np.ascontiguousarray(np.broadcast_to(pre._b, (pre.out_w, C)))
        self._acc = np.zeros((pre.out_w, C))
        self.reset()

    def reset(self) -> None:
        """Start a new frame."""
        self._next_src = 0
        self._next_out = 0

    @property
    def done(self) -> bool:
        """True once every output row has been written."""
        return self._next_out >= self.pre.out_h

    def push(self, rows: np.ndarray) -> int:
        """Feed the next source row(s): (width, C), (n, width, C), or (width,)/(n, width) for grey.

        Returns how many output rows were finished by these rows.
        """
        if not isinstance(rows, np.ndarray) or rows.dtype.kind not in "uif":
            raise InputError("image rows must be a numeric numpy array")
        C = self.pre.channels
        if rows.ndim == 1 or (rows.ndim == 2 and C != 1 and rows.shape[-1] == C):
            rows = rows[None]
        if rows.ndim == 2 and C == 1:
            rows = rows[:, :, None]
        if rows.ndim != 3 or rows.shape[1] != self.src_w or rows.shape[2] != C:
            raise InputError(f"image rows must be (n, {self.src_w}, {C}) for this {self.src_h}x{self.src_w} stream, "
                             f"got shape {rows.shape}")
        if self._next_src + rows.shape[0] > self.src_h:
            raise InputError(f"too many rows: the frame has {self.src_h}, got row {self._next_src + rows.shape[0] - 1}")
        done = 0
        for r in range(rows.shape[0]):
            done += self._row(rows[r])
        return done

    def _row(self, row: np.ndarray) -> int:
        y = self._next_src - self.top
        self._next_src += 1
        if y < 0 or y >= self.crop_h:
            return 0
        slot = self._ring[y % self.ring_rows]
        slot.fill(0.0)
        src = row
        if row.dtype != np.float64 or not row.flags.c_contiguous:
            np.copyto(self._rowbuf, row, casting="unsafe")  # one source row, never the frame
            src = self._rowbuf
        for t in range(self._hidx.shape[0]):
            np.take(src, self._hidx[t], axis=0, out=self._tmp)
            np.multiply(self._tmp, self._hw[t], out=self._tmp)
            np.add(slot, self._tmp, out=slot)
        done = 0
        pre = self.pre
        while self._next_out < pre.out_h and self._last[self._next_out] <= y:
            k = self._next_out
            acc = self._acc
            acc.fill(0.0)
            for t in range(self._vidx.shape[1]):
                w = self._vw[k, t]
                if w != 0.0:
                    np.multiply(self._ring[self._vidx[k, t] % self.ring_rows], w, out=self._tmp)
                    np.add(acc, self._tmp, out=acc)
            np.multiply(acc, self._a, out=acc)
            np.add(acc, self._b, out=acc)
            if pre.layout == "NHWC":
                pre._quant(acc, pre.input_tensor[0, k])
            else:
                pre._quant(acc.T, pre.input_tensor[0, :, k, :])
            self._next_out += 1
            done += 1
        return done

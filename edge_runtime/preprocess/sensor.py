"""Multi-channel sensor streams (IMU, ...) and data reduction for small models.

- :class:`SensorStream`: samples ``(n, channels)`` in, windows of ``window`` samples every ``hop``
  out, normalised per channel, optionally projected (PCA fitted on the host with
  :func:`fit_pca`, or a seeded sparse random projection), quantized into the model input.
  The ring is double-written, so every window is one contiguous block and nothing is allocated
  per push.
- :class:`FeatureHasher`: sparse categorical tokens -> fixed-size vector, bucket and sign from
  32-bit MurmurHash3 exactly as scikit-learn's ``FeatureHasher`` computes them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.preprocess.base import Stream
from edge_runtime.preprocess.config import PreprocessConfig, SensorConfig, resolve_quantization
from edge_runtime.preprocess.quantize import Quantizer


# -- projections ---------------------------------------------------------------------------------
def fit_pca(x: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Host side: PCA of rows ``x`` (N, D) -> (mean (D,), components (k, D)), by SVD.

    Signs are fixed so the largest-magnitude entry of each component is positive.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not 0 < n_components <= min(x.shape):
        raise ValueError(f"need (N, D) data and 0 < n_components <= min(N, D); got {x.shape}, {n_components}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comp = vt[:n_components]
    signs = np.sign(comp[np.arange(n_components), np.argmax(np.abs(comp), axis=1)])
    return mean, comp * signs[:, None]


def save_pca(path: Union[str, Path], mean: np.ndarray, components: np.ndarray) -> None:
    """Write a PCA for ``projection: {kind: pca, file: ...}`` (npz with ``mean``, ``components``)."""
    np.savez(path, mean=np.asarray(mean, np.float64), components=np.asarray(components, np.float64))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def random_projection(in_features: int, out_features: int, seed: int = 0, density: float = 1.0 / 3.0) -> np.ndarray:
    """Sparse random projection ``(out, in)``: entries ``±1/sqrt(density*out)`` with probability
    ``density/2`` each, else 0 (Achlioptas / Li et al.). Built from a 32-bit integer hash of
    (seed, position), so host and device get the same matrix on any numpy version."""
    n = in_features * out_features
    with np.errstate(over="ignore"):
        pos = np.arange(n, dtype=np.uint64)
        h = _fmix32((pos & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ _fmix32(np.full(n, seed & 0xFFFFFFFF, np.uint32)
                                                                              + (pos >> np.uint64(32)).astype(np.uint32)))
        u = _fmix32(h + np.uint32(0x9E3779B9)).astype(np.float64) / 2.0**32
    v = np.where(u < density / 2, 1.0, np.where(u < density, -1.0, 0.0))
    return (v / math.sqrt(density * out_features)).reshape(out_features, in_features)


# -- the stream -------------------------------------------------------------------------------------
class SensorStream(Stream):
    """Sliding windows over multi-channel samples; see the module docstring."""

    def __init__(self, cfg: SensorConfig, input_shape: tuple[int, ...], quant: dict[str, Any], max_chunk: int = 16384,
                 base_dir: Optional[str] = None) -> None:
        C, W, H = cfg.channels, cfg.window, cfg.hop
        self.C, self.W, self.H = C, W, H
        self._mean = np.asarray(cfg.mean if cfg.mean is not None else [0.0] * C, np.float64)
        self._std = np.asarray(cfg.std if cfg.std is not None else [1.0] * C, np.float64)
        self._proj: Optional[np.ndarray] = None
        self._offset: Optional[np.ndarray] = None
        D = W * C
        if cfg.projection is not None:
            self._proj, self._offset = self._load_projection(cfg, D, base_dir)
        feat = self._proj.shape[0] if self._proj is not None else D
        if int(np.prod(input_shape)) != feat:
            raise ConfigError(f"model input shape {tuple(input_shape)} holds {int(np.prod(input_shape))} values, "
                              f"but a window gives {feat} features")
        self.features = feat
        cap = max_chunk // H + 2
        qz = Quantizer((feat,), **quant)
        super().__init__(input_shape, qz.dtype, max_chunk, cap)
        self._quant = qz
        self._flat = [self.windows[i].reshape(feat) for i in range(cap)]
        self._ring = np.zeros((2 * W, C), dtype=np.float64)
        self._ring_flat = self._ring.reshape(-1)
        self._centred = np.zeros(D, dtype=np.float64)
        self._ones = np.ones((W, C), dtype=np.float64)
        # same-shape operands keep numpy on its no-iterator fast path (broadcasting allocates buffers)
        self._mean_t = np.ascontiguousarray(np.broadcast_to(self._mean, (W, C)))
        self._std_t = np.ascontiguousarray(np.broadcast_to(self._std, (W, C)))
        self._feat = np.zeros(feat, dtype=np.float64)
        self.reset()

    @staticmethod
    def _load_projection(cfg: SensorConfig, D: int, base_dir: Optional[str]) -> tuple[np.ndarray, Optional[np.ndarray]]:
        p = cfg.projection
        assert p is not None
        if p.kind == "random":
            assert p.out_features is not None
            return random_projection(D, p.out_features, p.seed, p.density), None
        if p.file is not None:
            path = Path(p.file)
            if not path.is_absolute() and base_dir:
                path = Path(base_dir) / path
            try:
                with np.load(path, allow_pickle=False) as z:
                    mean, comp = np.asarray(z["mean"], np.float64), np.asarray(z["components"], np.float64)
            except (OSError, KeyError, ValueError) as exc:
                raise ConfigError(f"{path}: cannot read PCA (npz with 'mean' and 'components'): {exc}") from None
        else:
            comp = np.asarray(p.components, np.float64)
            mean = np.asarray(p.mean if p.mean is not None else np.zeros(comp.shape[-1]), np.float64)
        if comp.ndim != 2 or comp.shape[1] != D or mean.shape != (D,):
            raise ConfigError(f"PCA needs components (k, {D}) and mean ({D},) for {cfg.window} samples x "
                              f"{cfg.channels} channels; got {comp.shape} and {mean.shape}")
        if p.out_features is not None:
            if p.out_features > comp.shape[0]:
                raise ConfigError(f"PCA has {comp.shape[0]} components, out_features asks for {p.out_features}")
            comp = comp[: p.out_features]
        return np.ascontiguousarray(comp), mean

    @classmethod
    def from_config(cls, cfg: PreprocessConfig, input_spec: Any = None) -> "SensorStream":
        """Build from a ``kind: sensor`` config."""
        sc = cfg.sensor
        assert sc is not None
        feat = sc.window * sc.channels
        if sc.projection is not None and sc.projection.out_features is not None:
            feat = sc.projection.out_features
        elif sc.projection is not None and sc.projection.kind == "pca" and sc.projection.components is not None:
            feat = len(sc.projection.components)
        default = (1, feat) if sc.projection is not None else (1, sc.window, sc.channels)
        shape, quant = resolve_quantization(cfg, input_spec, default)
        if sc.projection is not None and sc.projection.kind == "pca" and sc.projection.file and cfg.input_shape is None \
                and input_spec is None and sc.projection.out_features is None:
            raise ConfigError("a PCA from a file needs projection.out_features or input_shape to size the output")
        return cls(sc, shape, quant, cfg.max_chunk, cfg.base_dir)

    def reset(self) -> None:
        """Forget all samples."""
        self._count = 0
        self._next_end = self.W
        self._n_ready = 0

    def push(self, chunk: np.ndarray) -> int:
        """Consume samples ``(n, channels)`` (or ``(n,)`` for one channel); return windows ready."""
        if isinstance(chunk, np.ndarray) and chunk.ndim == 1 and self.C == 1:
            chunk = chunk[:, None]
        chunk = self._check_chunk(chunk, 2, "sensor")
        if chunk.shape[1] != self.C:
            raise InputError(f"sensor chunk has {chunk.shape[1]} channels, the config says {self.C}")
        self._n_ready = 0
        n, pos, W = chunk.shape[0], 0, self.W
        while pos < n:
            p = self._count % W
            k = min(n - pos, W - p, self._next_end - self._count)
            dst = self._ring[p:p + k]
            if chunk.dtype == np.float64:
                np.subtract(chunk[pos:pos + k], self._mean_t[:k], out=dst)
            else:  # cast into the ring first: a mixed-type ufunc would allocate a cast buffer
                np.copyto(dst, chunk[pos:pos + k], casting="unsafe")
                np.subtract(dst, self._mean_t[:k], out=dst)
            np.divide(dst, self._std_t[:k], out=dst)
            if not math.isfinite(np.vdot(dst, self._ones[:k])):  # a BLAS dot: no reduction buffers
                raise InputError("sensor chunk contains NaN or infinite values (or values so large they overflow)")
            self._ring[p + W:p + W + k] = dst
            self._count += k
            pos += k
            if self._count == self._next_end:
                self._emit()
                self._next_end += self.H
        return self._n_ready

    def _emit(self) -> None:
        s = self._count % self.W
        win = self._ring_flat[s * self.C:(s + self.W) * self.C]
        if self._proj is None:
            self._quant(win, self._flat[self._n_ready])
        else:
            x = win
            if self._offset is not None:
                np.subtract(win, self._offset, out=self._centred)
                x = self._centred
            np.matmul(self._proj, x, out=self._feat)
            self._quant(self._feat, self._flat[self._n_ready])
        self.window_end[self._n_ready] = self._count
        self._n_ready += 1


# -- feature hashing ------------------------------------------------------------------------------
def murmurhash3_32(data: Union[str, bytes], seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``data`` (UTF-8 for str), as a signed int (scikit-learn's default)."""
    b = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & m
    nblocks = len(b) // 4
    for i in range(nblocks):
        k = int.from_bytes(b[4 * i:4 * i + 4], "little")
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
        h = ((h << 13) | (h >> 19)) & m
        h = (h * 5 + 0xE6546B64) & m
    tail = b[4 * nblocks:]
    k = 0
    for j in range(len(tail) - 1, -1, -1):
        k = (k << 8) | tail[j]
    if tail:
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
    h ^= len(b)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


class FeatureHasher:
    """Tokens (``"key=value"`` strings, or ``(token, weight)`` pairs) -> ``n_features`` vector.

    Bucket ``abs(h) % n_features`` and sign ``+1 if h >= 0 else -1`` (with ``alternate_sign``),
    ``h`` = signed MurmurHash3 of the token: the same columns as scikit-learn's FeatureHasher.
    """

    def __init__(self, n_features: int, alternate_sign: bool = True) -> None:
        if n_features < 1:
            raise ConfigError(f"feature hashing needs n_features >= 1, got {n_features}")
        self.n_features, self.alternate_sign = int(n_features), alternate_sign
        self.output = np.zeros(self.n_features, dtype=np.float32)

    def bucket(self, token: str) -> tuple[int, float]:
        """(column, sign) of one token."""
        h = murmurhash3_32(token)
        sign = -1.0 if (self.alternate_sign and h < 0) else 1.0
        return abs(h) % self.n_features, sign

    def transform(self, tokens: Iterable[Union[str, tuple[str, float]]], out: Optional[np.ndarray] = None) -> np.ndarray:
        """Accumulate the tokens into ``out`` (default: ``self.output``, cleared first) and return it."""
        dst = self.output if out is None else out
        dst.fill(0)
        for tok in tokens:
            if isinstance(tok, tuple):
                key, weight = tok
            else:
                key, weight = tok, 1.0
            if not isinstance(key, (str, bytes)):
                raise InputError(f"feature hashing takes string tokens, got {type(key).__name__}")
            col, sign = self.bucket(key)
            dst[col] += sign * float(weight)
        return dst

"""Streaming audio front-end: samples in, quantized model-input windows out.

Per frame (``framing.length`` samples every ``framing.step``): window, real FFT, magnitude or
power spectrum, optional scale and floor, mel filterbank. Then log, and either a DCT (MFCC)
or an affine scale-and-clip, and quantization straight into the model's input layout.

Two window modes:

- streaming (SWW): each frame is finished as soon as it is complete and its quantized row is
  written twice into a double-length ring, so the newest ``frames`` rows are always one
  contiguous block; a window is a single copy of that block.
- peak-normalised clips (KWS, ``peak_normalize``): the reference divides each 1 s clip by its
  largest sample before the STFT. The spectrum is linear in the signal, so mel energies are
  computed per frame on the raw signal and divided by the clip's peak when the window is
  emitted; the peak comes from a ring of per-step block maxima.

All buffers are sized at construction; ``push`` allocates no arrays.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, InputError
from edge_runtime.preprocess.base import Stream
from edge_runtime.preprocess.config import AudioConfig, PreprocessConfig, WindowsConfig, resolve_quantization
from edge_runtime.preprocess.dsp import dct_matrix, mel_filterbank, window_function
from edge_runtime.preprocess.quantize import Quantizer


class AudioStream(Stream):
    """A configured audio front-end with fixed ring buffers; see the module docstring."""

    def __init__(self, audio: AudioConfig, windows: WindowsConfig, input_shape: tuple[int, ...],
                 quant: dict[str, Any], max_chunk: int = 16384) -> None:
        self.cfg, self.wcfg = audio, windows
        L, S = audio.framing.length, audio.framing.step
        W, H = windows.frames, windows.hop_frames
        feat = audio.features
        if int(np.prod(input_shape)) != W * feat:
            raise ConfigError(
                f"model input shape {tuple(input_shape)} holds {int(np.prod(input_shape))} values, but the front-end "
                f"makes {W} frames x {feat} features = {W * feat}"
            )
        if audio.peak_normalize and windows.start == "firmware":
            raise ConfigError("peak_normalize (clip mode) cannot be combined with windows.start=firmware")
        self.L, self.S, self.W, self.H, self.feat = L, S, W, H, feat
        self.peak = audio.peak_normalize
        extent = (W - 1) * S + L
        self.span = (audio.peak_span or extent) if self.peak else extent
        if self.peak and self.span < extent:
            raise ConfigError(f"peak_span {self.span} is shorter than the window's {extent} samples")
        cap = max_chunk // (S * H) + 2
        qz = Quantizer((W, feat), **quant)
        super().__init__(input_shape, qz.dtype, max_chunk, cap)
        self._quant = qz
        self._views = [self.windows[i].reshape(W, feat) for i in range(cap)]

        n_fft = audio.n_fft
        self._window = window_function(audio.window, L, audio.periodic_window)
        fmax = audio.mel.fmax or audio.sample_rate / 2.0
        self._melw = np.ascontiguousarray(mel_filterbank(audio.mel.bands, n_fft // 2 + 1, audio.sample_rate,
                                                         audio.mel.fmin, fmax, audio.mel.scale,
                                                         audio.mel.triangles, audio.mel.norm))
        clip = audio.affine.clip if audio.affine is not None and audio.affine.clip else (0.0, 0.0)
        self._clip_lo, self._clip_hi = np.float64(clip[0]), np.float64(clip[1])
        self._dct = np.ascontiguousarray(dct_matrix(audio.mel.bands, audio.dct.coefficients, audio.dct.norm)) if audio.dct else None
        # framing: a linear buffer of 2 frames (compaction never overlaps); samples arrive in
        # pieces that never exceed it, so the per-piece work buffers are 2 frames too
        self._stage = np.zeros(2 * L, dtype=np.float64)
        self._tmp = np.zeros(2 * L, dtype=np.float64)
        self._ones = np.ones(2 * L, dtype=np.float64)
        self._zeros = np.zeros(2 * L, dtype=np.float64)
        self._lin = np.zeros(2 * L, dtype=np.float64)
        self._fft_in = np.zeros(n_fft, dtype=np.float64)
        self._spec = np.zeros(n_fft // 2 + 1, dtype=np.complex128)
        self._mag = np.zeros(n_fft // 2 + 1, dtype=np.float64)
        B = audio.mel.bands
        # rows of float work per post-processing block (1 frame streaming, W frames per clip)
        rows = W if self.peak else 1
        self._post_in = np.zeros((rows, B), dtype=np.float64)
        self._post_out = np.zeros((rows, feat), dtype=np.float64) if self._dct is not None else self._post_in
        if self.peak:
            # mel ring: frames from the next window's first frame up to the newest computed one
            self._R = W + H + (self.span - extent + 2 * L) // S + 2
            self._melring = np.zeros((self._R, B), dtype=np.float64)
            # block maxima: from the pending window's first block to the newest piece's last one
            self._NB = self.span // S + (2 * L) // S + H + 2
            self._blockmax = np.full(self._NB, -np.inf)
        else:
            self._qring = np.zeros((2 * W, feat), dtype=qz.dtype)
            self._melrow = self._post_in[0]
        self.reset()

    # -- construction --------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: PreprocessConfig, input_spec: Any = None) -> "AudioStream":
        """Build from a validated :class:`PreprocessConfig` (``kind: audio``)."""
        assert cfg.audio is not None and cfg.windows is not None
        shape, quant = resolve_quantization(cfg, input_spec, (1, cfg.windows.frames, cfg.audio.features))
        return cls(cfg.audio, cfg.windows, shape, quant, cfg.max_chunk)

    def reset(self) -> None:
        """Forget all samples and frames."""
        self._start = 0          # start of the next frame in _lin
        self._end = 0            # write position in _lin
        self._total = 0          # samples pushed (stream time)
        self._prev = 0.0         # last raw sample, for pre-emphasis
        self._frames = 0         # frames computed
        self._next_window = 0    # index of the next window to emit
        self._n_ready = 0
        self._offset = 0         # stream samples that are prefill, not input
        self._base = 0           # frame counter value of the first real frame
        if self.peak:
            self._blockmax.fill(-np.inf)
        else:
            self._qring.fill(self.wcfg.prefill if self.wcfg.start == "firmware" else 0)
            if self.wcfg.start == "firmware":
                pre = self.L - self.S
                self._lin[:pre] = 0.0
                self._end = pre
                self._offset = pre
                self._frames = self._base = self.W - 1  # the prefilled rows count as frames already seen

    # -- streaming -------------------------------------------------------------
    def push(self, chunk: np.ndarray) -> int:
        """Consume PCM samples (1-D, or (n, channels): channel 0 is used); return windows ready.

        Integer samples are multiplied by ``pcm_scale`` (1/32768 for int16); float samples are
        used as they are.
        """
        if isinstance(chunk, np.ndarray) and chunk.ndim == 2:
            chunk = self._check_chunk(chunk, 2, "audio")
            chunk = chunk[:, 0]
        else:
            chunk = self._check_chunk(chunk, 1, "audio")
        self._n_ready = 0
        if chunk.dtype.kind == "f":
            self._check_finite(chunk)
        self._consume(chunk)
        return self._n_ready

    def _check_finite(self, chunk: np.ndarray) -> None:
        """Refuse NaN/inf before any state changes (piecewise BLAS dot: no reduction buffers)."""
        step = self._stage.shape[0]
        for pos in range(0, chunk.shape[0], step):
            k = min(step, chunk.shape[0] - pos)
            piece = self._stage[:k]
            np.copyto(piece, chunk[pos:pos + k], casting="unsafe")
            if not math.isfinite(np.vdot(piece, self._ones[:k])):
                raise InputError("audio chunk contains NaN or infinite samples (or values so large they overflow)")

    def flush(self) -> int:
        """End of stream. With ``pad_final_window`` (KWS clips) a partial last window is zero-padded."""
        self._n_ready = 0
        if not (self.cfg.pad_final_window and self.peak):
            return 0
        first = self._next_window * self.H * self.S
        if self._total <= first:
            return 0
        need = first + self.span - self._total
        zeros = self._zeros
        while need > 0:
            k = min(need, zeros.shape[0])
            self._consume(zeros[:k])
            need -= k
        return self._n_ready

    def _consume(self, chunk: np.ndarray) -> None:
        """Convert and frame ``chunk`` piece by piece (a piece never exceeds the 2-frame buffer)."""
        n, pos, L = chunk.shape[0], 0, self.L
        cap2 = 2 * L
        scale_ints = chunk.dtype.kind in "iu"
        while pos < n:
            if self._end == cap2:  # compact: the pending tail (< L samples) moves to the front
                r = self._end - self._start
                self._lin[:r] = self._lin[self._start:self._end]
                self._start, self._end = 0, r
            k = min(cap2 - self._end, n - pos)
            piece = self._stage[:k]
            np.copyto(piece, chunk[pos:pos + k], casting="unsafe")
            if scale_ints:
                np.multiply(piece, self.cfg.pcm_scale, out=piece)
            if self.peak:
                self._track_peak(piece)
            self._write(piece)
            pos += k
            while self._end - self._start >= L:
                self._frame(self._lin[self._start:self._start + L])
                self._start += self.S
                self._maybe_emit()
            self._maybe_emit()

    def _write(self, piece: np.ndarray) -> None:
        k, e = piece.shape[0], self._end
        dst = self._lin[e:e + k]
        a = self.cfg.preemphasis
        if a:
            first = float(piece[0]) - a * self._prev
            if k > 1:
                t = self._tmp[:k - 1]
                np.multiply(piece[:k - 1], a, out=t)
                np.subtract(piece[1:], t, out=dst[1:])
            dst[0] = first
            self._prev = float(piece[k - 1])
        else:
            np.copyto(dst, piece)
        self._end += k
        self._total += k

    def _track_peak(self, piece: np.ndarray) -> None:
        S, pos, k = self.S, 0, piece.shape[0]
        t = self._total
        while pos < k:
            b = (t + pos) // S
            take = min(k - pos, (b + 1) * S - (t + pos))
            slot = b % self._NB
            if (t + pos) % S == 0:
                self._blockmax[slot] = -np.inf
            m = float(np.max(piece[pos:pos + take]))
            if m > self._blockmax[slot]:
                self._blockmax[slot] = m
            pos += take

    def _frame(self, frame: np.ndarray) -> None:
        cfg = self.cfg
        np.multiply(frame, self._window, out=self._fft_in[: self.L])
        np.fft.rfft(self._fft_in, out=self._spec)
        np.abs(self._spec, out=self._mag)
        if cfg.spectrum == "power":
            np.square(self._mag, out=self._mag)
        if cfg.spectrum_scale != 1.0:
            np.multiply(self._mag, cfg.spectrum_scale, out=self._mag)
        if cfg.spectrum_floor is not None:
            np.maximum(self._mag, cfg.spectrum_floor, out=self._mag)
        f = self._frames
        if self.peak:
            np.matmul(self._mag, self._melw, out=self._melring[f % self._R])
        else:
            np.matmul(self._mag, self._melw, out=self._melrow)
            feats = self._post(self._post_in)
            slot = f % self.W
            self._quant(feats[0], self._qring[slot])
            self._qring[slot + self.W] = self._qring[slot]
        self._frames = f + 1

    def _post(self, block: np.ndarray) -> np.ndarray:
        """log, then DCT or affine, in place on preallocated rows; returns the feature rows."""
        cfg = self.cfg
        if cfg.log.offset:
            np.add(block, cfg.log.offset, out=block)
        if cfg.log.kind == "ln":
            np.log(block, out=block)
        else:
            np.log10(block, out=block)
            np.multiply(block, 10.0, out=block)
        if cfg.affine is not None:
            if cfg.affine.add:
                np.add(block, cfg.affine.add, out=block)
            if cfg.affine.divide != 1.0:
                np.divide(block, cfg.affine.divide, out=block)
            if cfg.affine.clip is not None:
                np.maximum(block, self._clip_lo, out=block)
                np.minimum(block, self._clip_hi, out=block)
        if self._dct is not None:
            np.matmul(block, self._dct, out=self._post_out)
            return self._post_out
        return block

    def _maybe_emit(self) -> None:
        W, H, S = self.W, self.H, self.S
        while True:
            k = self._next_window
            first = k * H
            if self.peak:
                if self._frames < first + W or self._total < first * S + self.span:
                    return
                self._emit_clip(first)
            else:
                if self._frames < first + W:
                    return
                s = (first + W) % W
                np.copyto(self._views[self._n_ready], self._qring[s:s + W])
            if self.peak:  # a clip ends where its peak span ends
                self.window_end[self._n_ready] = first * S + self.span
            else:
                self.window_end[self._n_ready] = (first + W - 1 - self._base) * S + self.L - self._offset
            self._n_ready += 1
            self._next_window = k + 1

    def _emit_clip(self, first: int) -> None:
        W, R = self.W, self._R
        a = first % R
        b = min(R, a + W)
        blk = self._post_in
        blk[: b - a] = self._melring[a:b]
        if b - a < W:
            blk[b - a:] = self._melring[: W - (b - a)]
        nb, b0 = self.span // self.S, first % self._NB
        b1 = min(self._NB, b0 + nb)
        p = float(np.max(self._blockmax[b0:b1]))
        if b1 - b0 < nb:
            p = max(p, float(np.max(self._blockmax[: nb - (b1 - b0)])))
        if p > 0.0:  # the reference divides by the clip's largest sample; silence stays unscaled
            np.divide(blk, p, out=blk)
        feats = self._post(blk)
        self._quant(feats, self._views[self._n_ready])

    # -- info --------------------------------------------------------------------
    @property
    def samples_per_window(self) -> int:
        """Samples one window spans (its receptive field)."""
        return self.span

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive windows."""
        return self.S * self.H

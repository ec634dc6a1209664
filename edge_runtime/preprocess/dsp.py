"""Audio building blocks computed once at construction: windows, mel filterbanks, DCT.

Everything here returns new arrays and is meant to run when a stream is built, never in
its steady-state loop.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

MelScale = Literal["htk", "slaney"]

# Slaney (Auditory Toolbox) scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP  # 15
_SLANEY_LOGSTEP = np.log(6.4) / 27.0


def window_function(kind: str, length: int, periodic: bool = True) -> np.ndarray:
    """Window of ``length`` samples: ``hann``, ``hamming`` or ``rectangular`` (float64).

    ``periodic=True`` divides by ``length`` (TF default, FFT-friendly); ``False`` gives the
    symmetric window that divides by ``length - 1``.
    """
    if length < 1:
        raise ValueError(f"window length must be positive, got {length}")
    if kind == "rectangular":
        return np.ones(length)
    denom = length if periodic else max(length - 1, 1)
    phase = 2.0 * np.pi * np.arange(length) / denom
    if kind == "hann":
        return 0.5 - 0.5 * np.cos(phase)
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(phase)
    raise ValueError(f"unknown window {kind!r}; use hann, hamming or rectangular")


def hz_to_mel(f: "np.ndarray | float", scale: MelScale = "htk") -> np.ndarray:
    """Hertz to mel: HTK ``1127 ln(1 + f/700)`` or Slaney (linear to 1 kHz, log above)."""
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 1127.0 * np.log1p(f / 700.0)
    if scale == "slaney":
        lin = f / _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_MEL + np.log(np.maximum(f, 1e-12) / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
        return np.where(f >= _SLANEY_MIN_LOG_HZ, log, lin)
    raise ValueError(f"unknown mel scale {scale!r}; use htk or slaney")


def mel_to_hz(m: "np.ndarray | float", scale: MelScale = "htk") -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * np.expm1(m / 1127.0)
    if scale == "slaney":
        lin = m * _SLANEY_F_SP
        log = _SLANEY_MIN_LOG_HZ * np.exp(_SLANEY_LOGSTEP * (m - _SLANEY_MIN_LOG_MEL))
        return np.where(m >= _SLANEY_MIN_LOG_MEL, log, lin)
    raise ValueError(f"unknown mel scale {scale!r}; use htk or slaney")


def mel_filterbank(num_bands: int, num_bins: int, sample_rate: float, fmin: float, fmax: float,
                   scale: MelScale = "htk", triangles: Literal["mel", "hz"] = "mel",
                   norm: Literal["none", "slaney"] = "none") -> np.ndarray:
    """Weight matrix ``(num_bins, num_bands)`` mapping a one-sided spectrum to mel bands.

    ``scale="htk", triangles="mel", norm="none"`` is ``tf.signal.linear_to_mel_weight_matrix``:
    band edges equally spaced in mel, triangles linear in mel with peak 1, DC row zero.
    ``triangles="hz"`` draws them linear in Hz (librosa style); ``norm="slaney"`` scales
    each band by ``2 / (f_upper - f_lower)`` so its area in Hz is 1.
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel range must satisfy 0 <= fmin < fmax <= sample_rate/2, got {fmin}..{fmax}")
    freqs = np.linspace(0.0, sample_rate / 2.0, num_bins)
    edges_mel = np.linspace(hz_to_mel(fmin, scale), hz_to_mel(fmax, scale), num_bands + 2)
    if triangles == "mel":
        pos, edges = hz_to_mel(freqs, scale), edges_mel
    else:
        pos, edges = freqs, mel_to_hz(edges_mel, scale)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (pos[:, None] - lo[None, :]) / (centre - lo)[None, :]
    falling = (hi[None, :] - pos[:, None]) / (hi - centre)[None, :]
    w = np.maximum(0.0, np.minimum(rising, falling))
    w[0, :] = 0.0  # DC carries no band energy (as TF does)
    if norm == "slaney":
        hz = mel_to_hz(edges_mel, scale)
        w *= (2.0 / (hz[2:] - hz[:-2]))[None, :]
    return w


def dct_matrix(num_inputs: int, num_coefficients: int, norm: Literal["tf", "ortho"] = "tf") -> np.ndarray:
    """DCT-II as a ``(num_inputs, num_coefficients)`` matrix: ``c = x @ D``.

    ``norm="tf"`` is ``tf.signal.mfccs_from_log_mel_spectrograms``: every coefficient scaled by
    ``sqrt(2/N)`` (so c0 is sqrt(2) times orthonormal). ``"ortho"`` is the orthonormal DCT-II.
    """
    if not 0 < num_coefficients <= num_inputs:
        raise ValueError(f"need 0 < coefficients <= {num_inputs}, got {num_coefficients}")
    n = np.arange(num_inputs)[:, None]
    k = np.arange(num_coefficients)[None, :]
    d = np.sqrt(2.0 / num_inputs) * np.cos(np.pi * k * (2 * n + 1) / (2.0 * num_inputs))
    if norm == "ortho":
        d[:, 0] *= np.sqrt(0.5)
    return d

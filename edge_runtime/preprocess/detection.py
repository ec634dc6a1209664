"""Wake-word decisions and the MLPerf Tiny scoring rules (FEATURES.md 2.5).

- :class:`ReferenceRule` -- the reference decision: one flag per invocation when the
  dequantized wake-word probability is above 0.95 (int8 code >= 116); no smoothing.
- :class:`SmoothedPolicy` -- an optional policy beyond the reference: the mean probability
  over the last ``window`` invocations must reach ``threshold``; after an event the detector
  stays quiet for ``refractory_s`` seconds. State is a fixed ring of ``window`` floats.
- :func:`score_runner` / :func:`score_evaluate` -- true positives, false negatives and false
  positives as the benchmark runner (``calc_detection_stats``) and ``evaluate.py``
  (``get_true_and_false_detections``) count them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: The runner adds its 1.0 s suppression delay twice (FEATURES.md 2.5, "Quirk").
RUNNER_ADMISSIBLE_S = 2.0
DEBOUNCE_S = 1.0


def dequantize_prob(q: int, scale: float = 1.0 / 256.0, zero_point: int = -128) -> float:
    """Probability from an int8 softmax code."""
    return (float(q) - zero_point) * scale


class ReferenceRule:
    """Flag an invocation when ``p[target] > threshold`` (reference: 0.95, i.e. q >= 116)."""

    def __init__(self, target_index: int = 0, threshold: float = 0.95, scale: float = 1.0 / 256.0,
                 zero_point: int = -128) -> None:
        self.target_index, self.threshold = target_index, threshold
        self.scale, self.zero_point = scale, zero_point

    def __call__(self, output: np.ndarray, t: float) -> bool:
        """One model output (int8 codes) -> detection flag for the window ending at ``t`` s."""
        q = int(output.reshape(-1)[self.target_index])
        return dequantize_prob(q, self.scale, self.zero_point) > self.threshold

    def reset(self) -> None:
        """The reference rule has no state."""


class SmoothedPolicy:
    """Posterior smoothing plus refractory period.

    Fires an event when the mean of the target probability over the last ``window``
    invocations (fewer at the very start) is at least ``threshold``, then ignores
    ``refractory_s`` seconds. Defaults: 5 invocations (160 ms at a 32 ms hop), 0.75, 1.0 s.
    """

    def __init__(self, window: int = 5, threshold: float = 0.75, refractory_s: float = 1.0,
                 target_index: int = 0, scale: float = 1.0 / 256.0, zero_point: int = -128) -> None:
        if window < 1 or not 0.0 < threshold < 1.0:
            raise ValueError("smoothing window must be >= 1 and threshold in (0, 1)")
        self.window, self.threshold, self.refractory_s = window, threshold, refractory_s
        self.target_index, self.scale, self.zero_point = target_index, scale, zero_point
        self._ring = np.zeros(window, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget history."""
        self._ring.fill(0.0)
        self._n = 0
        self._sum = 0.0
        self._quiet_until = -np.inf

    def __call__(self, output: np.ndarray, t: float) -> bool:
        """Feed one model output for the window ending at ``t`` s; True when an event fires."""
        p = dequantize_prob(int(output.reshape(-1)[self.target_index]), self.scale, self.zero_point)
        slot = self._n % self.window
        self._sum += p - self._ring[slot]
        self._ring[slot] = p
        self._n += 1
        mean = self._sum / min(self._n, self.window)
        if t < self._quiet_until or mean < self.threshold:
            return False
        self._quiet_until = t + self.refractory_s
        return True


@dataclass(frozen=True)
class Score:
    """Counts from a scoring rule, with the windows and false-positive times behind them."""

    true_positives: int
    false_negatives: int
    false_positives: int
    tp_windows: tuple[tuple[float, float], ...] = ()
    fn_windows: tuple[tuple[float, float], ...] = ()
    fp_times: tuple[float, ...] = ()


def _debounce(times: Sequence[float], gap: float = DEBOUNCE_S) -> list[float]:
    kept: list[float] = []
    for t in sorted(times):
        if not kept or t - kept[-1] >= gap:
            kept.append(t)
    return kept


def score_runner(detection_times: Sequence[float], truth: Sequence[tuple[float, float]]) -> Score:
    """The runner's ``calc_detection_stats``: a window is a TP when a detection falls in
    [start, stop + 2.0 s] (all such detections are consumed); leftovers are debounced by 1 s
    and each survivor is a false positive. Times in seconds, same clock as ``truth``."""
    remaining = sorted(float(t) for t in detection_times)
    tp, fn = [], []
    for start, stop in truth:
        hit = [t for t in remaining if start <= t <= stop + RUNNER_ADMISSIBLE_S]
        if hit:
            tp.append((start, stop))
            remaining = [t for t in remaining if not start <= t <= stop + RUNNER_ADMISSIBLE_S]
        else:
            fn.append((start, stop))
    fps = _debounce(remaining)
    return Score(len(tp), len(fn), len(fps), tuple(tp), tuple(fn), tuple(fps))


def score_evaluate(flags: Sequence[bool], n_samples: int, truth: Sequence[tuple[float, float]],
                   hop: int = 512, sample_rate: int = 16000) -> Score:
    """``evaluate.py``'s scoring: per-invocation flags repeated ``hop`` times, right-aligned to
    the end of the recording; TP if a flag lies in [start, stop + 0.5 s]; flags from start to
    stop + 1.0 s are masked; the rest are debounced by 1.0 s, one FP per surviving onset."""
    flags = np.asarray(flags, dtype=bool)
    det = np.zeros(n_samples, dtype=bool)
    rep = np.repeat(flags, hop)[-n_samples:]
    det[n_samples - rep.size:] = rep
    tp, fn = [], []
    masked = det.copy()
    for start, stop in truth:
        a, b = int(start * sample_rate), int(stop * sample_rate)
        if det[a:min(n_samples, b + int(0.5 * sample_rate))].any():
            tp.append((start, stop))
        else:
            fn.append((start, stop))
        masked[a:min(n_samples, b + int(1.0 * sample_rate))] = False
    fps: list[float] = []
    idx = np.flatnonzero(masked)
    while idx.size:
        i = int(idx[0])
        fps.append(i / sample_rate)
        masked[i:i + int(DEBOUNCE_S * sample_rate)] = False
        idx = np.flatnonzero(masked)
    return Score(len(tp), len(fn), len(fps), tuple(tp), tuple(fn), tuple(fps))


def load_truth(path: str, wav_name: Optional[str] = None) -> list[tuple[float, float]]:
    """Ground-truth windows from an MLPerf ``sww_*_test.json``.

    The file is a list of ``{"wav_file", "detection_windows": [[start, stop], ...]}`` entries
    (or one such mapping); ``wav_name`` picks the entry, else the only/first one is used.
    """
    import json
    import os

    from edge_runtime.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read ground truth: {exc}") from None
    entries = data if isinstance(data, list) else [data]
    entries = [e for e in entries if isinstance(e, dict) and "detection_windows" in e]
    if wav_name is not None:
        named = [e for e in entries if os.path.basename(str(e.get("wav_file", ""))) == os.path.basename(wav_name)]
        entries = named or entries
    if not entries:
        raise ConfigError(f"{path}: no entry with a 'detection_windows' list of [start, stop] pairs")
    try:
        return [(float(a), float(b)) for a, b in entries[0]["detection_windows"]]
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: 'detection_windows' must be [start, stop] pairs of seconds") from None


def make_policy(name: str, target_index: int = 0, threshold: Optional[float] = None, window: int = 5,
                refractory_s: float = 1.0) -> "ReferenceRule | SmoothedPolicy":
    """``"reference"`` -> :class:`ReferenceRule`; ``"smoothed"`` -> :class:`SmoothedPolicy`."""
    if name == "reference":
        return ReferenceRule(target_index, 0.95 if threshold is None else threshold)
    if name == "smoothed":
        return SmoothedPolicy(window=window, threshold=0.75 if threshold is None else threshold,
                              refractory_s=refractory_s, target_index=target_index)
    raise ValueError(f"unknown detection policy {name!r}; use reference or smoothed")

"""Locate and read the MLPerf Tiny reference models and data in ``../shared/models``.

Tests, benchmarks and the QEMU harness read third-party data from there instead of
committing it. ``EDGE_RUNTIME_SHARED`` overrides the location.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

import numpy as np

KWS_INPUT_SCALE = 0.5847029089927673
KWS_INPUT_ZERO_POINT = 83
KWS_LABELS = ["Down", "Go", "Left", "No", "Off", "On", "Right", "Stop", "Up", "Yes", "Silence", "Unknown"]


def shared_dir() -> Optional[Path]:
    """The ``shared`` folder beside the project checkout, or ``None`` when it is absent."""
    env = os.environ.get("EDGE_RUNTIME_SHARED")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[2] / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "models" / "mlperf_tiny").is_dir():
            return c
    return None


def models_dir() -> Path:
    """``shared/models``; raises FileNotFoundError with a clear reason when absent."""
    d = shared_dir()
    if d is None:
        raise FileNotFoundError(
            "the shared reference data (../shared/models beside the checkout) is not present; "
            "set EDGE_RUNTIME_SHARED to its location"
        )
    return d / "models"


def mlperf_model(name: str) -> Path:
    """Path of an MLPerf Tiny model, e.g. ``mlperf_model('kws_ref_model.tflite')``."""
    return models_dir() / "mlperf_tiny" / "models" / name


def mlperf_data(*parts: str) -> Path:
    """Path under ``shared/models/mlperf_tiny/data``."""
    return models_dir() / "mlperf_tiny" / "data" / Path(*parts)


def load_kws01(n: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The kws01 inputs as int8 ``(N, 1, 49, 10, 1)``, their labels, and the file names.

    Order follows ``y_labels.csv``. ``n`` keeps the first ``n``.
    """
    d = mlperf_data("kws01")
    with open(d / "y_labels.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if n is not None:
        rows = rows[:n]
    x = np.empty((len(rows), 1, 49, 10, 1), dtype=np.int8)
    for i, r in enumerate(rows):
        x[i] = np.fromfile(d / r[0], dtype=np.int8).reshape(1, 49, 10, 1)
    y = np.array([int(r[2]) for r in rows], dtype=np.int64)
    return x, y, [r[0] for r in rows]


def load_ad01_windows() -> np.ndarray:
    """The ad01 ToyCar clip as 196 model windows, float32 ``(196, 1, 640)`` (5 frames x 128 bins, stride 1)."""
    frames = np.fromfile(mlperf_data("ad01", "ad01_normal_id_01_00000000_hist_librosa.bin"), dtype="<f4")
    frames = frames.reshape(200, 128)
    idx = np.arange(196)[:, None] + np.arange(5)[None, :]
    return frames[idx].reshape(196, 1, 640).astype(np.float32)

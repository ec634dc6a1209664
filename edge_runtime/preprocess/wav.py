"""Read PCM WAV files with the standard library (no extra dependency)."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Union

import numpy as np

from edge_runtime.errors import InputError


def read_wav(path: Union[str, Path], channel: int = 0) -> tuple[np.ndarray, int]:
    """Samples of one channel as int16 (8-bit files are widened, 32-bit narrowed) and the sample rate.

    Channel 0 is what the MLPerf reference uses for its stereo test files.
    """
    try:
        with wave.open(str(path), "rb") as w:
            nch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise InputError(f"{path}: no such WAV file") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a readable PCM WAV file ({exc})") from None
    if not 0 <= channel < nch:
        raise InputError(f"{path}: has {nch} channel(s); channel {channel} does not exist")
    dtypes = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}
    if width not in dtypes:
        raise InputError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    usable = (len(raw) // (width * nch)) * width * nch
    data = np.frombuffer(raw[:usable], dtype=dtypes[width]).reshape(-1, nch)[:, channel]
    if width == 1:
        data = (data.astype(np.int16) - 128) << 8
    elif width == 4:
        data = data >> 16
    return np.ascontiguousarray(data, dtype=np.int16), rate

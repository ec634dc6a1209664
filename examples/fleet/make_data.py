"""Write the example fleet's calibration data and test input from scikit-learn's bundled digits.

    python examples/fleet/make_data.py

Writes ``data/calib.npy`` (200 images, float32 [200, 1, 8, 8] in [0, 1]) and
``data/test_input.npy`` (one image, [1, 1, 8, 8]), the input layout of the digits
classifier ``converters/data/digits_cnn.onnx``. The images are the last 200 of the
dataset, so they do not overlap the converter's own sample file. Deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def main() -> None:
    """Write the two .npy files beside this script."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0  # (1797, 8, 8), 0..16 -> 0..1
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    calib = np.ascontiguousarray(images[-200:, None, :, :])
    np.save(out / "calib.npy", calib)
    np.save(out / "test_input.npy", np.ascontiguousarray(images[-201:-200, None, :, :]))
    print(f"wrote {out / 'calib.npy'} {calib.shape} and {out / 'test_input.npy'}")


if __name__ == "__main__":
    main()

"""Step 1 of the new-user path (README): a PyTorch model -> model.onnx, plus calibration and test inputs.

A small CNN with random weights stands in for your trained model; the export is the ordinary
``torch.onnx.export`` call (the project's setup installs onnxscript, so the default exporter works).
Run: python examples/new_user/export_model.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch


class SmallCNN(torch.nn.Module):
    """Two convolutions, pooling and a linear classifier over 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = torch.nn.functional.adaptive_avg_pool2d(x, 4)
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=1)


def main(out: Path) -> None:
    """Write model.onnx, calib.npy (64 samples, NCHW like the model) and x.npy (4 samples).

    x.npy is channels-last (NHWC), the layout of the int8 TFLite model the converter writes.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = SmallCNN().eval()
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(out / "model.onnx"))
    rng = np.random.default_rng(0)
    np.save(out / "calib.npy", rng.standard_normal((64, 1, 8, 8)).astype(np.float32))
    x = rng.standard_normal((4, 1, 1, 8, 8)).astype(np.float32)
    np.save(out / "x.npy", x.transpose(0, 1, 3, 4, 2))  # 4 samples of (1, 8, 8, 1)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "new_user_out"))

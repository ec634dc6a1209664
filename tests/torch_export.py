"""Export small torch modules to ONNX for the converter tests (the legacy TorchScript exporter, fixed seed)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def export_cases(cases: dict[str, tuple[Callable[[], object], int]], out_dir: Path, example: np.ndarray,
                 seed: int = 0) -> dict[str, Path]:
    """``{name: (make_module, opset)}`` -> ``{name: out_dir/name.onnx}``, each exported in eval mode with
    ``example`` as its one input ``x`` and one output ``y``."""
    import torch

    torch.manual_seed(seed)
    paths = {}
    for name, (make, opset) in cases.items():
        module = make().eval()  # type: ignore[attr-defined]
        paths[name] = out_dir / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(module, (torch.from_numpy(example),), str(paths[name]), opset_version=opset,
                              dynamo=False, input_names=["x"], output_names=["y"])
    return paths

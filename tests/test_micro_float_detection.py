"""TFLite_Detection_PostProcess on micro is bit-exact with tflite-micro (``np.array_equal`` on boxes, classes,
scores and the count).

tflite-micro decodes each box's centre and half sizes in double (rounded once to float) and its corners in
float, computes IoU in float, and selects in score order with ties to the lower index (regular NMS: per
class, then merged; fast NMS: by the best class score). micro's kernel does the same operations, so the
outputs are the same bits, not only within 1e-6. Scores are drawn coarse (many ties) or continuous; fast NMS
leaves the rows past the count untouched in tflite-micro, so only the first ``count`` rows are compared there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tflite_builder import run_tflm
from test_micro_ops_custom import _model

from edge_runtime.backends.micro import open_model

pytest.importorskip("tflite_micro")


@pytest.mark.parity("TFLite_Detection_PostProcess", "float32")
@pytest.mark.parametrize("seed", range(16))
def test_detection_postprocess_bits_equal_tflite_micro(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, classes, background = int(rng.integers(8, 60)), int(rng.integers(1, 7)), int(rng.integers(0, 2))
    max_det, per_class, regular = int(rng.integers(2, 11)), int(rng.integers(1, 11)), bool(seed % 2)
    score_thr, iou_thr = float(rng.choice([0.0, 0.3, 0.5])), float(rng.choice([0.3, 0.5, 0.6, 1.0]))
    anchors = np.stack([rng.uniform(0, 1, n), rng.uniform(0, 1, n), rng.uniform(0.05, 0.5, n),
                        rng.uniform(0.05, 0.5, n)], 1).astype(np.float32)
    path = _model(tmp_path / "ssd.tflite", n, classes, background, max_det, 1, per_class, regular, score_thr,
                  iou_thr, anchors)
    cols = classes + background
    scores = rng.integers(0, 8, (1, n, cols)) / 8 if seed % 4 < 2 else rng.uniform(0, 1, (1, n, cols))
    sets = [[(rng.normal(0, 1, (1, n, 4)) * s).astype(np.float32), scores.astype(np.float32)] for s in (1.0, 2.5)]
    m = open_model(str(path))
    for k, (xs, want) in enumerate(zip(sets, run_tflm(path, sets))):
        got = [np.asarray(o) for o in m.run(xs)]
        count = int(want[3][0])
        assert np.array_equal(got[3], want[3]), f"set {k}: {got[3]} detections vs tflite-micro {want[3]}"
        rows = slice(None) if regular else slice(0, count)
        for j, what in ((0, "boxes"), (1, "classes"), (2, "scores")):
            assert np.array_equal(got[j][0, rows], want[j][0, rows]), (
                f"set {k} {what}: {got[j][0, rows].ravel()[:8]} vs tflite-micro {want[j][0, rows].ravel()[:8]}")

"""[OPS] Requantization multipliers are derived exactly as TFLite Micro derives them.

A kernel's fixed-point multiplier comes from a ratio of float32 scales. TFLM takes some of
those ratios in double precision; taking them in float32 instead changes the Q31 multiplier
by a few units, which only shows when the multiplier then lands on a rounding tie (Q31 -> Q15
for HARD_SWISH). Such ties are rare, so a few hundred random tests of an op can miss them:
a real PaddleOCR model converted by us hit one (HARD_SWISH, input scale 0.085760035 zp -4,
output scale 0.047796324 zp -120: input 47 gave -28 in micro, -29 in tflite-micro).
Reference: tflite-micro, every int8 input value, for many scale pairs.
"""
from __future__ import annotations

import numpy as np
import pytest

from tflite_builder import T, build, opts, run_micro, run_tflm

ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


def _same_as_tflm(path) -> bool:
    want = np.asarray(run_tflm(path, [[ALL_INT8]])[0][0])
    got = np.asarray(run_micro(path, [[ALL_INT8]])[0][0])
    return np.array_equal(want, got)


def test_hard_swish_on_the_scales_of_a_real_model(tmp_path):
    path = build(tmp_path / "hs.tflite", "HARD_SWISH", [T([1, 256], scale=0.085760035, zp=-4)],
                 [T([1, 256], scale=0.047796324, zp=-120)])
    assert _same_as_tflm(path)


@pytest.mark.parametrize("seed", range(4))
def test_hard_swish_on_many_scale_pairs(tmp_path, seed):
    """100 random (input, output) scale pairs per seed, all 256 input values each."""
    rng = np.random.default_rng(seed)
    bad = []
    for i in range(100):
        si = float(rng.uniform(0.005, 0.5))
        so = float(si * rng.uniform(0.3, 1.0))
        zi, zo = int(rng.integers(-40, 40)), int(rng.integers(-128, -100))
        path = build(tmp_path / f"hs{i}.tflite", "HARD_SWISH", [T([1, 256], scale=si, zp=zi)],
                     [T([1, 256], scale=so, zp=zo)])
        if not _same_as_tflm(path):
            bad.append((si, zi, so, zo))
    assert not bad, f"micro differs from tflite-micro on {len(bad)} of 100 scale pairs, e.g. {bad[:3]}"


def test_hard_swish_output_shift_of_16_or_more(tmp_path):
    """An output scale over 2**16 / 128 times the input's: TFLM's int16 RoundingDivideByPOT wraps its mask and
    gives 1 for x >= 0 and -1 below (micro used to give 0)."""
    path = build(tmp_path / "hs.tflite", "HARD_SWISH", [T([1, 256], scale=0.001, zp=0)], [T([1, 256], scale=0.52, zp=0)])
    assert _same_as_tflm(path)


@pytest.mark.parametrize("alpha", [0.1, -0.3])
def test_leaky_relu_identity_ratio_taken_in_double(tmp_path, alpha):
    """LEAKY_RELU's multipliers are the float32 scales (and alpha) multiplied and divided in double by
    the tflite-micro we check; float32 quotients are a unit off here: input 42 gave 89 in micro, 88 in
    tflite-micro (found by tests/test_micro_scale_sweeps.py)."""
    path = build(tmp_path / "lr.tflite", "LEAKY_RELU", [T([1, 256], scale=0.0873783603310585, zp=-19)],
                 [T([1, 256], scale=0.14602959156036377, zp=52)], opts("LeakyReluOptions", alpha=alpha))
    assert _same_as_tflm(path)

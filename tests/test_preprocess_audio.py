"""Audio front-ends against the golden TF reference data in ../shared/models/features.

Tolerances are those of FEATURES.md section 3. Statistics are printed (``pytest -s``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.preprocess import build_preprocessor, float_config, load_config
from edge_runtime.preprocess.base import iter_windows
from edge_runtime.preprocess.dsp import dct_matrix, hz_to_mel, mel_filterbank, mel_to_hz, window_function
from edge_runtime.preprocess.quantize import Quantizer, reference_quantize

KWS_CLIPS = ["clip0_marvin_617de221_0", "clip1_short_wav_easy10s_1p0s", "clip2_short_wav_easy10s_4p0s",
             "clip3_short_wav_easy10s_8p5s", "clip4_sine1k_a0p5_noise_seed0", "clip5_marvin_first10000_padded"]
SWW_FILES = ["short_wav_easy10s", "marvin_617de221_0"]


@pytest.fixture(scope="module")
def features(shared: Path) -> Path:
    return shared / "models" / "features"


def _float_cfg(name: str) -> object:
    """A preset with float32 output, to compare unquantized features."""
    return float_config(name)


def kws_windows(wav: np.ndarray, cfg: object = "kws") -> np.ndarray:
    return np.stack([w.copy() for _, w in iter_windows(build_preprocessor(cfg), wav)])


def sww_frames(wav: np.ndarray, cfg: object = "sww") -> np.ndarray:
    """Per-frame features rebuilt from the sliding windows: window 0, then each window's newest row."""
    wins = np.stack([w.reshape(30, 40).copy() for _, w in iter_windows(build_preprocessor(cfg), wav)])
    return np.concatenate([wins[0], wins[1:, -1]])


# -- building blocks -------------------------------------------------------------
def test_windows_match_tf_tables(features: Path) -> None:
    """Periodic Hann 480 and symmetric Hamming 1024 against tf.signal's (golden .npy), float32 precision."""
    hann = np.load(features / "kws_golden" / "hann_window_480_periodic.npy")
    ham = np.load(features / "sww_golden" / "hamming_window_1024_symmetric.npy")
    np.testing.assert_allclose(window_function("hann", 480, periodic=True), hann, atol=1e-6)
    np.testing.assert_allclose(window_function("hamming", 1024, periodic=False), ham, atol=1e-6)
    assert not np.allclose(window_function("hamming", 1024, periodic=True), ham, atol=1e-4)


def test_htk_mel_matrix_matches_tf(features: Path) -> None:
    """tf.signal.linear_to_mel_weight_matrix (golden): float64 numpy differs by < 1e-5 (FEATURES.md 1.2.7.6)."""
    for args, name in [((40, 257, 16000, 20.0, 4000.0), "kws_golden/mel_weight_matrix_257x40_20_4000Hz.npy"),
                       ((40, 513, 16000, 0.0, 8000.0), "sww_golden/mel_weight_matrix_513x40_0_8000Hz.npy")]:
        tf = np.load(features / name)
        ours = mel_filterbank(*args, scale="htk")
        assert ours.shape == tf.shape
        assert np.abs(ours - tf).max() < 1e-5
        assert np.array_equal(ours != 0, tf != 0) or np.abs(ours[(ours != 0) != (tf != 0)]).max() < 1e-5


def test_slaney_scale_anchor_points() -> None:
    """Slaney (Auditory Toolbox / librosa htk=False): linear 3/200 mel per Hz to 1 kHz = 15 mel, then 27 mel per ln(6.4)."""
    np.testing.assert_allclose(hz_to_mel([0.0, 500.0, 1000.0, 6400.0], "slaney"), [0.0, 7.5, 15.0, 42.0], atol=1e-9)
    f = np.array([10.0, 700.0, 1000.0, 3000.0, 7999.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, "slaney"), "slaney"), f, rtol=1e-12)
    np.testing.assert_allclose(hz_to_mel(700.0, "htk"), 1127.0 * np.log(2.0))


def test_slaney_norm_gives_unit_area_triangles() -> None:
    """norm=slaney, triangles in Hz: each band's weights integrate (Riemann sum over bins) to 1."""
    sr, nfft = 16000, 4096
    w = mel_filterbank(32, nfft // 2 + 1, sr, 100.0, 7000.0, scale="slaney", triangles="hz", norm="slaney")
    area = w.sum(axis=0) * (sr / nfft)
    np.testing.assert_allclose(area, 1.0, rtol=0.02)
    peaks = np.argmax(w, axis=0)
    assert np.all(np.diff(peaks) > 0)


def test_dct_tf_norm_and_ortho() -> None:
    """TF's MFCC DCT = orthonormal DCT-II except c0 scaled by sqrt(2) (FEATURES.md 1.2 step 9)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    ortho = dct_matrix(40, 40, "ortho")
    np.testing.assert_allclose(ortho.T @ ortho, np.eye(40), atol=1e-12)  # orthonormal
    tf = x @ dct_matrix(40, 10, "tf")
    o = x @ ortho[:, :10]
    np.testing.assert_allclose(tf[1:], o[1:], atol=1e-12)
    np.testing.assert_allclose(tf[0], np.sqrt(2) * o[0], atol=1e-12)
    # numpy-free definition check for one coefficient
    n = np.arange(40)
    np.testing.assert_allclose(tf[3], np.sqrt(2 / 40) * np.sum(x * np.cos(np.pi * 3 * (2 * n + 1) / 80)))


def test_quantizer_matches_reference_truncation_and_wrap() -> None:
    """Quantizer(trunc, wrap) == np.array(float32(x)/scale + zp, dtype=int8) (the reference), incl. wrap."""
    x = np.array([-200.0, -123.9, -1e-9, 0.0, 0.001, 1.0, 26.0, 26.4, 80.0, 1e12], dtype=np.float64)
    out = np.empty(x.shape, np.int8)
    Quantizer(x.shape, "int8", 0.5847029089927673, 83, "trunc", "wrap")(x, out)
    assert np.array_equal(out[:-1], reference_quantize(x[:-1], 0.5847029089927673, 83))
    assert out[0] == np.int8(np.int64(np.trunc(np.float32(-200.0) / np.float32(0.5847029089927673) + 83)) & 0xFF)
    sat = np.empty(x.shape, np.int8)
    Quantizer(x.shape, "int8", 0.5847029089927673, 83, "round", "saturate")(x, sat)
    assert sat[0] == -128 and sat[-1] == 127 and sat[-2] == 127
    # round half away from zero
    q = np.empty(4, np.int8)
    Quantizer((4,), "int8", 1.0, 0, "round", "saturate")(np.array([0.5, -0.5, 1.5, -2.5]), q)
    assert q.tolist() == [1, -1, 2, -3]


# -- KWS ---------------------------------------------------------------------------------
def test_kws_int8_matches_golden(features: Path) -> None:
    """KWS int8 model inputs vs golden TF 2.21 (`*_input_int8.npy`): >= 99.5 % exact on non-silent
    rows, never > 1 LSB; silent rows (c0 = -128) may read 82 or 83 in c1..c9."""
    exact = total = 0
    for clip in KWS_CLIPS:
        g = features / "kws_golden"
        wav = np.load(g / f"{clip}_wav_int16.npy")
        win = kws_windows(wav)
        assert win.shape == (1, 1, 49, 10, 1), "a clip of <= 1 s gives exactly one window (padded)"
        q = win[0].reshape(49, 10).astype(int)
        gold = np.load(g / f"{clip}_input_int8.npy").astype(int)
        nonsilent = gold[:, 0] > -128
        d = q - gold
        assert np.abs(d).max() <= 1, clip
        exact += int((d[nonsilent] == 0).sum())
        total += int(d[nonsilent].size)
        silent = q[~nonsilent]
        assert np.all(silent[:, 0] == -128) and np.all((silent[:, 1:] == 82) | (silent[:, 1:] == 83))
        assert (g / f"{clip}_input_int8.bin").read_bytes() == gold.astype(np.int8).tobytes()
    rate = exact / total
    print(f"\nKWS int8 vs golden: {exact}/{total} non-silent codes exact ({100 * rate:.3f} %)")
    assert rate >= 0.995


def test_kws_float_mfcc_within_1e4(features: Path) -> None:
    """Float MFCCs vs golden TF float32 (`*_mfcc_float32.npy`): |diff| <= 1e-4 (FEATURES.md 3)."""
    worst = 0.0
    for clip in KWS_CLIPS:
        g = features / "kws_golden"
        f = kws_windows(np.load(g / f"{clip}_wav_int16.npy"), _float_cfg("kws"))[0].reshape(49, 10)
        worst = max(worst, float(np.abs(f - np.load(g / f"{clip}_mfcc_float32.npy")).max()))
    print(f"\nKWS float MFCC max |diff| vs golden: {worst:.2e}")
    assert worst <= 1e-4


def test_kws_float_input_equals_int16_input(features: Path) -> None:
    """The peak normalisation makes int16 and int16/32768 input give identical codes (FEATURES.md 1.2 step 2)."""
    g = features / "kws_golden"
    a = kws_windows(np.load(g / "clip0_marvin_617de221_0_wav_int16.npy"))
    b = kws_windows(np.load(g / "clip0_marvin_617de221_0_wav_float32.npy"))
    assert np.array_equal(a, b)


def test_kws_does_not_round(features: Path) -> None:
    """Our codes are the truncating reference, not the round-and-clip variant (which differs in 30-50 %)."""
    g = features / "kws_golden"
    q = kws_windows(np.load(g / "clip0_marvin_617de221_0_wav_int16.npy"))[0].reshape(49, 10)
    rc = np.load(g / "clip0_marvin_617de221_0_input_int8_roundclip.npy")
    assert (q != rc).mean() > 0.2


# -- SWW ---------------------------------------------------------------------------------
def test_sww_int8_matches_golden(features: Path) -> None:
    """SWW int8 frames vs golden (`*_lfbe_int8.npy`): |diff| <= 1, at most 0.1 % of codes differ."""
    diff = total = 0
    for name in SWW_FILES:
        g = features / "sww_golden"
        q = sww_frames(np.load(g / f"{name}_wav_int16.npy")).astype(int)
        gold = np.load(g / f"{name}_lfbe_int8.npy").astype(int)
        assert q.shape == gold.shape
        assert np.abs(q - gold).max() <= 1
        diff += int((q != gold).sum())
        total += gold.size
    print(f"\nSWW int8 vs golden: {diff}/{total} codes off by 1 LSB ({100 * diff / total:.4f} %)")
    assert diff / total <= 0.001


def test_sww_float_within_1e5(features: Path) -> None:
    """Float log-mel features vs golden TF float32 (`*_lfbe_float32.npy`): |diff| <= 1e-5 (symmetric window)."""
    worst = 0.0
    for name in SWW_FILES:
        g = features / "sww_golden"
        f = sww_frames(np.load(g / f"{name}_wav_int16.npy"), _float_cfg("sww"))
        worst = max(worst, float(np.abs(f - np.load(g / f"{name}_lfbe_float32.npy")).max()))
    print(f"\nSWW float features max |diff| vs golden: {worst:.2e}")
    assert worst <= 1e-5


def test_sww_firmware_start_matches_fwstream_golden(features: Path) -> None:
    """windows.start=firmware: one window per 512-sample chunk from the first, frame 0 = [512 zeros | 512
    samples], window prefilled with 0 codes -- vs golden `*_fwstream_lfbe_int8.npy` (TF on the zero-prepended wav)."""
    d = load_config("sww").model_dump()
    d["windows"]["start"] = "firmware"
    g = features / "sww_golden"
    wav = np.load(g / "marvin_617de221_0_wav_int16.npy")
    stream = build_preprocessor(d)
    wins = [(e, w.reshape(30, 40).copy()) for e, w in iter_windows(stream, wav)]
    gold = np.load(g / "marvin_617de221_0_fwstream_lfbe_int8.npy")
    assert len(wins) == gold.shape[0] == 31
    frames = np.stack([w[-1] for _, w in wins])
    assert np.abs(frames.astype(int) - gold).max() <= 1 and (frames != gold).mean() <= 0.001
    assert np.all(wins[0][1][:-1] == 0), "rows before the first frame hold the 0x00 prefill"
    assert [e for e, _ in wins[:3]] == [512, 1024, 1536]


def test_sww_window_end_times(features: Path) -> None:
    """Invocation i ends at (i + 31) * 512 samples (FEATURES.md 2.5); 282 invocations for 10 s."""
    wav = np.load(features / "sww_golden" / "short_wav_easy10s_wav_int16.npy")
    ends = [e for e, _ in iter_windows(build_preprocessor("sww"), wav)]
    assert len(ends) == 282
    assert ends == [(i + 31) * 512 for i in range(282)]


def test_kws_long_file_gives_one_window_per_second(features: Path) -> None:
    """kws on the 10 s file: 10 clips; clip 1 ([16000, 32000)) equals golden clip1 exactly."""
    g = features / "kws_golden"
    wav = np.load(features / "sww_golden" / "short_wav_easy10s_wav_int16.npy")
    res = [(e, w.copy()) for e, w in iter_windows(build_preprocessor("kws"), wav)]
    assert [e for e, _ in res] == [16000 * (k + 1) for k in range(10)]
    q = res[1][1].reshape(49, 10)
    assert np.array_equal(q, np.load(g / "clip1_short_wav_easy10s_1p0s_input_int8.npy"))
    q4 = res[4][1].reshape(49, 10)
    assert np.array_equal(q4, np.load(g / "clip2_short_wav_easy10s_4p0s_input_int8.npy"))

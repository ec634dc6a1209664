"""End to end: wav -> streaming preprocessor -> model -> decisions, against the golden reference runs.

References: golden features/outputs in ../shared/models/features (TF 2.21 + ai-edge-litert 2.3.0),
LiteRT default (XNNPACK) -> ``*_eval_outputs_int8.npy``, LiteRT BUILTIN_REF -> ``*_refkernels.npy``.
Our micro backend is bit-exact with tflite-micro, so its reference is tflite-micro run on the golden
int8 windows. tflite-micro itself differs from LiteRT's BUILTIN_REF golden on 2 of the 282 SWW
invocations (rows 36 and 280, by 1-2 LSB): ``test_tflite_micro_vs_litert_reference_golden`` pins that.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge_runtime
from edge_runtime.preprocess import build_preprocessor, load_config
from edge_runtime.preprocess.base import iter_windows
from edge_runtime.preprocess.detection import ReferenceRule, SmoothedPolicy, load_truth, score_evaluate, score_runner
from edge_runtime.preprocess.pipeline import run_stream
from edge_runtime.preprocess.wav import read_wav

KERNELS = {"default": ({}, ""), "reference": ({"op_resolver": "reference"}, "_refkernels")}
KWS_CLIPS = ["clip0_marvin_617de221_0", "clip1_short_wav_easy10s_1p0s", "clip2_short_wav_easy10s_4p0s",
             "clip3_short_wav_easy10s_8p5s", "clip4_sine1k_a0p5_noise_seed0", "clip5_marvin_first10000_padded"]


@pytest.fixture(scope="module")
def paths(shared: Path) -> dict[str, Path]:
    m = shared / "models"
    return {"sww_model": m / "mlperf_tiny" / "models" / "str_ww_ref_model.tflite",
            "kws_model": m / "mlperf_tiny" / "models" / "kws_ref_model.tflite",
            "audio": m / "mlperf_tiny" / "data" / "audio",
            "sww_golden": m / "features" / "sww_golden",
            "kws_golden": m / "features" / "kws_golden"}


def micro_or_skip() -> None:
    """Skip only while the pure-numpy micro backend cannot be opened."""
    try:
        mod = importlib.import_module("edge_runtime.backends.micro")
    except ImportError as exc:
        pytest.skip(f"micro backend not importable yet: {exc}")
    if not hasattr(mod, "open_model"):
        pytest.skip("micro backend not importable yet: edge_runtime.backends.micro has no open_model()")


def load(path: Path, kernels: str) -> Any:
    if kernels == "micro":
        micro_or_skip()
        return edge_runtime.load(str(path), backend="micro")
    return edge_runtime.load(str(path), backend="litert", **KERNELS[kernels][0])


def sww_run(paths: dict[str, Path], kernels: str, wav: str = "short_wav_easy10s", policy: Any = None,
            chunk: int = 512, start: str = "full") -> tuple[Any, np.ndarray]:
    signal, rate = read_wav(paths["audio"] / f"{wav}.wav")
    cfg = load_config("sww").model_dump()
    cfg["windows"]["start"] = start
    with load(paths["sww_model"], kernels) as model:
        stream = build_preprocessor(cfg, model.inputs[0])
        res = run_stream(stream, model, signal, rate, chunk=chunk, policy=policy)
    return res, signal


@pytest.fixture(scope="module")
def tflm_sww_golden(paths: dict[str, Path]) -> np.ndarray:
    """tflite-micro's outputs on the 282 golden SWW int8 windows (the micro backend's reference)."""
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    feats = np.load(paths["sww_golden"] / "short_wav_easy10s_lfbe_int8.npy")
    interp = runtime.Interpreter.from_file(str(paths["sww_model"]))
    outs = []
    for i in range(282):
        interp.set_input(feats[i:i + 30].reshape(1, 30, 1, 40), 0)
        interp.invoke()
        outs.append(interp.get_output(0).reshape(3).copy())
    return np.stack(outs)


def golden_outputs(paths: dict[str, Path], kernels: str, tflm: np.ndarray) -> np.ndarray:
    """The reference outputs for ``kernels``: LiteRT golden files, or tflite-micro for micro."""
    if kernels == "micro":
        return tflm
    suffix = KERNELS[kernels][1]
    return np.load(paths["sww_golden"] / f"short_wav_easy10s_eval_outputs_int8{suffix}.npy")


def test_tflite_micro_vs_litert_reference_golden(paths: dict[str, Path], tflm_sww_golden: np.ndarray) -> None:
    """tflite-micro and LiteRT's BUILTIN_REF kernels disagree on exactly two SWW invocations, by <= 2 LSB."""
    ref = np.load(paths["sww_golden"] / "short_wav_easy10s_eval_outputs_int8_refkernels.npy")
    differ = np.where((tflm_sww_golden != ref).any(axis=1))[0]
    assert differ.tolist() == [36, 280]
    assert np.abs(tflm_sww_golden.astype(int) - ref).max() <= 2


@pytest.fixture(scope="module")
def sww_results(paths: dict[str, Path]) -> dict[str, Any]:
    return {k: sww_run(paths, k)[0] for k in KERNELS}


# -- wake word ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernels", ["default", "reference", "micro"])
def test_sww_model_on_golden_inputs_is_bit_exact(paths: dict[str, Path], kernels: str,
                                                 tflm_sww_golden: np.ndarray) -> None:
    """Golden int8 windows -> outputs equal the reference of the same kernels, every invocation
    (LiteRT default vs *_eval_outputs_int8, reference kernels vs *_refkernels, micro vs tflite-micro)."""
    g = paths["sww_golden"]
    feats = np.load(g / "short_wav_easy10s_lfbe_int8.npy")
    gold = golden_outputs(paths, kernels, tflm_sww_golden)
    with load(paths["sww_model"], kernels) as model:
        outs = np.stack([model.run(feats[i:i + 30].reshape(1, 30, 1, 40))[0].reshape(3) for i in range(282)])
    assert np.array_equal(outs, gold)


@pytest.mark.parametrize("kernels", ["default", "reference", "micro"])
def test_sww_stream_outputs_equal_golden(paths: dict[str, Path], sww_results: dict[str, Any], kernels: str,
                                         tflm_sww_golden: np.ndarray) -> None:
    """Streaming the wav in 512-sample chunks: 282 invocations; outputs equal the golden ones for the
    same kernels on every invocation whose int8 input equals the golden input. The only feature code
    that differs (frame 146, band 30: 4.99995 vs 5.00003 before truncation, FEATURES.md 3) changes at
    most a handful of invocations that contain it, by <= 7 LSB (FEATURES.md: up to 6 for 1 LSB)."""
    res = sww_results[kernels] if kernels in sww_results else sww_run(paths, kernels)[0]
    g = paths["sww_golden"]
    gold = golden_outputs(paths, kernels, tflm_sww_golden)
    outs = res.outputs.reshape(-1, 3)
    assert outs.shape == gold.shape == (282, 3)
    assert np.array_equal(res.window_end, (np.arange(282) + 31) * 512)
    signal = np.load(g / "short_wav_easy10s_wav_int16.npy")
    ours = np.stack([w.reshape(30, 40).copy() for _, w in iter_windows(build_preprocessor("sww"), signal)])
    feats = np.load(g / "short_wav_easy10s_lfbe_int8.npy")
    same_input = np.array([np.array_equal(ours[i], feats[i:i + 30]) for i in range(282)])
    equal = np.all(outs == gold, axis=1)
    print(f"\nSWW {kernels}: {int(equal.sum())}/282 invocations bit-exact; "
          f"{int(same_input.sum())}/282 have golden-identical inputs; max diff {int(np.abs(outs.astype(int) - gold).max())} LSB")
    assert np.all(equal[same_input])
    assert np.abs(outs.astype(int) - gold).max() <= 7
    assert (~equal).sum() <= 8


@pytest.mark.parametrize("kernels", ["default", "reference", "micro"])
def test_sww_reference_rule_reproduces_reference_result(paths: dict[str, Path], sww_results: dict[str, Any],
                                                        kernels: str) -> None:
    """Reference decision (p > 0.95, no smoothing): 1.0 s and 4.0 s windows detected, 7.0 s missed,
    no false positives, with both the runner's and evaluate.py's scoring (golden detections.json)."""
    if kernels in sww_results:
        res = sww_results[kernels]
    else:
        res = sww_run(paths, kernels)[0]
    rule = ReferenceRule()
    flags = [rule(o, t) for o, t in zip(res.outputs, res.times)]
    truth = load_truth(str(paths["audio"] / "sww_short_test.json"), "short_wav_easy10s.wav")
    assert truth == [(1.0, 1.6476250000000001), (4.0, 4.76175), (7.0, 7.358625)]
    times = [float(t) for t, f in zip(res.times, flags) if f]
    for s in (score_runner(times, truth), score_evaluate(flags, 160000, truth)):
        assert (s.true_positives, s.false_negatives, s.false_positives) == (2, 1, 0)
        assert s.fn_windows == ((7.0, 7.358625),)
    gold = json.loads((paths["sww_golden"] / "short_wav_easy10s_detections.json").read_text())
    detecting = [i for i, f in enumerate(flags) if f]
    if kernels == "default":
        assert detecting[:24] == gold["eval_detection_invocations"][:24]  # the 1.0 s word: 13..36
    assert any(120 <= i <= 130 for i in detecting), "the fragile 4.0 s detection (golden: invocation 126)"


def test_scoring_rules_on_golden_outputs(paths: dict[str, Path]) -> None:
    """Both scoring implementations give the golden 2 TP / 1 FN / 0 FP on the golden outputs of all
    three LiteRT back-ends (detections.json: evaluate_py_scoring, runner_scoring_eval_invocations)."""
    truth = load_truth(str(paths["audio"] / "sww_short_test.json"))
    for suffix in ("", "_refkernels", "_nodelegate"):
        out = np.load(paths["sww_golden"] / f"short_wav_easy10s_eval_outputs_int8{suffix}.npy")
        flags = out[:, 0].astype(int) >= 116
        times = (np.flatnonzero(flags) + 31) * 512 / 16000
        r, e = score_runner(times.tolist(), truth), score_evaluate(flags, 160000, truth)
        assert (r.true_positives, r.false_negatives, r.false_positives) == (2, 1, 0)
        assert (e.true_positives, e.false_negatives, e.false_positives) == (2, 1, 0)
    # the rules do count false positives: a spurious flag at 3.0 s and one at 9.5 s
    flags2 = np.zeros(282, bool)
    flags2[[int(3.0 * 16000 / 512) - 31, int(9.5 * 16000 / 512) - 31]] = True
    assert score_evaluate(flags2, 160000, truth).false_positives == 2
    assert score_runner([3.8, 9.5, 9.6], truth).false_positives == 2  # 3.0 would fall in the 2 s quirk window


@pytest.mark.parametrize("kernels", ["default", "reference"])
def test_smoothed_policy_catches_all_three_words(paths: dict[str, Path], kernels: str) -> None:
    """Beyond the reference: mean p over 5 invocations >= 0.75, 1 s refractory -> 3 TP, 0 FN, 0 FP,
    one event per word."""
    res, _ = sww_run(paths, kernels, policy=SmoothedPolicy())
    truth = load_truth(str(paths["audio"] / "sww_short_test.json"))
    times = [float(res.times[i]) for i in res.events]
    s = score_runner(times, truth)
    assert (s.true_positives, s.false_negatives, s.false_positives) == (3, 0, 0)
    assert len(times) == 3


def test_smoothed_policy_is_not_tuned_to_this_file(paths: dict[str, Path], sww_results: dict[str, Any]) -> None:
    """The same outcome holds over a wide band of settings -- threshold 0.3..0.85 and 3..8 invocations --
    because outside the words p never exceeds 0.07 while the 7.0 s word holds p ~ 0.8-0.9 for ~300 ms."""
    truth = load_truth(str(paths["audio"] / "sww_short_test.json"))
    res = sww_results["default"]
    for window in (3, 5, 8):
        for threshold in (0.3, 0.5, 0.75, 0.85):
            pol = SmoothedPolicy(window=window, threshold=threshold)
            times = [float(t) for o, t in zip(res.outputs, res.times) if pol(o, float(t))]
            s = score_runner(times, truth)
            assert (s.true_positives, s.false_negatives, s.false_positives) == (3, 0, 0), (window, threshold)


def test_smoothed_policy_on_marvin_clip(paths: dict[str, Path]) -> None:
    """marvin_617de221_0.wav (1 s, one 'marvin'): one event with the evaluate-style stream (1 invocation)
    and one event with the firmware-style stream (31 invocations, zero-prefilled window)."""
    res, _ = sww_run(paths, "default", wav="marvin_617de221_0", policy=SmoothedPolicy())
    assert res.outputs.shape[0] == 1 and res.events == [0]
    res_fw, _ = sww_run(paths, "default", wav="marvin_617de221_0", policy=SmoothedPolicy(), start="firmware")
    assert res_fw.outputs.shape[0] == 31 and len(res_fw.events) == 1
    gold = np.load(paths["sww_golden"] / "marvin_617de221_0_fwstream_outputs_int8.npy")
    assert np.abs(res_fw.outputs.reshape(-1, 3).astype(int) - gold).max() <= 7
    assert res_fw.events[0] >= 15, "fires when the word is in the window, not on the prefill"


def test_smoothed_threshold_no_false_positive_on_calibration_negatives(paths: dict[str, Path], shared: Path) -> None:
    """Independent data: the 30 silence/other windows of sww_calibration_samples.npz never reach 0.75."""
    d = np.load(shared / "models" / "mlperf_tiny" / "data" / "sww" / "sww_calibration_samples.npz")
    from edge_runtime.preprocess.quantize import reference_quantize

    with load(paths["sww_model"], "default") as model:
        p = np.array([(int(model.run(reference_quantize(x, 0.003701042616739869, -128).reshape(1, 30, 1, 40))[0][0, 0])
                       + 128) / 256 for x in d["specs"]])
    labels = d["labels"]
    assert np.all(p[labels != 0] < 0.75)
    assert (p[labels == 0] >= 0.75).sum() >= 9


# -- keyword spotting -----------------------------------------------------------------------
@pytest.mark.parametrize("kernels", ["default", "reference", "micro"])
def test_kws_classifies_golden_clips_like_reference(paths: dict[str, Path], kernels: str) -> None:
    """kws preset + kws_ref_model on each golden clip: the int8 output equals the golden output of the
    same kernels (default -> *_output_int8, reference/micro -> *_output_int8_refkernels), so top-1 and
    its probability match kws_outputs_summary.json."""
    g = paths["kws_golden"]
    summary = json.loads((g / "kws_outputs_summary.json").read_text())
    suffix = "_refkernels" if kernels in ("reference", "micro") else ""
    labels = load_config("kws").labels
    with load(paths["kws_model"], kernels) as model:
        for clip in KWS_CLIPS:
            wav = np.load(g / f"{clip}_wav_int16.npy")
            res = run_stream(build_preprocessor("kws", model.inputs[0]), model, wav, 16000, chunk=320)
            assert res.outputs.shape[0] == 1, clip
            out = res.outputs[0].reshape(12)
            assert np.array_equal(out, np.load(g / f"{clip}_output_int8{suffix}.npy")), clip
            if kernels == "default":
                assert labels[int(np.argmax(out))] == summary["clips"][clip]["top1"]

"""``edge-runtime stream``: stream a WAV file through preprocessing and a model."""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError, InputError

NAME = "stream"
HELP = "stream a WAV file through a preprocessing preset and a model; print detections or labels"
DESCRIPTION = """\
Stream FILE.wav through the preprocessing preset/chain and MODEL, as a device would: audio
arrives in --chunk sample pieces, and the model runs on every model-input window as soon as it
is ready (sww: every 32 ms frame; kws: every 1 s clip).

Wake-word chains (with a `detection` section, e.g. sww) print detections with the time at
which the detecting window ends. Two decision policies:
  reference  MLPerf rule: flag every invocation whose wake-word probability is > 0.95
             (int8 >= 116); no smoothing (FEATURES.md 2.5).
  smoothed   mean probability over the last 5 invocations (160 ms) >= 0.75, then quiet for
             1.0 s; one event per utterance. --threshold, --smooth-window and --refractory
             change it. On short_wav_easy10s.wav it finds all 3 words with no false positive
             for any threshold 0.3-0.85 and window 3-8 (outside the words p stays <= 0.07).
With --truth sww_short_test.json the detections are scored like the MLPerf runner
(true positives, false negatives, false positives).

Classification chains (e.g. kws) print one label per window with its time span.

Examples:
  edge-runtime stream str_ww_ref_model.tflite --preset sww --wav short_wav_easy10s.wav
  edge-runtime stream str_ww_ref_model.tflite --preset sww --wav w.wav --policy smoothed --json
  edge-runtime stream kws_ref_model.tflite --preset kws --wav clip.wav --backend micro
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edge-runtime stream``."""
    p.add_argument("model", metavar="MODEL", help="model file (.tflite or .onnx)")
    p.add_argument("--preset", required=True, metavar="NAME|CHAIN.yaml",
                   help="preprocessing preset (kws, sww) or a YAML chain")
    p.add_argument("--wav", required=True, metavar="FILE", help="PCM WAV file at the chain's sample rate (channel 0 used)")
    p.add_argument("--backend", "-b", default="auto", choices=["auto", "litert", "tflite", "onnx", "micro"],
                   help="runtime (default: auto, from the model's format)")
    p.add_argument("--op-resolver", default="default", choices=["default", "reference", "no_default_delegates"],
                   help="LiteRT kernels: default (XNNPACK), reference (BUILTIN_REF), or builtin without XNNPACK")
    p.add_argument("--policy", default="smoothed", choices=["reference", "smoothed"],
                   help="wake-word decision policy: smoothed (default: mean p(wake) over --smooth-window "
                        "invocations, one event per word) or reference (the MLPerf rule: every invocation over "
                        "the threshold is a line)")
    p.add_argument("--threshold", type=float, metavar="P",
                   help="probability threshold (default: 0.95 reference, 0.75 smoothed)")
    p.add_argument("--smooth-window", type=int, default=5, metavar="N",
                   help="smoothed policy: invocations averaged (default: 5 = 160 ms at a 32 ms hop)")
    p.add_argument("--refractory", type=float, default=1.0, metavar="S",
                   help="smoothed policy: seconds to stay quiet after an event (default: 1.0)")
    p.add_argument("--truth", metavar="TRUTH.json", help="MLPerf sww_*_test.json: score detections against it")
    p.add_argument("--chunk", type=int, default=512, metavar="N", help="samples per push (default: 512 = 32 ms)")
    p.add_argument("--outputs", metavar="Y.npy", help="save every invocation's raw model output here")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")


def run(args: argparse.Namespace) -> int:
    """Stream, decide, print."""
    import edge_runtime
    from edge_runtime.commands.features import progress_bar
    from edge_runtime.preprocess import build_preprocessor, load_config
    from edge_runtime.preprocess.detection import load_truth, make_policy, score_runner
    from edge_runtime.preprocess.pipeline import run_stream
    from edge_runtime.preprocess.wav import read_wav

    cfg = load_config(args.preset)
    if cfg.kind != "audio" or cfg.audio is None:
        raise ConfigError(f"{args.preset}: is a {cfg.kind} chain; `stream --wav` needs an audio chain")
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ConfigError(f"--threshold must be a probability in (0, 1), got {args.threshold}")
    if args.smooth_window < 1 or args.refractory < 0:
        raise ConfigError("--smooth-window must be >= 1 and --refractory >= 0")
    signal, rate = read_wav(args.wav)
    if rate != cfg.audio.sample_rate:
        raise InputError(f"{args.wav}: sample rate {rate} Hz, but '{cfg.name}' expects {cfg.audio.sample_rate} Hz")
    truth = load_truth(args.truth, args.wav) if args.truth else None
    options: dict[str, Any] = {}
    if args.op_resolver != "default":
        options["op_resolver"] = args.op_resolver
    with edge_runtime.load(args.model, backend=args.backend, **options) as model:
        stream = build_preprocessor(cfg, model.inputs[0])
        out_spec = model.outputs[0]
        policy = None
        if cfg.detection is not None:
            policy = make_policy(args.policy, cfg.detection.target_index, args.threshold,
                                 args.smooth_window, args.refractory)
            if out_spec.quantized:
                policy.scale, policy.zero_point = float(out_spec.scale), int(out_spec.zero_point)
        bar = progress_bar(len(signal), args.progress)
        result = run_stream(stream, model, signal, rate, args.chunk, policy,
                            progress=bar.update if bar is not None else None)
        if bar is not None:
            bar.close()
        backend = model.backend
    if args.outputs:
        try:
            np.save(args.outputs, result.outputs)
        except OSError as exc:
            raise InputError(f"{args.outputs}: cannot write: {exc}") from None
    probs = _probabilities(result.outputs, out_spec)
    doc: dict[str, Any] = {"model": args.model, "chain": cfg.name, "backend": backend, "wav": args.wav,
                           "duration_s": len(signal) / rate, "invocations": int(result.outputs.shape[0])}
    if cfg.detection is not None:
        idx = cfg.detection.target_index
        doc["policy"] = args.policy
        doc["detections"] = [{"invocation": int(i), "time_s": round(float(result.times[i]), 4),
                              "probability": round(float(probs[i, idx]), 4)} for i in result.events]
        if truth is not None:
            s = score_runner([d["time_s"] for d in doc["detections"]], truth)
            doc["score"] = {"true_positives": s.true_positives, "false_negatives": s.false_negatives,
                            "false_positives": s.false_positives, "missed_windows": [list(w) for w in s.fn_windows],
                            "false_positive_times_s": list(s.fp_times)}
    else:
        labels = cfg.labels or [str(i) for i in range(probs.shape[1])]
        hop = stream.samples_per_window / rate
        doc["windows"] = [{"start_s": round(float(result.times[i]) - hop, 4), "end_s": round(float(result.times[i]), 4),
                           "label": labels[int(np.argmax(probs[i]))] if int(np.argmax(probs[i])) < len(labels) else str(int(np.argmax(probs[i]))),
                           "probability": round(float(np.max(probs[i])), 4)} for i in range(probs.shape[0])]
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{cfg.name} on {args.wav} ({doc['duration_s']:.2f} s) with {args.model} [{backend}]: "
          f"{doc['invocations']} invocations")
    if "detections" in doc:
        name = (cfg.labels or ["target"])[cfg.detection.target_index] if cfg.detection else "target"
        for d in doc["detections"]:
            print(f"  {d['time_s']:8.3f} s  {name}  p={d['probability']:.3f}  (invocation {d['invocation']})")
        if not doc["detections"]:
            print("  no detections")
        if "score" in doc:
            s = doc["score"]
            print(f"  score: {s['true_positives']} true positives, {s['false_negatives']} false negatives, "
                  f"{s['false_positives']} false positives")
    else:
        for w in doc["windows"]:
            print(f"  {w['start_s']:8.3f}-{w['end_s']:.3f} s  {w['label']}  p={w['probability']:.3f}")
    return 0


def _probabilities(outputs: np.ndarray, spec: Any) -> np.ndarray:
    flat = outputs.reshape(outputs.shape[0], int(np.prod(outputs.shape[1:], dtype=np.int64)))
    if getattr(spec, "quantized", False):
        return (flat.astype(np.float64) - spec.zero_point) * spec.scale
    return flat.astype(np.float64)

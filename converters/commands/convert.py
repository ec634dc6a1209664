"""``edge-convert convert``: float ONNX/TFLite -> int8 TFLite + int8 ONNX, sized to a device profile."""
from __future__ import annotations

import argparse
import json
import sys

from edge_runtime.errors import BudgetExceededError, ConfigError

NAME = "convert"
HELP = "convert a float ONNX or TFLite model to int8 TFLite and int8 ONNX for a device profile"
DESCRIPTION = """\
Convert a float model to full-integer int8, check that it fits the device, and report what
quantization cost.

MODEL is a float .onnx (NCHW as torch.onnx.export writes it; opsets 7-22, older ones are upgraded,
constant subgraphs folded), a float .tflite, or a hybrid .tflite (int8 weights, float activations).
A dynamic batch dimension becomes 1; give any other dynamic input dimension a size with
--input-shape NAME=DIMS, once per input. Written into DIR:

  <name>_int8.tflite   int8 activations, per-channel int8 weights (fully-connected per tensor on
                       profiles with an NPU delegate), bias-corrected int32 biases; runs in
                       LiteRT, tflite-runtime, TFLite Micro and edge-runtime's micro backend
  <name>_int8.onnx     the same quantization decisions as QDQ ONNX (per-channel weights)
  report.json          sizes, budgets, accelerator coverage, per-layer SQNR, every output's SQNR,
                       max/mean abs error and range (top-1 only for class outputs), --analyze results
  report.md            the same for people
  report.png           with --plot: per-layer and per-output SQNR bars (needs matplotlib)

The model input and output are int8, or uint8/float32 when the profile's io_dtype says so.
Where int8 cannot represent an op well (--precision-policy auto, the default), LSTM/GRU recurrences run
in 16x8, and LayerNorm statistics and magnitudes (sqrt of a sum of squares) run as float islands on
profiles with an OS; report.json names the ops and why (quantization.precision.default_policy).
Inputs of ONNX models stay NCHW in the .onnx; the .tflite takes NHWC.

Calibration data (--calib): a .npy whose first axis is the sample (memory-mapped), a .npz, or a
directory of .npy/.npz files, of int8 .bin files (give --bin-scale and --bin-zero-point), or of
.wav/image files (give --preprocess, e.g. kws).
Each sample has the model input's shape, with or without its leading batch 1.
An integer model input (token ids, bytes, indices into an embedding, or one-hot encoded into a MatMul/Gemm)
stays int32 in the .tflite (the .onnx keeps its type): give integer arrays (float arrays of whole numbers
are cast); fractions, negative indices and indices beyond the table are refused.
A model with several inputs takes one .npz holding one array per input name (each a stack of samples,
the same count for every input, or one sample), or a directory of such .npz files; --adaround, --analyze,
--activations int16, --target-sqnr and --preprocess support single-input models only.

Exit codes: 0 converted and fits; 3 converted but over the profile's flash or RAM budget (the
message says by how much and what would help), or --target-sqnr not met (the message gives each
failing output's SQNR, how far short, and what stopped the search); 1 bad input; 2 usage.

examples:
  edge-convert convert model.onnx --profile rpi4-4gb --calib calib.npy -o out/
  python -c "import numpy as np; np.savez('calib2.npz', image=np.random.rand(100, 3, 32, 32), meta=np.random.rand(100, 8))"
  edge-convert convert fusion.onnx --profile rpi4-4gb --calib calib2.npz -o out/
      # two inputs 'image' [1,3,32,32] and 'meta' [1,8]: one array per input name, 100 samples each
  edge-convert convert model.onnx --profile rpi4-4gb --calib calib.npy --plot -o out/   # + report.png
  edge-convert convert kws_float32.tflite --profile stm32h743 --calib kws01/ \\
      --bin-scale 0.584703 --bin-zero-point 83 --limit 100 --format tflite
  edge-convert convert kws_lstm.onnx --profile rpi5 --calib calib.npy \\
      --input-shape mfcc=1x49x10 -o out/
  edge-convert convert silero_vad.onnx --profile rpi5 --calib chunks.npy --input-shape input=1x576 \\
      --input-shape state=2x1x128 --input-value sr=16000 --input-value state=0 -o out/
      # freeze a setting input (sample rate) and the recurrent state (zeros) as constants
  edge-convert convert encoder.onnx --profile rpi5 --calib ids.npy --input-value src_mask=0 \\
      --outputs memory_out,hidden_out -o out/
      # keep only these outputs, in this order (one echoed its frozen input); an inner tensor's name
      # cuts the graph there instead (report.json's selected_outputs records the choice)
  edge-convert convert landmarks.onnx --profile rpi4-4gb --calib calib.npy --held-out test.npz \\
      --task regress --analyze -o out/    # every output measured, the guilty layers ranked
  edge-convert convert landmarks.onnx --profile rpi4-4gb --calib calib.npy --target-sqnr 30 -o out/
      # raise the worst layers to int16, then float islands, until every output reaches 30 dB
  edge-convert convert model.onnx --profile stm32h743 --calib calib.npy --activations int16 -o out/
      # the whole model in 16x8 (int16 activations, int8 weights)
  edge-convert convert kws_lstm.onnx --profile rpi5 --calib calib.npy --precision-policy int8 -o out/
      # every op in int8 (by default LSTM/GRU recurrences are int16, LayerNorm statistics float islands)
  edge-convert convert model.onnx --profile rpi4-4gb --calib calib.npy --adaround -o out/
      # optimised weight rounding (slower; --no-equalize turns cross-layer equalization off)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``convert``."""
    parser.add_argument("model", metavar="MODEL", help="float .onnx, float .tflite or hybrid .tflite")
    parser.add_argument("--profile", required=True, metavar="NAME|FILE",
                        help="device profile: a shipped name (see `edge-convert profiles`) or a YAML file")
    parser.add_argument("--calib", required=True, metavar="DATA",
                        help="calibration data: .npy, .npz, or a directory of .npy/.npz/.bin files (several "
                             "inputs: a .npz, or directory of them, with one array per input name)")
    parser.add_argument("--format", default="tflite,onnx", metavar="LIST",
                        help="comma-separated output formats: tflite, onnx (default: both)")
    parser.add_argument("-o", "--output-dir", default="converted", metavar="DIR",
                        help="directory for the models and the report (default: ./converted)")
    parser.add_argument("--method", default="auto", choices=["auto", "mse", "minmax", "percentile"],
                        help="how activation ranges are chosen: mse minimises the expected quantization error "
                             "(the default, 'auto'); minmax keeps the observed range; percentile clips to the "
                             "0.01%%-99.99%% quantiles")
    parser.add_argument("--limit", type=int, metavar="N", help="use at most the first N calibration samples")
    parser.add_argument("--held-out", metavar="FILE",
                        help=".npz with 'x' (and labels 'y') or .npy of inputs, in the source model's layout "
                             "(several inputs: one array per input name, and 'y'): "
                             "the report gives top-1 agreement and output error of the int8 models on it")
    parser.add_argument("--bin-scale", type=float, metavar="S", help="scale of int8 .bin calibration files")
    parser.add_argument("--bin-zero-point", type=int, default=0, metavar="Z",
                        help="zero point of int8 .bin calibration files (default 0)")
    parser.add_argument("--preprocess", metavar="PRESET|YAML",
                        help="turn .wav/image calibration files into model inputs with this edge_runtime.preprocess "
                             "config (presets: kws, sww); each .wav gives every window the config produces")
    parser.add_argument("--input-shape", action="append", metavar="NAME=DIMS", dest="input_shape",
                        help="fixed shape for an ONNX input with dynamic dimensions, e.g. input=1x3x224x224 "
                             "(repeatable, one per input; a dynamic batch alone needs none)")
    parser.add_argument("--input-value", action="append", metavar="NAME=VALUE", dest="input_value",
                        help="freeze an ONNX input as a constant: a setting such as a sample rate (sr=16000), or a "
                             "recurrent state started from zeros (state=0); VALUE is a number filling the input's "
                             "shape, comma-separated numbers or a .npy file (repeatable)")
    parser.add_argument("--outputs", action="append", metavar="NAME[,NAME...]",
                        help="convert only these outputs, in this order (drop the others), or name inner tensors "
                             "to cut the graph there; an unknown name lists the model's outputs (repeatable)")
    parser.add_argument("--io-dtype", choices=["int8", "uint8", "float32"],
                        help="override the profile's model input/output type")
    parser.add_argument("--task", default="auto", choices=["auto", "classify", "regress"],
                        help="which outputs get top-1 agreement in the report: auto (softmax outputs, and 1-D "
                             "logit vectors when --held-out has labels), classify (every 1-D vector output), "
                             "regress (none); every output always gets SQNR and max/mean abs error")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="keep the float biases as they are (by default the mean error that int8 weights add "
                             "to each layer's output, measured on the calibration data, is folded into its bias)")
    parser.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                        help="cross-layer equalization: rescale the channels between consecutive convolutions "
                             "(through ReLU, pooling, zero padding; never through ReLU6) so they share one int8 "
                             "range well, leaving the float function unchanged (on by default; see the README's "
                             "quantization techniques table)")
    parser.add_argument("--recalibrate-qdq", action="store_true", dest="recalibrate_qdq",
                        help="for an already-quantized QDQ ONNX model: calibrate every activation range and "
                             "re-quantize every weight as for a float model (by default the model's own scales and "
                             "zero points and its int8 weights are kept where it fixes them; the report's 'qdq' "
                             "says which ranges came from the model)")
    parser.add_argument("--adaround", action="store_true",
                        help="optimise whether each int8 weight rounds up or down so every layer's output on the "
                             "calibration data stays closest to float (AdaRound, in numpy: seconds per layer; off by "
                             "default, see the README's quantization techniques table)")
    parser.add_argument("--analyze", action="store_true",
                        help="add a per-layer sensitivity analysis to the report: the output SQNR with only "
                             "each layer in int8 and with only it left in float, worst layers first")
    parser.add_argument("--activations", default="int8", choices=["int8", "int16"],
                        help="activation type: int8 (default) or int16 (TFLite's 16x8: int16 activations, int8 "
                             "weights, int64 biases, for every op with an int16 kernel in TFLite Micro and LiteRT; "
                             "the report lists the ops kept in int8)")
    parser.add_argument("--target-sqnr", type=float, metavar="DB",
                        help="raise the layers that cost each output most (int8 -> int16 -> float island, the "
                             "last only on profiles with an OS) until every output reaches DB dB SQNR against "
                             "float on the calibration samples, within the profile's budgets; exit code 3 when "
                             "it cannot, saying how far short and what stopped it")
    parser.add_argument("--precision-policy", default="auto", choices=["auto", "int8"], dest="precision_policy",
                        help="auto (default): where int8 cannot represent an op well, without --activations int16 "
                             "or --target-sqnr: LSTM/GRU recurrences in int16 (as TFLite Micro's integer LSTM), "
                             "LayerNorm statistics and magnitudes (sqrt of a sum of squares) as float islands on profiles "
                             "with an OS; the report says which "
                             "ops and why. int8: every op in int8")
    parser.add_argument("--plot", action="store_true",
                        help="also write report.png, the per-layer and per-output SQNR bars (needs matplotlib; "
                             "off by default: importing and drawing it costs about a second)")
    parser.add_argument("--progress", action="store_true",
                        help="show progress bars even when stderr is not a terminal")
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of a summary")


def run(args: argparse.Namespace) -> int:
    """Convert, print a summary, and raise BudgetExceededError (exit 3) when it does not fit."""
    from converters.importers.prepare import parse_input_shapes, parse_input_values
    from converters.importers.select_outputs import parse_outputs
    from converters.pipeline import convert_model

    from device_profiles import load_profile

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    profile = load_profile(args.profile)  # read and validated once, passed on
    mcu = profile.microcontroller
    if mcu and args.format == "tflite,onnx":  # the default: a microcontroller gets the .tflite only
        formats = ["tflite"]
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    res = convert_model(args.model, profile, args.calib, args.output_dir, formats=formats, method=args.method,
                        held_out=args.held_out, progress=args.progress or sys.stderr.isatty(), limit=args.limit,
                        bin_scale=args.bin_scale, bin_zero_point=args.bin_zero_point, io_dtype=args.io_dtype,
                        preprocess=args.preprocess, input_shapes=parse_input_shapes(args.input_shape),
                        task=args.task, analyze=args.analyze, bias_correction=not args.no_bias_correction,
                        activations=args.activations, target_sqnr=args.target_sqnr, plot=args.plot or None,
                        adaround=args.adaround, precision_policy=args.precision_policy,
                        input_values=parse_input_values(args.input_value),
                        recalibrate_qdq=args.recalibrate_qdq, outputs=parse_outputs(args.outputs),
                        **({} if args.equalize is None else {"equalize": args.equalize}))
    if mcu and res.report["outputs"].get("tflite"):  # microcontrollers: always embed TFLM's offline arena plan
        import os

        from converters.offline_plan import embed_offline_plan

        tfl = res.report["outputs"]["tflite"]
        embed_offline_plan(tfl, tfl + ".planned")
        os.replace(tfl + ".planned", tfl)
    rep = res.report
    for acc in rep["fit"]["accelerators"]:
        if acc["split"]:
            print(f"edge-convert: warning: {acc['name']}: {acc['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps(rep, indent=2, default=float))
    else:
        for k in ("tflite", "onnx"):
            if rep["outputs"].get(k):
                print(f"wrote {rep['outputs'][k]}")
        print(f"wrote {res.report_path} (+ report.md{', report.png' if rep.get('plot') else ''})")
        print(rep["fit"]["summary"])
        ho = rep.get("held_out")
        if ho:
            for k in ("tflite", "onnx"):
                if k in ho:
                    s = ho[k]
                    extra = "".join(f", {n} {s[n]:.4f}" for n in ("top1_agreement_with_float", "accuracy") if n in s)
                    print(f"held-out ({ho['samples']}): int8 {k}: worst output SQNR {s['output_sqnr_db']} dB{extra}")
        for line in rep.get("summary", []):
            print(line)
        flagged = sorted((r for r in rep["layers"] if r["flagged"]), key=lambda r: -r["loss_db"])
        if flagged:
            print("layers that lose most: " + ", ".join(f"{r['index']}:{r['op']} ({r['loss_db']} dB)" for r in flagged))
    pol = rep.get("quantization", {}).get("precision", {}).get("default_policy") or {}
    if pol and not args.json:
        print("precision policy (--precision-policy int8 turns it off): "
              + "; ".join(f"{len(v['ops'])} op(s) {v['precision']}: {why}" for why, v in pol.items()))
    mp = rep.get("mixed_precision") or {}
    if mp.get("changed_layers") is not None and not args.json:
        print(f"mixed precision: {len(mp['changed_layers'])} layer(s) changed: "
              + (", ".join(f"{r['name']} -> {r['to']}" for r in mp["changed_layers"]) or "none")
              + f"; worst output {min(mp['sqnr_before_db'].values()):.1f} -> {min(mp['sqnr_after_db'].values()):.1f} dB")
    if not res.fits:
        fit = rep["fit"]
        others = fit.get("fits_profiles", [])
        hint = f" It fits these profiles: {', '.join(others)}." if others else ""
        raise BudgetExceededError(
            f"{rep['model']} does not fit profile {fit['profile']}: " + "; ".join(fit["advice"]) + "." + hint)
    if mp.get("message"):
        raise BudgetExceededError(mp["message"])
    return 0

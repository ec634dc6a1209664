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
  report.md/.png       the same for people, with a per-layer SQNR plot

The model input and output are int8, or uint8/float32 when the profile's io_dtype says so.
Inputs of ONNX models stay NCHW in the .onnx; the .tflite takes NHWC.

Calibration data (--calib): a .npy whose first axis is the sample (memory-mapped), a .npz, or a
directory of .npy/.npz files, of int8 .bin files (give --bin-scale and --bin-zero-point), or of
.wav/image files (give --preprocess, e.g. kws).
Each sample has the model input's shape, with or without its leading batch 1.

Exit codes: 0 converted and fits; 2 converted but over the profile's flash or RAM budget (the
message says by how much and what would help); 1 bad input.

examples:
  edge-convert convert model.onnx --profile rpi4-4gb --calib calib.npy -o out/
  edge-convert convert kws_float32.tflite --profile stm32h743 --calib kws01/ \\
      --bin-scale 0.584703 --bin-zero-point 83 --limit 100 --format tflite
  edge-convert convert kws_lstm.onnx --profile rpi5 --calib calib.npy \\
      --input-shape mfcc=1x49x10 -o out/
  edge-convert convert landmarks.onnx --profile rpi4-4gb --calib calib.npy --held-out test.npz \\
      --task regress --analyze -o out/    # every output measured, the guilty layers ranked
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``convert``."""
    parser.add_argument("model", metavar="MODEL", help="float .onnx, float .tflite or hybrid .tflite")
    parser.add_argument("--profile", required=True, metavar="NAME|FILE",
                        help="device profile: a shipped name (see `edge-convert profiles`) or a YAML file")
    parser.add_argument("--calib", required=True, metavar="DATA",
                        help="calibration data: .npy, .npz, or a directory of .npy/.npz/.bin files")
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
                        help=".npz with 'x' (and labels 'y') or .npy of inputs, in the source model's layout: "
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
    parser.add_argument("--io-dtype", choices=["int8", "uint8", "float32"],
                        help="override the profile's model input/output type")
    parser.add_argument("--task", default="auto", choices=["auto", "classify", "regress"],
                        help="which outputs get top-1 agreement in the report: auto (softmax outputs, and 1-D "
                             "logit vectors when --held-out has labels), classify (every 1-D vector output), "
                             "regress (none); every output always gets SQNR and max/mean abs error")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="keep the float biases as they are (by default the mean error that int8 weights add "
                             "to each layer's output, measured on the calibration data, is folded into its bias)")
    parser.add_argument("--analyze", action="store_true",
                        help="add a per-layer sensitivity analysis to the report: the output SQNR with only "
                             "each layer in int8 and with only it left in float, worst layers first")
    parser.add_argument("--progress", action="store_true",
                        help="show progress bars even when stderr is not a terminal")
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of a summary")


def run(args: argparse.Namespace) -> int:
    """Convert, print a summary, and raise BudgetExceededError (exit 3) when it does not fit."""
    from converters.importers.prepare import parse_input_shapes
    from converters.pipeline import convert_model

    from device_profiles import load_profile

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    mcu = load_profile(args.profile).microcontroller
    if mcu and args.format == "tflite,onnx":  # the default: a microcontroller gets the .tflite only
        formats = ["tflite"]
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    res = convert_model(args.model, args.profile, args.calib, args.output_dir, formats=formats, method=args.method,
                        held_out=args.held_out, progress=args.progress or sys.stderr.isatty(), limit=args.limit,
                        bin_scale=args.bin_scale, bin_zero_point=args.bin_zero_point, io_dtype=args.io_dtype,
                        preprocess=args.preprocess, input_shapes=parse_input_shapes(args.input_shape),
                        task=args.task, analyze=args.analyze, bias_correction=not args.no_bias_correction)
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
        print(f"wrote {res.report_path} (+ report.md, report.png)")
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
    if not res.fits:
        fit = rep["fit"]
        others = fit.get("fits_profiles", [])
        hint = f" It fits these profiles: {', '.join(others)}." if others else ""
        raise BudgetExceededError(
            f"{rep['model']} does not fit profile {fit['profile']}: " + "; ".join(fit["advice"]) + "." + hint)
    return 0

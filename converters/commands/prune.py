"""``edge-convert prune``: prune a float model (unstructured or whole channels), convert it to int8,
store the pruned weights sparse, and optionally search for the least pruning that fits a profile."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_runtime.errors import BudgetExceededError, ConfigError

NAME = "prune"
HELP = "prune a float model (weights or whole channels) so that it fits a device profile"
DESCRIPTION = """\
Make a model smaller than int8 alone can: prune it, refit what remains, convert it to int8 and
store the pruned weights compressed.

MODEL is a float .onnx or .tflite (as for `edge-convert convert`). Give exactly one of:

  --sparsity S        prune at level S (0 < S < 1): the fraction of prunable weights zeroed
                      (unstructured) or of channels removed (--structured)
  --fit-profile P     try levels 10%, 20%, ... 90% and keep the least pruning whose int8 model
                      fits profile P (flash and RAM), stopping as soon as the quality drop would
                      exceed --max-drop

Kinds of pruning:
  unstructured (default)  zero the smallest-magnitude weights of convolution and fully connected
                          layers, in 1xB blocks along the input (--block, default 16; 1 = single
                          weights), per layer or with one global threshold (--scope). Pruned
                          weights are then stored sparse in the TFLite SparsityParameters
                          (block-CSR) form: <name>_int8_sparse.tflite, with outputs identical to
                          the dense pruned model (<name>_int8.tflite, also written). Which layers:
                          for profiles that run LiteRT, fully connected weights in 1x16 blocks
                          only (LiteRT mis-reads sparse convolutions and other blocks), so the
                          file runs on the litert and micro backends; for microcontroller
                          profiles also 1x1 convolutions and every block size (micro backend
                          only; TFLite Micro has no sparse kernels: deploy the dense file there).
                          The summary says which backends run the sparse file. For microcontroller
                          profiles (TFLite Micro) the dense pruned file is the deliverable: a note
                          names it with its flash, and the command exits 3 when it does not fit.
  --structured            remove whole output channels of convolution and fully connected layers
                          and rewrite the layers that read them (depthwise convolutions, residual
                          adds, flatten, the next layer): fewer weights, a smaller arena, faster.

After pruning, the surviving weights of each fully connected / 1x1 layer are refitted by
least squares on the calibration data so the layer reproduces the unpruned layer's output
(--no-refit to skip). Layers under 256 weights are not pruned.

Quality (--data, else the calibration samples): accuracy with labels; for autoencoders (output
shaped like the input) the anomaly score, the mean MSE between input and output, whose drop is
its relative change in percent; otherwise top-1 agreement with the float model. --max-drop is
in those points (accuracy points, percent of score, agreement points). Drops are measured
against the unpruned int8 model, in the runtime (--backend).

Written to DIR: unpruned/ (the baseline), one folder per level tried, prune_report.json.
Exit codes: 0 done (and fits, with --fit-profile); 2 no level fits within --max-drop; 1 bad input.

examples:
  edge-convert prune ad01_fp32.tflite --sparsity 0.5 --calib windows.npy --profile nrf52840 -o out/
  edge-convert prune digits.onnx --fit-profile nrf52840 --calib calib.npz --data heldout.npz --max-drop 1
  edge-convert prune digits.onnx --structured --sparsity 0.25 --calib calib.npz --data heldout.npz
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``prune``."""
    parser.add_argument("model", metavar="MODEL", help="float .onnx or .tflite")
    level = parser.add_mutually_exclusive_group(required=True)
    level.add_argument("--sparsity", type=float, metavar="S",
                       help="pruning level in (0, 1): fraction of weights zeroed, or of channels removed with "
                            "--structured")
    level.add_argument("--fit-profile", metavar="NAME|FILE",
                       help="find the least pruning whose int8 model fits this device profile")
    parser.add_argument("--calib", required=True, metavar="DATA",
                        help="calibration data (.npy, .npz or a directory, as for `edge-convert convert`); also "
                             "used to refit the pruned layers (at most 256 samples are read)")
    parser.add_argument("--data", metavar="FILE",
                        help=".npz with 'x' (and labels 'y') or .npy, source layout: the data quality is measured "
                             "on (default: the calibration samples)")
    parser.add_argument("--max-drop", type=float, metavar="POINTS",
                        help="largest quality drop allowed, in points (default with --fit-profile: 1.0)")
    parser.add_argument("--profile", metavar="NAME|FILE", default=None,
                        help="profile for the conversion and the size report with --sparsity (default rpi4-4gb)")
    parser.add_argument("--structured", action="store_true", help="remove whole channels instead of single weights")
    parser.add_argument("--scope", choices=["layer", "global"], default="layer",
                        help="unstructured: the same fraction in every layer, or one global threshold "
                             "(default: layer)")
    parser.add_argument("--block", type=int, default=16, metavar="B",
                        help="unstructured: prune 1xB blocks along the input dimension (default 16, which sparse "
                             "storage can exploit; 1 = single weights)")
    parser.add_argument("--no-refit", action="store_true", help="do not refit the surviving weights")
    parser.add_argument("--backend", default="litert", choices=["litert", "micro", "onnx"],
                        help="runtime that measures the int8 models' quality (default litert)")
    parser.add_argument("-o", "--output-dir", default="pruned", metavar="DIR",
                        help="directory for the models and prune_report.json (default: ./pruned)")
    parser.add_argument("--progress", action="store_true",
                        help="show a progress bar over the levels tried even when stderr is not a terminal")
    parser.add_argument("--json", action="store_true", help="print prune_report.json instead of a summary")


def run(args: argparse.Namespace) -> int:
    """Prune, convert, report; exit 3 when no level fits the profile within the allowed drop."""
    from converters.compress.search import compress_model

    if args.block < 1:
        raise ConfigError("--block must be at least 1")
    if args.backend == "onnx":
        raise ConfigError("--backend onnx measures .onnx models; pruning measures the .tflite: use litert or micro")
    fit = args.fit_profile is not None
    max_drop = args.max_drop if args.max_drop is not None else (1.0 if fit else None)
    profile = args.fit_profile if fit else (args.profile or "rpi4-4gb")
    res = compress_model(args.model, profile, args.calib, args.output_dir, sparsity=args.sparsity,
                         fit_profile=fit, structured=args.structured, max_drop=max_drop, data=args.data,
                         scope=args.scope, block=args.block, refit=not args.no_refit, backend=args.backend,
                         progress=args.progress or sys.stderr.isatty())
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=float))
    else:
        print(res.summary())
        print(f"wrote {res.report_path}")
    if res.chosen is None or (fit and not res.chosen.fits):
        raise BudgetExceededError(f"{res.model}: {res.stopped_because or 'no pruning level qualified'}")
    _tflm_deliverable(res.chosen, profile, to_stderr=args.json)
    if not fit and max_drop is not None and res.chosen.drop is not None and res.chosen.drop > max_drop:
        raise BudgetExceededError(res.stopped_because)
    return 0


def _tflm_deliverable(chosen: Any, profile: Any, to_stderr: bool) -> None:
    """For a microcontroller profile, name the dense pruned file as what the device runs, with its flash.

    TensorFlow Lite Micro has no sparse kernels and no DENSIFY, so a sparse .tflite is never the deliverable
    there: the chosen candidate's figures are then those of the dense file (``deploy_path``, sized by
    :func:`converters.fit.fit_model` as the device holds it), and a dense file over the profile's budgets raises
    :class:`BudgetExceededError` (exit 3)."""
    from device_profiles import load_profile

    from converters.fit import runs_tflite_micro

    prof = load_profile(profile)
    if not runs_tflite_micro(prof) or chosen.sparse_path is None:
        return
    sparse_bytes = (chosen.sparse_report or {}).get("flash_after")
    sparse_note = f"the sparse file's {sparse_bytes:,} B is" if sparse_bytes else "the sparse file is"
    print(f"note: {prof.name} runs TensorFlow Lite Micro, which has no sparse kernels: deploy the dense file "
          f"{chosen.tflite_path} (flash {chosen.flash_bytes:,} B; {sparse_note} for the micro and LiteRT backends "
          "on a host)", file=sys.stderr if to_stderr else sys.stdout)
    if not chosen.fits:
        raise BudgetExceededError(f"{chosen.tflite_path}: the dense pruned file TensorFlow Lite Micro needs does not "
                                  f"fit {prof.name}: flash {chosen.flash_bytes:,} B of "
                                  f"{prof.model_flash_budget_bytes:,} B, RAM {chosen.ram_bytes:,} B of "
                                  f"{prof.inference_ram_budget_bytes:,} B")

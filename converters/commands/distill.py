"""``edge-convert distill``: train a small student on a teacher's soft outputs, then convert it to int8."""
from __future__ import annotations

import argparse
import json
import os
import sys

from edge_runtime.errors import ConfigError

NAME = "distill"
HELP = "train a smaller student model to mimic a teacher (knowledge distillation; needs PyTorch)"
DESCRIPTION = """\
Knowledge distillation for models that do not fit even after int8 and pruning: train a small
student network to reproduce the TEACHER's soft outputs on unlabeled data, export it to float
ONNX and convert it to int8 like any model (`edge-convert convert`).

TEACHER is any model edge-runtime runs (float .onnx, float or int8 .tflite); its outputs are
computed by edge-runtime itself. --data is unlabeled: a directory of .npy/.npz files (or one
.npy) of inputs in the teacher's input shape, as for --calib of `edge-convert convert`.

--student SPEC picks the architecture and its size:
  mlp:hidden=64x32                      fully connected layers (any input)
  dscnn:channels=12,blocks=2[,stride=1] DS-CNN: 3x3 conv, depthwise-separable blocks, global pool
  mobilenet:alpha=0.25,blocks=3[,stride=1]
                                        MobileNetV1 with width multiplier alpha (32*alpha channels
                                        doubling per block, stride 2 after the first block)

Training: Adam with a cosine schedule on the data plus --augment shifted/noisy copies of image
inputs. Loss (--loss): temperature-scaled KL divergence to the teacher's softened outputs
(--temperature) for classifiers; MSE between outputs for autoencoders/regression.
The student takes NCHW images (as PyTorch does), whatever the teacher's layout.

Written to DIR: student.onnx (float), student_int8.tflite and student_int8.onnx (calibrated on
the first 256 --data samples), report.json/.md of that conversion, and distill_report.json:
parameters of teacher and student and, with --eval, their accuracy (or agreement) and the int8
student's on every backend (litert, onnx, micro).

Needs PyTorch, an optional extra: pip install torch==2.13.0 (CPU build).

examples:
  edge-convert distill digits_cnn.onnx --student mlp:hidden=32 --data unlabeled/ --epochs 40 \\
      --eval heldout.npz -o student/
  edge-convert distill kws_float.tflite --student dscnn:channels=32,blocks=3 --data mfcc/ --profile stm32h743
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``distill``."""
    parser.add_argument("teacher", metavar="TEACHER", help="the model to imitate (.onnx or .tflite)")
    parser.add_argument("--student", required=True, metavar="SPEC",
                        help="student architecture, e.g. mlp:hidden=32, dscnn:channels=12,blocks=2, "
                             "mobilenet:alpha=0.25,blocks=2")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="unlabeled inputs: a directory of .npy/.npz (or one .npy), teacher's input shape")
    parser.add_argument("--epochs", type=int, default=30, metavar="N", help="training epochs (default 30)")
    parser.add_argument("--temperature", type=float, default=4.0, metavar="T",
                        help="softmax temperature of the soft targets (default 4)")
    parser.add_argument("--loss", choices=["auto", "kd", "mse"], default="auto",
                        help="kd: KL divergence to the teacher's softened outputs (classifiers); mse: match the "
                             "outputs (autoencoders, regression); auto (default): mse when the output has the "
                             "input's size, else kd")
    parser.add_argument("--augment", type=int, default=4, metavar="K",
                        help="shifted/noisy copies of each image input added to the training set (default 4; "
                             "0 = none)")
    parser.add_argument("--limit", type=int, metavar="N", help="use at most the first N data samples")
    parser.add_argument("--profile", default="rpi4-4gb", metavar="NAME|FILE",
                        help="device profile for the int8 conversion (default rpi4-4gb)")
    parser.add_argument("--eval", metavar="FILE",
                        help=".npz with 'x' (and labels 'y'), images as NCHW (the student's layout, as in PyTorch): "
                             "compare teacher and student on it")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("-o", "--output-dir", default="student", metavar="DIR",
                        help="output directory (default: ./student)")
    parser.add_argument("--progress", action="store_true", help="show progress bars even when stderr is not a TTY")


def run(args: argparse.Namespace) -> int:
    """Distill, convert, and print the comparison."""
    from converters.compress.distill import distill, parse_student
    from converters.compress.report import distill_report
    from converters.pipeline import convert_model

    spec = parse_student(args.student)  # bad specs fail before any work
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.augment < 0:
        raise ConfigError("--augment must be >= 0")
    if not os.path.exists(args.teacher):
        raise ConfigError(f"{args.teacher}: teacher model not found")
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    progress = args.progress or sys.stderr.isatty()
    res = distill(args.teacher, spec, args.data, os.path.join(out, "student.onnx"), epochs=args.epochs,
                  temperature=args.temperature, augment=args.augment, seed=args.seed, limit=args.limit,
                  progress=progress, loss=args.loss)
    conv = convert_model(res.student_onnx, args.profile, res.calibration, out, formats=("tflite", "onnx"),
                         progress=progress)
    os.replace(conv.tflite_path, os.path.join(out, "student_int8.tflite"))
    os.replace(conv.onnx_path, os.path.join(out, "student_int8.onnx"))
    rep = distill_report(args.teacher, res, os.path.join(out, "student_int8.tflite"),
                         os.path.join(out, "student_int8.onnx"), args.eval, conv.report)
    rep["fit"] = conv.report["fit"]["summary"]
    path = os.path.join(out, "distill_report.json")
    with open(path, "w") as fh:
        json.dump(rep, fh, indent=2, default=float)
    print(f"student {res.spec}: {res.student_params:,} parameters vs teacher {res.teacher_params:,} "
          f"({res.student_params / max(res.teacher_params, 1):.0%}); final distillation loss {res.final_loss:.4f}")
    for name, q in rep.get("quality", {}).items():
        print(f"  {name}: {q['metric']} {q['value']:.4f}" if q else f"  {name}: not run ({rep['errors'].get(name)})")
    print(rep["fit"])
    print(f"wrote {res.student_onnx}, {out}/student_int8.tflite, {out}/student_int8.onnx, {path}")
    return 0

"""``edge-convert export``: an int8 .tflite as a microcontroller project (TFLite Micro, or our own C99)."""
from __future__ import annotations

import argparse
import json
import os

from edge_runtime.errors import ConfigError

NAME = "export"
HELP = "export an int8 .tflite as a microcontroller project: TFLite Micro files, or generated C99"
DESCRIPTION = """\
Turn an int8 .tflite into something a microcontroller build can compile, sized for a device profile.

--format tflm writes a TensorFlow Lite Micro project:
  model_data.h/.cc   the model as a 16-byte aligned const array, our offline arena plan embedded
  model_ops.h        MicroMutableOpResolver<N> with exactly the model's Add* calls
  model_config.h     kTensorArenaSize: the plan plus TFLM's scratch and persistent allocations,
                     measured with tflite-micro for this model
  README.md          how to use them; <model>_planned.tflite: the same model as a file

--format c writes portable C99 with no heap and no libc beyond memcpy/memset:
  model.c/.h         model_invoke(const int8_t* in, int8_t* out), one static arena at the planned
                     offsets (in-place plan), weights const; model.h describes the tensors
  kernels/           one op per file, bit-exact with the micro backend and tflite-micro
  board/, Makefile   make host | cortex-m4 | cortex-m7, and a semihosting test runner;
                     run it with: python -m firmware_sim.mcu run DIR --cpu cortex-m4 ...
The C generator supports int8 CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D,
MAX_POOL_2D, ADD, SUB, MUL, SOFTMAX, RESHAPE, SQUEEZE (every op of the MLPerf Tiny int8 models)
and, as 256-byte tables, RELU, RELU6, LOGISTIC, TANH, QUANTIZE, LEAKY_RELU, HARD_SWISH, ABS, NEG
and ELU; single-input, single-output models with int8 input and output.

Exit codes: 0 written and fits the profile; 3 written but over the profile's RAM or flash budget;
1 unsupported model or op.

examples:
  edge-convert export kws_ref_model.tflite --profile nrf52840 --format tflm -o kws_tflm/
  edge-convert export kws_ref_model.tflite --profile nrf52840 --format c -o kws_c/
  edge-convert export vww_96_int8.tflite --profile stm32h743 --format c -o vww_c/ --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    parser.add_argument("model", metavar="MODEL", help="an int8 .tflite model")
    parser.add_argument("--profile", required=True, metavar="NAME|FILE",
                        help="device profile: a shipped name (see `edge-convert profiles`) or a YAML file")
    parser.add_argument("--format", required=True, choices=["tflm", "c"],
                        help="tflm: TensorFlow Lite Micro project files; c: generated C99")
    parser.add_argument("-o", "--output-dir", required=True, metavar="DIR", help="directory to write")
    parser.add_argument("--planner", default="best", metavar="NAME", help="arena offset planner (default best)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a summary")
    parser.add_argument("--compress-weights", default="auto", choices=["auto", "off"],
                        help="--format c: auto (default) stores weights entropy-coded where that saves flash at a "
                             "bounded decode cost (decoded into RAM before each layer); off stores them as they are")


def run(args: argparse.Namespace) -> int:
    """Export, print a summary, and raise BudgetExceededError when the result does not fit the profile."""
    from device_profiles import load_profile
    from edge_runtime.errors import BudgetExceededError

    if not os.path.isfile(args.model):
        raise ConfigError(f"no such model file: {args.model}")
    profile = load_profile(args.profile)
    if args.format == "tflm":
        from converters.codegen.tflm import export_tflm

        manifest = export_tflm(args.model, args.output_dir, planner=args.planner)
        ram, flash = manifest["arena_bytes"], manifest["model_bytes"]
    else:
        from converters.codegen.emit import generate_c

        manifest = generate_c(args.model, args.output_dir, planner=args.planner,
                              compress_weights=args.compress_weights)
        ram, flash = manifest["arena_bytes"], manifest["weight_bytes"]
    over = []
    if ram > profile.inference_ram_budget_bytes:
        over.append(f"RAM {ram:,} B > budget {profile.inference_ram_budget_bytes:,} B")
    if flash > profile.model_flash_budget_bytes:
        over.append(f"flash {flash:,} B > budget {profile.model_flash_budget_bytes:,} B")
    manifest["profile"] = profile.name
    manifest["fits"] = not over
    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(f"wrote {args.output_dir} ({args.format}) for {profile.name}")
        if args.format == "tflm":
            print(f"ops: {', '.join(manifest['ops'])}; tensor arena {manifest['arena_bytes']:,} B "
                  f"(TFLM head {manifest['tflm_head_bytes']:,} + persistent {manifest['tflm_persistent_bytes']:,}, "
                  f"measured with tflite-micro; it runs in exactly this size)")
        else:
            print(f"arena {manifest['arena_bytes']:,} B (in-place plan), weights {manifest['weight_bytes']:,} B; "
                  f"kernels: {', '.join(manifest['kernels'])}")
            print(f"build: make -C {args.output_dir} host|cortex-m4|cortex-m7; "
                  f"run: python -m firmware_sim.mcu run {args.output_dir} --cpu cortex-m4 --input X.npy --output Y.npy")
    if over:
        raise BudgetExceededError(f"{manifest['model']} does not fit profile {profile.name}: " + "; ".join(over))
    return 0

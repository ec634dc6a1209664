"""``python -m firmware_sim.mcu run DIR --cpu cortex-m4|cortex-m7|host --input X.npy --output Y.npy [--json]``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import numpy as np

from firmware_sim.mcu.runner import CPUS, McuRunError, run

EPILOG = """\
examples:
  edge-convert export kws_ref_model.tflite --profile nrf52840 --format c -o kws_c
  python -m firmware_sim.mcu run kws_c --cpu host --input x.npy --output y.npy
  python -m firmware_sim.mcu run kws_c --cpu cortex-m4 --input x.npy --output y.npy --json
  python -m firmware_sim.mcu run kws_c --cpu cortex-m4 --input x.npy --output y.npy --opt=-Os  # smaller, slower

The last line printed is a JSON summary: flash_bytes (the load image, itemised in flash_items from
the linker map), code_bytes (.text), stored_weight_bytes, other_flash_bytes, ram_bytes
(.data+.bss+stack high-water mark), arena_bytes, inputs, instructions_per_inference, ...
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(prog="python -m firmware_sim.mcu", description=__doc__,
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="build a generated C project and run inputs through it",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("project", metavar="DIR", help="a directory written by edge-convert export --format c")
    r.add_argument("--cpu", required=True, choices=CPUS, help="host (gcc) or an emulated Cortex-M (QEMU)")
    r.add_argument("--input", required=True, metavar="X.npy", help="int8 inputs: (N, *input shape) or one input")
    r.add_argument("--output", required=True, metavar="Y.npy", help="where to write the int8 outputs")
    r.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for the run (default 600)")
    r.add_argument("--opt", default=None, metavar="FLAG",
                   help="optimisation flag for the build, written --opt=-Os (default: the Makefile's -O2)")
    r.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = ap.parse_args(argv)
    try:
        res = run(args.project, args.cpu, np.load(args.input), timeout=args.timeout, opt=args.opt)
    except (McuRunError, OSError, ValueError) as exc:
        print(f"firmware_sim.mcu: error: {exc}", file=sys.stderr)
        return 1
    np.save(args.output, res.outputs)
    summary = res.summary()
    if not args.json:
        print(f"ran {res.inputs} inputs on {res.cpu}; wrote {args.output}")
        if res.flash_bytes is not None:
            print(f"flash {res.flash_bytes:,} B (code {res.code_bytes:,}, weights {res.stored_weight_bytes:,}, "
                  f"other {res.other_flash_bytes:,}), "
                  f"RAM {res.ram_bytes:,} B (data+bss {res.data_bytes + res.bss_bytes:,}, "
                  f"stack {res.stack_bytes:,}), arena {res.arena_bytes:,} B")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

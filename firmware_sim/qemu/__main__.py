"""``python -m firmware_sim.qemu``: build emulated ARM roots, run pytest or KWS in them."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from edge_runtime.errors import EdgeRuntimeError
from firmware_sim.qemu import selection
from firmware_sim.qemu.build import ensure_root
from firmware_sim.qemu.recipe import ARCHES, cache_root, get_arch

DESCRIPTION = """\
Run edge-runtime on emulated ARM with qemu-user-static, without binfmt or root images.

A root is a Debian bookworm folder (python3.11 and numpy 1.24 from Debian, pinned
wheels from PyPI) built from the host without running ARM code, and cached in
{cache} (EDGE_RUNTIME_QEMU_CACHE overrides it). It is rebuilt when its recipe
(firmware_sim/qemu/recipe.py) changes. The first build needs network access
(Debian mirror and PyPI) and takes under a minute.

  build   build (or reuse) the root of an architecture
  run     run a pytest selection in it (default: the selection in selection.py)
  kws     run the MLPerf KWS model on the first N kws01 inputs in it and on the host,
          and compare the outputs; the last line is a JSON summary
"""


def _arch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, choices=sorted(ARCHES),
                   help="arm64: aarch64 (Pi 3/4/5, Zero 2 W, i.MX 8M Plus, Coral) with LiteRT, "
                        "tflite-runtime, onnxruntime and micro; armhf: armv7 32-bit with "
                        "tflite-runtime and micro")


def _cpu_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpu", default=None, metavar="MODEL",
                   help="CPU model QEMU emulates (default: cortex-a53 for arm64, cortex-a7 for armhf; "
                        "'max' turns on every ISA extension QEMU knows, which makes LiteRT's "
                        "XNNPACK int8 kernels give wrong results under qemu 7.2)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="python -m firmware_sim.qemu",
                                description=DESCRIPTION.format(cache=cache_root()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser("build", help="build or reuse the emulated root",
                       description="Build the root of --arch (or reuse the cached one) and print its path.")
    _arch_arg(b)
    b.add_argument("--rebuild", action="store_true", help="rebuild even when a cached root exists")

    r = sub.add_parser("run", help="run pytest under emulation",
                       description="Run pytest inside the emulated root, from the repository folder. "
                                   "Arguments after -- go to pytest; without them, the arch's default "
                                   "selection from firmware_sim/qemu/selection.py runs.",
                       usage="python -m firmware_sim.qemu run --arch ARCH [-- PYTEST_ARGS ...]")
    _arch_arg(r)
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up after this many seconds (default: no limit)")
    _cpu_arg(r)
    r.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    k = sub.add_parser("kws", help="KWS outputs under emulation vs. the host",
                       description="Run kws_ref_model.tflite on the first N kws01 inputs inside the "
                                   "emulated root and on the host with the same backend, and compare "
                                   "the int8 outputs bit for bit. Prints a JSON summary as its last "
                                   "line: arch, backend, n, equal, median latency (emulated, ms).")
    _arch_arg(k)
    k.add_argument("--backend", default="micro", choices=["micro", "litert", "tflite", "onnx"],
                   help="edge-runtime backend on both sides (default: micro; armhf has micro and tflite; onnx "
                        "runs the KWS model converted here to int8 QDQ ONNX)")
    _cpu_arg(k)
    k.add_argument("--op-resolver", default="default", choices=["default", "reference"],
                   help="kernels of the litert/tflite backends: 'default' (XNNPACK/optimized) or "
                        "'reference' (TFLite's reference kernels); ignored by micro")
    k.add_argument("--n", type=int, default=100, help="number of kws01 inputs, from the first (default: 100)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        arch = get_arch(args.arch)
        if args.command == "kws" and args.backend not in arch.backends:
            print(f"qemu: error: backend {args.backend!r} has no library in the {arch.name} root "
                  f"(available: {', '.join(arch.backends)})", file=sys.stderr)
            return 2
        root = ensure_root(arch, rebuild=getattr(args, "rebuild", False),
                           log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.command == "build":
            print(root.path)
            return 0
        if args.command == "run":
            from firmware_sim.qemu.runner import run_pytest

            extra = list(args.pytest_args)
            if extra and extra[0] == "--":
                extra = extra[1:]
            if not extra:
                extra = selection.pytest_args(arch.name)
                for nodeid, why in selection.DESELECT.get(arch.name, {}).items():
                    print(f"qemu: deselected {nodeid}: {why}", file=sys.stderr)
            if not extra:
                print(f"qemu: no test file of the {arch.name} selection exists yet", file=sys.stderr)
                return 5
            res = run_pytest(root, extra, capture=False, timeout=args.timeout, cpu=args.cpu)
            return res.returncode
        from firmware_sim.qemu.kws import compare_kws

        summary = compare_kws(root, backend=args.backend, n=args.n, cpu=args.cpu, op_resolver=args.op_resolver)
        print(json.dumps(summary))
        return 0 if summary["equal"] else 1
    except EdgeRuntimeError as exc:
        if os.environ.get("EDGE_RUNTIME_DEBUG"):
            raise
        print(f"qemu: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qemu: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

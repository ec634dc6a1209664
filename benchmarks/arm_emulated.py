"""Emulated ARM latencies: KWS per architecture and backend, under qemu-user-static.

``python -m benchmarks.arm_emulated [--n 50] [--arch arm64 armhf]``. For each
architecture and backend it runs kws_ref_model.tflite on the first N kws01 inputs in
the emulated root and on the host, side by side in one run, and prints a table:
median latency emulated and on the host, their ratio, and whether the int8 outputs are
equal. Emulated latencies measure QEMU's translation as much as the code, so the
ratios between backends matter, not the absolute numbers (a real Cortex-A53 differs).
"""
from __future__ import annotations

import argparse
import shutil
import sys

from firmware_sim.qemu.build import ensure_root
from firmware_sim.qemu.kws import compare_kws
from firmware_sim.qemu.recipe import ARCHES, get_arch

KWS_BACKENDS = ("micro", "litert", "tflite")


def main(argv: list[str] | None = None) -> int:
    """Print the table; returns 1 when an emulated run's outputs differ from the host's."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.arm_emulated", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50, help="kws01 inputs per run (default 50)")
    p.add_argument("--arch", nargs="+", default=sorted(ARCHES), choices=sorted(ARCHES))
    a = p.parse_args(argv if argv is not None else sys.argv[1:])
    missing = [ARCHES[x].qemu for x in a.arch if shutil.which(ARCHES[x].qemu) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (Debian package qemu-user-static)")
        return 0
    rows = []
    for name in a.arch:
        root = ensure_root(get_arch(name), log=lambda m: print(m, file=sys.stderr))
        for backend in KWS_BACKENDS:
            if backend in root.arch.backends:
                rows.append(compare_kws(root, backend=backend, n=a.n))
    head = f"{'arch':6} {'cpu':11} {'backend':8} {'n':>4} {'emulated ms':>12} {'host ms':>9} {'ratio':>7}  outputs"
    print(f"KWS (kws_ref_model.tflite), median latency per inference, first {a.n} kws01 inputs")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r["median_latency_ms"] / r["host_median_latency_ms"] if r["host_median_latency_ms"] else float("nan")
        print(f"{r['arch']:6} {r['cpu']:11} {r['backend']:8} {r['n']:>4} {r['median_latency_ms']:>12.2f} "
              f"{r['host_median_latency_ms']:>9.3f} {ratio:>6.0f}x  {'equal' if r['equal'] else 'DIFFER'}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

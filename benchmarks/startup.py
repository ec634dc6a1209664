"""Start-up cost of ``edge-runtime run`` on the KWS model against a bare LiteRT script doing the same.

Both run in fresh processes, alternated, on the same input (the MLPerf reference
KWS input): start Python, import, load the model, run one inference, print the
result, exit. Reported per variant: wall time from spawn to exit (time to first
inference, including interpreter start and imports) and the child's peak RSS
(``ru_maxrss`` from ``wait4``). Medians over ``--repeats`` runs, measured side by
side in one run, with the ratio.

    python -m benchmarks.startup [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BARE_SCRIPT = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
inp = it.get_input_details()[0]
out = it.get_output_details()[0]
it.set_tensor(inp["index"], np.load(sys.argv[2]))
it.invoke()
y = it.get_tensor(out["index"])
print("argmax", int(y.argmax()))
"""


def _measure_rusage(cmd: list[str]) -> tuple[float, float, str]:
    """Like :func:`_measure`, but reaps the child with ``os.wait4`` to read its own peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return wall, ru.ru_maxrss / 1024.0, out.decode()


def main(argv: list[str]) -> int:
    """Run both variants ``--repeats`` times, alternating, and print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="runs per variant (default 7)")
    args = ap.parse_args(argv)
    try:
        from edge_runtime.reference_data import mlperf_data, mlperf_model

        model = mlperf_model("kws_ref_model.tflite")
        x = mlperf_data("kws01", "kws_g_kws_inputs_int8_1x49x10x1.npy")
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    exe = Path(sys.executable)
    cli = exe.parent / "edge-runtime"
    edge_cmd = [str(cli), "run", str(model), "--input", str(x)] if cli.exists() else \
        [str(exe), "-m", "edge_runtime.cli", "run", str(model), "--input", str(x)]
    variants = {"edge-runtime run": edge_cmd, "bare LiteRT script": [str(exe), "-c", BARE_SCRIPT, str(model), str(x)]}
    for cmd in variants.values():  # warm the page cache once, untimed
        _measure_rusage(cmd)
    walls: dict[str, list[float]] = {k: [] for k in variants}
    rss: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, str] = {}
    for _ in range(args.repeats):
        for name, cmd in variants.items():
            w, r, out = _measure_rusage(cmd)
            walls[name].append(w)
            rss[name].append(r)
            outputs[name] = out
    print(f"KWS model {model.name}, input {x.name}, {args.repeats} runs each, alternated; python {sys.version.split()[0]}")
    print(f"{'variant':<22} {'first inference (ms)':>21} {'min (ms)':>9} {'peak RSS (MiB)':>15}")
    med = {}
    for name in variants:
        med[name] = (statistics.median(walls[name]) * 1e3, statistics.median(rss[name]))
        print(f"{name:<22} {med[name][0]:>21.1f} {min(walls[name]) * 1e3:>9.1f} {med[name][1]:>15.1f}")
    a, b = med["edge-runtime run"], med["bare LiteRT script"]
    print(f"{'ratio (edge/bare)':<22} {a[0] / b[0]:>21.2f} {'':>9} {a[1] / b[1]:>15.2f}")
    print("first inference = wall time from process spawn to exit after printing the result")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

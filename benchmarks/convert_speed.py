"""Converter speed: ``edge-convert convert`` against ONNX Runtime's ``quantize_static``, from outside.

All variants run in fresh processes, alternated, several rounds, on the same float ONNX and the
same calibration samples:

- **ours**: ``edge-convert convert MODEL --profile rpi4-4gb --calib DATA -o DIR`` with its default
  outputs (int8 .tflite and .onnx, report.json/.md) and default calibration (MSE ranges from
  histograms taken in the same float pass as the min/max);
- **ours minmax**: the same with ``--method minmax``, ORT's calibration method (one float pass);
- **ORT**: a script that loads the same float ONNX and calls
  ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, int8 activations,
  MinMax calibration over the same samples) and writes the model.

Reported per model and variant: wall time from spawn to exit and the child's peak RSS
(``ru_maxrss`` from ``os.wait4``), medians over ``--rounds``, with the ratios ours/ORT. The child's
CPU time (user + system, also from ``wait4``) is reported too: on a shared, busy machine it moves
less than wall time, which includes waiting for a core. Below the table, the medians of our
``report.json`` phase timings (import, calibrate, quantize, write, fit, report, total) show where
our time goes.

Both children read compiled bytecode as an installed package does: ``PYTHONDONTWRITEBYTECODE``
(set in some sandboxes) is dropped and ``PYTHONPYCACHEPREFIX`` points into ``--cache``, so the
untimed warm-up run compiles each variant's modules once (``--no-bytecode-cache`` keeps the
environment as it is; the project's ~200 modules are then compiled from source in every run, while
site-packages ship their bytecode).

Models: the digits CNN shipped with the converter (``converters/data/digits_cnn.onnx``, its 64
calibration samples) and a 1.9M-parameter MobileNet-style CNN at 96x96x3 built with torch,
exported once into ``--cache`` (default ``.cache/convert_speed``), with ``--samples`` random
calibration images.

examples:
  python -m benchmarks.convert_speed                 # table, 5 rounds
  python -m benchmarks.convert_speed --rounds 9 --markdown
  python -m benchmarks.convert_speed --rounds 3 --json > speed.json
  python -m benchmarks.convert_speed --rounds 3 --no-bytecode-cache   # every run compiles from source
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "converters" / "data" / "digits_cnn.onnx"
DIGITS_CALIB = REPO / "converters" / "data" / "digits_calib.npz"
PROFILE = "rpi4-4gb"

ORT_SCRIPT = r"""
import sys
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
src, calib, out = sys.argv[1:4]
model = onnx.load(src)
inp = model.graph.input[0]
shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
x = np.load(calib)["x"].astype(np.float32)

class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter(x)
    def get_next(self):
        v = next(self.it, None)
        return None if v is None else {inp.name: v.reshape(shape)}

quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax)
"""


def build_cnn96(path: Path, calib: Path, samples: int) -> int:
    """Export the 96x96 MobileNet-style CNN (BatchNorm statistics from random images) to ``path`` and
    ``samples`` calibration images to ``calib``; return its parameter count."""
    import numpy as np
    import torch
    from torch import nn

    def dw_block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                             nn.ReLU6(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    torch.manual_seed(96)
    widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
              (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2)]
    net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
                        *[dw_block(a, b, s) for a, b, s in widths],
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 10))
    gen = np.random.default_rng(0)
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.from_numpy(gen.random((16, 3, 96, 96), dtype=np.float32)))
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 3, 96, 96), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=13, dynamo=False)
    np.savez(calib, x=np.random.default_rng(1).random((samples, 1, 3, 96, 96), dtype=np.float32))
    return int(sum(p.numel() for p in net.parameters()))


def cnn96(cache: Path, samples: int) -> tuple[Path, Path, int]:
    """The cached 96x96 CNN and its calibration set (built on first use)."""
    model, calib, meta = cache / "cnn96.onnx", cache / f"cnn96_calib{samples}.npz", cache / "cnn96.json"
    if not (model.exists() and calib.exists() and meta.exists()):
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise SystemExit("convert_speed: building the 96x96 CNN needs torch: pip install 'edge-runtime[distill]'")
        params = build_cnn96(model, calib, samples)
        meta.write_text(json.dumps({"params": params}))
    return model, calib, int(json.loads(meta.read_text())["params"])


def child_env(cache: Path, bytecode: bool = True) -> dict[str, str]:
    """The children's environment: with ``bytecode``, compiled modules are cached as an installed package has them.

    ``PYTHONDONTWRITEBYTECODE`` (set in some sandboxes and CI images) is dropped and ``PYTHONPYCACHEPREFIX``
    points at ``cache/pycache``, so both variants compile their modules once, in the untimed warm-up run,
    and read the bytecode afterwards (a pip-installed package ships it). Without ``bytecode`` the
    environment is passed on unchanged.
    """
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str((cache / "pycache").resolve())
    return env


def measure(cmd: list[str], env: "dict[str, str] | None" = None) -> tuple[float, float, float]:
    """Wall seconds from spawn to exit, the child's peak RSS (MiB) and CPU seconds, read with ``os.wait4``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {err.decode()[-500:]}")
    return wall, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime


def variants(model: Path, calib: Path, work: Path) -> dict[str, list[str]]:
    """The two commands for one model."""
    exe = Path(sys.executable)
    cli = exe.parent / "edge-convert"
    ours = [str(cli)] if cli.exists() else [str(exe), "-m", "converters.cli"]
    ours += ["convert", str(model), "--profile", PROFILE, "--calib", str(calib), "-o", str(work / "ours")]
    ort = [str(exe), "-c", ORT_SCRIPT, str(model), str(calib), str(work / "ort_int8.onnx")]
    return {"ours": ours, "ort": ort, "ours_minmax": ours + ["--method", "minmax"]}


def report_timings(out: Path) -> dict[str, float]:
    """The per-phase seconds (``timings``) of the report.json a conversion wrote into ``out`` (none if absent)."""
    try:
        timings = json.loads((out / "report.json").read_text())["timings"]
        return {k.removesuffix("_s"): float(v) for k, v in timings.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def phase_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per model: the medians of our phase timings."""
    return [f"phases (ours, medians, s) {r['model']}: " + ", ".join(f"{k} {v}" for k, v in r["ours_phases_s"].items())
            for r in rows if r.get("ours_phases_s")]


def run(rounds: int, samples: int, cache: Path, bytecode: bool = True) -> list[dict[str, Any]]:
    """Measure both variants on both models, alternating, ``rounds`` times; one row per model."""
    import numpy as np

    env = child_env(cache, bytecode)
    m96, c96, params = cnn96(cache, samples)
    models = [("digits CNN", DIGITS, DIGITS_CALIB), (f"CNN 96x96 ({params / 1e6:.2f}M params)", m96, c96)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, calib in models:
            work = Path(tmp) / model.stem
            cmds = variants(model, calib, work)
            for cmd in cmds.values():  # warm the page cache once, untimed
                measure(cmd, env)
            phases: dict[str, list[float]] = {}
            walls: dict[str, list[float]] = {k: [] for k in cmds}
            rss: dict[str, list[float]] = {k: [] for k in cmds}
            cpu: dict[str, list[float]] = {k: [] for k in cmds}
            for i in range(rounds):
                order = list(cmds) if i % 2 == 0 else list(reversed(cmds))
                for k in order:
                    shutil.rmtree(work / "ours", ignore_errors=True)
                    w, r, c = measure(cmds[k], env)
                    if k == "ours":
                        for name, sec in report_timings(work / "ours").items():
                            phases.setdefault(name, []).append(sec)
                    walls[k].append(w)
                    rss[k].append(r)
                    cpu[k].append(c)
            n = int(np.load(calib)["x"].shape[0])
            med = {k: (statistics.median(walls[k]), statistics.median(rss[k]), statistics.median(cpu[k])) for k in cmds}
            rows.append({"model": label, "calibration_samples": n, "rounds": rounds,
                         "ours_s": round(med["ours"][0], 3), "ort_s": round(med["ort"][0], 3),
                         "time_ratio": round(med["ours"][0] / med["ort"][0], 2),
                         "ours_rss_mib": round(med["ours"][1], 1), "ort_rss_mib": round(med["ort"][1], 1),
                         "rss_ratio": round(med["ours"][1] / med["ort"][1], 2),
                         "ours_cpu_s": round(med["ours"][2], 3), "ort_cpu_s": round(med["ort"][2], 3),
                         "cpu_ratio": round(med["ours"][2] / med["ort"][2], 2),
                         "ours_minmax_s": round(med["ours_minmax"][0], 3),
                         "minmax_time_ratio": round(med["ours_minmax"][0] / med["ort"][0], 2),
                         "ours_phases_s": {k: round(statistics.median(v), 3) for k, v in phases.items()},
                         "ours_runs_s": [round(w, 3) for w in walls["ours"]],
                         "ort_runs_s": [round(w, 3) for w in walls["ort"]]})
    return rows


HEAD = ["model", "calib samples", "ours s", "ORT s", "ratio", "ours RSS MiB", "ORT RSS MiB", "ratio",
        "ours CPU s", "ORT CPU s", "ratio", "ours minmax s", "ratio"]
KEYS = ["model", "calibration_samples", "ours_s", "ort_s", "time_ratio", "ours_rss_mib", "ort_rss_mib", "rss_ratio",
        "ours_cpu_s", "ort_cpu_s", "cpu_ratio", "ours_minmax_s", "minmax_time_ratio"]


def table(rows: list[dict[str, Any]], markdown: bool) -> str:
    """The rows as a plain or markdown table."""
    cells = [[str(r[k]) for k in KEYS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEAD)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*HEAD)] + [fmt.format(*c) for c in cells])


def main(argv: list[str]) -> int:
    """Run the comparison and print the table (or JSON)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.convert_speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per variant and model (default 5)")
    ap.add_argument("--samples", type=int, default=100, help="calibration images for the 96x96 CNN (default 100)")
    ap.add_argument("--cache", type=Path, default=REPO / ".cache" / "convert_speed",
                    help="where the exported 96x96 CNN is kept (default .cache/convert_speed)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="pass the environment on unchanged (with PYTHONDONTWRITEBYTECODE set, every run then "
                         "compiles the project's modules from source)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.samples < 1:
        ap.error("--rounds and --samples must be at least 1")
    load_start = os.getloadavg()[0]
    rows = run(args.rounds, args.samples, args.cache, not args.no_bytecode_cache)
    if args.json:
        print(json.dumps({"profile": PROFILE, "python": sys.version.split()[0], "load_average": os.getloadavg()[0],
                          "load_average_start": load_start, "cpus": len(os.sched_getaffinity(0)),
                          "bytecode_cache": not args.no_bytecode_cache, "rows": rows}, indent=2))
        return 0
    print(table(rows, args.markdown))
    load = os.getloadavg()[0]
    note = (f"wall time spawn to exit, peak RSS and CPU time (wait4), medians of {args.rounds} alternated runs "
            f"(load average {load_start:.1f} at the start, {load:.1f} at the end, "
            f"{len(os.sched_getaffinity(0))} CPUs); ours = "
            f"`edge-convert convert MODEL --profile {PROFILE} --calib DATA -o DIR` (default outputs: MSE ranges, "
            "per-layer report, arena fit), ours minmax = the same with `--method minmax` (ORT's calibration "
            "method: one float pass), ORT = quantize_static (QDQ, per-channel, MinMax) on the same samples; "
            + ("bytecode cached for both (PYTHONPYCACHEPREFIX, as an installed package has it)"
               if not args.no_bytecode_cache else "environment unchanged"))
    print(("\n" if args.markdown else "") + note)
    for line in phase_lines(rows):
        print(("\n" if args.markdown else "") + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

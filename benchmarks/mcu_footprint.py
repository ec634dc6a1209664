"""RAM, flash and code size of the generated C per MLPerf Tiny int8 model, beside TFLite Micro.

For each model: ``edge-convert export --format c``, then ``python -m firmware_sim.mcu run`` on the
chosen CPUs with N random inputs, compared bit for bit with the micro backend. Columns:

- ours: arena (in-place plan of the C kernels), RAM = .data + .bss + measured stack high-water
  mark, flash = .text + .rodata + .data (from arm-none-eabi-size), code = .text, instructions per
  inference (QEMU -icount, SysTick-timed), bit-exact inputs per CPU;
- micro's in-place plan (the Python backend's arena, for reference);
- TFLM: arena head with its own planner plus persistent bytes, from tflite-micro's
  ``print_allocations()`` on the original model (x86_64 build; same kernels' allocations).

    python -m benchmarks.mcu_footprint [--inputs 100] [--cpus host,cortex-m4,cortex-m7] [--markdown]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.codegen.emit import generate_c
from converters.offline_plan import run_tflm, tflm_available
from edge_runtime.arena.plan import plan_arena
from edge_runtime.backends.micro.interpreter import Interpreter
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.reference_data import models_dir
from firmware_sim.mcu.runner import missing_tools, run

MODELS = [("KWS", "kws_ref_model"), ("VWW", "vww_96_int8"), ("IC", "pretrainedResnet_quant"),
          ("AD", "ad01_int8"), ("SWW", "str_ww_ref_model")]


def measure(stem: str, n: int, cpus: list[str], workdir: Path) -> dict[str, Any]:
    """All figures of one model."""
    path = models_dir() / "mlperf_tiny" / "models" / f"{stem}.tflite"
    model = TFLiteModel.open(path)
    manifest = generate_c(path, workdir / stem)
    shape = model.main.tensors[model.main.inputs[0]].shape
    x = np.random.default_rng(0).integers(-128, 128, size=(n,) + tuple(shape), dtype=np.int8)
    it = Interpreter(model)
    ref = []
    for row in x:
        it.set_input(0, row)
        it.invoke()
        ref.append(it.output(0).copy())
    ref_arr = np.stack(ref)
    row: dict[str, Any] = {"stem": stem, "arena": manifest["arena_bytes"], "weights": manifest["weight_bytes"],
                           "micro_in_place": plan_arena(model, in_place=True).arena_bytes, "exact": {}}
    for cpu in cpus:
        res = run(workdir / stem, cpu, x)
        row["exact"][cpu] = int((res.outputs.reshape(ref_arr.shape) == ref_arr)
                                .reshape(n, -1).all(axis=1).sum())
        if cpu != "host" and "flash" not in row:
            row.update(flash=res.flash_bytes, ram=res.ram_bytes, code=res.code_bytes, stack=res.stack_bytes,
                       insns=res.instructions_per_inference, insns_cpu=cpu)
    if tflm_available():
        t = run_tflm(path, x[:1])
        row.update(tflm_head=t.head_bytes, tflm_persistent=t.total_bytes - t.head_bytes)
    return row


def _fmt(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[dict[str, Any]], cpus: list[str], n: int) -> list[list[str]]:
    """Header plus one line per model."""
    head = ["model", "arena (ours)", "RAM data+bss+stack", "stack", "flash", "code (.text)", "weights",
            "instructions/inference", "micro in-place arena", "TFLM head", "TFLM persistent",
            "TFLM head+persistent"] + [f"bit-exact {c}" for c in cpus]
    out = [head]
    for label, r in rows:
        th, tp = r.get("tflm_head", "n/a"), r.get("tflm_persistent", "n/a")
        total = th + tp if isinstance(th, int) and isinstance(tp, int) else "n/a"
        out.append([label, _fmt(r["arena"]), _fmt(r.get("ram", "n/a")), _fmt(r.get("stack", "n/a")),
                    _fmt(r.get("flash", "n/a")), _fmt(r.get("code", "n/a")), _fmt(r["weights"]),
                    _fmt(r.get("insns", "n/a")), _fmt(r["micro_in_place"]), _fmt(th), _fmt(tp), _fmt(total)]
                   + [f"{r['exact'][c]}/{n}" for c in cpus])
    return out


def main(argv: "list[str] | None" = None) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=100, help="random inputs per model (default 100)")
    ap.add_argument("--cpus", default="host,cortex-m4,cortex-m7", help="comma-separated: host, cortex-m4, cortex-m7")
    ap.add_argument("--models", default=",".join(s for _, s in MODELS), help="comma-separated model stems")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    for c in cpus:
        if missing_tools(c):
            print(f"mcu_footprint: {c} needs {', '.join(missing_tools(c))}", file=sys.stderr)
            return 2
    wanted = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for label, stem in MODELS:
            if stem in wanted:
                rows.append((label, measure(stem, args.inputs, cpus, Path(d))))
    t = table(rows, cpus, args.inputs)
    if args.markdown:
        print("| " + " | ".join(t[0]) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(t[0]))) + "|")
        for r in t[1:]:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in t) for i in range(len(t[0]))]
        for r in t:
            print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

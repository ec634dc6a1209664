"""RAM, flash and code size of the generated C per MLPerf Tiny int8 model, beside TFLite Micro.

For each model: ``edge-convert export --format c``, then ``python -m firmware_sim.mcu run`` on the
chosen CPUs with N random inputs, compared bit for bit with the micro backend. Figures come from
the first Cortex-M CPU's build (-O2 unless ``--opt``):

- arena (in-place plan of the C kernels); RAM = .data + .bss + measured stack high-water mark;
- flash = the load image, itemised from the linker map (``firmware_sim.mcu.flash``):
  weights = the model's constant tensors the kernels read (int8 weights, int32 biases) as the
  .tflite stores them; stored = the same as the C stores them (biases bit-packed where they fit, no
  all-zero bias or all-zero filter); code = .text (kernels, generated invoke code, startup,
  memcpy/memset, test runner); other = the rest (requantization constants, parameter blocks, row
  index of all-zero filters, tables, kernel constants, vector table, runner strings, padding);
  acceptance: flash <= weights + code, i.e. margin = weights + code - flash >= 0;
- instructions per inference (QEMU -icount, SysTick-timed);
- micro's in-place plan (the Python backend's arena, for reference);
- TFLM: arena head with its own planner plus persistent bytes, from tflite-micro's
  ``print_allocations()`` on the original model (x86_64 build; same kernels' allocations).

examples:
    python -m benchmarks.mcu_footprint --inputs 100 --markdown
    python -m benchmarks.mcu_footprint --inputs 5 --cpus cortex-m4 --models kws_ref_model --json
    python -m benchmarks.mcu_footprint --inputs 100 --compare-os --markdown   # adds -Os flash/code/instructions
"""
from __future__ import annotations

import argparse
import json
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
from firmware_sim.mcu.flash import CODE, OTHER, WEIGHTS
from firmware_sim.mcu.runner import missing_tools, run

MODELS = [("KWS", "kws_ref_model"), ("VWW", "vww_96_int8"), ("IC", "pretrainedResnet_quant"),
          ("AD", "ad01_int8"), ("SWW", "str_ww_ref_model")]


def _exact(outputs: np.ndarray, ref: np.ndarray) -> int:
    n = len(ref)
    return int((outputs.reshape(ref.shape) == ref).reshape(n, -1).all(axis=1).sum())


def measure(stem: str, n: int, cpus: list[str], workdir: Path, opt: "str | None" = None,
            compare_os: bool = False, compress_weights: str = "auto") -> dict[str, Any]:
    """All figures of one model."""
    path = models_dir() / "mlperf_tiny" / "models" / f"{stem}.tflite"
    model = TFLiteModel.open(path)
    manifest = generate_c(path, workdir / stem, compress_weights=compress_weights)
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
        res = run(workdir / stem, cpu, x, opt=opt)
        row["exact"][cpu] = _exact(res.outputs, ref_arr)
        if cpu != "host" and "flash" not in row:
            row.update(flash=res.flash_bytes, ram=res.ram_bytes, code=res.code_bytes, stack=res.stack_bytes,
                       stored=res.stored_weight_bytes, other=res.other_flash_bytes, items=res.flash_items,
                       margin=res.weight_bytes + res.code_bytes - res.flash_bytes,
                       insns=res.instructions_per_inference, insns_cpu=cpu, opt=res.opt)
            if compare_os:
                small = run(workdir / stem, cpu, x, opt="-Os")
                row.update(os_flash=small.flash_bytes, os_code=small.code_bytes,
                           os_insns=small.instructions_per_inference, os_exact=_exact(small.outputs, ref_arr))
    if tflm_available():
        t = run_tflm(path, x[:1])
        row.update(tflm_head=t.head_bytes, tflm_persistent=t.total_bytes - t.head_bytes)
    return row


def _fmt(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(rows: list[tuple[str, dict[str, Any]]], cpus: list[str], n: int) -> list[list[str]]:
    """Header plus one line per model: memory, flash accounting, speed, TFLM, bit-exactness."""
    head = ["model", "arena (ours)", "RAM data+bss+stack", "stack", "flash", "weights (.tflite)", "code (.text)",
            "flash - (weights + code)", "weights stored", "other flash", "instructions/inference",
            "micro in-place arena", "TFLM head", "TFLM persistent"] + [f"bit-exact {c}" for c in cpus]
    has_os = any("os_flash" in r for _, r in rows)
    if has_os:
        head += ["flash -Os", "code -Os", "instructions -Os", "bit-exact -Os"]
    out = [head]
    for label, r in rows:
        get = r.get
        line = [label, _fmt(r["arena"]), _fmt(get("ram", "n/a")), _fmt(get("stack", "n/a")),
                _fmt(get("flash", "n/a")), _fmt(r["weights"]), _fmt(get("code", "n/a")),
                _fmt(-r["margin"]) if "margin" in r else "n/a", _fmt(get("stored", "n/a")),
                _fmt(get("other", "n/a")), _fmt(get("insns", "n/a")), _fmt(r["micro_in_place"]),
                _fmt(get("tflm_head", "n/a")), _fmt(get("tflm_persistent", "n/a"))]
        line += [f"{r['exact'][c]}/{n}" for c in cpus]
        if has_os:
            line += ([_fmt(r["os_flash"]), _fmt(r["os_code"]), _fmt(r["os_insns"]), f"{r['os_exact']}/{n}"]
                     if "os_flash" in r else ["n/a"] * 4)
        out.append(line)
    return out


def items_table(rows: list[tuple[str, dict[str, Any]]]) -> list[list[str]]:
    """Header plus one line per model: flash bytes per category (code, stored weights, other flash)."""
    cats = [c for c in CODE + WEIGHTS + OTHER if any(c in r.get("items", {}) for _, r in rows)]
    out = [["model"] + [("code: " if c in CODE else "stored: " if c in WEIGHTS else "other: ") + c for c in cats]]
    for label, r in rows:
        items = r.get("items") or {}
        out.append([label] + [_fmt(items.get(c, 0)) for c in cats])
    return out


def _print(t: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(t[0]) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(t[0]))) + "|")
        for r in t[1:]:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(r[i]) for r in t) for i in range(len(t[0]))]
        for r in t:
            print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def main(argv: "list[str] | None" = None) -> int:
    """Print the tables (or one JSON object with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="examples:" + __doc__.split("examples:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=100, help="random inputs per model (default 100)")
    ap.add_argument("--cpus", default="host,cortex-m4,cortex-m7", help="comma-separated: host, cortex-m4, cortex-m7")
    ap.add_argument("--models", default=",".join(s for _, s in MODELS), help="comma-separated model stems")
    ap.add_argument("--opt", default=None, metavar="FLAG",
                    help="optimisation flag of the builds, written --opt=-Os (default -O2)")
    ap.add_argument("--compare-os", action="store_true",
                    help="also build with -Os on the first Cortex-M CPU: its flash, code and instructions")
    ap.add_argument("--compress-weights", choices=["auto", "off"], default="auto",
                    help="entropy-coded weights where they save flash (auto, the default) or none (off)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    args = ap.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    for c in cpus:
        if missing_tools(c):
            print(f"mcu_footprint: {c} needs {', '.join(missing_tools(c))}", file=sys.stderr)
            return 2
    wanted = args.models.split(",")
    unknown = [w for w in wanted if w not in {s for _, s in MODELS}]
    if unknown:
        print(f"mcu_footprint: unknown model {', '.join(unknown)}; choose from "
              f"{', '.join(s for _, s in MODELS)}", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for label, stem in MODELS:
            if stem in wanted:
                rows.append((label, measure(stem, args.inputs, cpus, Path(d), args.opt, args.compare_os,
                                            args.compress_weights)))
    if args.json:
        print(json.dumps({"inputs": args.inputs, "cpus": cpus, "models": {label: r for label, r in rows}}, indent=2))
        return 0
    _print(table(rows, cpus, args.inputs), args.markdown)
    print()
    _print(items_table(rows), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

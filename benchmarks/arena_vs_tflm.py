"""Arena size per MLPerf Tiny int8 model: TFLite Micro's head versus our plans.

Columns: TFLM head (x86_64, its own greedy planner, from ../shared/models/README.md),
our plan with in-place off (activations + the micro kernels' scratch; a plan TFLM
could run), our plan with in-place on, the in-place plan's lower bound, and the
ratios to TFLM's head. With --tflm, also runs tflite-micro on each model with our
tensors-only plan embedded and prints the head it records (it must equal our plan).

    python -m benchmarks.arena_vs_tflm [--planner best|greedy] [--tflm]
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_runtime.arena.plan import plan_arena
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.reference_data import models_dir

MODELS = [("KWS", "kws_ref_model"), ("VWW", "vww_96_int8"), ("IC", "pretrainedResnet_quant"),
          ("AD", "ad01_int8"), ("SWW", "str_ww_ref_model")]


def tflm_heads_from_readme(readme: Path) -> dict[str, int]:
    """Model stem -> TFLM head bytes, read from the TFLite Micro table of the shared README."""
    heads: dict[str, int] = {}
    row = re.compile(r"^\|\s*([A-Za-z0-9_]+)\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|\s*([\d,]+)\s*\|")
    for line in readme.read_text().splitlines():
        m = row.match(line)
        if m:
            heads[m.group(1)] = int(m.group(3).replace(",", ""))
    return heads


def main(argv: "list[str] | None" = None) -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planner", default="best", help="offset planner (default best)")
    ap.add_argument("--tflm", action="store_true", help="also run tflite-micro with our embedded plan")
    args = ap.parse_args(argv)
    root = models_dir()
    heads = tflm_heads_from_readme(root / "README.md")
    cols = ["model", "TFLM head", "ours no-in-place", "ratio", "ours in-place", "ratio", "lower bound (in-place)"]
    if args.tflm:
        cols += ["TFLM head w/ our plan", "outputs equal"]
    rows = []
    traits = ""
    for label, stem in MODELS:
        path = root / "mlperf_tiny" / "models" / f"{stem}.tflite"
        model = TFLiteModel.open(path)
        head = heads[stem]
        off = plan_arena(model, in_place=False, planner=args.planner)
        on = plan_arena(model, in_place=True, planner=args.planner)
        traits = off.op_memory_source
        row = [label, f"{head:,}", f"{off.arena_bytes:,}", f"{off.arena_bytes / head:.3f}",
               f"{on.arena_bytes:,}", f"{on.arena_bytes / head:.3f}", f"{on.lower_bound_bytes:,}"]
        if args.tflm:
            from converters.offline_plan import embed_offline_plan, run_tflm

            with tempfile.TemporaryDirectory() as d:
                out = Path(d) / path.name
                embed_offline_plan(path, out, planner=args.planner)
                spec = model.main.tensors[model.main.inputs[0]]
                x = np.random.default_rng(0).integers(-128, 128, size=(10,) + spec.shape, dtype=np.int8)
                own, ours = run_tflm(path, x), run_tflm(out, x)
            row += [f"{ours.head_bytes:,} (own {own.head_bytes:,})", str(np.array_equal(own.outputs, ours.outputs))]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [cols]) for i in range(len(cols))]
    print(f"planner: {args.planner}; kernel traits: {traits}")
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

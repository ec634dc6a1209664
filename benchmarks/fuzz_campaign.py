"""The structure-aware fuzz campaign at full size:
``python -m benchmarks.fuzz_campaign [--tflite N] [--onnx N] [--decoders N]``.

Defaults: 10,000 TFLite mutants (each on micro and litert) and 2,000 ONNX mutants (on onnx),
seeded from the MLPerf Tiny models in ../shared and a small QDQ ONNX model, plus 3,000 mutants of
the weight decoders' seeds (small sparse and float16 models and MediaPipe's custom op, built by
tests/fuzz_structure.py; sparsity metadata, float16 data and custom options mutated), each on micro
and litert; prints the counts per backend and outcome (ok, error, oom, unclean, signal, hang) and
the bad cases. Exit 1 if any outcome is not ok or a clean error. See tests/fuzz_structure.py for
the mutations.

``--library [--seeds N]``: the library campaign. N mutants of each seed (the five int8 MLPerf Tiny
models, the weight decoders' seeds and small IF / WHILE models built with tests/tflite_builder.py;
structure-aware mutants plus raw byte flips and truncations) are handed in-process to the public
functions a Python caller uses: ``TFLiteModel.open`` (parse), ``plan_arena`` (plan),
``fold_weight_decoders`` + ``plan_arena`` + ``format_plan`` / ``to_json`` / ``plan_svg`` (report, as
``edge-convert plan`` calls them), the micro ``Interpreter`` constructor and ``invoke`` (interpreter)
and ``edge_runtime.load(..., backend="micro")`` + ``run`` (load). Each batch runs in a worker
subprocess under the address-space limit, so a crash or hang is caught and counted. Outcomes: ok,
error (an EdgeRuntimeError subclass), skip (the parse refused the file, so the function was not
reached), and the findings: other (any other exception type, MemoryError included), signal / died
(the worker crashed), hang.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_structure as fz  # noqa: E402
from edge_runtime.reference_data import shared_dir  # noqa: E402


def main(argv: list[str]) -> int:
    """Run the campaign and print the table."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_campaign", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tflite", type=int, default=10_000, help="TFLite mutants (default 10000)")
    ap.add_argument("--onnx", type=int, default=2_000, help="ONNX mutants (default 2000)")
    ap.add_argument("--decoders", type=int, default=3_000,
                    help="mutants of the weight decoders' seed models (default 3000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--library", action="store_true",
                    help="run the library campaign instead (public Python functions in-process, see above)")
    ap.add_argument("--seeds", type=int, default=20, metavar="N",
                    help="library campaign: mutants per seed model (default 20)")
    args = ap.parse_args(argv)
    if args.library:
        from benchmarks import fuzz_library

        return fuzz_library.main(args.seeds, args.seed, args.json)
    shared = shared_dir()
    if shared is None:
        print("fuzz_campaign: ../shared is missing (the seed models live there)", file=sys.stderr)
        return 1
    from test_fuzz_load import _onnx_seed_model

    seeds = {p.name: p.read_bytes() for p in sorted((shared / "models/mlperf_tiny/models").glob("*.tflite"))}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        jobs = fz.make_mutants(seeds, args.tflite, args.onnx, Path(d), seed=args.seed,
                               onnx_seeds={"seed.onnx": _onnx_seed_model()})
        dec_dir = Path(d) / "decoders"
        dec_dir.mkdir()
        dec_jobs = fz.make_mutants(fz.decoder_seeds(), args.decoders, 0, dec_dir, seed=args.seed,
                                   mutations=fz.DECODER_CAMPAIGN)
        jobs += [(p, f"{b} (decoders)", k) for p, b, k in dec_jobs]
        results = fz.run_jobs([(p, b.split(" ")[0]) for p, b, _ in jobs])
        s = fz.summarize(jobs, results)
        s["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"{args.tflite} TFLite + {args.onnx} ONNX + {args.decoders} decoder-seed mutants, {len(jobs)} loads, "
              f"{s['seconds']} s "
              f"(address-space limit {fz.ADDRESS_SPACE_LIMIT >> 30} GiB)")
        statuses = ["ok", "error", "oom", "unclean", "signal", "died", "hang"]
        print(f"{'backend':<18} " + "  ".join(f"{st:>7}" for st in statuses))
        for backend, c in sorted(s["counts"].items()):
            print(f"{backend:<18} " + "  ".join(f"{c.get(st, 0):>7}" for st in statuses))
        for b in s["bad"][:20]:
            print("bad:", b)
    return 1 if s["bad"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

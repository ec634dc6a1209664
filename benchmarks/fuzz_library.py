"""The library fuzz campaign: mutated .tflite models handed to the public Python functions in-process.

Run through ``python -m benchmarks.fuzz_campaign --library --seeds N`` (see that module's docstring).
The command-line tools turn a bad model into one line; this campaign checks that a Python caller of
the library gets an :class:`~edge_runtime.errors.EdgeRuntimeError` subclass too, never a raw
ValueError / IndexError / struct.error / MemoryError, a crash or a hang.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fuzz_structure as fz  # noqa: E402
from edge_runtime.reference_data import shared_dir  # noqa: E402

#: The public functions driven, in the order they are reported.
FUNCTIONS = ("parse", "plan", "report", "interpreter", "load")
#: The five int8 MLPerf Tiny models (../shared/models/mlperf_tiny/models).
MLPERF_SEEDS = ("ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
                "str_ww_ref_model.tflite", "vww_96_int8.tflite")
STATUSES = ("ok", "error", "skip", "other", "signal", "died", "hang")
FINDINGS = ("other", "signal", "died", "hang")

WORKER = r"""
import json, resource, sys, traceback
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
import edge_runtime
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.formats.tflite import TFLiteModel
from edge_runtime.formats.tflite_fold import fold_weight_decoders
from edge_runtime.arena.plan import plan_arena
from edge_runtime.arena.report import format_plan
from edge_runtime.arena.svg import plan_svg
from edge_runtime.backends.micro.interpreter import Interpreter


def call(path, func):
    if func == "load":
        with edge_runtime.load(path, backend="micro") as m:
            m.run([np.zeros(s.shape, s.dtype) for s in m.inputs])
        return
    try:
        model = TFLiteModel.open(path)
    except EdgeRuntimeError:
        if func != "parse":
            return "skip"
        raise
    if func == "parse":
        model.op_counts(), model.weight_bytes()
    elif func == "plan":
        plan_arena(model).to_json()
    elif func == "report":
        plan = plan_arena(fold_weight_decoders(model), in_place=False)
        format_plan(plan, "m"), plan.to_json(), plan_svg(plan, "m")
    else:
        it = Interpreter(model)
        for v in it.input_views:
            v[...] = 0
        it.invoke()
        [np.array(v) for v in it.output_views]


with open(sys.argv[1]) as f:
    jobs = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
for path, func in jobs:
    try:
        res = {"status": call(path, func) or "ok"}
    except EdgeRuntimeError as exc:
        msg = str(exc)
        res = {"status": "error", "type": type(exc).__name__, "msg": msg[:300], "lines": len(msg.splitlines())}
    except BaseException as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        res = {"status": "other", "type": type(exc).__name__, "msg": str(exc)[:200],
               "where": " <- ".join(f"{fr.filename.rsplit('/', 1)[-1]}:{fr.lineno} {fr.name}" for fr in tb[::-1][:4])}
    print(json.dumps(res), flush=True)
"""


def run_jobs(jobs: list[tuple[str, str]], limit: int = fz.ADDRESS_SPACE_LIMIT,
             per_job_timeout: float = fz.PER_FILE_TIMEOUT_S) -> list[dict]:
    """Run (path, function) jobs in worker subprocesses; a crashed or hung worker is counted and replaced
    (:func:`fuzz_structure.run_in_workers`)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return fz.run_in_workers(WORKER, [f"{p}\t{fn}" for p, fn in jobs], (str(limit),), env, per_job_timeout)


def builder_seeds() -> dict[str, bytes]:
    """Small models built with tests/tflite_builder.py: the weight decoders' seeds, an IF and a WHILE model."""
    from test_micro_control import if_model, while_model

    seeds = dict(fz.decoder_seeds())
    with tempfile.TemporaryDirectory() as d:
        seeds["if_int8.tflite"] = if_model(Path(d) / "if.tflite", "int8", (1, 4, 4, 2), (0.05, 0.04, 0.03, 0.1),
                                           (1, 0, -3, 2), ("ADD", "MUL"), 3).read_bytes()
        seeds["while_int8.tflite"] = while_model(Path(d) / "w.tflite", "int8", (1, 8), 0.05, 2, 0.02, 0, 3,
                                                 "ADD", 4).read_bytes()
    return seeds


def byte_mutant(seed: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A raw mutant: a truncation, or 1-8 bytes overwritten (offsets, lengths, vtables hit at random)."""
    data = bytearray(seed)
    if rng.random() < 0.25:
        return "truncate", bytes(data[: int(rng.integers(0, len(data)))])
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, min(len(data), 4096))) if rng.random() < 0.7 else int(rng.integers(0, len(data)))
        data[pos] = int(rng.integers(0, 256)) if rng.random() < 0.5 else fz._pick(rng, [0, 0xFF, 0x7F, 0x80])
    return "bytes", bytes(data)


def make_jobs(seeds: dict[str, bytes], per_seed: int, out_dir: Path, seed: int,
              decoder_names: set[str]) -> list[tuple[str, str, str]]:
    """Write ``per_seed`` mutants of every seed (one in five a raw byte mutant); return (path, function, kind)."""
    rng = np.random.default_rng(seed)
    jobs: list[tuple[str, str, str]] = []
    for name, data in sorted(seeds.items()):
        unpacked = fz.unpack_tflite(data)
        mutations = fz.DECODER_CAMPAIGN if name in decoder_names else None
        for i in range(per_seed):
            kind, mutant = byte_mutant(data, rng) if i % 5 == 4 else fz.mutate_tflite(unpacked, rng, mutations)
            p = out_dir / f"{Path(name).stem}_{i:04d}.tflite"
            p.write_bytes(mutant)
            jobs += [(str(p), fn, kind) for fn in FUNCTIONS]
    return jobs


def summarize(jobs: list[tuple[str, str, str]], results: list[dict]) -> dict[str, Any]:
    """Counts per function and status, the error types, and every finding (with a multi-line message too)."""
    counts: dict[str, dict[str, int]] = {fn: {} for fn in FUNCTIONS}
    error_types: dict[str, int] = {}
    bad = []
    for (path, fn, kind), r in zip(jobs, results):
        counts[fn][r["status"]] = counts[fn].get(r["status"], 0) + 1
        if r["status"] == "error":
            error_types[r["type"]] = error_types.get(r["type"], 0) + 1
            if r.get("lines", 1) != 1:
                bad.append({"file": Path(path).name, "function": fn, "mutation": kind, "problem": "multi-line", **r})
        if r["status"] in FINDINGS:
            bad.append({"file": Path(path).name, "function": fn, "mutation": kind, **r})
    return {"counts": counts, "error_types": error_types, "bad": bad}


def main(per_seed: int, seed: int, as_json: bool) -> int:
    """Build the mutants, run them, print the table; exit 1 on any finding."""
    shared = shared_dir()
    if shared is None:
        print("fuzz_campaign: ../shared is missing (the seed models live there)", file=sys.stderr)
        return 1
    mlperf = shared / "models/mlperf_tiny/models"
    seeds = {n: (mlperf / n).read_bytes() for n in MLPERF_SEEDS}
    built = builder_seeds()
    seeds.update(built)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        jobs = make_jobs(seeds, per_seed, Path(d), seed, set(fz.decoder_seeds()))
        results = run_jobs([(p, fn) for p, fn, _ in jobs])
        s = summarize(jobs, results)
    s["seconds"] = round(time.perf_counter() - t0, 1)
    s["mutants"] = len(jobs) // len(FUNCTIONS)
    if as_json:
        print(json.dumps(s, indent=1))
    else:
        print(f"library campaign: {per_seed} mutants x {len(seeds)} seeds = {s['mutants']} models, "
              f"{len(jobs)} calls, {s['seconds']} s (address-space limit {fz.ADDRESS_SPACE_LIMIT >> 30} GiB)")
        print(f"{'function':<12} " + "  ".join(f"{st:>6}" for st in STATUSES))
        for fn in FUNCTIONS:
            print(f"{fn:<12} " + "  ".join(f"{s['counts'][fn].get(st, 0):>6}" for st in STATUSES))
        print("error types: " + ", ".join(f"{k} {v}" for k, v in sorted(s["error_types"].items())))
        for b in s["bad"][:40]:
            print("bad:", json.dumps(b))
        if len(s["bad"]) > 40:
            print(f"... and {len(s['bad']) - 40} more findings")
    return 1 if s["bad"] else 0

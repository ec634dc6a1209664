"""``edge-runtime bench``: load time, latency (median, p90) and peak RSS of one model."""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError

NAME = "bench"
HELP = "measure load time, median/p90 latency and peak memory of a model"
DESCRIPTION = """\
Load MODEL, run it --warmup times untimed, then --runs times timed, on a fixed
pseudo-random input (seeded, in the input's dtype and range). Reports:

  load_ms        time to load the model (validation, backend setup, delegates)
  first_ms       time of the first inference (includes lazy kernel setup)
  median_ms/p90_ms  latency over the timed runs
  peak_rss_mib   peak resident memory of this process (ru_maxrss)
  node_placement the model's nodes per ONNX Runtime execution provider, read from a
                 profiled run (kernels_run: kernels each provider ran; cpu_ops: op
                 types left on the CPU); for LiteRT, the nodes each delegate took
                 (the profile's accelerator, XNNPACK) and those on builtin kernels,
                 read from the interpreter's node list (delegated_nodes,
                 delegate_partitions)

Examples:
  edge-runtime bench kws_ref_model.tflite --runs 200
  edge-runtime bench model.onnx --profile my_board.yaml --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edge-runtime bench``."""
    p.add_argument("model", metavar="MODEL", help="model file (.tflite or .onnx)")
    p.add_argument("--backend", "-b", default="auto", choices=["auto", "litert", "tflite", "onnx", "micro"],
                   help="runtime to use (default: auto)")
    p.add_argument("--profile", "-p", metavar="NAME|FILE.yaml", help="device profile (threads, accelerators)")
    p.add_argument("--runs", "-n", type=int, default=100, metavar="N", help="timed runs (default: 100)")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs first (default: 5)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads")
    p.add_argument("--accelerator", default="auto", metavar="auto|none|NAME|LIB.so",
                   help="accelerator to try (default: auto, from the profile)")
    p.add_argument("--require-accelerator", action="store_true", help="fail if the accelerator cannot be used")
    p.add_argument("--op-resolver", default="default", choices=["default", "reference", "no_default_delegates"],
                   help="TFLite kernels to use")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def sample_input(spec: Any, rng: np.random.Generator) -> np.ndarray:
    """A deterministic input for ``spec`` (dynamic dims become 1)."""
    shape = tuple(1 if d < 0 else d for d in spec.shape)
    dt = np.dtype(spec.dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)


def run(args: argparse.Namespace) -> int:
    """Load, warm up, time, report."""
    import edge_runtime

    if args.runs < 1:
        raise ConfigError(f"--runs must be at least 1, got {args.runs}")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be 0 or more, got {args.warmup}")
    options: dict[str, Any] = {"accelerator": args.accelerator, "require_accelerator": args.require_accelerator}
    if args.threads is not None:
        options["threads"] = args.threads
    if args.op_resolver != "default":
        options["op_resolver"] = args.op_resolver
    t0 = time.perf_counter()
    model = edge_runtime.load(args.model, backend=args.backend, profile=args.profile, **options)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    inputs = [sample_input(s, rng) for s in model.inputs]
    t0 = time.perf_counter()
    model.run(inputs)
    first_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        model.run(inputs)
    times = np.empty(args.runs, dtype=np.float64)
    for i in range(args.runs):
        t0 = time.perf_counter()
        model.run(inputs)
        times[i] = time.perf_counter() - t0
    result = {
        "model": args.model, "backend": model.backend, "library": model.info.get("library"),
        "library_version": model.info.get("library_version"), "accelerator": model.info.get("accelerator"),
        "threads": model.info.get("threads"), "runs": args.runs,
        "load_ms": load_s * 1e3, "first_ms": first_s * 1e3,
        "median_ms": float(np.median(times)) * 1e3, "p90_ms": float(np.percentile(times, 90)) * 1e3,
        "peak_rss_mib": peak_rss_bytes() / 2**20,
    }
    for key in ("node_placement", "kernels_run", "cpu_ops", "delegated_nodes", "delegate_partitions",
                "placement_source"):
        if key in model.info:
            result[key] = model.info[key]
    import platform

    from edge_runtime.loader import resolve_profile

    prof = resolve_profile(args.profile)
    host = platform.machine()
    result["timed_on"] = f"this host ({host})"
    result["note"] = None
    if prof is not None and (prof.microcontroller or prof.arch != host):
        result["note"] = (f"timed on this host ({host}), not on {prof.name} ({prof.arch}); the profile only set "
                          "threads and accelerators, so these times do not predict the device"
                          + (" (a microcontroller; firmware_sim/ runs code on an emulated board)"
                             if prof.microcontroller else ""))
    model.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model        {result['model']}")
    lib = " ".join(str(result[k]) for k in ("library", "library_version") if result[k])
    print(f"backend      {result['backend']}{f' ({lib})' if lib else ''}, "
          f"accelerator: {result['accelerator'] or 'none (CPU)'}, threads: {result['threads'] or 'default'}")
    print(f"load         {result['load_ms']:9.2f} ms")
    print(f"first run    {result['first_ms']:9.3f} ms")
    print(f"median       {result['median_ms']:9.3f} ms   ({args.runs} runs)")
    print(f"p90          {result['p90_ms']:9.3f} ms")
    print(f"peak RSS     {result['peak_rss_mib']:9.1f} MiB")
    if result.get("node_placement"):
        nodes = ", ".join(f"{prov}: {n}" for prov, n in result["node_placement"].items())
        print(f"placement    {nodes} nodes ({result.get('placement_source')})")
    if result["note"]:
        print(f"note: {result['note']}")
    return 0

"""Fuzz the loader with mutated copies of the real MLPerf models (issue section 8).

Each mutated file (byte flips aimed at the FlatBuffer structure, truncation,
splices from elsewhere in the file or another model, zeroed runs) is loaded by a
worker subprocess that reports one JSON line per file. A native crash kills the
worker: the file it was loading is recorded with the signal and a new worker
takes the rest. Every load must end in a successful load (plus one inference) or
a clean EdgeRuntimeError, never a signal or a hang.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.formats.tflite import TFLiteModel

MUTANTS_PER_MODEL = 32  # 9 models -> 288 TFLite files, plus the ONNX set
ONNX_MUTANTS = 64
PER_FILE_TIMEOUT_S = 30.0

WORKER = r"""
import json, sys
import numpy as np
import edge_runtime
from edge_runtime.errors import EdgeRuntimeError
with open(sys.argv[1]) as f:
    paths = [ln.strip() for ln in f if ln.strip()]
for path in paths:
    try:
        with edge_runtime.load(path) as m:
            ins = [np.zeros(tuple(max(d, 1) for d in s.shape), s.dtype) for s in m.inputs]
            m.run(ins)
        res = {"path": path, "status": "ok"}
    except EdgeRuntimeError as exc:
        res = {"path": path, "status": "error", "type": type(exc).__name__, "msg": str(exc)[:300]}
    except BaseException as exc:
        res = {"path": path, "status": "unclean", "type": type(exc).__name__, "msg": str(exc)[:300]}
    print(json.dumps(res), flush=True)
"""


def _structure_positions(data: bytes, path: Path) -> np.ndarray:
    """Byte positions that are not inside tensor data: where the FlatBuffer's tables, vectors and offsets live."""
    model = TFLiteModel(data, str(path))
    mask = np.ones(len(data), bool)
    base = np.frombuffer(data, np.uint8)
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.data is not None and t.data.size:
                start = t.data.__array_interface__["data"][0] - base.__array_interface__["data"][0]
                mask[start:start + t.data.size] = False
    return np.flatnonzero(mask)


def mutate(data: bytes, structure: np.ndarray, other: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One mutation of ``data``; returns its kind and the bytes."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "flip", "truncate", "splice", "splice_other", "zero_run", "offset"])
    if kind == "flip":
        for pos in rng.choice(structure, size=int(rng.integers(1, 9))):
            b[pos] = int(rng.integers(0, 256))
    elif kind == "truncate":
        return kind, bytes(b[: int(rng.integers(1, len(b)))])
    elif kind == "splice":
        n = int(rng.integers(4, 256))
        src, dst = (int(v) for v in rng.integers(0, len(b) - n, size=2))
        b[dst:dst + n] = data[src:src + n]
    elif kind == "splice_other":
        n = min(int(rng.integers(16, 2048)), len(other) - 1, len(b) - 1)
        src = int(rng.integers(0, len(other) - n))
        dst = int(rng.choice(structure[structure < len(b) - n])) if np.any(structure < len(b) - n) else 0
        b[dst:dst + n] = other[src:src + n]
    elif kind == "zero_run":
        n = int(rng.integers(4, 64))
        dst = int(rng.choice(structure))
        b[dst:dst + n] = bytes(min(n, len(b) - dst))
    else:  # overwrite an aligned 32-bit word in the structure with a plausible-looking offset or count
        pos = int(rng.choice(structure)) & ~3
        val = int(rng.choice([0, 1, 2, 3, 4, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(b), len(b) // 2,
                              int(rng.integers(0, len(b)))]))
        b[pos:pos + 4] = (val & 0xFFFFFFFF).to_bytes(4, "little")
    return kind, bytes(b)


def _onnx_seed_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.integers(-127, 128, size=(8, 3, 3, 3)).astype(np.int8), "w_q")
    inits = [w, numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bias"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "s", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd", "bias"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["y"]),
    ]
    g = helper.make_graph(nodes, "fuzz_seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def run_worker_pool(paths: list[str]) -> dict[str, dict]:
    """Load every path in worker subprocesses; restart after a crash or a hang. Returns path -> result."""
    from fuzz_structure import run_in_workers

    results = run_in_workers(WORKER, list(paths), per_item_timeout=PER_FILE_TIMEOUT_S)
    for path, res in zip(paths, results):
        assert res.get("path", path) == path, (path, res)
    return dict(zip(paths, results))


def test_fuzz_mutated_models_never_crash(mlperf_models, tmp_path):
    pytest.importorskip("onnx")
    rng = np.random.default_rng(20261126)
    originals = {p.name: p.read_bytes() for p in sorted(mlperf_models.glob("*.tflite"))}
    names = list(originals)
    paths: list[str] = []
    kinds: dict[str, str] = {}
    for i, name in enumerate(names):
        data = originals[name]
        structure = _structure_positions(data, mlperf_models / name)
        other = originals[names[(i + 1) % len(names)]]
        for k in range(MUTANTS_PER_MODEL):
            kind, mutated = mutate(data, structure, other, rng)
            p = tmp_path / f"{Path(name).stem}_{k:03d}_{kind}.tflite"
            p.write_bytes(mutated)
            paths.append(str(p))
            kinds[str(p)] = kind
    seed = _onnx_seed_model()
    onnx_structure = np.arange(len(seed))
    for k in range(ONNX_MUTANTS):
        kind, mutated = mutate(seed, onnx_structure, originals[names[0]], rng)
        p = tmp_path / f"onnx_seed_{k:03d}_{kind}.onnx"
        p.write_bytes(mutated)
        paths.append(str(p))
        kinds[str(p)] = kind

    results = run_worker_pool(paths)
    assert len(results) == len(paths)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    by_format = {fmt: {s: sum(1 for p, r in results.items() if p.endswith(fmt) and r["status"] == s)
                       for s in ("ok", "error", "signal", "died", "hang", "unclean")} for fmt in (".tflite", ".onnx")}
    print(f"\nfuzz: {len(paths)} mutated files -> {counts}; by format: {by_format}")
    bad = {Path(p).name: r for p, r in results.items() if r["status"] not in ("ok", "error")}
    assert not bad, f"loads that did not end cleanly: {bad}"
    assert counts.get("ok", 0) > 0 and counts.get("error", 0) > 0
    # Clean errors are one line each and name the file.
    for p, r in results.items():
        if r["status"] == "error":
            assert Path(p).name in r["msg"], r

"""Structure-aware fuzzing of .tflite and .onnx models: mutate fields, not bytes.

TFLite mutants come from the schema's object API (unpack, change one field, repack), so
each one is a well-formed FlatBuffer whose *meaning* is hostile: operator input/output
indices, tensor shapes, types, buffer indices, quantization parameters, builtin option
values, opcode/option pairs, op versions, subgraph inputs/outputs, buffer sizes. ONNX
mutants change node attributes, initializer dims/types/data and external-data paths.

:func:`run_campaign` loads every mutant in worker subprocesses under an address-space
limit, on each backend the format has (micro and litert for .tflite, onnx for .onnx), runs
one inference when it loads, and classifies the outcome: ``ok`` (loaded and ran), ``error``
(one clean EdgeRuntimeError), ``oom`` (a MemoryError or OutOfMemoryError: an allocation
above the limit was attempted), ``unclean`` (any other exception: a traceback), ``signal``
(the worker died), ``hang``. Used by tests/test_fuzz_structure.py (a fixed-seed campaign)
and benchmarks/fuzz_campaign.py (10,000+ on demand).
"""
from __future__ import annotations

import copy
import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

INT_EXTREMES = [0, -1, 1, 2, 3, 7, 255, 65535, -(2**31), 2**31 - 1, 2**30, -(2**15)]
FLOAT_EXTREMES = [0.0, -1.0, 1e-45, 1e-30, 1e30, 3.4e38, float("nan"), float("inf"), -float("inf"), 1.0, 255.0]
ADDRESS_SPACE_LIMIT = 4 << 30
PER_FILE_TIMEOUT_S = 30.0
WORKER_START_TIMEOUT_S = 120.0


# ---------------------------------------------------------------------------- TFLite

def _schema() -> Any:
    import ai_edge_litert.schema_py_generated as schema

    return schema


def unpack_tflite(data: bytes) -> Any:
    """The model as the schema's object tree (ModelT)."""
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack_tflite(model: Any) -> bytes:
    """Serialize a ModelT."""
    import flatbuffers

    b = flatbuffers.Builder(1 << 16)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _pick(rng: np.random.Generator, seq: list) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _option_fields(obj: Any) -> list[str]:
    return [k for k, v in vars(obj).items() if isinstance(v, (int, float, bool)) and not k.startswith("_")]


def _tflite_mutations() -> dict[str, Callable[[Any, np.random.Generator], bool]]:
    """Named mutators; each changes ``model`` in place and returns False when it found nothing to change."""

    def sg_op(m: Any, rng: np.random.Generator) -> tuple[Any, Any]:
        sg = _pick(rng, m.subgraphs)
        return sg, (_pick(rng, sg.operators) if sg.operators else None)

    def op_index(m: Any, rng: np.random.Generator) -> bool:
        sg, op = sg_op(m, rng)
        if op is None:
            return False
        field = "inputs" if rng.random() < 0.7 or op.outputs is None or len(op.outputs) == 0 else "outputs"
        arr = np.array(getattr(op, field) if getattr(op, field) is not None else [], np.int32)
        n = len(sg.tensors or [])
        choice = _pick(rng, ["neg1", "neg2", "n", "huge", "other", "drop", "add"])
        if choice == "drop" and arr.size:
            arr = arr[:-1]
        elif choice == "add":
            arr = np.append(arr, int(rng.integers(-2, n + 3)))
        elif arr.size:
            i = int(rng.integers(arr.size))
            arr[i] = {"neg1": -1, "neg2": -2, "n": n, "huge": 2**31 - 1,
                      "other": int(rng.integers(0, max(n, 1)))}[choice]
        setattr(op, field, arr)
        return True

    def tensor_shape(m: Any, rng: np.random.Generator) -> bool:
        sg = _pick(rng, m.subgraphs)
        if not sg.tensors:
            return False
        t = _pick(rng, sg.tensors)
        shape = list(t.shape if t.shape is not None else [])
        choice = _pick(rng, ["neg", "zero", "huge", "drop", "add", "swap"])
        if choice == "drop" and shape:
            shape.pop(int(rng.integers(len(shape))))
        elif choice == "add":
            shape.insert(int(rng.integers(len(shape) + 1)), int(_pick(rng, [1, 2, 3, 1000, 65536])))
        elif choice == "swap" and len(shape) > 1:
            rng.shuffle(shape)
        elif shape:
            i = int(rng.integers(len(shape)))
            shape[i] = {"neg": -int(rng.integers(1, 5)), "zero": 0, "huge": int(_pick(rng, [2**20, 2**31 - 1]))}.get(
                choice, shape[i])
        t.shape = np.array(shape, np.int32)
        return True

    def tensor_type(m: Any, rng: np.random.Generator) -> bool:
        sg = _pick(rng, m.subgraphs)
        if not sg.tensors:
            return False
        _pick(rng, sg.tensors).type = int(rng.integers(0, 26))
        return True

    def tensor_buffer(m: Any, rng: np.random.Generator) -> bool:
        sg = _pick(rng, m.subgraphs)
        if not sg.tensors:
            return False
        t = _pick(rng, sg.tensors)
        t.buffer = int(_pick(rng, [0, len(m.buffers), len(m.buffers) + 5, 2**31 - 1,
                                   int(rng.integers(0, max(len(m.buffers), 1)))]))
        return True

    def quantization(m: Any, rng: np.random.Generator) -> bool:
        sg = _pick(rng, m.subgraphs)
        qs = [t for t in sg.tensors or [] if t.quantization is not None and t.quantization.scale is not None]
        if not qs:
            return False
        q = _pick(rng, qs).quantization
        choice = _pick(rng, ["scale", "zp", "dim", "len"])
        if choice == "scale":
            q.scale = np.array(q.scale, np.float32)
            q.scale[int(rng.integers(q.scale.size))] = np.float32(_pick(rng, FLOAT_EXTREMES))
        elif choice == "zp" and q.zeroPoint is not None and len(q.zeroPoint):
            q.zeroPoint = np.array(q.zeroPoint, np.int64)
            q.zeroPoint[int(rng.integers(q.zeroPoint.size))] = int(_pick(rng, INT_EXTREMES + [128, -129, 2**40]))
        elif choice == "dim":
            q.quantizedDimension = int(_pick(rng, INT_EXTREMES))
        else:
            q.scale = np.array(list(q.scale) + [0.5] * int(rng.integers(1, 4)), np.float32)
        return True

    def option_value(m: Any, rng: np.random.Generator) -> bool:
        sg, op = sg_op(m, rng)
        if op is None or op.builtinOptions is None:
            return False
        fields = _option_fields(op.builtinOptions)
        if not fields:
            return False
        f = _pick(rng, fields)
        old = getattr(op.builtinOptions, f)
        setattr(op.builtinOptions, f, float(_pick(rng, FLOAT_EXTREMES)) if isinstance(old, float)
                else int(_pick(rng, INT_EXTREMES)) if not isinstance(old, bool) else not old)
        return True

    def opcode_swap(m: Any, rng: np.random.Generator) -> bool:
        if not m.operatorCodes:
            return False
        oc = _pick(rng, m.operatorCodes)
        code = int(_pick(rng, [int(rng.integers(0, 210)), 49, 9, 3, 4, 0, 32, 25, 22, 2**31 - 1]))
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(max(code, 0), 127)
        return True

    def op_version(m: Any, rng: np.random.Generator) -> bool:
        if not m.operatorCodes:
            return False
        _pick(rng, m.operatorCodes).version = int(_pick(rng, [0, -1, 99, 2**31 - 1]))
        return True

    def options_type(m: Any, rng: np.random.Generator) -> bool:
        sg, op = sg_op(m, rng)
        if op is None:
            return False
        op.builtinOptionsType = int(rng.integers(0, 130))
        return True

    def subgraph_io(m: Any, rng: np.random.Generator) -> bool:
        sg = _pick(rng, m.subgraphs)
        field = _pick(rng, ["inputs", "outputs"])
        arr = np.array(getattr(sg, field) if getattr(sg, field) is not None else [], np.int32)
        n = len(sg.tensors or [])
        arr = np.append(arr, int(_pick(rng, [-1, n, 2**31 - 1, 0]))) if rng.random() < 0.3 or not arr.size else arr
        arr[int(rng.integers(arr.size))] = int(_pick(rng, [-1, n, n + 7, int(rng.integers(0, max(n, 1)))]))
        setattr(sg, field, arr)
        return True

    def buffer_size(m: Any, rng: np.random.Generator) -> bool:
        bufs = [b for b in m.buffers if b.data is not None and len(b.data)]
        if not bufs:
            return False
        b = _pick(rng, bufs)
        data = np.array(b.data, np.uint8)
        b.data = data[: int(rng.integers(0, data.size))] if rng.random() < 0.7 else np.concatenate(
            [data, np.zeros(int(rng.integers(1, 64)), np.uint8)])
        return True

    def op_count(m: Any, rng: np.random.Generator) -> bool:
        sg, op = sg_op(m, rng)
        if op is None:
            return False
        if rng.random() < 0.5:
            sg.operators.remove(op)
        else:
            sg.operators.insert(int(rng.integers(len(sg.operators) + 1)), copy.deepcopy(op))
        return True

    return {f.__name__: f for f in (op_index, tensor_shape, tensor_type, tensor_buffer, quantization, option_value,
                                    opcode_swap, op_version, options_type, subgraph_io, buffer_size, op_count)}


TFLITE_MUTATIONS = _tflite_mutations()


def mutate_tflite(seed_model: Any, rng: np.random.Generator) -> tuple[str, bytes]:
    """One structure-aware mutant of an unpacked model (1 to 3 field changes)."""
    names = sorted(TFLITE_MUTATIONS)
    for _ in range(20):
        m = copy.deepcopy(seed_model)
        done = [n for n in (names[int(rng.integers(len(names)))] for _ in range(int(rng.integers(1, 4))))
                if TFLITE_MUTATIONS[n](m, rng)]
        if not done:
            continue
        try:
            return "+".join(done), pack_tflite(m)
        except Exception:  # noqa: BLE001 - the object API refuses some values (e.g. out-of-range ints)
            continue
    return "none", pack_tflite(seed_model)


# ---------------------------------------------------------------------------- ONNX

def mutate_onnx(seed: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One mutant of an ONNX model: an attribute, an initializer or an external-data path."""
    import onnx

    m = onnx.ModelProto()
    m.ParseFromString(seed)
    g = m.graph
    choice = _pick(rng, ["attr_int", "attr_ints", "init_dims", "init_type", "init_data", "external", "opset",
                         "node_input", "value_shape"])
    if choice in ("attr_int", "attr_ints"):
        nodes = [n for n in g.node if n.attribute]
        if nodes:
            a = _pick(rng, list(_pick(rng, nodes).attribute))
            if a.type == onnx.AttributeProto.INT:
                a.i = int(_pick(rng, INT_EXTREMES + [2**62]))
            elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                a.ints[int(rng.integers(len(a.ints)))] = int(_pick(rng, INT_EXTREMES + [2**62]))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = float(_pick(rng, FLOAT_EXTREMES))
    elif choice.startswith("init") and len(g.initializer):
        t = _pick(rng, list(g.initializer))
        if choice == "init_dims" and len(t.dims):
            t.dims[int(rng.integers(len(t.dims)))] = int(_pick(rng, [0, -1, 2**31, 1000, 2**40]))
        elif choice == "init_type":
            t.data_type = int(rng.integers(0, 25))
        elif t.raw_data:
            t.raw_data = t.raw_data[: int(rng.integers(0, len(t.raw_data)))]
    elif choice == "external" and len(g.initializer):
        t = _pick(rng, list(g.initializer))
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", _pick(rng, ["../../../../etc/passwd", "/etc/shadow", "a" * 300,
                                               "../secret.bin", "weights.bin", "\x00bad"])
        if rng.random() < 0.5:
            e2 = t.external_data.add()
            e2.key, e2.value = "length", str(_pick(rng, [2**40, 10, -5]))
    elif choice == "opset":
        m.opset_import[0].version = int(_pick(rng, [1, 6, 99, 10000]))
    elif choice == "node_input" and len(g.node):
        n = _pick(rng, list(g.node))
        if len(n.input):
            n.input[int(rng.integers(len(n.input)))] = _pick(rng, ["", "nope", n.output[0] if n.output else "x"])
    elif len(g.input):
        d = g.input[0].type.tensor_type.shape.dim
        if len(d):
            d[int(rng.integers(len(d)))].dim_value = int(_pick(rng, [0, 2**31, 7]))
    try:
        return choice, m.SerializeToString()
    except Exception:  # noqa: BLE001 - e.g. a string that is not UTF-8
        return "none", seed


# ---------------------------------------------------------------------------- running

WORKER = r"""
import json, resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
import edge_runtime
from edge_runtime.errors import EdgeRuntimeError, OutOfMemoryError
with open(sys.argv[1]) as f:
    jobs = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
for path, backend in jobs:
    try:
        with edge_runtime.load(path, backend=backend) as m:
            ins = [np.zeros(tuple(max(d, 1) for d in s.shape), s.dtype) for s in m.inputs]
            m.run(ins)
        res = {"status": "ok"}
    except (MemoryError, OutOfMemoryError) as exc:
        res = {"status": "oom", "msg": str(exc)[:300]}
    except EdgeRuntimeError as exc:
        res = {"status": "error", "type": type(exc).__name__, "msg": str(exc)[:300]}
    except BaseException as exc:
        import traceback
        res = {"status": "unclean", "type": type(exc).__name__, "msg": str(exc)[:200],
               "where": traceback.format_exc().strip().splitlines()[-3][:200]}
    print(json.dumps(res), flush=True)
"""


def run_jobs(jobs: list[tuple[str, str]], limit: int = ADDRESS_SPACE_LIMIT) -> list[dict]:
    """Run (path, backend) loads in worker subprocesses; a dead or hung worker is replaced."""
    results: list[dict] = []
    todo = list(jobs)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(f"{p}\t{b}\n" for p, b in todo))
            listing = f.name
        proc = subprocess.Popen([sys.executable, "-c", WORKER, listing, str(limit)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert proc.stdout is not None
        done = 0
        while done < len(todo):
            ready, _, _ = select.select([proc.stdout], [], [],
                                        WORKER_START_TIMEOUT_S if done == 0 else PER_FILE_TIMEOUT_S)
            if not ready:
                proc.kill()
                proc.wait()
                results.append({"status": "hang"})
                done += 1
                break
            line = proc.stdout.readline()
            if not line:
                rc = proc.wait()
                results.append({"status": "signal" if rc < 0 else "died", "rc": rc})
                done += 1
                break
            results.append(json.loads(line))
            done += 1
        else:
            proc.wait()
        proc.stdout.close()
        os.unlink(listing)
        todo = todo[done:]
    return results


def make_mutants(seeds: dict[str, bytes], n_tflite: int, n_onnx: int, out_dir: Path, seed: int = 0,
                 onnx_seeds: Optional[dict[str, bytes]] = None) -> list[tuple[str, str, str]]:
    """Write mutants to ``out_dir``; return (path, backend, mutation kind) jobs for every backend of the format."""
    rng = np.random.default_rng(seed)
    jobs: list[tuple[str, str, str]] = []
    unpacked = {k: unpack_tflite(v) for k, v in seeds.items()}
    names = sorted(unpacked)
    for i in range(n_tflite):
        name = names[i % len(names)]
        kind, data = mutate_tflite(unpacked[name], rng)
        p = out_dir / f"t{i:05d}_{Path(name).stem}.tflite"
        p.write_bytes(data)
        jobs += [(str(p), "micro", kind), (str(p), "litert", kind)]
    onames = sorted(onnx_seeds or {})
    for i in range(n_onnx if onames else 0):
        name = onames[i % len(onames)]
        kind, data = mutate_onnx(onnx_seeds[name], rng)  # type: ignore[index]
        p = out_dir / f"o{i:05d}_{Path(name).stem}.onnx"
        p.write_bytes(data)
        jobs.append((str(p), "onnx", kind))
    return jobs


def summarize(jobs: list[tuple[str, str, str]], results: list[dict]) -> dict[str, Any]:
    """Counts per backend and status, and the first few bad outcomes."""
    counts: dict[str, dict[str, int]] = {}
    bad = []
    for (path, backend, kind), r in zip(jobs, results):
        counts.setdefault(backend, {}).setdefault(r["status"], 0)
        counts[backend][r["status"]] += 1
        if r["status"] not in ("ok", "error"):
            bad.append({"file": Path(path).name, "backend": backend, "mutation": kind, **r})
    return {"counts": counts, "bad": bad}

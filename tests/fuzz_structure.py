"""Structure-aware fuzzing of .tflite and .onnx models: mutate fields, not bytes.

TFLite mutants come from the schema's object API (unpack, change one field, repack), so
each one is a well-formed FlatBuffer whose *meaning* is hostile: operator input/output
indices, tensor shapes, types, buffer indices, quantization parameters, builtin option
values, opcode/option pairs, op versions, subgraph inputs/outputs, buffer sizes. ONNX
mutants change node attributes, initializer dims/types/data and external-data paths.

The weight decoders have their own mutations (:data:`DECODER_MUTATIONS`: sparsity traversal order,
block map, dimension metadata, index vectors and their types, sparsity moved onto other tensors,
float16 data, custom options) and seed models (:func:`decoder_seeds`: DENSIFY of float32/float16
weights with all three index vector types, sparse int8 and float32 FULLY_CONNECTED weights, float16
DEQUANTIZE and MediaPipe's Convolution2DTransposeBias), drawn with :data:`DECODER_CAMPAIGN`.

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


def _pick_tensor(m: Any, rng: np.random.Generator) -> Any:
    """A random tensor of a random subgraph (None when that subgraph has none)."""
    sg = _pick(rng, m.subgraphs)
    return _pick(rng, sg.tensors) if sg.tensors else None


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
        t = _pick_tensor(m, rng)
        if t is None:
            return False
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
        t = _pick_tensor(m, rng)
        if t is None:
            return False
        t.type = int(rng.integers(0, 26))
        return True

    def tensor_buffer(m: Any, rng: np.random.Generator) -> bool:
        t = _pick_tensor(m, rng)
        if t is None:
            return False
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


def _decoder_mutations() -> dict[str, Callable[[Any, np.random.Generator], bool]]:
    """Mutators of the fields the weight decoders read: sparsity parameters, float16 data, custom options."""
    schema_classes = ("Int32VectorT", "Uint16VectorT", "Uint8VectorT")
    vec_types = {"Int32VectorT": np.int32, "Uint16VectorT": np.uint16, "Uint8VectorT": np.uint8}

    def sparse_tensors(m: Any) -> list[Any]:
        return [t for sg in m.subgraphs for t in sg.tensors or [] if t.sparsity is not None]

    def sparsity_order(m: Any, rng: np.random.Generator) -> bool:
        ts = sparse_tensors(m)
        if not ts:
            return False
        sp = _pick(rng, ts).sparsity
        order = list(sp.traversalOrder if sp.traversalOrder is not None else [])
        choice = _pick(rng, ["dup", "range", "neg", "drop", "add", "shuffle", "none"])
        if choice == "none":
            sp.traversalOrder = None
            return True
        if choice == "drop" and order:
            order.pop(int(rng.integers(len(order))))
        elif choice == "add":
            order.append(int(_pick(rng, [len(order), 0, 2**31 - 1])))
        elif choice == "shuffle":
            rng.shuffle(order)
        elif order:
            i = int(rng.integers(len(order)))
            order[i] = {"dup": order[(i + 1) % len(order)], "range": len(order) + int(rng.integers(0, 3)),
                        "neg": int(_pick(rng, [-1, -(2**31)]))}[choice]
        sp.traversalOrder = np.array(order, np.int32)
        return True

    def sparsity_block_map(m: Any, rng: np.random.Generator) -> bool:
        ts = sparse_tensors(m)
        if not ts:
            return False
        t = _pick(rng, ts)
        bmap = list(t.sparsity.blockMap if t.sparsity.blockMap is not None else [])
        nd = len(t.shape if t.shape is not None else [])
        choice = _pick(rng, ["missing", "neg", "dup", "add", "drop", "reverse"])
        if choice == "drop" and bmap:
            bmap.pop()
        elif choice == "add" or not bmap:
            bmap.append(int(rng.integers(0, nd + 2)))
        elif choice == "reverse":
            bmap.reverse()
        else:
            i = int(rng.integers(len(bmap)))
            bmap[i] = {"missing": nd + int(rng.integers(0, 3)), "neg": -1, "dup": bmap[i - 1]}[choice]
        t.sparsity.blockMap = np.array(bmap, np.int32)
        return True

    def sparsity_dim(m: Any, rng: np.random.Generator) -> bool:
        ts = [t for t in sparse_tensors(m) if t.sparsity.dimMetadata]
        if not ts:
            return False
        metas = _pick(rng, ts).sparsity.dimMetadata
        choice = _pick(rng, ["format", "size", "size", "drop", "add", "swap"])
        if choice == "drop":
            metas.pop(int(rng.integers(len(metas))))
        elif choice == "add":
            metas.insert(int(rng.integers(len(metas) + 1)), copy.deepcopy(_pick(rng, metas)))
        elif choice == "swap" and len(metas) > 1:
            i = int(rng.integers(len(metas) - 1))
            metas[i], metas[i + 1] = metas[i + 1], metas[i]
        elif choice == "format":
            _pick(rng, metas).format = int(_pick(rng, [0, 1, 2, -1, 127]))
        else:
            dm = _pick(rng, metas)
            dm.denseSize = int(_pick(rng, INT_EXTREMES + [dm.denseSize + 1, dm.denseSize - 1, 2**20]))
        return True

    def sparsity_vector(m: Any, rng: np.random.Generator) -> bool:
        dms = [dm for t in sparse_tensors(m) for dm in t.sparsity.dimMetadata or []
               if dm.arraySegments is not None or dm.arrayIndices is not None]
        if not dms:
            return False
        dm = _pick(rng, dms)
        attr = _pick(rng, [a for a in ("arraySegments", "arrayIndices") if getattr(dm, a) is not None])
        vec = getattr(dm, attr)
        vals = np.array(vec.values if vec.values is not None else [], np.int64)
        choice = _pick(rng, ["value", "reverse", "truncate", "extend", "type_tag", "class", "none", "empty"])
        if choice == "type_tag":
            setattr(dm, attr + "Type", int(_pick(rng, [0, 1, 2, 3, 4, 255])))
            return True
        if choice == "none":
            setattr(dm, attr, None)
            return True
        if choice == "class":
            name = _pick(rng, list(schema_classes))
            new = getattr(_schema(), name)()
            new.values = vals.astype(vec_types[name])  # wraps out-of-range values, as a careless writer would
            setattr(dm, attr, new)
            return True
        if choice == "empty":
            vals = vals[:0]
        elif choice == "reverse":
            vals = vals[::-1].copy()
        elif choice == "truncate" and vals.size:
            vals = vals[: int(rng.integers(0, vals.size))]
        elif choice == "extend":
            vals = np.append(vals, [int(_pick(rng, [0, 1, 255, 65535, 2**31 - 1]))] * int(rng.integers(1, 5)))
        elif vals.size:
            vals[int(rng.integers(vals.size))] = int(_pick(rng, [0, 1, 2, 3, 15, 16, 255, 65535, 2**31 - 1, -1]))
        dt = vec_types.get(type(vec).__name__, np.int32)
        vec.values = vals.astype(dt)
        return True

    def sparsity_move(m: Any, rng: np.random.Generator) -> bool:
        t = _pick_tensor(m, rng)
        if t is None:
            return False
        donors = sparse_tensors(m)
        if t.sparsity is not None and rng.random() < 0.5:
            t.sparsity = None  # the values stay in compressed order and count
        elif donors:
            t.sparsity = copy.deepcopy(_pick(rng, donors).sparsity)
        else:
            t.sparsity = _schema().SparsityParametersT()
            t.sparsity.traversalOrder = np.arange(len(t.shape if t.shape is not None else []), dtype=np.int32)
            t.sparsity.dimMetadata = []
            for s in t.shape if t.shape is not None else []:
                dm = _schema().DimensionMetadataT()
                dm.denseSize = int(s)
                t.sparsity.dimMetadata.append(dm)
        return True

    def float16_data(m: Any, rng: np.random.Generator) -> bool:
        ts = [t for sg in m.subgraphs for t in sg.tensors or []
              if t.type == 1 and 0 < t.buffer < len(m.buffers) and m.buffers[t.buffer].data is not None]
        if not ts:
            return False
        t = _pick(rng, ts)
        buf = m.buffers[t.buffer]
        data = np.array(buf.data, np.uint8)
        choice = _pick(rng, ["special", "special", "truncate", "odd", "extend", "retype", "shape"])
        if choice == "special" and data.size >= 2:
            h = data[: data.size // 2 * 2].view(np.float16).copy()
            h[int(rng.integers(h.size))] = np.float16(_pick(rng, [np.nan, np.inf, -np.inf, 65504.0, 6e-8, -0.0]))
            data = np.concatenate([h.view(np.uint8), data[h.size * 2:]])
        elif choice == "truncate":
            data = data[: int(rng.integers(0, max(data.size, 1)))]
        elif choice == "odd":
            data = np.append(data, np.uint8(0))
        elif choice == "extend":
            data = np.concatenate([data, np.zeros(2 * int(rng.integers(1, 8)), np.uint8)])
        elif choice == "retype":
            t.type = int(_pick(rng, [0, 2, 3, 7, 9, 10, 18]))
            return True
        else:
            shape = list(t.shape if t.shape is not None else [])
            t.shape = np.array(shape + [int(_pick(rng, [2, 1 << 20, 2**31 - 1]))], np.int32)
            return True
        buf.data = data
        return True

    def custom_options(m: Any, rng: np.random.Generator) -> bool:
        ops = [op for sg in m.subgraphs for op in sg.operators or [] if op.customOptions is not None]
        if not ops:
            return False
        op = _pick(rng, ops)
        raw = np.array(op.customOptions, np.uint8)
        choice = _pick(rng, ["int", "int", "truncate", "extend", "none"])
        if choice == "none":
            op.customOptions = None
        elif choice == "truncate":
            op.customOptions = raw[: int(rng.integers(0, max(raw.size, 1)))]
        elif choice == "extend":
            op.customOptions = np.concatenate([raw, rng.integers(0, 256, int(rng.integers(1, 16))).astype(np.uint8)])
        elif raw.size >= 4:
            words = raw[: raw.size // 4 * 4].view("<i4").copy()
            words[int(rng.integers(words.size))] = int(_pick(rng, INT_EXTREMES + [4, 100000]))
            op.customOptions = np.concatenate([words.view(np.uint8), raw[words.size * 4:]])
        else:
            return False
        return True

    return {f.__name__: f for f in (sparsity_order, sparsity_block_map, sparsity_dim, sparsity_vector, sparsity_move,
                                    float16_data, custom_options)}


DECODER_MUTATIONS = _decoder_mutations()
#: What the decoder campaign draws from: the decoder mutations (twice as likely) and the general ones that
#: reach the same paths (shapes, types, buffers, operator inputs, op lists).
DECODER_CAMPAIGN = sorted(DECODER_MUTATIONS) * 2 + ["buffer_size", "op_count", "op_index", "tensor_shape",
                                                   "tensor_type", "tensor_buffer", "opcode_swap"]


ALL_TFLITE_MUTATIONS = {**TFLITE_MUTATIONS, **DECODER_MUTATIONS}


def mutate_tflite(seed_model: Any, rng: np.random.Generator,
                  mutations: list[str] | None = None) -> tuple[str, bytes]:
    """One structure-aware mutant of an unpacked model (1 to 3 field changes).

    ``mutations``: the names to draw from (repeat a name to make it likelier); by default the general
    ones (:data:`TFLITE_MUTATIONS`), see :data:`DECODER_CAMPAIGN` for the weight decoders' campaign.
    """
    names = sorted(TFLITE_MUTATIONS) if mutations is None else list(mutations)
    for _ in range(20):
        m = copy.deepcopy(seed_model)
        done = [n for n in (names[int(rng.integers(len(names)))] for _ in range(int(rng.integers(1, 4))))
                if ALL_TFLITE_MUTATIONS[n](m, rng)]
        if not done:
            continue
        try:
            return "+".join(done), pack_tflite(m)
        except Exception:  # noqa: BLE001 - the object API refuses some values (e.g. out-of-range ints)
            continue
    return "none", pack_tflite(seed_model)


# ---------------------------------------------------------------------------- seeds for the weight decoders

def encode_sparse(dense: np.ndarray, order: list[int], block_map: list[int], blocks: list[int], formats: list[int],
                  index_type: int = 1) -> tuple[np.ndarray, Any]:
    """``(stored values, SparsityParametersT)`` of ``dense`` in TFLite's sparse format.

    ``order`` is the traversal order over the ``n`` dimensions and the blocked ones (``block_map``, of
    sizes ``blocks``); ``formats[level]`` is 0 (DENSE) or 1 (SPARSE_CSR); ``index_type`` is the
    SparseIndexVector kind of the CSR vectors (1 int32, 2 uint16, 3 uint8).
    """
    schema = _schema()
    nd = dense.ndim
    bsize = {d: b for d, b in zip(block_map, blocks)}
    outer = [dense.shape[d] // bsize.get(d, 1) for d in range(nd)]
    split = [s for d in range(nd) for s in (outer[d], bsize.get(d, 1))]
    axes = [2 * d for d in range(nd)] + [2 * d + 1 for d in block_map] + \
        [2 * d + 1 for d in range(nd) if d not in block_map]
    expanded = dense.reshape(split).transpose(axes).reshape(outer + list(blocks)).transpose(order)
    levels = len(order)
    segments: list[list[int]] = [[0] for _ in range(levels)]
    indices: list[list[int]] = [[] for _ in range(levels)]
    values: list[np.ndarray] = []

    def walk(level: int, sub: np.ndarray) -> None:
        if level == levels:
            values.append(sub)
            return
        keep = range(sub.shape[0]) if formats[level] == 0 else [i for i in range(sub.shape[0]) if np.any(sub[i])]
        if formats[level] == 1:
            indices[level].extend(keep)
            segments[level].append(segments[level][-1] + len(keep))
        for i in keep:
            walk(level + 1, sub[i])

    walk(0, expanded)
    vec_cls = {1: (schema.Int32VectorT, np.int32), 2: (schema.Uint16VectorT, np.uint16),
               3: (schema.Uint8VectorT, np.uint8)}[index_type]
    sp = schema.SparsityParametersT()
    sp.traversalOrder = np.array(order, np.int32)
    sp.blockMap = np.array(block_map, np.int32)
    sp.dimMetadata = []
    for level in range(levels):
        dm = schema.DimensionMetadataT()
        dm.format = formats[level]
        dm.denseSize = int(expanded.shape[level])
        if formats[level] == 1:
            for attr, vals in (("arraySegments", segments[level]), ("arrayIndices", indices[level])):
                v = vec_cls[0]()
                v.values = np.array(vals, vec_cls[1])
                setattr(dm, attr, v)
                setattr(dm, attr + "Type", index_type)
        sp.dimMetadata.append(dm)
    return np.array(values, dense.dtype).reshape(-1), sp


def _pruned(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, density: float = 0.5) -> np.ndarray:
    return (rng.normal(0, 1, shape) * (rng.random(shape) < density)).astype(dtype)


def sparse_seed_model() -> bytes:
    """A small float model whose weights are stored sparse and decoded by DENSIFY (the three index vector types):

    ``y = FC(FC(x, DENSIFY(W1)), DEQUANTIZE(DENSIFY(W2 float16)), DENSIFY(b))``; W1 is 2x1-blocked CSR with
    uint8 indices, W2 float16 CSR in transposed traversal order with uint16 indices, b CSR with int32 ones.
    """
    from tflite_builder import ModelBuilder, T, opts

    rng = np.random.default_rng(7)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 8), "float32", name="x"))
    w1 = _pruned(rng, (4, 8), np.float32)
    w2 = _pruned(rng, (4, 4), np.float16)
    b = _pruned(rng, (4,), np.float32)

    def sparse_const(dense: np.ndarray, dtype: str, name: str, *enc: Any) -> int:
        values, sp = encode_sparse(dense, *enc)
        t = sg.tensor(T(dense.shape, dtype, data=values, name=name))
        sg.sg.tensors[t].sparsity = sp
        out = sg.tensor(T(dense.shape, dtype, name=name + "_densified"))
        sg.op("DENSIFY", [t], [out])
        return out

    w1d = sparse_const(w1, "float32", "w1", [0, 1, 2], [1], [2], [0, 1, 0], 3)
    w2h = sparse_const(w2, "float16", "w2", [1, 0], [], [], [0, 1], 2)
    w2f = sg.tensor(T((4, 4), "float32", name="w2_dequantized"))
    sg.op("DEQUANTIZE", [w2h], [w2f])
    bd = sparse_const(b, "float32", "b", [0], [], [], [1], 1)
    h = sg.tensor(T((1, 4), "float32", name="h"))
    sg.op("FULLY_CONNECTED", [x, w1d, -1], [h], opts("FullyConnectedOptions"))
    y = sg.tensor(T((1, 4), "float32", name="y"))
    sg.op("FULLY_CONNECTED", [h, w2f, bd], [y], opts("FullyConnectedOptions"))
    sg.io([x], [y])
    return mb.to_bytes()


def sparse_fc_seed_model(kind: str = "int8") -> bytes:
    """A FULLY_CONNECTED that reads sparse weights itself (no DENSIFY), in one of LiteRT's two sparse forms.

    ``kind="int8"``: int8 weights in 1x16 blocks (DENSE rows, SPARSE_CSR block columns with uint8 indices,
    DENSE block), as ``edge-convert prune`` writes them (micro and LiteRT run it). ``kind="float32"``: float32
    weights in random sparsity (DENSE rows, SPARSE_CSR columns with uint16 indices), which LiteRT runs with
    its generic sparse kernel and micro refuses (its sparse kernels are int8).
    """
    from tflite_builder import ModelBuilder, T, opts

    rng = np.random.default_rng(8)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    if kind == "int8":
        w = rng.integers(-127, 128, (4, 32)).astype(np.int8)
        w[:, 16:] = 0
        w[1] = 0
        values, sp = encode_sparse(w, [0, 1, 2], [1], [16], [0, 1, 0], 3)
        x = sg.tensor(T((1, 32), "int8", scale=0.05, zp=3, name="x"))
        wt = sg.tensor(T((4, 32), "int8", scale=0.02, zp=0, data=values, name="w_sparse_int8"))
        bt = sg.tensor(T((4,), "int32", scale=0.001, zp=0, data=rng.integers(-500, 500, 4).astype(np.int32),
                         name="b"))
        y = sg.tensor(T((1, 4), "int8", scale=0.1, zp=-2, name="y"))
    else:
        values, sp = encode_sparse(_pruned(rng, (3, 4), np.float32), [0, 1], [], [], [0, 1], 2)
        x = sg.tensor(T((1, 4), "float32", name="x"))
        wt = sg.tensor(T((3, 4), "float32", data=values, name="w_sparse_float"))
        bt = -1
        y = sg.tensor(T((1, 3), "float32", name="y"))
    sg.sg.tensors[wt].sparsity = sp
    sg.op("FULLY_CONNECTED", [x, wt, bt], [y], opts("FullyConnectedOptions"), version=8 if kind == "int8" else 1)
    sg.io([x], [y])
    return mb.to_bytes()


def float16_seed_model() -> bytes:
    """float16 weights decoded by DEQUANTIZE (CONV_2D weights and bias), then MediaPipe's custom
    ``Convolution2DTransposeBias`` (padding SAME, stride 2), as MediaPipe's segmentation models have them."""
    from tflite_builder import ModelBuilder, T, opts

    rng = np.random.default_rng(9)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    x = sg.tensor(T((1, 6, 6, 2), "float32", name="x"))
    consts = []
    for name, arr in (("conv_w", rng.normal(0, 1, (3, 3, 3, 2))), ("conv_b", rng.normal(0, 1, 3))):
        h = sg.tensor(T(arr.shape, "float16", data=arr.astype(np.float16), name=name + "_fp16"))
        f = sg.tensor(T(arr.shape, "float32", name=name))
        sg.op("DEQUANTIZE", [h], [f])
        consts.append(f)
    c = sg.tensor(T((1, 6, 6, 3), "float32", name="conv"))
    sg.op("CONV_2D", [x] + consts, [c], opts("Conv2DOptions", padding=0, strideW=1, strideH=1,
                                               fusedActivationFunction=1))
    w = sg.tensor(T((2, 3, 3, 3), "float32", data=rng.normal(0, 1, (2, 3, 3, 3)).astype(np.float32), name="up_w"))
    b = sg.tensor(T((2,), "float32", data=rng.normal(0, 1, 2).astype(np.float32), name="up_b"))
    y = sg.tensor(T((1, 12, 12, 2), "float32", name="y"))
    sg.op("custom:Convolution2DTransposeBias", [c, w, b], [y], custom_options=np.array([1, 2, 2], "<i4").tobytes())
    sg.io([x], [y])
    return mb.to_bytes()


def decoder_seeds() -> dict[str, bytes]:
    """The seed models of the weight-decoding paths (sparse tensors, float16 weights, the MediaPipe custom op)."""
    return {"sparse_float.tflite": sparse_seed_model(), "sparse_int8_fc.tflite": sparse_fc_seed_model("int8"),
            "sparse_float_fc.tflite": sparse_fc_seed_model("float32"),
            "float16.tflite": float16_seed_model()}


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


def run_in_workers(worker: str, items: list[str], args: tuple[str, ...] = (), env: Optional[dict[str, str]] = None,
                   per_item_timeout: float = PER_FILE_TIMEOUT_S) -> list[dict]:
    """Hand each of ``items`` (one line of text each) to ``python -c worker LISTING *args``, which prints one
    JSON line per item, in order; return those results.

    A worker that hangs (no line within ``per_item_timeout``, or ``WORKER_START_TIMEOUT_S`` for its first
    item, which also pays for the imports) is killed and its item counted ``{"status": "hang"}``; one that dies
    ``{"status": "signal" | "died", "rc": ...}``; a new worker takes the items left. The list goes through a
    file, not stdin, so neither side can block on a full pipe, and the output is read unbuffered
    (``os.read``), so a line that has arrived is never taken for a hang while it waits in a read-ahead buffer.
    """
    results: list[dict] = []
    todo = list(items)
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    while todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(f"{item}\n" for item in todo))
            listing = f.name
        proc = subprocess.Popen([sys.executable, "-c", worker, listing, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, env=env)
        assert proc.stdout is not None
        fd, pending, done = proc.stdout.fileno(), b"", 0
        while done < len(todo):
            if b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                results.append(json.loads(line))
                done += 1
                continue
            ready, _, _ = select.select([fd], [], [], WORKER_START_TIMEOUT_S if done == 0 else per_item_timeout)
            if not ready:
                proc.kill()
                proc.wait()
                results.append({"status": "hang"})
                done += 1
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                rc = proc.wait()
                results.append({"status": "signal" if rc < 0 else "died", "rc": rc})
                done += 1
                break
            pending += chunk
        else:
            proc.wait()
        proc.stdout.close()
        os.unlink(listing)
        todo = todo[done:]
    return results


def run_jobs(jobs: list[tuple[str, str]], limit: int = ADDRESS_SPACE_LIMIT) -> list[dict]:
    """Run (path, backend) loads in worker subprocesses; a dead or hung worker is replaced."""
    return run_in_workers(WORKER, [f"{p}\t{b}" for p, b in jobs], (str(limit),))


def make_mutants(seeds: dict[str, bytes], n_tflite: int, n_onnx: int, out_dir: Path, seed: int = 0,
                 onnx_seeds: Optional[dict[str, bytes]] = None,
                 mutations: list[str] | None = None) -> list[tuple[str, str, str]]:
    """Write mutants to ``out_dir``; return (path, backend, mutation kind) jobs for every backend of the format.

    ``mutations``: the TFLite mutation names to draw from (default: the general ones, see :func:`mutate_tflite`).
    """
    rng = np.random.default_rng(seed)
    jobs: list[tuple[str, str, str]] = []
    unpacked = {k: unpack_tflite(v) for k, v in seeds.items()}
    names = sorted(unpacked)
    for i in range(n_tflite):
        name = names[i % len(names)]
        kind, data = mutate_tflite(unpacked[name], rng, mutations)
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


def run_campaign(jobs: list, label: str) -> dict:
    """Run every mutant of ``jobs``; assert each load ran or ended in one clean error, and that every
    backend saw both outcomes. Returns the summary (see :func:`summarize`)."""
    results = run_jobs([(p, b) for p, b, _ in jobs])
    s = summarize(jobs, results)
    print(f"\n{label}: {len(jobs)} loads -> {s['counts']}")
    assert len(results) == len(jobs)
    assert not s["bad"], f"{len(s['bad'])} loads did not end cleanly, e.g. {s['bad'][:5]}"
    for backend, counts in s["counts"].items():
        assert counts.get("ok", 0) > 0 and counts.get("error", 0) > 0, (backend, counts)
    return s

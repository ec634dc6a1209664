"""Float TFLite importer breadth: small float32 models of LiteRT builtins, converted to int8 by us.

``python -m benchmarks.tflite_op_breadth [--ops TILE,POW] [--markdown | --json] [--workers N] [--timeout S]``

For every LiteRT builtin it can build (``tests/tflite_builder.py``'s ``ModelBuilder``, LiteRT's schema
object API), the benchmark writes a few small float32 models: random shapes, attribute values, negative
axes, broadcasting; one op each, or the op with the ops a real model feeds it from (a comparison before
SELECT, a RANGE added to the input). Per case:

- the reference: the float model on LiteRT (``ai_edge_litert``; ``tflite_runtime`` where LiteRT is
  missing), on a random input (N(0, 1); positive where the op needs it, e.g. SQRT, LOG, POW; near 1 for
  products; int32 ids in range for ONE_HOT and EMBEDDING_LOOKUP), variables reset before each input;
  a model LiteRT itself cannot run is ``skipped``;
- ``converters.pipeline.convert_model`` (profile rpi4-4gb, calibrated on 32 inputs from the same
  distribution): ``converted``, ``refused`` (the
  one-line message) or ``crashed`` (the worker process died, or a traceback that is not a clean refusal);
- per converted case: the SQNR (dB, lowest over float outputs) of our int8 .tflite on LiteRT against the
  float model on LiteRT (median over 4 held-out inputs), index outputs by exact match, and micro ==
  tflite-micro (``np.array_equal``,
  :func:`benchmarks.onnx_backend_models.micro_equal`) on the written .tflite.

Each case runs in its own forked worker process, ``--workers`` (default 2) at a time, so a native crash
(LiteRT, tflite-micro) is a row; a case over ``--timeout`` seconds (default 60) is stopped and skipped.
A full run takes ~3 min on two cores. Exit status 1 on a crash, a refusal that is not one clean line,
or micro != tflite-micro.

examples:
  python -m benchmarks.tflite_op_breadth --markdown
  python -m benchmarks.tflite_op_breadth --ops TILE,POW,ONE_HOT
  python -m benchmarks.tflite_op_breadth --json > tflite_op_breadth.json
  python -m benchmarks.tflite_op_breadth --rows tflite_op_breadth.json --markdown
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.onnx_backend_models import (  # noqa: E402
    CLEAN_ERRORS,
    PROFILE,
    _one_line,
    _sqnr,
    micro_equal,
)
from benchmarks.onnx_node_tests import _table  # noqa: E402

TIMEOUT = 60.0
CALIB, HELD_OUT = 32, 4
WORKERS = 2
STATES = ("converted", "refused", "skipped", "crashed")
REFERENCE = "LiteRT (ai_edge_litert) float"


@dataclass
class Case:
    """One small float model: ``build(sg)`` adds its tensors and ops to a subgraph (first input ``x``)."""

    name: str
    op: str
    build: Callable[[Any], None]
    #: input values: normal N(0,1), positive |N|+0.1, near1 1+N(0,1)/4 (products), int:<limit> int32 ids
    domain: str = "normal"
    notes: str = ""


@dataclass
class Net:
    """A helper around one subgraph: tensors by shape, constants, ops."""

    sg: Any
    ins: list[int] = field(default_factory=list)
    outs: list[int] = field(default_factory=list)

    def t(self, shape: Any, dtype: str = "float32", name: Optional[str] = None) -> int:
        from tflite_builder import T
        return self.sg.tensor(T(list(shape), dtype, name=name))

    def c(self, value: Any, dtype: str = "float32") -> int:
        from tflite_builder import T
        v = np.asarray(value, dtype=dtype if dtype != "bool" else np.bool_)
        return self.sg.tensor(T(list(v.shape), dtype, data=v))

    def x(self, shape: Any, dtype: str = "float32") -> int:
        k = self.t(shape, dtype, name="x" if not self.ins else f"x{len(self.ins)}")
        self.ins.append(k)
        return k

    def op(self, name: str, ins: list[int], outs: list[int], options: Any = None, version: int = 1) -> list[int]:
        self.sg.op(name, ins, outs, options, version)
        return outs

    def done(self, *outs: int) -> None:
        self.sg.io(self.ins, list(outs))


def _opts(kind: str, **fields: Any) -> Any:
    from tflite_builder import opts
    return opts(kind, **fields)


def _shape(rng: np.random.Generator, rank: int, lo: int = 1, hi: int = 6) -> list[int]:
    return [int(v) for v in rng.integers(lo, hi, size=rank)]


def _f(rng: np.random.Generator, shape: Any, scale: float = 0.5) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- case builders
def _unary(op: str, rank: int, rng: np.random.Generator, options: Any = None) -> Callable[[Any], None]:
    shape = _shape(rng, rank, 2, 6)

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t(shape)
        n.op(op, [x], [y], options)
        n.done(y)
    return build


def _binary(op: str, a_shape: list[int], b_shape: list[int], rng: np.random.Generator, options: Any = None,
            positive_b: bool = False, b_value: Optional[np.ndarray] = None
            ) -> Callable[[Any], None]:
    out = list(np.broadcast_shapes(tuple(a_shape), tuple(b_shape)))
    bv = b_value if b_value is not None else _f(rng, b_shape, 1.0)
    if positive_b:
        bv = np.abs(bv) + 0.5

    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(a_shape)
        b = n.c(bv)
        y = n.t(out)
        n.op(op, [x, b], [y], options)
        n.done(y)
    return build


def _unary_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    plain = ["ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "HARD_SWISH", "LOGISTIC", "NEG", "RELU", "RELU6",
             "RELU_N1_TO_1", "RELU_0_TO_1", "ROUND", "SIN", "SIGN", "SQUARE", "TANH"]
    positive = ["LOG", "SQRT", "RSQRT"]
    for op in plain + positive:
        for rank in (2, 4):
            cases.append(Case(f"{op.lower()}_r{rank}", op, _unary(op, rank, rng),
                              "positive" if op in positive else "normal"))
    for rank in (2, 3):
        cases.append(Case(f"softmax_r{rank}", "SOFTMAX",
                          _unary("SOFTMAX", rank, rng, _opts("SoftmaxOptions", beta=1.0))))
        cases.append(Case(f"log_softmax_r{rank}", "LOG_SOFTMAX", _unary("LOG_SOFTMAX", rank, rng)))
        cases.append(Case(f"leaky_relu_r{rank}", "LEAKY_RELU",
                          _unary("LEAKY_RELU", rank, rng, _opts("LeakyReluOptions", alpha=0.1))))
        cases.append(Case(f"l2_normalization_r{rank}", "L2_NORMALIZATION", _unary("L2_NORMALIZATION", rank, rng)))
    return cases


def _binary_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for op in ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD",
               "ATAN2"):
        for k, (a, b) in enumerate((([2, 3, 4], [2, 3, 4]), ([1, 4, 5, 3], [1, 1, 1, 3] if op == "ATAN2" else [3]),
                                    ([3, 1, 4], [1, 5, 1]))):
            opt = _opts(op.title().replace("_", "") + "Options") if op in ("ADD", "SUB", "MUL", "DIV") else None
            cases.append(Case(f"{op.lower()}_{k}", op, _binary(op, a, b, rng, opt,
                                                                positive_b=op in ("DIV", "FLOOR_DIV", "FLOOR_MOD"))))
    for k, e in enumerate((2.0, 3.0, 0.5, -0.5, -1.0, 1.5)):
        shape = _shape(rng, 3, 2, 5)
        cases.append(Case(f"pow_const_{e:g}", "POW", _binary("POW", shape, [], rng, b_value=np.array(e, np.float32)),
                          "positive"))
    cases.append(Case("pow_tensor", "POW", _binary("POW", [2, 3, 4], [4], rng, positive_b=True), "positive"))
    cases.append(Case("prelu_channel", "PRELU", _binary("PRELU", [1, 3, 4, 5], [1, 1, 5], rng)))
    return cases


def _reduce(op: str, shape: list[int], axes: list[int], keep: bool, domain_scale: float = 1.0) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        rank = len(shape)
        red = {a % rank for a in axes}
        out = [1 if d in red else s for d, s in enumerate(shape)] if keep else \
            [s for d, s in enumerate(shape) if d not in red]
        y = n.t(out)
        n.op(op, [x, n.c(np.array(axes, np.int32), "int32")], [y], _opts("ReducerOptions", keepDims=keep))
        n.done(y)
    return build


def _shape_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for op in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"):
        for k, (shape, axes, keep) in enumerate((([2, 3, 4], [-1], False), ([1, 4, 5, 3], [1, 2], True),
                                                 ([3, 4], [0], True))):
            cases.append(Case(f"{op.lower()}_{k}", op, _reduce(op, shape, axes, keep),
                              "near1" if op == "REDUCE_PROD" else "normal"))
    # TILE
    for k, (shape, mult) in enumerate((([2, 3], [2, 1]), ([1, 3, 4, 2], [1, 2, 1, 3]), ([4], [3]),
                                       ([2, 1, 3], [1, 4, 2]))):
        def tile(sg: Any, shape: list[int] = shape, mult: list[int] = mult) -> None:
            n = Net(sg)
            x = n.x(shape)
            y = n.t([s * m for s, m in zip(shape, mult)])
            n.op("TILE", [x, n.c(np.array(mult, np.int32), "int32")], [y])
            n.done(y)
        cases.append(Case(f"tile_{k}", "TILE", tile))
    # TRANSPOSE, REVERSE_V2, REVERSE_SEQUENCE, BROADCAST_TO, PAD, MIRROR_PAD, SLICE, STRIDED_SLICE
    for k, perm in enumerate(([1, 0, 2], [0, 3, 1, 2])):
        shape = _shape(rng, len(perm), 2, 5)

        def tr(sg: Any, shape: list[int] = shape, perm: list[int] = perm) -> None:
            n = Net(sg)
            x = n.x(shape)
            y = n.t([shape[p] for p in perm])
            n.op("TRANSPOSE", [x, n.c(np.array(perm, np.int32), "int32")], [y])
            n.done(y)
        cases.append(Case(f"transpose_{k}", "TRANSPOSE", tr))
    for k, axes in enumerate(([1], [-1])):
        cases.append(Case(f"reverse_v2_{k}", "REVERSE_V2", _with_const_int("REVERSE_V2", _shape(rng, 3, 2, 5), axes)))
    for k, (seq_dim, batch_dim) in enumerate(((1, 0), (0, 1))):
        def rs(sg: Any, s: int = seq_dim, b: int = batch_dim) -> None:
            shape = [3, 4, 2]
            n = Net(sg)
            x = n.x(shape)
            y = n.t(shape)
            lens = np.array([shape[s] - j % shape[s] for j in range(shape[b])], np.int32)
            n.op("REVERSE_SEQUENCE", [x, n.c(lens, "int32")], [y], _opts("ReverseSequenceOptions", seqDim=s,
                                                                          batchDim=b))
            n.done(y)
        cases.append(Case(f"reverse_sequence_{k}", "REVERSE_SEQUENCE", rs))
    for k, (shape, target) in enumerate((([3, 1], [2, 3, 4]), ([1, 4], [3, 4]))):
        def bt(sg: Any, shape: list[int] = shape, target: list[int] = target) -> None:
            n = Net(sg)
            x = n.x(shape)
            y = n.t(target)
            n.op("BROADCAST_TO", [x, n.c(np.array(target, np.int32), "int32")], [y], version=2)
            n.done(y)
        cases.append(Case(f"broadcast_to_{k}", "BROADCAST_TO", bt))
    for op, extra in (("PAD", None), ("MIRROR_PAD", _opts("MirrorPadOptions", mode=0))):
        def pad(sg: Any, op: str = op, extra: Any = extra) -> None:
            n = Net(sg)
            x = n.x([1, 4, 5, 3])
            p = np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)
            y = n.t([1, 7, 8, 3])
            n.op(op, [x, n.c(p, "int32")], [y], extra)
            n.done(y)
        cases.append(Case(op.lower(), op, pad))
    cases.append(Case("slice", "SLICE", _slice_case()))
    cases.append(Case("strided_slice", "STRIDED_SLICE", _strided_case()))
    cases.append(Case("gather_const_idx", "GATHER", _gather_case()))
    cases.append(Case("gather_nd", "GATHER_ND", _gather_nd_case()))
    for k, axis in enumerate((0, -1)):
        cases.append(Case(f"cumsum_{k}", "CUMSUM", _cumsum_case(axis)))
    for k, axis in enumerate((1, -1)):
        cases.append(Case(f"arg_max_{k}", "ARG_MAX", _argm("ARG_MAX", axis)))
        cases.append(Case(f"arg_min_{k}", "ARG_MIN", _argm("ARG_MIN", axis)))
    for k, kk in enumerate((1, 3)):
        cases.append(Case(f"topk_v2_k{kk}", "TOPK_V2", _topk(kk)))
    cases.append(Case("matrix_diag", "MATRIX_DIAG", _matrix_diag()))
    cases.append(Case("matrix_set_diag", "MATRIX_SET_DIAG", _matrix_set_diag()))
    for k, ids in enumerate(([0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 3])):
        cases.append(Case(f"segment_sum_{k}", "SEGMENT_SUM", _segment("SEGMENT_SUM", ids)))
    for op in ("UNSORTED_SEGMENT_SUM", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_MIN", "UNSORTED_SEGMENT_PROD"):
        cases.append(Case(op.lower(), op, _segment(op, [2, 0, 1, 0, 2]), "near1" if op.endswith("PROD") else "normal"))
    for k, shape in enumerate(([4, 3], [2, 3, 4])):
        cases.append(Case(f"scatter_nd_{k}", "SCATTER_ND", _scatter_nd(shape)))
    for k, (shape, upd, start) in enumerate((([4, 5], [2, 3], [1, 2]), ([1, 6, 4], [1, 2, 4], [0, 3, 0]))):
        cases.append(Case(f"dynamic_update_slice_{k}", "DYNAMIC_UPDATE_SLICE", _dus(shape, upd, start)))
    cases.append(Case("depth_to_space", "DEPTH_TO_SPACE", _d2s("DEPTH_TO_SPACE", [1, 2, 3, 8], [1, 4, 6, 2])))
    cases.append(Case("space_to_depth", "SPACE_TO_DEPTH", _d2s("SPACE_TO_DEPTH", [1, 4, 6, 2], [1, 2, 3, 8])))
    cases.append(Case("add_n", "ADD_N", _add_n()))
    cases.append(Case("pack_unpack", "PACK", _pack()))
    cases.append(Case("split", "SPLIT", _split()))
    cases.append(Case("concatenation", "CONCATENATION", _concat()))
    return cases


def _with_const_int(op: str, shape: list[int], value: list[int], out: Optional[list[int]] = None
                    ) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t(out or shape)
        n.op(op, [x, n.c(np.array(value, np.int32), "int32")], [y])
        n.done(y)
    return build


def _slice_case() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([3, 5, 4])
        y = n.t([2, 3, 4])
        n.op("SLICE", [x, n.c(np.array([1, 1, 0], np.int32), "int32"), n.c(np.array([2, 3, -1], np.int32), "int32")],
             [y])
        n.done(y)
    return build


def _strided_case() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 6, 8, 3])
        y = n.t([1, 3, 4, 3])
        c = [n.c(np.array(v, np.int32), "int32") for v in ([0, 0, 0, 0], [1, 6, 8, 3], [1, 2, 2, 1])]
        n.op("STRIDED_SLICE", [x] + c, [y], _opts("StridedSliceOptions"))
        n.done(y)
    return build


def _gather_case() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([5, 4])
        y = n.t([3, 4])
        n.op("GATHER", [x, n.c(np.array([4, 0, 2], np.int32), "int32")], [y], _opts("GatherOptions", axis=0))
        n.done(y)
    return build


def _gather_nd_case() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([4, 3, 2])
        y = n.t([2, 2])
        n.op("GATHER_ND", [x, n.c(np.array([[1, 2], [3, 0]], np.int32), "int32")], [y])
        n.done(y)
    return build


def _cumsum_case(axis: int) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([3, 5])
        y = n.t([3, 5])
        n.op("CUMSUM", [x, n.c(np.array(axis, np.int32), "int32")], [y], _opts("CumsumOptions"))
        n.done(y)
    return build


def _argm(op: str, axis: int) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 4, 5])
        y = n.t([2, 5] if axis == 1 else [2, 4], "int32")
        kind = "ArgMaxOptions" if op == "ARG_MAX" else "ArgMinOptions"
        n.op(op, [x, n.c(np.array([axis], np.int32), "int32")], [y], _opts(kind, outputType=2))
        n.done(x_copy(n, x, [2, 4, 5]), y)
    return build


def x_copy(n: Net, x: int, shape: list[int]) -> int:
    """A float output next to an index output (RELU of the input), so the model has something to quantize."""
    y = n.t(shape)
    n.op("RELU", [x], [y])
    return y


def _topk(k: int) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 6])
        v, i = n.t([2, k]), n.t([2, k], "int32")
        n.op("TOPK_V2", [x, n.c(np.array(k, np.int32), "int32")], [v, i])
        n.done(v, i)
    return build


def _matrix_diag() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 4])
        y = n.t([2, 4, 4])
        n.op("MATRIX_DIAG", [x], [y])
        n.done(y)
    return build


def _matrix_set_diag() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 3, 3])
        y = n.t([2, 3, 3])
        n.op("MATRIX_SET_DIAG", [x, n.c(np.ones((2, 3), np.float32))], [y])
        n.done(y)
    return build


def _segment(op: str, ids: list[int]) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([len(ids), 3])
        segs = max(ids) + 1
        y = n.t([segs, 3])
        ins = [x, n.c(np.array(ids, np.int32), "int32")]
        if op.startswith("UNSORTED"):
            ins.append(n.c(np.array([segs], np.int32), "int32"))
        n.op(op, ins, [y])
        n.done(y)
    return build


def _scatter_nd(shape: list[int]) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        idx = np.array([[shape[0] - 1], [0]], np.int32)
        upd = n.x([2] + shape[1:])
        y = n.t(shape)
        n.op("SCATTER_ND", [n.c(idx, "int32"), upd, n.c(np.array(shape, np.int32), "int32")], [y])
        n.done(y)
    return build


def _dus(shape: list[int], upd: list[int], start: list[int]) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        u = n.t(upd)  # the update: a slice of the input, scaled
        n.op("SLICE", [x, n.c(np.zeros(len(shape), np.int32), "int32"), n.c(np.array(upd, np.int32), "int32")], [u])
        u2 = n.t(upd)
        n.op("MUL", [u, n.c(np.array([2.0], np.float32))], [u2], _opts("MulOptions"))
        y = n.t(shape)
        n.op("DYNAMIC_UPDATE_SLICE", [x, u2, n.c(np.array(start, np.int32), "int32")], [y])
        n.done(y)
    return build


def _d2s(op: str, shape: list[int], out: list[int]) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x(shape)
        y = n.t(out)
        kind = "DepthToSpaceOptions" if op == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
        n.op(op, [x], [y], _opts(kind, blockSize=2))
        n.done(y)
    return build


def _add_n() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 3, 4])
        y = n.t([2, 3, 4])
        n.op("ADD_N", [x, n.c(np.ones((2, 3, 4), np.float32)), x], [y])
        n.done(y)
    return build


def _pack() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([3, 4])
        p = n.t([3, 2, 4])
        n.op("PACK", [x, x], [p], _opts("PackOptions", valuesCount=2, axis=1))
        a, b = n.t([3, 4]), n.t([3, 4])
        n.op("UNPACK", [p], [a, b], _opts("UnpackOptions", num=2, axis=-2))
        y = n.t([3, 4])
        n.op("SUB", [a, b], [y], _opts("SubOptions"))
        n.done(p, y)
    return build


def _split() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 6])
        a, b = n.t([2, 3]), n.t([2, 3])
        n.op("SPLIT", [n.c(np.array(1, np.int32), "int32"), x], [a, b], _opts("SplitOptions", numSplits=2))
        n.done(a, b)
    return build


def _concat() -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 3])
        y = n.t([2, 5])
        n.op("CONCATENATION", [x, n.c(np.ones((2, 2), np.float32))], [y], _opts("ConcatenationOptions", axis=-1))
        n.done(y)
    return build


def _other_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for k, (depth, axis) in enumerate(((5, -1), (4, 0))):
        def one_hot(sg: Any, depth: int = depth, axis: int = axis) -> None:
            n = Net(sg)
            ids = n.x([3], "int32")
            out = [3, depth] if axis == -1 else [depth, 3]
            y = n.t(out)
            n.op("ONE_HOT", [ids, n.c(np.array(depth, np.int32), "int32"), n.c(np.array(2.0, np.float32)),
                             n.c(np.array(-1.0, np.float32))], [y], _opts("OneHotOptions", axis=axis))
            n.done(y)
        cases.append(Case(f"one_hot_{k}", "ONE_HOT", one_hot, f"int:{depth}"))
    for k, (rows, dim, ids) in enumerate(((10, 4, 3), (7, 6, 5))):
        def emb(sg: Any, rows: int = rows, dim: int = dim, ids: int = ids) -> None:
            n = Net(sg)
            i = n.x([ids], "int32")
            y = n.t([ids, dim])
            n.op("EMBEDDING_LOOKUP", [i, n.c(_f(rng, (rows, dim)))], [y])
            n.done(y)
        cases.append(Case(f"embedding_lookup_{k}", "EMBEDDING_LOOKUP", emb, f"int:{rows}"))
    for k, (start, limit, delta) in enumerate(((0.0, 5.0, 1.0), (1.0, -2.0, -0.5))):
        def rng_(sg: Any, start: float = start, limit: float = limit, delta: float = delta) -> None:
            n = Net(sg)
            size = len(np.arange(start, limit, delta))
            x = n.x([2, size])
            r = n.t([size])
            n.op("RANGE", [n.c(np.array(start, np.float32)), n.c(np.array(limit, np.float32)),
                           n.c(np.array(delta, np.float32))], [r])
            y = n.t([2, size])
            n.op("ADD", [x, r], [y], _opts("AddOptions"))
            n.done(y)
        cases.append(Case(f"range_{k}", "RANGE", rng_))
    for k, shape in enumerate(([2, 3, 4], [1, 4, 4, 3])):
        def sel(sg: Any, shape: list[int] = shape) -> None:
            n = Net(sg)
            x = n.x(shape)
            m = n.t(shape, "bool")
            n.op("LESS", [x, n.c(np.zeros(1, np.float32))], [m])
            y = n.t(shape)
            n.op("SELECT", [m, x, n.c(_f(rng, shape))], [y])
            n.done(y)
        cases.append(Case(f"select_{k}", "SELECT", sel))
    for k, (radius, bias, alpha, beta) in enumerate(((2, 1.0, 0.1, 0.75), (1, 2.0, 0.5, 0.5), (2, 1.0, 0.2, 0.6))):
        def lrn(sg: Any, radius: int = radius, bias: float = bias, alpha: float = alpha, beta: float = beta) -> None:
            n = Net(sg)
            x = n.x([1, 3, 4, 8])
            y = n.t([1, 3, 4, 8])
            n.op("LOCAL_RESPONSE_NORMALIZATION", [x], [y],
                 _opts("LocalResponseNormalizationOptions", radius=radius, bias=bias, alpha=alpha, beta=beta))
            n.done(y)
        cases.append(Case(f"lrn_{k}", "LOCAL_RESPONSE_NORMALIZATION", lrn))
    for k, (batch, steps, size, hidden, tm) in enumerate(((1, 4, 3, 5, False), (2, 3, 4, 3, True))):
        cases.append(Case(f"unidirectional_sequence_rnn_{k}", "UNIDIRECTIONAL_SEQUENCE_RNN",
                          _seq_rnn(rng, batch, steps, size, hidden, tm)))
    cases.append(Case("rnn", "RNN", _rnn(rng)))
    for rank, memory in ((1, 1), (2, 1), (2, 5)):
        cases.append(Case(f"svdf_rank{rank}_memory{memory}", "SVDF", _svdf(rng, rank, memory)))
    for merge, time_major in ((True, False), (False, False), (True, True)):
        cases.append(Case(f"bidirectional_sequence_lstm_{'merged' if merge else 'split'}{'_time_major' * time_major}",
                          "BIDIRECTIONAL_SEQUENCE_LSTM", _bilstm(rng, merge, time_major)))
    cases.append(Case("unidirectional_sequence_lstm", "UNIDIRECTIONAL_SEQUENCE_LSTM", _unilstm(rng)))
    cases.append(Case("fully_connected", "FULLY_CONNECTED", _fc(rng)))
    cases.append(Case("conv_2d", "CONV_2D", _conv(rng)))
    cases.append(Case("depthwise_conv_2d", "DEPTHWISE_CONV_2D", _dwconv(rng)))
    cases.append(Case("batch_matmul", "BATCH_MATMUL", _bmm(rng)))
    for op in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        cases.append(Case(op.lower(), op, _pool(op)))
    for op in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
        cases.append(Case(op.lower(), op, _resize(op)))
    return cases


def _seq_rnn(rng: np.random.Generator, batch: int, steps: int, size: int, hidden: int, time_major: bool
             ) -> Callable[[Any], None]:
    w, r, b = _f(rng, (hidden, size)), _f(rng, (hidden, hidden), 0.3), _f(rng, (hidden,), 0.1)

    def build(sg: Any) -> None:
        from tflite_builder import T
        n = Net(sg)
        shape = [steps, batch, size] if time_major else [batch, steps, size]
        x = n.x(shape)
        h = sg.tensor(T([batch, hidden], "float32", variable=True, name="h"))
        y = n.t([steps, batch, hidden] if time_major else [batch, steps, hidden])
        n.op("UNIDIRECTIONAL_SEQUENCE_RNN", [x, n.c(w), n.c(r), n.c(b), h], [y],
             _opts("SequenceRNNOptions", timeMajor=time_major, fusedActivationFunction=4))
        n.done(y)
    return build


def _rnn(rng: np.random.Generator) -> Callable[[Any], None]:
    w, r, b = _f(rng, (4, 3)), _f(rng, (4, 4), 0.3), _f(rng, (4,), 0.1)

    def build(sg: Any) -> None:
        from tflite_builder import T
        n = Net(sg)
        x = n.x([2, 3])
        h = sg.tensor(T([2, 4], "float32", variable=True, name="h"))
        y = n.t([2, 4])
        n.op("RNN", [x, n.c(w), n.c(r), n.c(b), h], [y], _opts("RNNOptions", fusedActivationFunction=4))
        n.done(y)
    return build


def _svdf(rng: np.random.Generator, rank: int, memory: int) -> Callable[[Any], None]:
    units, size, batch = 3, 4, 1
    filters = units * rank
    wf, wt, b = _f(rng, (filters, size)), _f(rng, (filters, memory)), _f(rng, (units,), 0.1)

    def build(sg: Any) -> None:
        from tflite_builder import T
        n = Net(sg)
        x = n.x([batch, size])
        state = sg.tensor(T([batch, memory * filters], "float32", variable=True, name="state"))
        y = n.t([batch, units])
        n.op("SVDF", [x, n.c(wf), n.c(wt), n.c(b), state], [y], _opts("SVDFOptions", rank=rank,
                                                                          fusedActivationFunction=1))
        n.done(y)
    return build


def _lstm_inputs(n: Net, rng: np.random.Generator, size: int, hidden: int) -> list[int]:
    """The 20 weight/bias inputs of an LSTM direction after the input (no peepholes/projection)."""
    ins = [n.c(_f(rng, (hidden, size))) for _ in range(4)] + [n.c(_f(rng, (hidden, hidden), 0.3)) for _ in range(4)]
    ins += [-1, -1, -1]
    ins += [n.c(_f(rng, (hidden,), 0.1)) for _ in range(4)]
    ins += [-1, -1]
    return ins


def _bilstm(rng: np.random.Generator, merge: bool, time_major: bool) -> Callable[[Any], None]:
    batch, steps, size, hidden = (2, 3, 4, 3) if time_major else (1, 3, 4, 3)
    lead = [steps, batch] if time_major else [batch, steps]

    def build(sg: Any) -> None:
        from tflite_builder import T
        n = Net(sg)
        x = n.x(lead + [size])
        fw = _lstm_inputs(n, rng, size, hidden)
        bw = _lstm_inputs(n, rng, size, hidden)
        states = [sg.tensor(T([batch, hidden], "float32", variable=True, name=f"s{k}")) for k in range(4)]
        ins = [x] + fw + bw + states + [-1] * 9
        ys = [n.t(lead + [2 * hidden])] if merge else [n.t(lead + [hidden]) for _ in range(2)]
        n.op("BIDIRECTIONAL_SEQUENCE_LSTM", ins, ys,
             _opts("BidirectionalSequenceLSTMOptions", fusedActivationFunction=4, mergeOutputs=merge,
                   timeMajor=time_major))
        n.done(*ys)
    return build


def _unilstm(rng: np.random.Generator) -> Callable[[Any], None]:
    batch, steps, size, hidden = 1, 3, 4, 3

    def build(sg: Any) -> None:
        from tflite_builder import T
        n = Net(sg)
        x = n.x([batch, steps, size])
        w = _lstm_inputs(n, rng, size, hidden)
        states = [sg.tensor(T([batch, hidden], "float32", variable=True, name=f"s{k}")) for k in range(2)]
        y = n.t([batch, steps, hidden])
        n.op("UNIDIRECTIONAL_SEQUENCE_LSTM", [x] + w + states + [-1] * 4, [y],
             _opts("UnidirectionalSequenceLSTMOptions", fusedActivationFunction=4, timeMajor=False))
        n.done(y)
    return build


def _fc(rng: np.random.Generator) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 6])
        y = n.t([2, 4])
        n.op("FULLY_CONNECTED", [x, n.c(_f(rng, (4, 6))), n.c(_f(rng, (4,)))], [y], _opts("FullyConnectedOptions"))
        n.done(y)
    return build


def _conv(rng: np.random.Generator) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 6, 6, 3])
        y = n.t([1, 6, 6, 4])
        n.op("CONV_2D", [x, n.c(_f(rng, (4, 3, 3, 3))), n.c(_f(rng, (4,)))], [y],
             _opts("Conv2DOptions", padding=0, strideW=1, strideH=1))
        n.done(y)
    return build


def _dwconv(rng: np.random.Generator) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 6, 6, 3])
        y = n.t([1, 3, 3, 3])
        n.op("DEPTHWISE_CONV_2D", [x, n.c(_f(rng, (1, 3, 3, 3))), n.c(_f(rng, (3,)))], [y],
             _opts("DepthwiseConv2DOptions", padding=0, strideW=2, strideH=2, depthMultiplier=1))
        n.done(y)
    return build


def _bmm(rng: np.random.Generator) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([2, 3, 4])
        y = n.t([2, 3, 5])
        n.op("BATCH_MATMUL", [x, n.c(_f(rng, (2, 4, 5)))], [y], _opts("BatchMatMulOptions"))
        n.done(y)
    return build


def _pool(op: str) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 6, 6, 3])
        y = n.t([1, 3, 3, 3])
        n.op(op, [x], [y], _opts("Pool2DOptions", padding=1, strideW=2, strideH=2, filterWidth=2, filterHeight=2))
        n.done(y)
    return build


def _resize(op: str) -> Callable[[Any], None]:
    def build(sg: Any) -> None:
        n = Net(sg)
        x = n.x([1, 3, 4, 2])
        y = n.t([1, 6, 8, 2])
        kind = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
        n.op(op, [x, n.c(np.array([6, 8], np.int32), "int32")], [y], _opts(kind))
        n.done(y)
    return build


def all_cases() -> list[Case]:
    """Every case, in a fixed order (seeded shapes and weights)."""
    rng = np.random.default_rng(2026)
    return _unary_cases(rng) + _binary_cases(rng) + _shape_cases(rng) + _other_cases(rng)


# ---------------------------------------------------------------- one case
def _inputs(path: str, domain: str, n: int, seed: int) -> list[np.ndarray]:
    """``n`` input samples for the model's one input, as ``domain`` says."""
    from edge_runtime.formats.tflite import TFLiteModel

    sg = TFLiteModel.open(path).subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(int(d) for d in t.shape)
    if domain.startswith("int:"):
        return list(rng.integers(0, int(domain[4:]), size=shape).astype(np.int32))
    v = rng.standard_normal(shape).astype(np.float32)
    if domain == "near1":
        return list(1.0 + 0.25 * v)
    return list(np.abs(v) + 0.1 if domain == "positive" else v)


def _litert(path: str, xs: list[np.ndarray]) -> list[list[np.ndarray]]:
    from converters.report import litert_interpreter

    it = litert_interpreter(path)
    d = it.get_input_details()[0]
    out = []
    for x in xs:
        it.reset_all_variables()  # each input on its own: a recurrent op's state starts at zero
        it.set_tensor(d["index"], x.reshape(d["shape"]))
        it.invoke()
        out.append([it.get_tensor(o["index"]).copy() for o in it.get_output_details()])
    return out


def measure_case(case: Case, work: str, emit: Callable[[str], None] = lambda stage: None) -> dict[str, Any]:
    """One row: LiteRT's float reference, our conversion (or its one-line refusal), SQNR of our int8 on LiteRT
    against it, and micro == tflite-micro on the written .tflite. ``emit(stage)`` is told each stage before it
    runs (a native crash there ends the process)."""
    from tflite_builder import ModelBuilder

    row: dict[str, Any] = {"case": case.name, "op": case.op}
    src = os.path.join(work, f"{case.name}.tflite")
    try:
        mb = ModelBuilder()
        case.build(mb.subgraph("main"))
        mb.write(Path(src))
    except Exception as exc:  # noqa: BLE001
        row["skipped"] = f"cannot build ({_one_line(exc)[:120]})"
        return row
    xs = _inputs(src, case.domain, CALIB + HELD_OUT, seed=len(case.name))
    emit("LiteRT on the float model")
    try:
        refs = _litert(src, xs[CALIB:])
    except Exception as exc:  # noqa: BLE001 - LiteRT has no kernel or rejects the model
        row["skipped"] = f"LiteRT cannot run it ({_one_line(exc)[:120]})"
        return row
    from converters.pipeline import convert_model

    calib = np.stack(xs[:CALIB])
    t = time.perf_counter()
    emit("the conversion")
    try:
        res = convert_model(src, PROFILE, calib, os.path.join(work, "out"), plot=False, report_samples=8)
    except Exception as exc:  # noqa: BLE001 - every refusal is a row
        row.update(ok=False, error=_one_line(exc).replace(src + ": ", "").replace(src, "<model>"),
                   error_type=type(exc).__name__, error_lines=len(str(exc).strip().splitlines()))
        return row
    row["ok"] = True
    row["convert_s"] = round(time.perf_counter() - t, 2)
    try:
        from converters.report import TFLiteRunner

        lite = TFLiteRunner(res.tflite_path)
        dbs, exact = [], []
        for x, ref in zip(xs[CALIB:], refs):
            for k, (r, g) in enumerate(zip(ref, lite.run(x))):
                if r.dtype.kind in "iub":
                    exact.append(float(np.mean(np.asarray(g).reshape(r.shape) == r)))
                else:
                    dbs.append((k, _sqnr(r, np.asarray(g, np.float32))))
        if dbs:
            per = defaultdict(list)
            for k, v in dbs:
                per[k].append(v)
            row["db"] = round(min(float(np.median(v)) for v in per.values()), 2)
        if exact:
            row["exact"] = round(float(np.mean(exact)), 3)
    except Exception as exc:  # noqa: BLE001
        row["db_error"] = _one_line(exc)[:200]
    emit("micro / tflite-micro on the int8 model")
    row["micro"] = micro_equal(res.tflite_path, res.graph, [xs[CALIB]])
    return row


# ---------------------------------------------------------------- workers
def _child(case: Case, conn: Any) -> None:
    import warnings

    warnings.simplefilter("ignore")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # native logging stays out of the report
    with tempfile.TemporaryDirectory() as work:
        row = measure_case(case, work, emit=lambda r: conn.send(("part", r)))
    conn.send(("row", row))
    conn.close()


def run_all(cases: list[Case], workers: int, timeout: float) -> list[dict]:
    """Every case in its own forked process, ``workers`` at a time; a progress line goes to stderr."""
    ctx = mp.get_context("fork")
    todo = list(cases)
    running: list[tuple[Case, Any, Any, float, list[Optional[str]]]] = []
    rows: list[dict] = []
    t0 = time.monotonic()

    def finish(row: dict) -> None:
        rows.append(row)
        c = Counter(state(r) for r in rows)
        print(f"\r  {len(rows)}/{len(cases)} cases, {time.monotonic() - t0:.0f} s: "
              + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + "   ", end="", file=sys.stderr, flush=True)

    while todo or running:
        while todo and len(running) < workers:
            case = todo.pop(0)
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(case, child), daemon=True)
            p.start()
            child.close()
            running.append((case, p, parent, time.monotonic(), [None]))
        time.sleep(0.02)
        for item in list(running):
            case, p, conn, started, last = item
            result: Optional[dict] = None
            try:
                while conn.poll():
                    kind, r = conn.recv()
                    if kind == "row":
                        result = r
                    else:
                        last[0] = r
            except (EOFError, OSError):
                pass
            if result is None and p.is_alive() and time.monotonic() - started < timeout:
                continue
            if result is None and p.is_alive():
                p.kill()
                result = {"case": case.name, "op": case.op, "skipped": f"takes > {timeout:.0f} s (stopped)"}
            elif result is None:
                p.join()
                result = {"case": case.name, "op": case.op,
                          "crash": f"process exited {p.exitcode} during {last[0] or 'the model build'}"}
            p.join(timeout=5)
            running.remove(item)
            finish(result)
    print(file=sys.stderr)
    order = {c.name: k for k, c in enumerate(cases)}
    return sorted(rows, key=lambda r: order.get(r["case"], len(order)))


# ---------------------------------------------------------------- report
def state(r: dict) -> str:
    """One of :data:`STATES`."""
    if "crash" in r:
        return "crashed"
    if "skipped" in r:
        return "skipped"
    return "converted" if r.get("ok") else "refused"


def _clean(r: dict) -> bool:
    return r.get("error_type") in CLEAN_ERRORS and r.get("error_lines", 1) <= 1


def summary(rows: list[dict]) -> dict[str, Any]:
    """Counts by state, micro == tflite-micro, median SQNR, unclean refusals, mismatches."""
    conv = [r for r in rows if state(r) == "converted"]
    dbs = [r["db"] for r in conv if r.get("db") is not None]
    return {"cases": len(rows), "states": {k: sum(state(r) == k for r in rows) for k in STATES},
            "micro_equal": sum(r.get("micro") == "equal" for r in conv), "converted": len(conv),
            "median_db": round(float(np.median(dbs)), 1) if dbs else None,
            "below_20db": sorted(r["case"] for r in conv if r.get("db") is not None and r["db"] < 20),
            "unclean": [r["case"] for r in rows if state(r) == "refused" and not _clean(r)],
            "differs": [(r["case"], r.get("micro")) for r in conv if r.get("micro") != "equal"],
            "crashed": [(r["case"], r["crash"]) for r in rows if state(r) == "crashed"]}


def per_op(rows: list[dict]) -> list[list[str]]:
    """One line per op: cases, converted, refused, skipped, crashed, micro == TFLM, median dB, a reason."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["op"]].append(r)
    out = []
    for op in sorted(by):
        rs = by[op]
        c = Counter(state(r) for r in rs)
        conv = [r for r in rs if state(r) == "converted"]
        dbs = [r["db"] for r in conv if r.get("db") is not None]
        why = next((r.get("error", "") for r in rs if state(r) == "refused"),
                   next((r.get("skipped", r.get("crash", "")) for r in rs if state(r) in ("skipped", "crashed")), ""))
        out.append([op, str(len(rs)), str(c["converted"]), str(c["refused"]), str(c["skipped"]), str(c["crashed"]),
                    f"{sum(r.get('micro') == 'equal' for r in conv)}/{len(conv)}" if conv else "-",
                    f"{float(np.median(dbs)):.1f}" if dbs else "-", why.split("; supported ops:")[0][:140]])
    return out


def report(rows: list[dict], markdown: bool) -> str:
    """Counts, then the per-op table."""
    s = summary(rows)
    st = s["states"]
    parts = [f"{s['cases']} float TFLite cases: " + ", ".join(f"{k} {st[k]}" for k in STATES),
             f"converted: micro == tflite-micro on {s['micro_equal']}/{s['converted']}; SQNR of our int8 (LiteRT) "
             f"vs {REFERENCE}: median {s['median_db']} dB"
             + (f"; below 20 dB: {', '.join(s['below_20db'])}" if s["below_20db"] else "")]
    if s["crashed"]:
        parts.append("crashed: " + "; ".join(f"{c} ({w})" for c, w in s["crashed"]))
    if s["unclean"]:
        parts.append("refusals that are not one clean line: " + ", ".join(s["unclean"]))
    if s["differs"]:
        parts.append("micro != tflite-micro: " + ", ".join(f"{c} ({m})" for c, m in s["differs"]))
    parts.append("")
    parts.append(_table(["op", "cases", "converted", "refused", "skipped", "crashed", "micro == TFLM", "median dB",
                         "first refusal / skip"], per_op(rows), markdown))
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Measure the cases and print the report (or the rows as JSON)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tflite_op_breadth", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:" + __doc__.split("examples:")[1])
    ap.add_argument("--ops", default="", help="comma-separated builtin names (TILE,POW): only their cases")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per case (default {TIMEOUT:.0f})")
    ap.add_argument("--workers", type=int, default=WORKERS, help=f"worker processes (default {WORKERS})")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--rows", default="", help="print the report of a --json output instead of measuring")
    args = ap.parse_args(argv)
    if args.timeout <= 0 or args.workers < 1:
        ap.error("--timeout and --workers must be positive")
    if args.rows:
        try:
            rows = json.loads(Path(args.rows).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"--rows {args.rows}: cannot read it ({type(exc).__name__}: {exc})")
        print(report(rows, args.markdown))
        return 0
    cases = all_cases()
    ops = {s.strip().upper() for s in args.ops.split(",") if s.strip()}
    if ops:
        unknown = ops - {c.op for c in cases}
        if unknown:
            ap.error(f"no case builds {', '.join(sorted(unknown))}; ops with cases: "
                     f"{', '.join(sorted({c.op for c in cases}))}")
        cases = [c for c in cases if c.op in ops]
    import converters.pipeline  # noqa: F401 - imported once, before the workers fork

    rows = run_all(cases, args.workers, args.timeout)
    print(json.dumps(rows, indent=2) if args.json else report(rows, args.markdown))
    s = summary(rows)
    return 1 if (s["crashed"] or s["unclean"] or s["differs"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

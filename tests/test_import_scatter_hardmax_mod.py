"""ONNX Hardmax, ReduceProd, Mod, ScatterElements/Scatter/ScatterND and GridSample, written with ops
tflite-micro has (no SCATTER_ND, REDUCE_PROD or ONE_HOT there), and the one-line refusals of what stays
unsupported.

Each model is built with ``onnx.helper`` at random shapes, axes (negative ones too) and attributes and goes
through :func:`test_import_breadth_onnx.check_graph`: the float IR against the reference (onnxruntime on the
source model; the onnx package's ReferenceEvaluator for float ``Mod`` with ``fmod=0``, which onnxruntime
refuses before opset 28), the int8 .tflite on LiteRT and the QDQ .onnx on onnxruntime with a minimum SQNR
against that reference, and micro == tflite-micro (``np.array_equal``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from onnx import TensorProto, helper
from test_import_breadth_onnx import (
    CALIB,
    HELD_OUT,
    check_graph,
    ir_layout,
    onnx_reference,
    uniform,
)
from test_import_onnx_node_ops import _const, _vi
from test_import_onnx_node_ops import _save as save_node_model

from converters.importers.onnx import import_onnx
from edge_runtime.errors import UnsupportedModelError

N = CALIB + HELD_OUT


def _save(nodes: list, inputs: list, outputs: list, path: Path, inits: tuple = (), opset: int = 18) -> str:
    """A float model of ``nodes`` (opset 18 unless given), checked and saved."""
    return save_node_model(nodes, inputs, outputs, path, inits, opset)


def _refuses(path: str, *words: str, shapes: dict | None = None) -> None:
    """Import refuses ``path`` in one line containing every one of ``words``."""
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(path, shapes)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def _reference_evaluator(path: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The onnx package's reference implementation on the source model, outputs in IR layout."""
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(path)
    return lambda x: [ir_layout(np.asarray(v, np.float32), True) for v in ref.run(None, {"x": x})]


# -- Hardmax ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hardmax_random_axis(seed, tmp_path):
    """Hardmax at a random rank (2-5) and axis (negative half the time): ARG_MAX + GATHER of identity rows.
    Small integer inputs tie often, in float and in int8 alike, so ONNX's first-index rule is checked too:
    the int8 result must equal onnxruntime's exactly."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 6))
    shape = tuple(int(v) for v in rng.integers(2, 5, rank))
    axis = int(rng.integers(0, rank)) - (rank if seed % 2 else 0)
    node = helper.make_node("Hardmax", ["x"], ["y"], name="hardmax", axis=axis)
    path = _save([node], [_vi("x", shape)], [_vi("y", shape)], tmp_path / "hardmax.onnx", opset=13)
    graph = import_onnx(path, {"x": shape})
    assert {"ARG_MAX", "GATHER"} <= set(graph.op_counts())
    data = rng.integers(-3, 4, (N,) + shape).astype(np.float32)
    m = check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=90.0)
    assert m.tflite["y"] >= 90.0


def test_hardmax_opset11_flattens_trailing_axes(tmp_path):
    """Below opset 13 Hardmax takes one maximum over every axis from ``axis`` on."""
    shape = (3, 4, 5)
    node = helper.make_node("Hardmax", ["x"], ["y"], name="hardmax11", axis=1)
    path = _save([node], [_vi("x", shape)], [_vi("y", shape)], tmp_path / "hardmax11.onnx", opset=11)
    graph = import_onnx(path, {"x": shape})
    data = np.random.default_rng(5).integers(-3, 4, (N,) + shape).astype(np.float32)
    check_graph(graph, data, onnx_reference(path), tmp_path, min_sqnr=90.0)


# -- ReduceProd -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,keep,as_input", [(0, 1, False), (1, 0, True), (2, 0, False)])
def test_reduce_prod_random_axes(seed, keep, as_input, tmp_path):
    """ReduceProd over 1-2 random axes (negative ones too; axes as an attribute at opset 13 or an input at
    opset 18), keepdims 0/1: a tree of STRIDED_SLICE halves and MULs, no REDUCE_PROD."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 5))
    shape = tuple(int(v) for v in rng.integers(2, 7, rank))
    axes = sorted(int(a) for a in rng.choice(rank, int(rng.integers(1, 3)), replace=False))
    axes = [a - rank if k % 2 else a for k, a in enumerate(axes)]
    kept = tuple(1 if d in {a % rank for a in axes} else s for d, s in enumerate(shape))
    out_shape = kept if keep else tuple(s for d, s in enumerate(shape) if d not in {a % rank for a in axes})
    if as_input:
        node = helper.make_node("ReduceProd", ["x", "axes"], ["y"], name="prod", keepdims=keep)
        inits, opset = (_const("axes", np.array(axes, np.int64)),), 18
    else:
        node = helper.make_node("ReduceProd", ["x"], ["y"], name="prod", keepdims=keep, axes=axes)
        inits, opset = (), 13
    path = _save([node], [_vi("x", shape)], [_vi("y", out_shape)], tmp_path / "prod.onnx", inits, opset)
    graph = import_onnx(path, {"x": shape})
    assert "MUL" in graph.op_counts() and "REDUCE_PROD" not in graph.op_counts()
    data = (rng.random((N,) + shape, dtype=np.float32) * 0.8 + 0.6) * rng.choice([-1, 1], (N,) + shape)
    check_graph(graph, data.astype(np.float32), onnx_reference(path), tmp_path, min_sqnr=22.0)


def test_reduce_prod_too_many_values_is_one_line(tmp_path):
    """A product of more than MAX_REDUCED values per output element is refused in one line."""
    node = helper.make_node("ReduceProd", ["x"], ["y"], name="big_prod", keepdims=0)
    path = _save([node], [_vi("x", (1, 40, 40))], [_vi("y", ())], tmp_path / "big.onnx", opset=13)
    _refuses(path, "big_prod", "ReduceProd", "1600 values")


# -- Mod --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,fmod,divisor", [(0, 1, "const"), (1, 0, "const"), (2, 1, "activation")])
def test_mod_float(seed, fmod, divisor, tmp_path):
    """Float Mod, fmod=1 (C fmod) against onnxruntime and fmod=0 (floor) against onnx's reference, with a
    broadcast constant divisor or one computed from the input. A remainder is discontinuous: where int8's
    quotient rounds across an integer the remainder is off by |y|, so the bar is lower than for smooth ops."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 6, int(rng.integers(2, 5))))
    if divisor == "const":
        dshape = (1,) * (len(shape) - 1) + (shape[-1],) if seed % 2 else shape[1:]
        d = (rng.random(dshape) + 0.6) * rng.choice([-1, 1], dshape)
        nodes = [helper.make_node("Mod", ["x", "d"], ["y"], name="mod", fmod=fmod)]
        inits = (_const("d", d.astype(np.float32)),)
    else:  # y = |x| + 0.75, x scaled by 4
        nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "c"], ["d"]),
                 helper.make_node("Mul", ["x", "k"], ["x4"]),
                 helper.make_node("Mod", ["x4", "d"], ["y"], name="mod", fmod=fmod)]
        inits = (_const("c", np.array(0.75, np.float32)), _const("k", np.array(4.0, np.float32)))
    path = _save(nodes, [_vi("x", shape)], [_vi("y", shape)], tmp_path / "mod.onnx", inits, 17)
    graph = import_onnx(path, {"x": shape})
    assert "FLOOR" in graph.op_counts()
    ref = onnx_reference(path) if fmod else _reference_evaluator(path)
    check_graph(graph, uniform(shape, seed=seed) * 3, ref, tmp_path, min_sqnr=10.0)


def test_mod_refusals_are_one_line(tmp_path):
    """A zero divisor, and an integer Mod with fmod=1 of a dividend that can be negative (ONNX takes the
    dividend's sign, TFLite's FLOOR_MOD the divisor's), are refused in one line naming the node."""
    node = helper.make_node("Mod", ["x", "d"], ["y"], name="mod_zero", fmod=1)
    path = _save([node], [_vi("x", (2, 3))], [_vi("y", (2, 3))], tmp_path / "zero.onnx",
                 (_const("d", np.array([1.0, 0.0, 2.0], np.float32)),), 17)
    _refuses(path, "mod_zero", "zero")
    nodes = [helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
             helper.make_node("Sub", ["i", "two"], ["s"]),
             helper.make_node("Mod", ["s", "d"], ["y"], name="mod_int", fmod=1)]
    path = _save(nodes, [_vi("x", (4, 5))], [_vi("y", (4,), TensorProto.INT64)], tmp_path / "int.onnx",
                 (_const("d", np.array([3], np.int64)), _const("two", np.array([2], np.int64))), 17)
    _refuses(path, "mod_int", "dividend's sign")


# -- Scatter ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,reduction", [(0, "none"), (1, "add"), (2, "mul"), (3, "max"), (4, "min")])
def test_scatter_elements_random(seed, reduction, tmp_path):
    """ScatterElements on a random axis (negative half the time) with random, repeated and negative constant
    indices; constant updates into the input (reductions combine in index order)."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(2, 5, rank))
    axis = int(rng.integers(0, rank))
    ushape = tuple(int(rng.integers(1, s + 1)) for s in shape)
    idx = rng.integers(-shape[axis], shape[axis], ushape).astype(np.int64)
    upd = rng.uniform(-1, 1, ushape).astype(np.float32) + (1.0 if reduction == "mul" else 0.0)
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="scatter", reduction=reduction,
                            axis=axis - (rank if seed % 2 else 0))
    path = _save([node], [_vi("x", shape)], [_vi("y", shape)], tmp_path / "se.onnx",
                 (_const("i", idx), _const("u", upd)), 18)
    graph = import_onnx(path, {"x": shape})
    assert "GATHER" in graph.op_counts()
    check_graph(graph, uniform(shape, seed=seed), onnx_reference(path), tmp_path, min_sqnr=30.0)


@pytest.mark.parametrize("seed,reduction", [(0, "none"), (1, "add"), (2, "max")])
def test_scatter_nd_updates_from_input(seed, reduction, tmp_path):
    """ScatterND of run-time updates (computed from the input) into a constant, with index tuples of a
    random length (repeated tuples with a reduction)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 5, 3))
    k = int(rng.integers(1, 4))
    count = int(rng.integers(1, 4))
    tuples = np.stack([rng.integers(-s, s, count) for s in shape[:k]], axis=-1).astype(np.int64)
    if reduction == "none":  # distinct tuples (ONNX leaves repeated ones undefined without a reduction)
        tuples = np.unique(np.mod(tuples, shape[:k]), axis=0)
    count = len(tuples)
    ushape = (count,) + shape[k:]
    x_shape = (count,) + shape[k:]
    data = rng.uniform(-1, 1, shape).astype(np.float32)
    nodes = [helper.make_node("Tanh", ["x"], ["u"]),
             helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="scatter_nd", reduction=reduction)]
    path = _save(nodes, [_vi("x", x_shape)], [_vi("y", shape)], tmp_path / "snd.onnx",
                 (_const("d", data), _const("i", tuples)), 18)
    graph = import_onnx(path, {"x": x_shape})
    assert ushape == x_shape and "GATHER" in graph.op_counts()
    check_graph(graph, uniform(x_shape, seed=seed) * 2, onnx_reference(path), tmp_path, min_sqnr=30.0)


def test_scatter_opset10(tmp_path):
    """Scatter (opset 9-10's name of ScatterElements without reduction)."""
    shape = (3, 4)
    node = helper.make_node("Scatter", ["x", "i", "u"], ["y"], name="scatter10", axis=1)
    path = _save([node], [_vi("x", shape)], [_vi("y", shape)], tmp_path / "s10.onnx",
                 (_const("i", np.array([[1, 3], [0, 2], [3, 0]], np.int64)),
                  _const("u", np.array([[5, -5], [2, 2], [-1, 1]], np.float32) * 0.3)), 10)
    graph = import_onnx(path, {"x": shape})
    check_graph(graph, uniform(shape), onnx_reference(path), tmp_path, min_sqnr=35.0)


def test_scatter_refusals_are_one_line(tmp_path):
    """Indices computed at run time (an ArgMax) are refused in one line naming the node."""
    nodes = [helper.make_node("ArgMax", ["x"], ["i"], axis=0, keepdims=1),
             helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], name="live_indices")]
    path = _save(nodes, [_vi("x", (3, 3))], [_vi("y", (3, 3))], tmp_path / "live.onnx",
                 (_const("u", np.ones((1, 3), np.float32)),))
    _refuses(path, "live_indices", "run-time indices")


# -- GridSample -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,padding,align,opset,min_db", [
    ("linear", "zeros", 0, 20, 22.0), ("bilinear", "border", 1, 16, 24.0), ("nearest", "zeros", 1, 20, 12.0),
    ("nearest", "border", 0, 20, 12.0), ("linear", "reflection", 0, 20, 20.0), ("nearest", "reflection", 1, 16, 12.0)])
def test_grid_sample_grid_from_input(mode, padding, align, opset, min_db, tmp_path):
    """GridSample of the input with a grid computed from it (k * tanh(x), moved to [N, Ho, Wo, 2]; k = 1.2, or
    2.5 for reflection, which then folds positions up to twice), so both are activations: tent weights and
    one BATCH_MATMUL. Nearest loses more (a rounding flip moves a whole pixel), and the int8 grid holds a
    position to about W / 255 pixels."""
    rng = np.random.default_rng(int(align) + 2 * opset)
    n, h, w = 2, int(rng.integers(3, 6)), int(rng.integers(3, 7))
    shape = (n, 2, h, w)
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Mul", ["t", "k"], ["t2"]),
             helper.make_node("Transpose", ["t2"], ["g"], perm=[0, 2, 3, 1]),
             helper.make_node("GridSample", ["x", "g"], ["y"], name="grid_sample", mode=mode, padding_mode=padding,
                              align_corners=align)]
    path = _save(nodes, [_vi("x", shape)], [_vi("y", shape)], tmp_path / "gs.onnx",
                 (_const("k", np.array([2.5 if padding == "reflection" else 1.2], np.float32)),), opset)
    graph = import_onnx(path, {"x": shape})
    assert "BATCH_MATMUL" in graph.op_counts()
    check_graph(graph, uniform(shape, seed=opset) * 2, onnx_reference(path), tmp_path, min_sqnr=min_db)


@pytest.mark.parametrize("mode,padding,align", [("linear", "zeros", 1), ("nearest", "border", 0)])
def test_grid_sample_volumetric(mode, padding, align, tmp_path):
    """Volumetric GridSample (X [N, C, D, H, W], grid [N, Do, Ho, Wo, 3] computed from the input): three tents."""
    shape = (1, 3, 3, 4, 3)
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Mul", ["t", "k"], ["t2"]),
             helper.make_node("Transpose", ["t2"], ["g"], perm=[0, 2, 3, 4, 1]),
             helper.make_node("GridSample", ["x", "g"], ["y"], name="grid_sample3d", mode=mode, padding_mode=padding,
                              align_corners=align)]
    path = _save(nodes, [_vi("x", shape)], [_vi("y", shape)], tmp_path / "gs3.onnx",
                 (_const("k", np.array([1.2], np.float32)),), 20)
    graph = import_onnx(path, {"x": shape})
    assert graph.op_counts().get("BATCH_MATMUL") == 1
    check_graph(graph, uniform(shape, seed=3) * 2, onnx_reference(path), tmp_path,
                min_sqnr=12.0 if mode == "nearest" else 20.0)


def test_grid_sample_constant_grid(tmp_path):
    """A constant grid: the weights are a constant [N, P, H*W] matrix (bilinear, reflection, align_corners=0)."""
    rng = np.random.default_rng(7)
    shape = (1, 3, 4, 5)
    grid = rng.uniform(-2.5, 2.5, (1, 3, 6, 2)).astype(np.float32)
    node = helper.make_node("GridSample", ["x", "g"], ["y"], name="grid_sample", padding_mode="reflection")
    path = _save([node], [_vi("x", shape)], [_vi("y", (1, 3, 3, 6))], tmp_path / "gsc.onnx", (_const("g", grid),),
                 16)
    graph = import_onnx(path, {"x": shape})
    assert graph.op_counts().get("BATCH_MATMUL") == 1
    check_graph(graph, uniform(shape), onnx_reference(path), tmp_path, min_sqnr=30.0)


@pytest.mark.parametrize("attrs,x_shape,g_shape,words", [
    ({"mode": "cubic"}, (1, 1, 3, 3), (1, 2, 2, 2), ("cubic", "constant grid")),
    ({}, (1, 1, 300, 300), (1, 40, 40, 2), ("weight matrix",))])
def test_grid_sample_refusals_are_one_line(attrs, x_shape, g_shape, words, tmp_path):
    """Cubic mode and oversized samplings of a grid computed at run time (a constant grid takes the sparse
    gather form): one line naming the node."""
    out = x_shape[:2] + g_shape[1:-1]
    node = helper.make_node("GridSample", ["x", "g"], ["y"], name="gs_refused", **attrs)
    nodes = [helper.make_node("Sigmoid", ["gi"], ["g"]), node]
    path = _save(nodes, [_vi("x", x_shape), _vi("gi", g_shape)], [_vi("y", out)], tmp_path / "gsr.onnx", (), 20)
    _refuses(path, "gs_refused", *words, shapes={"x": x_shape})

"""The C generator's added ops (issue 19: "then every op micro supports"), against micro and tflite-micro.

Small int8 graphs, each chaining several of the ops with random shapes, axes, paddings, strides
and per-tensor scales/zero points (seeded), are exported with ``generate_c``, built for the host
(gcc) and run on random inputs; every output must equal micro's (``np.array_equal``), and micro's
must equal tflite-micro's on the same inputs. One graph also runs on the emulated Cortex-M4.
Ops covered: data movement (PAD, PADV2, MIRROR_PAD, CONCATENATION, PACK, STRIDED_SLICE, SLICE,
SPLIT, SPLIT_V, UNPACK, TRANSPOSE, GATHER, RESIZE_NEAREST_NEIGHBOR, REVERSE_V2, BROADCAST_TO,
DEPTH_TO_SPACE, SPACE_TO_DEPTH), EXPAND_DIMS, MEAN, SUM, MAXIMUM, MINIMUM, PRELU,
RESIZE_BILINEAR, BATCH_MATMUL, TRANSPOSE_CONV, and the resource variables of streaming models
(CALL_ONCE, VAR_HANDLE, READ_VARIABLE, ASSIGN_VARIABLE) with a uint8 output (QUANTIZE), run as one
stream without reset.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from converters.codegen.emit import generate_c
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel
from firmware_sim.mcu.runner import run
from tests import tflite_builder as tb
from tests.test_mcu_c import need
from tests.tflite_builder import T, opts

INPUTS = 12


class Graph:
    """A one-input, one-output int8 graph built op by op (``tflite_builder.ModelBuilder``)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.mb = tb.ModelBuilder()
        self.sg = self.mb.subgraph("main")
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.quant: dict[int, tuple[float, int]] = {}

    def act(self, shape: tuple[int, ...], q: "tuple[float, int] | None" = None) -> int:
        """A new int8 activation tensor (random scale and zero point unless ``q``)."""
        q = q or (float(self.rng.uniform(0.01, 0.1)), int(self.rng.integers(-20, 21)))
        i = self.sg.tensor(T(shape, "int8", scale=[q[0]], zp=[q[1]]))
        self.shapes[i], self.quant[i] = tuple(shape), q
        return i

    def like(self, src: int, shape: tuple[int, ...]) -> int:
        """An activation with ``src``'s scale and zero point (data movement keeps them)."""
        return self.act(shape, self.quant[src])

    def const(self, values: "np.ndarray | list[int]", dtype: str = "int32",
              q: "tuple[float, int] | None" = None) -> int:
        """A constant tensor."""
        v = np.asarray(values, np.dtype(dtype))
        if q is None:
            return self.sg.tensor(T(v.shape, dtype, data=v))
        return self.sg.tensor(T(v.shape, dtype, scale=[q[0]], zp=[q[1]], data=v))

    def op(self, name: str, ins: list[int], outs: list[int], options: "tuple[str, object] | None" = None) -> None:
        """Add an operator."""
        self.sg.op(name, ins, outs, options)

    def write(self, path: Path, x: int, y: int) -> Path:
        """Write the model with input ``x`` and output ``y``."""
        self.sg.io([x], [y])
        return self.mb.write(path)


def g_split_concat(g: Graph) -> tuple[int, int]:
    """SPLIT on a random axis, MAXIMUM of the halves (broadcast), CONCATENATION with a constant."""
    rng = g.rng
    shape = [1, int(rng.integers(2, 6)), int(rng.integers(2, 7)), 2 * int(rng.integers(1, 4))]
    axis = int(rng.choice([1, 3])) if shape[1] % 2 == 0 else 3
    x = g.act(tuple(shape))
    half = list(shape)
    half[axis] //= 2
    a, b = g.like(x, tuple(half)), g.like(x, tuple(half))
    g.op("SPLIT", [g.const([axis]), x], [a, b], opts("SplitOptions", numSplits=2))
    m = g.like(x, tuple(half))
    g.op("MAXIMUM", [a, b], [m])
    n = g.like(x, tuple(half))
    g.op("MINIMUM", [m, g.const(rng.integers(-128, 128, (1, 1, 1, half[3])), "int8", g.quant[x])], [n])
    extra = list(half)
    extra[axis] = 1
    cst = g.const(rng.integers(-128, 128, extra), "int8", g.quant[x])
    out = list(half)
    out[axis] = 2 * half[axis] + 1
    y = g.like(x, tuple(out))
    g.op("CONCATENATION", [b, cst, n], [y], opts("ConcatenationOptions", axis=axis - 4))
    return x, y


def g_pad_slice_mean(g: Graph) -> tuple[int, int]:
    """PADV2 (constant value), STRIDED_SLICE (negative strides, masks), TRANSPOSE, MEAN."""
    rng = g.rng
    shape = (1, int(rng.integers(3, 7)), int(rng.integers(3, 7)), int(rng.integers(2, 5)))
    x = g.act(shape)
    pads = rng.integers(0, 3, (4, 2))
    pads[0] = 0
    ps = tuple(int(s + a + b) for s, (a, b) in zip(shape, pads))
    p = g.like(x, ps)
    value = g.const([int(rng.integers(-128, 128))], "int8", g.quant[x])
    g.op("PADV2", [x, g.const(pads), value], [p])
    # rows reversed with stride -2 from the end, columns from 1 with stride 2, channels all (mask)
    rows = len(range(ps[1] - 1, -1, -2))
    cols = len(range(1, ps[2], 2))
    s = g.like(x, (1, rows, cols, ps[3]))
    g.op("STRIDED_SLICE", [p, g.const([0, -1, 1, 0]), g.const([1, -ps[1] - 1, ps[2], 0]), g.const([1, -2, 2, 1])],
         [s], opts("StridedSliceOptions", beginMask=0, endMask=8, shrinkAxisMask=0))
    t = g.like(x, (1, ps[3], rows, cols))
    g.op("TRANSPOSE", [s, g.const([0, 3, 1, 2])], [t])
    y = g.act((1, ps[3], 1, 1))
    g.op("MEAN", [t, g.const([2, -1])], [y], opts("ReducerOptions", keepDims=True))
    return x, y


def g_gather_resize(g: Graph) -> tuple[int, int]:
    """GATHER (constant indices, repeated and reordered), RESIZE_NEAREST_NEIGHBOR (half-pixel
    centers), MIRROR_PAD, REVERSE_V2, SLICE."""
    rng = g.rng
    h, w, c = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(3, 6))
    x = g.act((1, h, w, c))
    idx = rng.integers(0, c, 5)
    ga = g.like(x, (1, h, w, 5))
    g.op("GATHER", [x, g.const(idx)], [ga], opts("GatherOptions", axis=3, batchDims=0))
    oh, ow = int(rng.integers(h, 2 * h + 2)), int(rng.integers(w, 2 * w + 2))
    r = g.like(x, (1, oh, ow, 5))
    g.op("RESIZE_NEAREST_NEIGHBOR", [ga, g.const([oh, ow])], [r],
         opts("ResizeNearestNeighborOptions", alignCorners=False, halfPixelCenters=True))
    mp = g.like(x, (1, oh + 2, ow + 1, 5))
    g.op("MIRROR_PAD", [r, g.const([[0, 0], [1, 1], [0, 1], [0, 0]])], [mp], opts("MirrorPadOptions", mode=1))
    rv = g.like(x, (1, oh + 2, ow + 1, 5))
    g.op("REVERSE_V2", [mp, g.const([1, 2])], [rv])
    y = g.like(x, (1, oh, ow - 1, 3))
    g.op("SLICE", [rv, g.const([0, 1, 2, 1]), g.const([-1, oh, -1, 3])], [y])
    return x, y


def g_prelu_sum(g: Graph) -> tuple[int, int]:
    """PRELU (per-channel alpha), SPLIT_V, PACK, UNPACK, SUM (keep_dims off), EXPAND_DIMS."""
    rng = g.rng
    h, w, c = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(3, 6))
    x = g.act((1, h, w, c))
    alpha = g.const(rng.integers(-128, 128, (1, 1, c)), "int8", (float(rng.uniform(0.002, 0.02)), 5))
    pr = g.act((1, h, w, c))
    g.op("PRELU", [x, alpha], [pr])
    a, b = g.like(pr, (1, h, w, 1)), g.like(pr, (1, h, w, c - 1))
    g.op("SPLIT_V", [pr, g.const([1, -1]), g.const([3])], [a, b], opts("SplitVOptions", numSplits=2))
    pk = g.like(pr, (2, 1, h, w, 1))
    b0 = g.like(pr, (1, h, w, 1))
    g.op("SLICE", [b, g.const([0, 0, 0, 0]), g.const([1, h, w, 1])], [b0])
    g.op("PACK", [a, b0], [pk], opts("PackOptions", valuesCount=2, axis=0))
    u0, u1 = g.like(pr, (1, h, w, 1)), g.like(pr, (1, h, w, 1))
    g.op("UNPACK", [pk], [u0, u1], opts("UnpackOptions", num=2, axis=0))
    mx = g.like(pr, (1, h, w, 1))
    g.op("MAXIMUM", [u1, u0], [mx])
    s = g.act((1, w))
    g.op("SUM", [mx, g.const([1, 3])], [s], opts("ReducerOptions", keepDims=False))
    y = g.like(s, (1, 1, w))
    g.op("EXPAND_DIMS", [s, g.const([1])], [y])
    return x, y


def g_space_depth(g: Graph) -> tuple[int, int]:
    """DEPTH_TO_SPACE, SPACE_TO_DEPTH (another block), BROADCAST_TO, PAD."""
    rng = g.rng
    h, w = 2 * int(rng.integers(1, 3)), 2 * int(rng.integers(1, 3))
    x = g.act((1, h, w, 8))
    d = g.like(x, (1, 2 * h, 2 * w, 2))
    g.op("DEPTH_TO_SPACE", [x], [d], opts("DepthToSpaceOptions", blockSize=2))
    s = g.like(x, (1, h, w, 8))
    g.op("SPACE_TO_DEPTH", [d], [s], opts("SpaceToDepthOptions", blockSize=2))
    sl = g.like(x, (1, 1, w, 8))
    g.op("SLICE", [s, g.const([0, h - 1, 0, 0]), g.const([1, 1, w, 8])], [sl])
    bt = g.like(x, (1, 3, w, 8))
    g.op("BROADCAST_TO", [sl, g.const([1, 3, w, 8])], [bt])
    y = g.like(x, (1, 4, w + 3, 8))
    g.op("PAD", [bt, g.const([[0, 0], [1, 0], [2, 1], [0, 0]])], [y])
    return x, y


def g_layers(g: Graph) -> tuple[int, int]:
    """TRANSPOSE_CONV (per-channel weights, bias, SAME or VALID), RESIZE_BILINEAR (random corner and
    half-pixel flags), RESHAPE, BATCH_MATMUL with a constant rhs, SPLIT, then BATCH_MATMUL of two
    activations (adj_y)."""
    rng = g.rng
    h, w, c, f = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(2, 5))
    kh, kw, s = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
    same = bool(rng.integers(0, 2))
    oh, ow = (h * s, w * s) if same else ((h - 1) * s + kh, (w - 1) * s + kw)
    x = g.act((1, h, w, c), (0.05, int(rng.integers(-10, 11))))
    wt = g.sg.tensor(T((f, kh, kw, c), "int8", scale=list(rng.uniform(0.005, 0.02, f)), zp=[0] * f, axis=0,
                       data=rng.integers(-127, 128, (f, kh, kw, c)).astype(np.int8)))
    bias = g.sg.tensor(T((f,), "int32", scale=[1e-4] * f, zp=[0] * f,
                         data=rng.integers(-2000, 2000, f).astype(np.int32)))
    tc = g.act((1, oh, ow, f), (0.08, int(rng.integers(-10, 11))))
    g.op("TRANSPOSE_CONV", [g.const([1, oh, ow, f]), wt, x, bias], [tc],
         opts("TransposeConvOptions", padding=0 if same else 1, strideW=s, strideH=s))
    rh, rw = int(rng.integers(2, 2 * oh + 2)), int(rng.integers(2, 2 * ow + 2))
    corners = bool(rng.integers(0, 2))
    rb = g.like(tc, (1, rh, rw, f))
    g.op("RESIZE_BILINEAR", [tc, g.const([rh, rw])], [rb],
         opts("ResizeBilinearOptions", alignCorners=corners, halfPixelCenters=not corners and bool(rng.integers(0, 2))))
    rs = g.like(rb, (1, rh * rw, f))
    g.op("RESHAPE", [rb, g.const([1, rh * rw, f])], [rs], opts("ReshapeOptions", newShape=[1, rh * rw, f]))
    u = 2 * int(rng.integers(1, 4))
    rhs = g.const(rng.integers(-128, 128, (f, u)), "int8", (0.02, int(rng.integers(-5, 6))))
    mm = g.act((1, rh * rw, u), (0.1, int(rng.integers(-10, 11))))
    g.op("BATCH_MATMUL", [rs, rhs], [mm], opts("BatchMatMulOptions", adjX=False, adjY=False))
    a, b = g.like(mm, (1, rh * rw, u // 2)), g.like(mm, (1, rh * rw, u // 2))
    g.op("SPLIT", [g.const([2]), mm], [a, b], opts("SplitOptions", numSplits=2))
    y = g.act((1, rh * rw, rh * rw), (0.3, int(rng.integers(-10, 11))))
    g.op("BATCH_MATMUL", [a, b], [y], opts("BatchMatMulOptions", adjX=False, adjY=True))
    return x, y


GRAPHS: dict[str, Callable[[Graph], tuple[int, int]]] = {
    "split_concat": g_split_concat, "pad_slice_mean": g_pad_slice_mean, "gather_resize": g_gather_resize,
    "prelu_sum": g_prelu_sum, "space_depth": g_space_depth, "layers": g_layers}


def make(name: str, seed: int, d: Path) -> Path:
    g = Graph(np.random.default_rng(seed))
    x, y = GRAPHS[name](g)
    return g.write(d / f"{name}_{seed}.tflite", x, y)


def inputs_for(path: Path, n: int, seed: int) -> np.ndarray:
    m = TFLiteModel.open(path)
    shape = tuple(m.main.tensors[m.main.inputs[0]].shape)
    return np.random.default_rng(seed).integers(-128, 128, size=(n,) + shape, dtype=np.int8)


def references(path: Path, x: np.ndarray) -> np.ndarray:
    """micro's outputs, after checking them against tflite-micro's (``np.array_equal``)."""
    mic = np.stack([o[0] for o in tb.run_micro(path, [[r] for r in x])])
    ref = np.stack([o[0] for o in tb.run_tflm(path, [[r] for r in x])])
    assert np.array_equal(mic, ref), f"{path.name}: micro differs from tflite-micro"
    return mic


CASES = [(name, seed) for name in GRAPHS for seed in (1, 2)]


@pytest.mark.parametrize("name,seed", CASES)
def test_host_equals_micro_and_tflm(name: str, seed: int, tmp_path: Path) -> None:
    need("host")
    path = make(name, seed, tmp_path)
    manifest = generate_c(path, tmp_path / "c")
    ops = {op.name for op in TFLiteModel.open(path).main.operators}
    assert set(manifest["ops"]) == ops
    in_place = {manifest["ops"][i] for i in manifest["in_place_ops"]}
    if name in ("split_concat", "prelu_sum"):  # elementwise ops overwrite their dying same-shaped input
        assert "MAXIMUM" in in_place
    x = inputs_for(path, INPUTS, seed)
    res = run(tmp_path / "c", "host", x)
    mic = references(path, x)
    assert np.array_equal(res.outputs.reshape(mic.shape), mic)


def test_cortex_m4(tmp_path: Path) -> None:
    """One graph (split, maximum/minimum, concatenation) on the emulated Cortex-M4."""
    need("cortex-m4")
    path = make("split_concat", 3, tmp_path)
    generate_c(path, tmp_path / "c")
    x = inputs_for(path, 4, 3)
    res = run(tmp_path / "c", "cortex-m4", x)
    mic = references(path, x)
    assert np.array_equal(res.outputs.reshape(mic.shape), mic)
    assert res.flash_items.get("unclassified", 0) == 0  # the copy parameters are itemised as parameters
    assert res.flash_items.get("parameters", 0) > 0


def test_identity_shape_ops_alias(tmp_path: Path) -> None:
    """EXPAND_DIMS costs no copy: the plan aliases it like RESHAPE, and its axis is not a weight."""
    g = Graph(np.random.default_rng(0))
    x = g.act((1, 6))
    e = g.like(x, (1, 1, 6))
    g.op("EXPAND_DIMS", [x, g.const([1])], [e])
    y = g.act((1, 1, 6))
    g.op("MAXIMUM", [e, g.const(np.arange(6).reshape(1, 1, 6) - 3, "int8", g.quant[x])], [y])
    path = g.write(tmp_path / "expand.tflite", x, y)
    manifest = generate_c(path, tmp_path / "c")
    assert "aliased: nothing to do" in (tmp_path / "c" / "model.c").read_text()
    assert manifest["weight_bytes"] == 6


def test_missing_op_and_runtime_indices_are_refused(tmp_path: Path) -> None:
    """An op the C generator still lacks, and a GATHER with run-time indices, are one clear line each."""
    g = Graph(np.random.default_rng(0))
    x = g.act((1, 8, 4))
    y = g.act((1, 8, 4))
    g.op("SQUARED_DIFFERENCE", [x, g.const(np.ones((1, 8, 4)), "int8", g.quant[x])], [y])
    path = g.write(tmp_path / "sqdiff.tflite", x, y)
    tb.assert_exact(path, n=2)  # micro and tflite-micro run it
    with pytest.raises(UnsupportedModelError, match=r"^op SQUARED_DIFFERENCE \(op 0\) is not supported by the C "
                                                    r"generator yet; supported: .*GATHER") as info:
        generate_c(path, tmp_path / "c")
    assert "\n" not in str(info.value)
    g = Graph(np.random.default_rng(0))
    table = g.const(np.arange(8).reshape(2, 4), "int8", (0.1, 0))
    idx = g.sg.tensor(T((3,), "int32"))
    y = g.act((3, 4), (0.1, 0))
    g.op("GATHER", [table, idx], [y], opts("GatherOptions", axis=0, batchDims=0))
    path = g.write(tmp_path / "gather_dyn.tflite", idx, y)
    with pytest.raises(UnsupportedModelError, match=r"^op GATHER \(op 0\): input 1 must be a constant tensor "
                                                    r"for the C generator$"):
        generate_c(path, tmp_path / "c2")


def test_generated_c_is_strict_c99_and_freestanding(tmp_path: Path) -> None:
    """model.c and every added kernel: -std=c99 -pedantic -Werror, no library symbols beyond memcpy/memset."""
    need("host")
    undefined: set[str] = set()
    kernels: set[str] = set()
    for name in GRAPHS:
        project = tmp_path / name
        manifest = generate_c(make(name, 1, tmp_path), project)
        srcs = ["model.c"] + [f"kernels/{k}.c" for k in manifest["kernels"] if k not in kernels]
        kernels |= set(manifest["kernels"])
        for src in srcs:
            obj = project / (Path(src).stem + ".o")
            subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-Ikernels",
                            "-ffreestanding", "-c", src, "-o", str(obj)], cwd=project, check=True)
            nm = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
            undefined |= {line.split()[-1] for line in nm.splitlines() if line.strip()}
    assert {"gather", "reduce", "maximum", "minimum", "prelu", "batch_matmul", "transpose_conv",
            "resize_bilinear"} <= kernels
    assert {u for u in undefined if not u.startswith("er_")} <= {"memcpy", "memset"}


def _streaming_model(path: Path, rng: np.random.Generator) -> Path:
    """A streaming model with resource-variable state: CALL_ONCE (an init subgraph assigning a
    non-uniform constant), READ_VARIABLE, CONCATENATION with the new frame, STRIDED_SLICE of the
    newest frames, ASSIGN_VARIABLE, and a MEAN over the window requantized to a uint8 output
    (QUANTIZE), as microWakeWord's models are built."""
    q = (0.05, 3)
    g = Graph(rng)
    main = g.sg
    x = g.act((1, 1, 6), q)
    init = g.mb.subgraph("init")
    h0 = init.tensor(T((), "resource"))
    init.op("VAR_HANDLE", [], [h0], opts("VarHandleOptions", container="", sharedName="window"))
    v0 = init.tensor(T((1, 3, 6), "int8", scale=[q[0]], zp=[q[1]],
                       data=rng.integers(-128, 128, (1, 3, 6)).astype(np.int8)))
    init.op("ASSIGN_VARIABLE", [h0, v0], [])
    init.io([], [])
    main.op("CALL_ONCE", [], [], opts("CallOnceOptions", initSubgraphIndex=1))
    h = main.tensor(T((), "resource"))
    main.op("VAR_HANDLE", [], [h], opts("VarHandleOptions", container="", sharedName="window"))
    state = g.act((1, 3, 6), q)
    main.op("READ_VARIABLE", [h], [state])
    window = g.act((1, 4, 6), q)
    main.op("CONCATENATION", [state, x], [window], opts("ConcatenationOptions", axis=1))
    newest = g.act((1, 3, 6), q)
    main.op("STRIDED_SLICE", [window, g.const([0, 1, 0]), g.const([1, 4, 6]), g.const([1, 1, 1])], [newest],
            opts("StridedSliceOptions"))
    main.op("ASSIGN_VARIABLE", [h, newest], [])
    mean = g.act((1, 6), (0.02, -7))
    main.op("MEAN", [window, g.const([1])], [mean], opts("ReducerOptions", keepDims=False))
    y = main.tensor(T((1, 6), "uint8", scale=[0.03], zp=[120]))
    main.op("QUANTIZE", [mean], [y])
    return g.write(path, x, y)


def test_resource_variables_stream(tmp_path: Path) -> None:
    """State kept across invokes (one boot, no reset) equals micro's and tflite-micro's stream."""
    need("host")
    path = _streaming_model(tmp_path / "stream.tflite", np.random.default_rng(4))
    manifest = generate_c(path, tmp_path / "c")
    assert manifest["output"]["dtype"] == "uint8"
    x = inputs_for(path, 16, 4)
    mic = np.stack([o[0] for o in tb.run_micro(path, [[r] for r in x], reset_each=False)])
    ref = np.stack([o[0] for o in tb.run_tflm(path, [[r] for r in x], reset_each=False)])
    assert np.array_equal(mic, ref), "micro differs from tflite-micro"
    assert len(np.unique(mic[:, 0, 0])) > 4  # the outputs move with the stream
    res = run(tmp_path / "c", "host", x)
    assert res.outputs.dtype == np.uint8  # the runner reads the output as the model declares it
    assert np.array_equal(res.outputs.reshape(mic.shape), mic)

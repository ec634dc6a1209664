"""FULLY_CONNECTED ops that read one weight buffer share one widened copy in micro.

An unrolled recurrence (voicefilter-lite's LSTM: one FULLY_CONNECTED per gate and time step over 7
weight tensors) used to hold one int64 copy of a shared 16x8 weight per op. The interpreter's
:class:`~edge_runtime.backends.micro.weight_cache.WeightCache` now holds one per buffer. Checked on
chains of FULLY_CONNECTED ops over one weight tensor, and over two tensors pointing at one buffer:
outputs equal tflite-micro's (``np.array_equal``, in-place planning on and off), every op's widened
matrix is the same array, and ``cache_bytes`` counts it once.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tflite_builder import ModelBuilder, ModelFolder, T, assert_exact, opts  # noqa: E402

from edge_runtime.backends.micro import open_model  # noqa: E402
from edge_runtime.backends.micro.weight_cache import WeightCache, shared  # noqa: E402

FOLDER = ModelFolder("micro_shared_w_")
K = 200  # (k + 1) * units > 32768: the int8 kernel's numpy/compiled paths, which widen the weights


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Any:
    yield
    FOLDER.remove()


def fc_chain(dtype: str, steps: int, same_buffer_twins: bool = False, seed: int = 0) -> Path:
    """``steps`` FULLY_CONNECTED ops, all reading one K x K int8 weight tensor (or, with
    ``same_buffer_twins``, alternately two tensors whose data is one buffer): the first reads the model
    input, each next one the previous one's output; every op's output is a model output."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (K, K)).astype(np.int8)
    ws, act = 0.004, 0.05
    out = act * ws / 2e-4  # requantization multiplier 2e-4: outputs spread over the type's range
    bt = "int32" if dtype == "int8" else "int64"
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    wts = [sg.tensor(T((K, K), "int8", scale=ws, data=w, name="w"))]
    if same_buffer_twins:
        wts.append(sg.tensor(T((K, K), "int8", scale=ws, data=w, name="w_twin")))
        sg.sg.tensors[wts[1]].buffer = sg.sg.tensors[wts[0]].buffer
    zp = 3 if dtype == "int8" else 0
    x = sg.tensor(T((1, K), dtype, scale=act, zp=zp, name="x"))
    first, outs = x, []
    for s in range(steps):
        scale = act if s == 0 else out
        b = sg.tensor(T((K,), bt, scale=scale * ws, data=rng.integers(-900, 900, K).astype(bt), name=f"b{s}"))
        y = sg.tensor(T((1, K), dtype, scale=out, zp=zp, name=f"y{s}"))
        sg.op("FULLY_CONNECTED", [x, wts[s % len(wts)], b], [y],
              opts("FullyConnectedOptions", fusedActivationFunction=0), version=4 if dtype == "int8" else 7)
        x = y
        outs.append(y)
    sg.io([first], outs)
    return mb.write(FOLDER.path(f"fc_chain_{dtype}_{steps}_{same_buffer_twins}"))


def _fc_kernels(m: Any) -> list[Any]:
    return [k for k in m.interpreter.kernels if type(k).__name__.startswith("FullyConnected")]


@pytest.mark.parametrize("twins", [False, True])
@pytest.mark.parametrize("dtype", ["int16", "int8"])
def test_chain_equals_tflite_micro(dtype: str, twins: bool) -> None:
    assert_exact(fc_chain(dtype, 6, twins), n=3)


@pytest.mark.parametrize("twins", [False, True])
@pytest.mark.parametrize("dtype", ["int16", "int8"])
def test_one_widened_copy_per_buffer(dtype: str, twins: bool) -> None:
    m = open_model(str(fc_chain(dtype, 8, twins)))
    kernels = _fc_kernels(m)
    assert len(kernels) == 8
    mats = {id(k.wmat) for k in kernels}
    assert len(mats) == 1, f"{len(mats)} widened copies of one weight buffer"
    it = m.interpreter
    assert len(it.weight_cache) == 1
    wmat = kernels[0].wmat
    assert not wmat.flags.writeable
    assert wmat.nbytes >= K * K * 2
    # counted once: the shared copy, plus what the kernels hold privately (none here beyond small tables)
    private = sum(getattr(k, "cache_bytes", 0) for k in kernels)
    assert it.cache_bytes - private == wmat.nbytes
    if dtype == "int16":
        assert wmat.dtype == np.int64 and wmat.shape == (K, K) and it.cache_bytes == K * K * 8


def test_int16_chain_memory_does_not_grow_with_ops() -> None:
    """Eight ops cost what one does: the int64 copy is held once (it was once per op: 8 x 320 KB)."""
    one = open_model(str(fc_chain("int16", 1))).interpreter.cache_bytes
    eight = open_model(str(fc_chain("int16", 8))).interpreter.cache_bytes
    assert one == eight == K * K * 8


def test_cache_keeps_kinds_and_buffers_apart() -> None:
    cache = WeightCache()
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    calls = []

    def wide(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        return x.astype(np.int64)

    w1 = cache.get(a, "int64", wide)
    assert cache.get(a[:], "int64", wide) is w1 and len(calls) == 1  # another view of the same memory
    assert cache.get(a.T, "int64", wide) is not w1  # other strides: another entry
    assert cache.get(a, "float32", lambda x: x.astype(np.float32)).dtype == np.float32
    b = a.copy()
    assert cache.get(b, "int64", wide) is not w1  # equal values, another buffer
    assert len(cache) == 4 and cache.nbytes == 3 * 12 * 8 + 12 * 4
    with pytest.raises(ValueError):
        w1[0, 0] = 1  # read-only: no kernel can change another's weights
    private = shared(None, a, "int64", wide)
    assert private is not w1 and np.array_equal(private, w1) and not private.flags.writeable


def conv16_pair(depthwise: bool) -> Path:
    """Two 16x8 3x3 convolutions (or depthwise convolutions) in a row reading one int8 filter tensor."""
    rng = np.random.default_rng(5)
    c, hw = 6, 5
    shape = (1, 3, 3, c) if depthwise else (c, 3, 3, c)
    ws = rng.uniform(0.002, 0.01, c)
    f = rng.integers(-127, 128, shape).astype(np.int8)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ft = sg.tensor(T(shape, "int8", scale=list(ws), zp=[0] * c, data=f, axis=3 if depthwise else 0, name="f"))
    x = sg.tensor(T((1, hw, hw, c), "int16", scale=0.01, name="x"))
    first, name = x, "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    for s in range(2):
        b = sg.tensor(T((c,), "int64", scale=list(ws * (0.01 if s == 0 else 0.3)), zp=[0] * c,
                        data=rng.integers(-500, 500, c).astype(np.int64), name=f"b{s}"))
        y = sg.tensor(T((1, hw, hw, c), "int16", scale=0.3, name=f"y{s}"))
        o = (opts("DepthwiseConv2DOptions", padding=0, strideW=1, strideH=1, depthMultiplier=1,
                  dilationWFactor=1, dilationHFactor=1) if depthwise else
             opts("Conv2DOptions", padding=0, strideW=1, strideH=1, dilationWFactor=1, dilationHFactor=1))
        sg.op(name, [x, ft, b], [y], o, version=5 if depthwise else 4)
        x = y
    sg.io([first], [x])
    return mb.write(FOLDER.path(f"conv16_pair_{depthwise}"))


@pytest.mark.parametrize("depthwise", [False, True])
def test_int16_convolutions_share_their_filter(depthwise: bool) -> None:
    path = conv16_pair(depthwise)
    assert_exact(path, n=3)
    kernels = open_model(str(path)).interpreter.kernels
    assert len(kernels) == 2 and kernels[0].wmat is kernels[1].wmat and kernels[0].wmat.dtype == np.int64

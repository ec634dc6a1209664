"""TOPK_V2 on micro against LiteRT's reference kernels (tflite-micro has no TOPK_V2).

Every comparison is ``np.array_equal`` (values, indices, dtype and shape) with LiteRT run with
``OpResolverType.BUILTIN_REF`` on one thread, on random shapes, k and types (float32, int8 with
quantization, int32), and on data full of ties (values from a small set), where LiteRT gives the
lower index first. Bad models (k out of range, a computed k, wrong output shapes) are refused at
load in one line (UnsupportedModelError).
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import UnsupportedModelError
from tflite_builder import NP_TYPES, ModelFolder, T, build, opts, run_litert, run_micro

FOLDER = ModelFolder("micro_topk_")


@pytest.fixture(scope="module", autouse=True)
def _folder():  # type: ignore[no-untyped-def]
    yield
    FOLDER.remove()


def run_litert_ref(path, input_sets):  # type: ignore[no-untyped-def]
    """LiteRT's reference kernels (BUILTIN_REF, one thread): every output for each input set."""
    return run_litert(path, input_sets, reference_kernels=True)


def topk_model(shape, k: int, dtype: str, out_k=None, k_const: bool = True):  # type: ignore[no-untyped-def]
    q = dict(scale=0.05, zp=-3) if dtype == "int8" else {}
    oshape = list(shape[:-1]) + [out_k or k]
    kt = T([], "int32", data=np.array(k, np.int32)) if k_const else T([], "int32")
    return build(FOLDER.path("TOPK_V2"), "TOPK_V2", [T(shape, dtype, **q), kt],
                 [T(oshape, dtype, **q), T(oshape, "int32")], opts("TopKV2Options"))


def data(rng: np.random.Generator, shape, dtype: str, ties: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    dt = NP_TYPES[dtype]
    if ties:
        return rng.choice(np.array([-2, 0, 1, 5], dt), size=shape)
    if dtype == "float32":
        return (rng.standard_normal(shape) * 3).astype(dt)
    info = np.iinfo(dt) if dtype == "int8" else None
    lo, hi = (int(info.min), int(info.max)) if info else (-1000, 1000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)


@pytest.mark.parametrize("dtype", ["float32", "int8", "int32"])
def test_topk_equals_litert(dtype: str) -> None:
    rng = np.random.default_rng({"float32": 1, "int8": 2, "int32": 3}[dtype])
    for case in range(6):
        rank = int(rng.integers(1, 5))
        shape = [int(s) for s in rng.integers(1, 5, size=rank - 1)] + [int(rng.integers(1, 40))]
        k = int(rng.integers(1, shape[-1] + 1))
        path = topk_model(shape, k, dtype)
        sets = [[data(rng, shape, dtype, ties)] for ties in (False, True, True)]
        expect = run_litert_ref(path, sets)
        for in_place in (False, True):
            got = run_micro(path, sets, in_place)
            for s, (g, e) in enumerate(zip(got, expect)):
                for a, b in zip(g, e):
                    assert a.dtype == b.dtype and a.shape == b.shape, f"{shape} k={k}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
                    assert np.array_equal(a, b), f"{dtype} {shape} k={k} set {s}: {a.ravel()[:8]} vs LiteRT {b.ravel()[:8]}"


def test_ties_give_lower_index_first() -> None:
    """LiteRT's order on ties (the lower index first), which ONNX's TopK specifies too."""
    path = topk_model([6], 4, "float32")
    x = np.array([1, 3, 3, 0, 3, 1], np.float32)
    (values, indices), = run_litert_ref(path, [[x]])
    assert indices.tolist() == [1, 2, 4, 0] and values.tolist() == [3, 3, 3, 1]
    (values, indices), = run_micro(path, [[x]])
    assert indices.tolist() == [1, 2, 4, 0] and values.tolist() == [3, 3, 3, 1]


@pytest.mark.parametrize("k, out_k, k_const, needle", [
    (0, 1, True, "k [0] must be one value"), (9, 9, True, "k [9] must be one value"),
    (3, 2, True, "output shape"), (2, 2, False, "must be constant")])
def test_bad_models_are_refused(k: int, out_k: int, k_const: bool, needle: str) -> None:
    path = topk_model([2, 8], k, "float32", out_k=out_k, k_const=k_const)
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(path))
    text = str(e.value)
    assert needle in text and "\n" not in text

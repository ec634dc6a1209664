"""float32 BATCH_MATMUL on micro is bit-exact with tflite-micro (``np.array_equal``, the sign of zeros too).

tflite-micro sums each output in depth order from +0 in float32, one rounding per product and per sum; a
float64/BLAS product (micro's kernel before) differs in the last bit on nearly every output of these cases.
Random shapes cover ranks 2 to 5, batch dimensions that broadcast from either side, adj_x/adj_y, a constant
or activation rhs, both numpy forms (many outputs: one step per depth position; few: running sums) and a
4 KiB workspace (chunks of lhs rows), on the numpy path and, with numba installed, on the compiled loop.
One case pins down that tflite-micro on this host does not contract the product and the sum to a fused
multiply-add; another runs overflow, infinities, NaN and signed zeros.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest

import tflite_builder as tb
from tflite_builder import ModelFolder, T, build, opts

from edge_runtime.backends.micro import fast, open_model

pytest.importorskip("tflite_micro")

_MODELS = ModelFolder("micro_float_matmul_")
PATHS = ["numpy"] + (["numba"] if fast._numba_importable() else [])


@pytest.fixture(scope="module", autouse=True)
def _cleanup_models():  # type: ignore[no-untyped-def]
    yield
    _MODELS.remove()


@pytest.fixture(params=PATHS)
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on the numpy path and on the compiled path (when numba is installed)."""
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "1" if request.param == "numba" else "0")
    return str(request.param)


def _model(a_shape: list[int], b_shape: list[int], adj_x: bool, adj_y: bool,
           rhs: Optional[np.ndarray] = None) -> Path:
    """A one-op float32 BATCH_MATMUL model (output shape from numpy's broadcasting)."""
    am = np.zeros(a_shape, np.float32)
    bm = np.zeros(b_shape, np.float32)
    am = am.swapaxes(-1, -2) if adj_x else am
    bm = bm.swapaxes(-1, -2) if adj_y else bm
    out = list(np.matmul(am, bm).shape)
    path = _MODELS.path("BATCH_MATMUL")
    return build(path, "BATCH_MATMUL", [T(a_shape, "float32"), T(b_shape, "float32", data=rhs)],
                 [T(out, "float32")], opts("BatchMatMulOptions", adjX=adj_x, adjY=adj_y), version=4)


def _random_case(rng: np.random.Generator) -> tuple[list[int], list[int], bool, bool, bool]:
    """Shapes with ranks 2-5, batch dimensions broadcasting either way, random adjoints."""
    m, k, n = (int(v) for v in rng.integers(1, 12, 3))
    k = int(rng.choice([k, int(rng.integers(12, 90))]))
    ra, rb = (int(v) for v in rng.integers(2, 6, 2))
    batch = [int(v) for v in rng.integers(1, 4, max(ra, rb) - 2)]
    a_batch = [b if rng.random() < 0.6 else 1 for b in batch[len(batch) - (ra - 2):]]
    b_batch = [b if rng.random() < 0.6 else 1 for b in batch[len(batch) - (rb - 2):]]
    adj_x, adj_y = bool(rng.integers(2)), bool(rng.integers(2))
    a_shape = a_batch + ([k, m] if adj_x else [m, k])
    b_shape = b_batch + ([n, k] if adj_y else [k, n])
    return a_shape, b_shape, adj_x, adj_y, bool(rng.integers(2))


def _assert_bits(path: Path, sets: list[list[np.ndarray]], workspace_limit: Optional[int] = None) -> None:
    """micro == tflite-micro: same values (NaN where NaN) and the same sign bits."""
    want = tb.run_tflm(path, sets)
    m = open_model(str(path)) if workspace_limit is None else open_model(str(path), workspace_limit=workspace_limit)
    for k, xs in enumerate(sets):
        got = np.array(m.run(list(xs))[0])
        ref = want[k][0]
        assert got.dtype == ref.dtype and got.shape == ref.shape
        same = np.array_equal(got, ref, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(ref))
        assert same, (f"{path.name} set {k}: {int(np.sum(got != ref))} of {ref.size} outputs differ from "
                      f"tflite-micro: {got.ravel()[:6]} vs {ref.ravel()[:6]}")


@pytest.mark.parity("BATCH_MATMUL", "float32")
@pytest.mark.parametrize("seed", range(12))
def test_float_batch_matmul_equals_tflite_micro(kernel_path: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a_shape, b_shape, adj_x, adj_y, const = _random_case(rng)
    rhs = (rng.standard_normal(b_shape) * 2).astype(np.float32) if const else None
    path = _model(a_shape, b_shape, adj_x, adj_y, rhs)
    sets = [[(rng.standard_normal(s) * scale).astype(np.float32) for s in ([a_shape] if const else [a_shape, b_shape])]
            for scale in (1.0, 30.0)]
    _assert_bits(path, sets)
    _assert_bits(path, sets[:1], workspace_limit=4096)
    m = open_model(str(path))
    assert [p["path"] for p in m.info["kernel_paths"] if p["name"] == "BATCH_MATMUL"] == [kernel_path]


@pytest.mark.parity("BATCH_MATMUL", "float32")
@pytest.mark.parametrize("a_shape,b_shape,adj_x,adj_y,const", [
    ([1, 4, 24, 16], [1, 4, 16, 20], False, False, False),   # 1920 outputs: one step per depth position
    ([2, 1, 3, 200], [1, 3, 2, 200], False, True, False),    # 36 outputs, depth 200: running sums
    ([3, 40, 5], [40, 7], True, False, False),               # rank 3 against rank 2
    ([1, 600], [600, 3], False, False, True),                # a classifier head
    ([1, 8, 100], [100, 2], False, False, True),             # running sums in chunks of rows (4 KiB)
])
def test_float_batch_matmul_both_forms(kernel_path: str, a_shape: list[int], b_shape: list[int], adj_x: bool,
                                       adj_y: bool, const: bool) -> None:
    rng = np.random.default_rng(len(a_shape) + a_shape[-1])
    rhs = rng.standard_normal(b_shape).astype(np.float32) if const else None
    path = _model(a_shape, b_shape, adj_x, adj_y, rhs)
    sets = [[rng.standard_normal(s).astype(np.float32) for s in ([a_shape] if const else [a_shape, b_shape])]
            for _ in range(2)]
    _assert_bits(path, sets)
    _assert_bits(path, sets, workspace_limit=4096)


def test_tflite_micro_does_not_fuse_multiply_add(kernel_path: str) -> None:
    """``0 + a0 b0 + a1 b1`` with ``a1 b1 = 1 + 2^-11 + 2^-24`` (a tie in float32) and ``a0 b0 = -1``: rounding
    the product first gives 2^-11, a fused multiply-add 2^-11 + 2^-24. tflite-micro gives the former (no FMA
    contraction in this build), and so does micro."""
    path = _model([1, 2], [2, 1], False, False)
    u = np.float32(1 + 2.0 ** -12)
    a = np.array([[-1.0, u]], np.float32)
    b = np.array([[1.0], [u]], np.float32)
    separate = np.float32(np.float32(-1.0) + np.float32(u * u))
    fused = np.float32(-1.0 + float(u) * float(u))
    assert separate == np.float32(2.0 ** -11) and fused != separate
    ref = tb.run_tflm(path, [[a, b]])[0][0]
    got = np.array(open_model(str(path)).run([a, b])[0])
    assert ref[0, 0] == separate and got[0, 0] == separate


def test_float_batch_matmul_overflow_nan_and_signed_zeros(kernel_path: str) -> None:
    """Sums that overflow to +-inf, inf - inf = NaN, NaN operands, and outputs summed from -0 products
    (tflite-micro's +0 start makes them +0)."""
    path = _model([2, 3, 4], [2, 4, 3], False, False)
    a = np.full((2, 3, 4), 3e38, np.float32)
    a[0, 1] = -0.0
    a[0, 2, 1] = np.nan
    a[1, 0] = [3e38, 3e38, -3e38, -3e38]
    a[1, 1] = [1.0, -2.0, 0.0, 5e-45]
    b = np.ones((2, 4, 3), np.float32)
    b[1, :, 2] = -0.0
    b[1, 3, 0] = np.inf
    _assert_bits(path, [[a, b]])
    ref = tb.run_tflm(path, [[a, b]])[0][0]
    assert np.isinf(ref).any() and np.isnan(ref).any() and (ref == 0).any()


def test_float_batch_matmul_bad_shapes_refused() -> None:
    """Inner dimensions that do not agree: one clear error naming the op."""
    from edge_runtime.errors import UnsupportedModelError

    path = _MODELS.path("BATCH_MATMUL")
    build(path, "BATCH_MATMUL", [T([2, 3], "float32"), T([4, 5], "float32")], [T([2, 5], "float32")],
          opts("BatchMatMulOptions", adjX=False, adjY=False))
    with pytest.raises(UnsupportedModelError) as info:
        open_model(str(path))
    assert "BATCH_MATMUL" in str(info.value) and "\n" not in str(info.value)

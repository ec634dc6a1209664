"""The grouped forms of micro's numpy float32 CONV_2D and DEPTHWISE_CONV_2D stay bit-exact with tflite-micro.

The numpy path multiplies a whole group of terms (filter taps x input channels) in one call and sums them with
one reduction along the group's (outer) axis, starting from the running sum; two layouts for CONV_2D
(``positions``: channel-major planes, output positions innermost, whole band rows for stride 1;
``channels``: output channels innermost), groups cut as whole filter, whole filter rows, runs of columns or
blocks of channels, and one term at a time where a chunk holds a single output value (numpy would then
reduce along the group's axis, pairwise). DEPTHWISE_CONV_2D: all taps at once (or one at a time), rows of
(column, channel) pairs with tiled weights (stride 1, multiplier 1) or the general view. TRANSPOSE_CONV: the
input channels of a tap in groups, or one term at a time.

Random geometries (with small workspace limits: several chunks, small groups), each compared with
tflite-micro (``np.array_equal``, the sign of zeros and the place of NaN too, in place on and off), on normal
values and on extreme ones (signed zeros, denormals, +-inf, NaN, sums past FLT_MAX, cancelling magnitudes);
every form must have been taken by at least one of them (read from the kernel that ran).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model

tb = pytest.importorskip("tflite_builder")
pytest.importorskip("tflite_micro")
from test_micro_ops_conv import float_extreme_sets  # noqa: E402
T, opts = tb.T, tb.opts

LIMITS = (4096, 16384, 512 * 1024)


def _out(size: int, k: int, s: int, d: int, same: bool) -> int:
    eff = (k - 1) * d + 1
    return (size + s - 1) // s if same else (size - eff + s) // s


def _geometry(rng: np.random.Generator, depthwise: bool) -> dict[str, Any]:
    """Random shapes TFLite accepts: from single output values to many channels over few positions."""
    while True:
        g = dict(n=int(rng.integers(1, 3)), h=int(rng.integers(1, 15)), w=int(rng.integers(1, 15)),
                 kh=int(rng.integers(1, 5)), kw=int(rng.integers(1, 5)), sh=int(rng.integers(1, 3)),
                 sw=int(rng.integers(1, 3)), dh=int(rng.integers(1, 3)), dw=int(rng.integers(1, 3)),
                 same=bool(rng.integers(0, 2)))
        g["oh"] = _out(g["h"], g["kh"], g["sh"], g["dh"], g["same"])
        g["ow"] = _out(g["w"], g["kw"], g["sw"], g["dw"], g["same"])
        if g["oh"] >= 1 and g["ow"] >= 1:
            break
    g["cin"] = int(rng.choice([1, 2, 3, 5, 8, 20, 40]))
    g["mult"] = int(rng.integers(1, 4)) if depthwise else 1
    g["cout"] = g["cin"] * g["mult"] if depthwise else int(rng.choice([1, 2, 7, 16, 48]))
    return g


def _model(path: Path, op: str, g: dict[str, Any], rng: np.random.Generator) -> Path:
    depthwise = op == "DEPTHWISE_CONV_2D"
    wshape = (1, g["kh"], g["kw"], g["cout"]) if depthwise else (g["cout"], g["kh"], g["kw"], g["cin"])
    ins = [T((g["n"], g["h"], g["w"], g["cin"]), "float32"),
           T(wshape, "float32", data=rng.standard_normal(wshape).astype(np.float32))]
    if rng.integers(0, 2):
        ins.append(T((g["cout"],), "float32", data=rng.standard_normal(g["cout"]).astype(np.float32)))
    common = dict(padding=0 if g["same"] else 1, strideW=g["sw"], strideH=g["sh"], dilationWFactor=g["dw"],
                  dilationHFactor=g["dh"], fusedActivationFunction=int(rng.integers(0, 4)))
    o = (opts("DepthwiseConv2DOptions", depthMultiplier=g["mult"], **common) if depthwise
         else opts("Conv2DOptions", **common))
    tb.build(path, op, ins, [T((g["n"], g["oh"], g["ow"], g["cout"]), "float32")], o, version=1)
    return path


def _kind(k: Any) -> str:
    """Which cut of the terms the kernel chose: one term at a time, the whole filter, whole filter rows,
    runs of filter columns, or blocks of input channels."""
    if k.group_max == 1:
        return "single"
    ys, xs, cs = k.groups[0]
    cin = 1 if k.depthwise else k.cin
    if len(k.groups) == 1:
        return "all"
    if len(xs) == k.kw and len(cs) == cin:
        return "rows"
    return "columns" if len(cs) == cin else "channels"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    keep = ~np.isnan(a)
    return bool(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
                and np.array_equal(np.signbit(a[keep]), np.signbit(b[keep])))


def _check(tmp_path: Path, op: str, seeds: range) -> set[tuple[str, ...]]:
    """Each random model (each with a random workspace limit) equals tflite-micro; returns the forms taken."""
    seen: set[tuple[str, ...]] = set()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        g = _geometry(rng, op == "DEPTHWISE_CONV_2D")
        model = _model(tmp_path / f"{op.lower()}_{seed}.tflite", op, g, rng)
        limit = int(rng.choice(LIMITS))
        shape = (g["n"], g["h"], g["w"], g["cin"])
        sets = [[(rng.standard_normal(shape) * s).astype(np.float32)] for s in (1.0, 30.0)]
        sets += float_extreme_sets(shape, seed)
        want = tb.run_tflm(model, sets)
        for in_place in (False, True):
            m = open_model(str(model), workspace_limit=limit, in_place=in_place)
            (k,) = [k for p, k in zip(m.info["kernel_paths"], m.interpreter.kernels) if p["name"] == op]
            assert k.path == "numpy", (seed, k.path)
            form = ("rowwise" if k.rowwise else "general") if k.depthwise else k.form
            seen.add((form, _kind(k)))
            for j, (xs, e) in enumerate(zip(sets, want)):
                got = m.run(xs)[0]
                assert _same_bits(got, e[0]), (f"seed {seed} {g} limit {limit} in_place={in_place} set {j} "
                                               f"{form}/{_kind(k)}: {got.ravel()[:6]} vs tflite-micro "
                                               f"{e[0].ravel()[:6]}")
    return seen


@pytest.fixture(autouse=True)
def _numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_RUNTIME_MICRO_FAST", "0")


@pytest.mark.parity("CONV_2D", "float32")
def test_conv2d_grouped_forms_equal_tflite_micro(tmp_path: Path) -> None:
    seen = _check(tmp_path, "CONV_2D", range(60))
    for form in ("positions", "channels"):
        for kind in ("all", "rows", "columns", "channels"):
            assert (form, kind) in seen, (form, kind, sorted(seen))
    assert {f for f, kind in seen if kind == "single"}, sorted(seen)


@pytest.mark.parity("DEPTHWISE_CONV_2D", "float32")
def test_depthwise_grouped_forms_equal_tflite_micro(tmp_path: Path) -> None:
    seen = _check(tmp_path, "DEPTHWISE_CONV_2D", range(40))
    assert {("rowwise", "all"), ("general", "all")} <= seen, sorted(seen)  # (single: the test below)


@pytest.mark.parametrize("op", ("CONV_2D", "DEPTHWISE_CONV_2D"))
def test_one_output_value_goes_term_by_term(tmp_path: Path, op: str) -> None:
    """A chunk of one output value (one channel, one column): one term per reduction, as tflite-micro sums
    (numpy reduces a longer group along its inner axis pairwise); magnitudes spread so that the order shows."""
    rng = np.random.default_rng(11)
    depthwise = op == "DEPTHWISE_CONV_2D"
    cin, kh = (1, 5) if depthwise else (20, 3)
    w = rng.standard_normal((1, kh, kh, cin)).astype(np.float32)
    common = dict(padding=1, strideW=1, strideH=1, fusedActivationFunction=0)
    model = tb.build(tmp_path / "one.tflite", op, [T((1, kh, kh, cin), "float32"), T(w.shape, "float32", data=w)],
                     [T((1, 1, 1, 1), "float32")],
                     opts("DepthwiseConv2DOptions", depthMultiplier=1, **common) if depthwise
                     else opts("Conv2DOptions", **common), version=1)
    shape = (1, kh, kh, cin)
    xs = [[(rng.standard_normal(shape) * 10.0 ** rng.integers(-4, 5, shape)).astype(np.float32)] for _ in range(40)]
    want = tb.run_tflm(model, xs)
    m = open_model(str(model))
    (k,) = m.interpreter.kernels
    assert k.path == "numpy" and k.group_max == 1
    assert all(np.array_equal(m.run(x)[0], e[0]) for x, e in zip(xs, want))


@pytest.mark.parity("TRANSPOSE_CONV", "float32")
def test_transpose_conv_grouped_forms_equal_tflite_micro(tmp_path: Path) -> None:
    """TRANSPOSE_CONV: the input channels of a tap in groups (the tap's canvas values first, then the group's
    products, one sequential reduction) or one term at a time; both equal tflite-micro's scatter loop."""
    from test_micro_float_conv import _tconv_model

    seen = set()
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        model, shape = _tconv_model(tmp_path / f"tconv_{seed}.tflite", rng, wide=bool(rng.integers(0, 2)))
        limit = int(rng.choice(LIMITS))
        sets = [[(rng.standard_normal(shape) * s).astype(np.float32)] for s in (1.0, 30.0)]
        sets += float_extreme_sets(shape, seed)
        want = tb.run_tflm(model, sets)
        for in_place in (False, True):
            m = open_model(str(model), workspace_limit=limit, in_place=in_place)
            (k,) = m.interpreter.kernels
            assert k.path == "numpy", (seed, k.path)
            form = "grouped" if k.group_max > 1 else "single"
            assert bool(k.groups) == (form == "grouped") and bool(k.terms) == (form == "single")
            seen.add(form)
            for j, (xs, e) in enumerate(zip(sets, want)):
                got = m.run(xs)[0]
                assert _same_bits(got, e[0]), (f"seed {seed} limit {limit} in_place={in_place} set {j} {form}: "
                                               f"{got.ravel()[:6]} vs tflite-micro {e[0].ravel()[:6]}")
    assert seen == {"grouped", "single"}, seen

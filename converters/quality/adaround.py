"""AdaRound-style weight rounding (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
Quantization", 2020): per layer, choose for every int8 weight whether it rounds down or up so the
layer's output on calibration data stays closest to the float layer's.

Each weighted op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) is one problem, solved alone, in
graph order. Its inputs are the float model's activations on up to :data:`SAMPLES` calibration
samples, cut into at most :data:`ROWS` rows (a convolution's input patches at random output
positions). With the plan's per-channel scales s fixed, the weight is
``s * clip(floor(w / s) + h(V), -127, 127)`` with the rectified sigmoid h, V initialised so that h
starts at the fractional part, and the loss is the mean squared error of the layer's output
(after its fused activation) against the float output, relative to round-to-nearest's, plus
lambda * mean(1 - |2h - 1|^beta) with beta annealed from 20 to 2 after a warm-up, which drives h to
0 or 1. Adam on V, for at most ``iterations`` steps on mini-batches of :data:`BATCH` rows, in numpy
with hand-written gradients (a torch autograd version reached the same error, 4.11 dB below
round-to-nearest on a KWS layer, and was no faster on these layer sizes; converters/ never
imports torch, see tests/test_convert_inputs.py).

A quarter of the rows is held out of the optimisation: the rounded weights replace the plan's only
where their reconstruction error on those rows is lower than round-to-nearest's. Scales are
unchanged and every value moves by at most one step (floor or ceil of w / s), so the writers need
nothing new. Biases keep their scale (bias correction runs afterwards and reads the new weights).

Measured (``python -m benchmarks.quant_techniques``): each layer's error falls by 1-5 dB, the model
output's SQNR moves between -0.7 and +1.3 dB, so it stays off by default (``--adaround``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from converters.calibrate import run_float
from converters.ir import Graph, Op, conv_out
from converters.quantize import QuantPlan, QuantWeight

ROUNDED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Calibration samples read, and rows (patches) kept per layer, at most ROW_VALUES values per layer.
SAMPLES = 64
ROWS = 2048
ROW_VALUES = 4_000_000
BATCH = 512
ITERATIONS = 300
#: Per-layer wall-time cap in seconds (the loop stops early, keeping what it found).
LAYER_SECONDS = 20.0
ZETA, GAMMA = 1.1, -0.1
LAMBDA = 10.0
BETA = (20.0, 2.0)
WARMUP = 0.2
LR = 0.1


@dataclass
class Problem:
    """One layer: rows of input ``x`` ([n, K] shared, or [n, O, K] per output channel for depthwise),
    float weights ``w`` [O, K], per-channel scales ``s`` [O, 1] (or [1, 1]), bias [O], fused act."""

    x: np.ndarray
    w: np.ndarray
    s: np.ndarray
    b: np.ndarray
    act: str
    depthwise: bool

    def output(self, w: np.ndarray) -> np.ndarray:
        """The layer's output (after its fused activation) on all rows for weights ``w``."""
        return _act_np(_linear_np(self.x, w, self.depthwise) + self.b, self.act)


def _linear_np(x: np.ndarray, w: np.ndarray, depthwise: bool) -> np.ndarray:
    return np.einsum("nok,ok->no", x, w) if depthwise else x @ w.T


def _act_np(z: np.ndarray, act: str) -> np.ndarray:
    if act == "RELU":
        return np.maximum(z, 0.0)
    if act == "RELU6":
        return np.clip(z, 0.0, 6.0)
    if act == "RELU_N1_TO_1":
        return np.clip(z, -1.0, 1.0)
    return z


def _act_grad_np(z: np.ndarray, act: str) -> np.ndarray:
    if act == "RELU":
        return (z > 0).astype(z.dtype)
    if act == "RELU6":
        return ((z > 0) & (z < 6)).astype(z.dtype)
    if act == "RELU_N1_TO_1":
        return ((z > -1) & (z < 1)).astype(z.dtype)
    return np.ones_like(z)


def patches(x: np.ndarray, op: Op, kernel: tuple[int, int], rng: np.random.Generator, n: int) -> np.ndarray:
    """Up to ``n`` input patches [m, kh, kw, C] of a convolution at random output positions of ``x`` (NHWC)."""
    t, l, b, r = op.attrs.get("pads", (0, 0, 0, 0))
    sh, sw = op.attrs.get("stride", (1, 1))
    dh, dw = op.attrs.get("dilation", (1, 1))
    kh, kw = kernel
    out = []
    per = max(1, -(-n // x.shape[0]))
    for img in x.reshape((-1,) + x.shape[-3:]):
        xp = np.pad(img, ((t, b), (l, r), (0, 0)))
        oh = conv_out(img.shape[0], kh, sh, dh, t, b)
        ow = conv_out(img.shape[1], kw, sw, dw, l, r)
        pos = rng.choice(oh * ow, size=min(per, oh * ow), replace=False)
        oy, ox = pos // ow, pos % ow
        iy = oy[:, None] * sh + np.arange(kh) * dh
        ix = ox[:, None] * sw + np.arange(kw) * dw
        out.append(xp[iy[:, :, None], ix[:, None, :], :])
    return np.concatenate(out)[:n]


def _rows(op: Op, w: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Rows of the layer's input in the layout of :class:`Problem`."""
    if op.kind == "FULLY_CONNECTED":
        return x.reshape(-1, w.shape[1])[:n].astype(np.float32)
    p = patches(x, op, (w.shape[1], w.shape[2]), rng, n)
    if op.kind == "CONV_2D":
        return p.reshape(len(p), -1).astype(np.float32)
    m = int(op.attrs.get("multiplier", 1))
    p = p.reshape(len(p), -1, p.shape[-1])  # [m, K, C]
    return np.ascontiguousarray(p[:, :, np.arange(w.shape[3]) // m].transpose(0, 2, 1)).astype(np.float32)


def _row_size(op: Op, w: np.ndarray) -> int:
    """Values in one row of :func:`_rows`."""
    return int(w.size if op.kind == "DEPTHWISE_CONV_2D" else w[0].size)


def _weight_matrix(op: Op, w: np.ndarray) -> np.ndarray:
    """Float weights as [O, K]."""
    if op.kind == "DEPTHWISE_CONV_2D":
        return w.reshape(-1, w.shape[3]).T
    return w.reshape(w.shape[0], -1)


def _back_to_layout(op: Op, q: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if op.kind == "DEPTHWISE_CONV_2D":
        return np.ascontiguousarray(q.T).reshape(shape)
    return q.reshape(shape)


def _h(v: np.ndarray) -> np.ndarray:
    return np.clip(1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _init_v(rest: np.ndarray) -> np.ndarray:
    r = np.clip(rest, 1e-4, 1 - 1e-4)
    return -np.log((ZETA - GAMMA) / (r - GAMMA) - 1.0)


def _beta(i: int, iterations: int) -> Optional[float]:
    start = int(WARMUP * iterations)
    if i < start:
        return None
    frac = (i - start) / max(1, iterations - start)
    return BETA[0] + (BETA[1] - BETA[0]) * frac


def _solve(p: Problem, base: np.ndarray, v: np.ndarray, target: np.ndarray, norm: float,
                 iterations: int, rng: np.random.Generator, deadline: float) -> np.ndarray:
    """Adam on V with hand-written gradients (float32: BLAS stays on its fast path); returns V."""
    f32 = np.float32
    xs, target, base, s, bias = (a.astype(f32) for a in (p.x, target, base, p.s, p.b))
    v = v.astype(f32)
    m1, m2 = np.zeros_like(v), np.zeros_like(v)
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = len(p.x)
    for i in range(iterations):
        idx = rng.choice(n, size=min(BATCH, n), replace=False) if n > BATCH else slice(None)
        x, y = xs[idx], target[idx]
        sig = 1.0 / (1.0 + np.exp(-v))
        raw = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(raw, 0.0, 1.0)
        qv = base + h
        inside = (qv >= -127) & (qv <= 127)
        wq = s * np.clip(qv, -127, 127)
        z = _linear_np(x, wq, p.depthwise) + bias
        err = _act_np(z, p.act) - y
        gz = (2.0 / (err.size * norm)) * err * _act_grad_np(z, p.act)
        gw = np.einsum("no,nok->ok", gz, x) if p.depthwise else gz.T @ x
        gh = gw * s * inside
        beta = _beta(i, iterations)
        if beta is not None:
            d = 2.0 * h - 1.0
            gh = gh + LAMBDA * (-beta * np.abs(d) ** (beta - 1.0) * np.sign(d) * 2.0) / h.size
        gv = (gh * ((raw > 0) & (raw < 1)) * sig * (1.0 - sig) * (ZETA - GAMMA)).astype(f32)
        m1 = b1 * m1 + (1 - b1) * gv
        m2 = b2 * m2 + (1 - b2) * gv * gv
        v = v - LR * (m1 / (1 - b1 ** (i + 1))) / (np.sqrt(m2 / (1 - b2 ** (i + 1))) + eps)
        if time.perf_counter() > deadline:
            break
    return v.astype(np.float64)


def round_layer(p: Problem, iterations: int = ITERATIONS, seed: int = 0,
                seconds: float = LAYER_SECONDS) -> tuple[np.ndarray, float, float]:
    """Optimise one layer's rounding; returns (int8 values [O, K], nearest MSE, AdaRound MSE).

    A quarter of the rows (at least one) is held out of the optimisation: both errors are measured
    on it, and the values are round-to-nearest's unless AdaRound's error there is lower.
    """
    scaled = p.w.astype(np.float64) / p.s
    nearest = np.clip(np.round(scaled), -127, 127)
    base = np.floor(scaled)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(p.x))
    n_val = max(1, len(order) // 4) if len(order) > 1 else 0
    val = Problem(p.x[order[:n_val]], p.w, p.s, p.b, p.act, p.depthwise) if n_val else p
    train = Problem(p.x[order[n_val:]], p.w, p.s, p.b, p.act, p.depthwise) if n_val else p
    w64 = p.w.astype(np.float64)
    target_val = val.output(w64)
    mse_near = float(np.mean((val.output(p.s * nearest) - target_val) ** 2))
    train_target = train.output(w64)
    train_near = float(np.mean((train.output(p.s * nearest) - train_target) ** 2))
    if mse_near == 0.0 or train_near == 0.0:
        return nearest.astype(np.int8), mse_near, mse_near
    v = _solve(train, base, _init_v(scaled - base), train_target, train_near, iterations, rng,
              time.perf_counter() + seconds)
    q = np.clip(base + (_h(v) >= 0.5), -127, 127)
    mse_ada = float(np.mean((val.output(p.s * q) - target_val) ** 2))
    if mse_ada >= mse_near:
        return nearest.astype(np.int8), mse_near, mse_near
    return q.astype(np.int8), mse_near, mse_ada


def _progress(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    from edge_runtime.progress import progress

    return progress(total, "AdaRound", show=enabled)


def adaround(graph: Graph, plan: QuantPlan, float_sess: Any, samples: Iterable[np.ndarray], *,
             iterations: int = ITERATIONS, progress: bool = False,
             rows: int = ROWS, seed: int = 0) -> dict[str, Any]:
    """Re-round the int8 weights of ``plan`` layer by layer on ``samples`` (source layout); a summary.

    Reads at most :data:`SAMPLES` samples. Returns ``{"layers": changed, "tried": n, "iterations",
    "reduction_db": mean over tried layers of
    10 log10(nearest MSE / AdaRound MSE), "per_layer": [{"name", "nearest_mse", "adaround_mse"}]}``.
    """
    consumers = graph.consumers()
    ops = [op for op in graph.ops if op.kind in ROUNDED and op.inputs[1] in plan.weights
           and len(consumers.get(op.inputs[1], [])) == 1]
    rng = np.random.default_rng(seed)
    xs = [graph.to_ir_layout(graph.inputs[0], np.asarray(x, np.float32)) for _, x in zip(range(SAMPLES), samples)]
    limit = [min(rows, max(64, ROW_VALUES // _row_size(op, graph.tensors[op.inputs[1]].data))) for op in ops]
    got: list[list[np.ndarray]] = [[] for _ in ops]
    for x in xs:
        vals = run_float(float_sess, graph, x)
        for k, op in enumerate(ops):
            per = max(1, -(-limit[k] // max(1, len(xs))))
            got[k].append(_rows(op, graph.tensors[op.inputs[1]].data, vals[op.inputs[0]], rng, per))
    layers, dbs, changed = [], [], 0
    with _progress(len(ops), progress) as bar:
        for k, op in enumerate(ops):
            w = graph.tensors[op.inputs[1]].data
            qw = plan.weights[op.inputs[1]]
            x = np.concatenate(got[k])[:limit[k]]
            got[k] = []
            s = qw.scales.astype(np.float64).reshape(-1, 1)
            p = Problem(x, _weight_matrix(op, w).astype(np.float64), s,
                        graph.tensors[op.inputs[2]].data.astype(np.float64), op.act, op.kind == "DEPTHWISE_CONV_2D")
            q, near, ada = round_layer(p, iterations, seed)
            values = _back_to_layout(op, q, w.shape)
            if not np.array_equal(values, qw.values):
                plan.weights[op.inputs[1]] = QuantWeight(values, qw.scales, qw.axis)
                changed += 1
            if near > 0:
                dbs.append(10 * np.log10(near / max(ada, 1e-30)))
            layers.append({"name": op.name or op.outputs[0], "nearest_mse": near, "adaround_mse": ada})
            bar.update(1)
    return {"layers": changed, "tried": len(ops), "iterations": iterations, "reduction_db": round(float(np.mean(dbs)) if dbs else 0.0, 2),
            "per_layer": layers}

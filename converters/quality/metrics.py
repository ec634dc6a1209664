"""Float vs int8 output metrics, for every output of a model.

Every output gets SQNR, max and mean absolute error and its float range. Top-1 agreement (and
accuracy, with labels) is computed only for outputs that are class distributions: a SOFTMAX or
LOG_SOFTMAX output, or -- when labels are given or the task is ``classify`` -- a 1-D vector per
sample (logits). Everything else is a regression and gets no top-1. Index outputs (ARG_MAX/ARG_MIN,
int32) get the exact-match rate with float instead of SQNR (``sqnr_db`` None).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from converters.ir import Graph, unquantized_tensors

#: SQNR thresholds (dB): at or above FINE is fine, below BAD is bad, in between is a warning.
FINE_DB, BAD_DB = 30.0, 20.0
TASKS = ("auto", "classify", "regress")
_PASS_THROUGH = ("RESHAPE", "SQUEEZE", "TRANSPOSE")


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """10 log10(signal / noise), capped at 99 dB for an exact match."""
    if noise_energy <= 0:
        return 99.0
    if signal_energy <= 0:
        return -99.0
    return float(min(99.0, 10.0 * np.log10(signal_energy / noise_energy)))


def grade(db: Optional[float]) -> str:
    """``fine`` (>= 30 dB), ``warn`` (20-30 dB) or ``bad`` (< 20 dB); ``n/a`` without a value."""
    if db is None:
        return "n/a"
    return "fine" if db >= FINE_DB else ("warn" if db >= BAD_DB else "bad")


GRADE_COLOURS = {"fine": "#2ca02c", "warn": "#ff7f0e", "bad": "#d62728", "n/a": "#7f7f7f"}


def _softmax_output(graph: Graph, name: str) -> bool:
    prod = graph.producers()
    op = prod.get(name)
    while op is not None and op.kind in _PASS_THROUGH:
        op = prod.get(op.inputs[0])
    return op is not None and op.kind in ("SOFTMAX", "LOG_SOFTMAX")


def _vector_per_sample(shape: tuple[int, ...]) -> bool:
    dims = [d for d in shape[1:] if d != 1] if len(shape) > 1 else list(shape)
    return len(dims) == 1 and dims[0] > 1


def output_kinds(graph: Graph, task: str = "auto", labels: Optional[np.ndarray] = None) -> dict[str, str]:
    """``{output: 'class' | 'regression'}`` following the rules of this module's docstring.

    With ``labels`` (task ``auto``), a logit vector is a class output only when the model has no
    softmax output and every label indexes it: a box head of 4 values next to 10 class labels is not.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    soft = {o: _softmax_output(graph, o) for o in graph.outputs}
    ints = unquantized_tensors(graph)
    kinds = {}
    for o in graph.outputs:
        if o in ints:  # ARG_MAX/ARG_MIN indices, comparison masks: compared by exact match, not SQNR
            kinds[o] = "index"
            continue
        shape = graph.tensors[o].shape
        vec = _vector_per_sample(shape)
        by_labels = (labels is not None and len(labels) > 0 and not any(soft.values())
                     and 0 <= int(np.min(labels)) and int(np.max(labels)) < int(np.prod(shape[1:])))
        cls = task != "regress" and vec and (soft[o] or by_labels or task == "classify")
        kinds[o] = "class" if cls else "regression"
    return kinds


def output_stats(ref: np.ndarray, got: np.ndarray, kind: str, labels: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Metrics of one output over samples (axis 0): ``ref`` float, ``got`` int8 dequantized."""
    ref = ref.reshape(len(ref), -1).astype(np.float64) if ref.size else np.zeros((0, 1))
    got = got.reshape(len(got), -1).astype(np.float64) if got.size else np.zeros((0, 1))
    if kind == "index":
        return index_stats(ref, got)
    err = got - ref
    d: dict[str, Any] = {
        "kind": kind,
        "sqnr_db": round(sqnr_db(float(np.sum(ref ** 2)), float(np.sum(err ** 2))), 2),
        "max_abs_error": float(np.max(np.abs(err))) if err.size else 0.0,
        "mean_abs_error": float(np.mean(np.abs(err))) if err.size else 0.0,
        "rms_error": float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
        "range": [float(ref.min()), float(ref.max())] if ref.size else [0.0, 0.0],
    }
    d["grade"] = grade(d["sqnr_db"])
    if kind == "class" and len(ref):
        d["top1_agreement_with_float"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
        if labels is not None and int(np.max(labels)) < ref.shape[1]:
            d["accuracy"] = float(np.mean(got.argmax(1) == labels))
    return d


#: exact-match rates of an index output (ARG_MAX/ARG_MIN): at or above FINE_MATCH fine, below BAD_MATCH bad
FINE_MATCH, BAD_MATCH = 0.99, 0.9


def index_stats(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """Metrics of an index output (``[samples, values]``): the exact-match rate instead of SQNR
    (``sqnr_db`` is None); the errors are in index units."""
    err = np.abs(got - ref)
    match = float(np.mean(err == 0)) if err.size else 1.0
    return {"kind": "index", "sqnr_db": None, "exact_match": round(match, 4),
            "max_abs_error": float(err.max()) if err.size else 0.0,
            "mean_abs_error": float(err.mean()) if err.size else 0.0,
            "rms_error": float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
            "range": [float(ref.min()), float(ref.max())] if ref.size else [0.0, 0.0],
            "grade": "fine" if match >= FINE_MATCH else ("warn" if match >= BAD_MATCH else "bad")}


def compare_outputs(names: list[str], kinds: dict[str, str], ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
                    labels: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Per-output metrics and the worst output (lowest SQNR).

    The top-level ``output_sqnr_db``, ``mean_abs_error``, ``max_abs_error`` and ``rms_error`` are the
    worst output's; ``top1_agreement_with_float`` and ``accuracy`` the first class output's.
    """
    per = [dict(name=n, **output_stats(ref[n], got[n], kinds[n], labels)) for n in names]
    scored = [r for r in per if r["sqnr_db"] is not None]  # index outputs have an exact-match rate instead
    worst = min(scored, key=lambda r: r["sqnr_db"]) if scored else min(per, key=lambda r: r["exact_match"])
    d: dict[str, Any] = {"outputs": per, "worst_output": worst["name"], "output_sqnr_db": worst["sqnr_db"],
                         "mean_abs_error": worst["mean_abs_error"], "max_abs_error": worst["max_abs_error"],
                         "rms_error": worst["rms_error"]}
    idx = [r for r in per if r["kind"] == "index"]
    if idx:
        d["index_exact_match"] = min(r["exact_match"] for r in idx)
    cls = next((r for r in per if r["kind"] == "class"), None)
    if cls is not None:
        for k in ("top1_agreement_with_float", "accuracy"):
            if k in cls:
                d[k] = cls[k]
    return d


def summary_line(stats: dict[str, Any], what: str) -> str:
    """One line naming the worst output, e.g. ``int8 tflite: worst output 'boxes' 6.4 dB (bad) of 4 outputs``."""
    w = next(r for r in stats["outputs"] if r["name"] == stats["worst_output"])
    n = len(stats["outputs"])

    def score(r: dict[str, Any]) -> str:
        return f"{r['sqnr_db']} dB" if r["sqnr_db"] is not None else f"{r['exact_match']:.2%} exact"
    others = ", ".join(f"'{r['name']}' {score(r)}" for r in stats["outputs"] if r is not w)
    if w["sqnr_db"] is None:
        return (f"{what}: output '{w['name']}' (indices) matches float on {w['exact_match']:.2%} of values "
                f"({w['grade']})" + (f"; other outputs: {others}" if n > 1 else ""))
    return (f"{what}: worst output '{w['name']}' {w['sqnr_db']} dB SQNR ({w['grade']}), max abs error "
            f"{w['max_abs_error']:.4g} on range [{w['range'][0]:.4g}, {w['range'][1]:.4g}]"
            + (f"; other outputs: {others}" if n > 1 else ""))

"""Prune, convert and size in one step; with a profile, find the least pruning that fits it.

:func:`compress_model` is what ``edge-convert prune`` runs:

1. import the float model, convert it unpruned (the baseline: int8 flash, arena, quality);
2. for one pruning level (``sparsity``) or, with ``fit_profile``, for increasing levels
   (:data:`LEVELS`): prune the float graph, refit the surviving weights on the calibration data
   (:func:`converters.compress.prune.reconstruct`, a few regularisation strengths, keeping the
   int8 model whose outputs are closest to the float model's on the calibration data), convert to int8 and, for unstructured
   pruning, store the pruned weights sparse (:mod:`converters.compress.sparse`);
3. measure each candidate's quality on the evaluation data (int8 model in the runtime) and its
   drop from the unpruned int8 model; stop at the first level that fits the profile, or as soon
   as the drop would exceed ``max_drop`` (then nothing is chosen and the result says why).

The sparse .tflite and the dense pruned .tflite compute the same integers (the dense file is
kept: it runs everywhere). The sparse file is written for the runtimes of the profile: when the profile
lists LiteRT (``litert`` or ``tflite`` backends), only the layout LiteRT reads right is stored sparse
(fully connected weights in 1x16 blocks; LiteRT ignores sparsity on CONV_2D weights), so the file runs on
LiteRT and on the micro backend; for micro-only profiles every eligible layer (1x1 convolutions too) is
stored sparse, for the micro backend's flash saving. Each candidate's ``sparse.runs_on`` and the summary
say which backends run the sparse file (see :mod:`converters.compress.sparse`).
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from converters.compress.prune import PruneResult, channel_prune, magnitude_prune, reconstruct
from converters.compress.quality import Quality, measure, outputs_of, runtime_runner
from converters.compress.sparse import runs_on_text
from edge_runtime.errors import ConfigError

#: pruning levels tried by the profile search, least first
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
#: at most this many calibration samples are held in memory for the weight refit
MAX_REFIT_SAMPLES = 256
#: refit regularisation strengths tried per level (int8 rounding interacts with the refit, so the
#: best one is picked on the calibration data)
RIDGES = (0.003, 0.03, 0.1)


@dataclass
class Candidate:
    """One pruned and converted model."""

    level: float
    kind: str
    tflite_path: str
    sparse_path: Optional[str]
    flash_bytes: int
    arena_bytes: int
    ram_bytes: int
    fits: bool
    quality: Optional[Quality]
    drop: Optional[float]
    sparsity: float
    removed_channels: dict[str, int] = field(default_factory=dict)
    sparse_report: Optional[dict] = None
    #: the file the profile's runtime loads, whose size ``flash_bytes`` is: the sparse file, or the dense one
    #: on microcontroller profiles (TensorFlow Lite Micro has no sparse kernels)
    deploy_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"level": self.level, "kind": self.kind, "tflite": self.tflite_path, "sparse_tflite": self.sparse_path,
                "deploy_tflite": self.deploy_path or self.tflite_path,
                "flash_bytes": self.flash_bytes, "arena_bytes": self.arena_bytes, "ram_bytes": self.ram_bytes,
                "fits": self.fits, "quality": self.quality.to_dict() if self.quality else None,
                "drop_points": None if self.drop is None else round(self.drop, 4), "sparsity": round(self.sparsity, 4),
                "removed_channels": self.removed_channels, "sparse": self.sparse_report}


@dataclass
class CompressResult:
    """The baseline, every candidate tried, and the chosen one (``None`` when none qualified)."""

    model: str
    profile: str
    baseline: Candidate
    float_quality: Optional[Quality]
    candidates: list[Candidate]
    chosen: Optional[Candidate]
    max_drop: Optional[float]
    stopped_because: str = ""
    report_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"model": self.model, "profile": self.profile, "max_drop_points": self.max_drop,
                "float_quality": self.float_quality.to_dict() if self.float_quality else None,
                "baseline": self.baseline.to_dict(), "candidates": [c.to_dict() for c in self.candidates],
                "chosen": self.chosen.to_dict() if self.chosen else None, "stopped_because": self.stopped_because}

    def summary(self) -> str:
        """Lines for people: size, arena and quality before and after."""
        b, c = self.baseline, self.chosen
        q = b.quality

        def qs(x: Optional[Quality]) -> str:
            return "n/a" if x is None else f"{x.metric} {x.value:.4f}"

        lines = [f"{self.model} on {self.profile}:",
                 f"  before: flash {b.flash_bytes:,} B, arena {b.arena_bytes:,} B, RAM {b.ram_bytes:,} B, {qs(q)}"
                 + (f" (float: {qs(self.float_quality)})" if self.float_quality else "")
                 + ("" if b.fits else " - does not fit")]
        for cand in self.candidates:
            mark = "*" if cand is c else " "
            lines.append(f" {mark}{cand.kind} {cand.level:.2f}: flash {cand.flash_bytes:,} B, arena {cand.arena_bytes:,} B, "
                         f"{qs(cand.quality)}, drop {cand.drop:.3f} points, {'fits' if cand.fits else 'does not fit'}"
                         if cand.drop is not None else
                         f" {mark}{cand.kind} {cand.level:.2f}: flash {cand.flash_bytes:,} B, arena {cand.arena_bytes:,} B, "
                         f"{'fits' if cand.fits else 'does not fit'}")
        if c is not None:
            lines.append(f"  after: flash {c.flash_bytes:,} B ({c.flash_bytes - b.flash_bytes:+,} B), arena "
                         f"{c.arena_bytes:,} B, {qs(c.quality)}"
                         + (f" (drop {c.drop:.3f} points)" if c.drop is not None else ""))
            deploy = c.deploy_path or c.sparse_path or c.tflite_path
            lines.append(f"  model: {deploy}")
            if c.sparse_path and c.sparse_report and deploy == c.sparse_path:
                lines.append(f"  {runs_on_text(c.sparse_report.get('runs_on', []))}")
                lines.append(f"  dense pruned file (runs everywhere): {c.tflite_path}")
            elif c.sparse_path:
                lines.append(f"  sparse file ({c.sparse_report.get('flash_after', 0) if c.sparse_report else 0:,} B; "
                             f"the micro backend on a host, not TensorFlow Lite Micro): {c.sparse_path}")
        if self.stopped_because:
            lines.append(f"  {self.stopped_because}")
        return "\n".join(lines)


#: values of ``compress_model(sparse_layout=...)``
SPARSE_LAYOUTS = ("auto", "litert", "micro")
#: profile backends that run models with LiteRT's kernels (ai-edge-litert or tflite-runtime)
LITERT_BACKENDS = frozenset({"litert", "tflite"})


def profile_uses_litert(profile: Any) -> bool:
    """True when the device profile runs models with LiteRT (its ``litert`` or ``tflite`` backend)."""
    return bool(LITERT_BACKENDS & set(getattr(profile, "backends", ()) or ()))


def _stack_calibration(graph: Any, calib: Any, limit: int) -> np.ndarray:
    from converters.calibration_data import open_calibration

    name = graph.inputs[0]
    data = open_calibration(calib, graph.source_shape(name), name, limit=limit)
    return np.stack([np.asarray(s, np.float32) for s in data])


def _eval_data(data: Any, calib_x: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if data is None:
        return calib_x, None
    if isinstance(data, tuple):
        return np.asarray(data[0], np.float32), (None if len(data) < 2 or data[1] is None else np.asarray(data[1]))
    from converters.calibration_data import load_labelled

    x, y = load_labelled(data, "evaluation", ConfigError)
    return x.astype(np.float32), y


def compress_model(model: "str | os.PathLike[str]", profile: Any, calib: Any, out_dir: "str | os.PathLike[str]", *,
                   sparsity: Optional[float] = None, fit_profile: bool = False, structured: bool = False,
                   max_drop: Optional[float] = None, data: Any = None, scope: str = "layer", block: int = 16,
                   refit: bool = True, backend: str = "litert", levels: tuple[float, ...] = LEVELS,
                   ridges: tuple[float, ...] = RIDGES, progress: bool = False,
                   sparse_layout: str = "auto") -> CompressResult:
    """Prune ``model`` at ``sparsity`` or, with ``fit_profile``, at the least level that fits ``profile``.

    ``structured``: remove whole channels (the level is the fraction of channels removed) instead
    of zeroing weights. ``data``: evaluation data, ``(x, y)`` or a .npz with ``x`` (and ``y``) in
    the source layout; default: the calibration samples. ``max_drop``: the largest quality drop
    allowed, in points (see :mod:`converters.compress.quality`). ``ridges``: regularisation strengths
    of the refit tried at each level (relative to the input energy; they pull the refitted weights
    towards the pruned ones); the int8 model whose outputs stay closest to the float model's on the
    *calibration* data is kept, so the evaluation data plays no part in the choice. ``sparse_layout``: which
    weights the sparse file stores sparse: ``"litert"`` only those LiteRT reads right (the file runs on LiteRT
    and on the micro backend), ``"micro"`` every eligible layer (the micro backend only; most flash saved),
    ``"auto"`` (default) ``"litert"`` when the profile lists a LiteRT backend, else ``"micro"``.
    """
    from device_profiles import load_profile

    from converters.compress.convert import convert_graph
    from converters.compress.sparse import sparsify_tflite
    from converters.fit import runs_tflite_micro
    from converters.pipeline import import_model

    if (sparsity is None) == (not fit_profile):
        raise ConfigError("give either a pruning level (--sparsity) or --fit-profile, not both or neither")
    if sparsity is not None and not 0.0 < sparsity < 1.0:
        raise ConfigError(f"--sparsity must be between 0 and 1 (exclusive), got {sparsity}")
    if sparse_layout not in SPARSE_LAYOUTS:
        raise ConfigError(f"unknown sparse layout '{sparse_layout}'; use one of {', '.join(SPARSE_LAYOUTS)}")
    if max_drop is not None and max_drop < 0:
        raise ConfigError(f"--max-drop must be >= 0, got {max_drop}")
    prof = load_profile(profile)
    for_litert = sparse_layout == "litert" or (sparse_layout == "auto" and profile_uses_litert(prof))
    runs_tflm = runs_tflite_micro(prof)  # the dense file is what such a profile deploys
    graph = import_model(model)
    if len(graph.inputs) != 1:
        raise ConfigError(f"{model}: pruning supports single-input models only")
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    calib_x = _stack_calibration(graph, calib, MAX_REFIT_SAMPLES)
    x_eval, y_eval = _eval_data(data, calib_x)
    in_name = graph.inputs[0]
    layout = graph.input_layouts.get(in_name)
    refit_x = np.stack([graph.to_ir_layout(in_name, s) for s in calib_x])

    from converters.compress.quality import float_runner

    float_out = outputs_of(float_runner(graph), x_eval)
    float_q = measure(float_out, x_eval, y_eval)

    def evaluate(path: str) -> Quality:
        outs = outputs_of(runtime_runner(path, backend, layout), x_eval)
        return measure(outs, x_eval, y_eval, reference=float_out)

    calib_float = outputs_of(float_runner(graph), calib_x) if data is not None else float_out

    def calib_error(path: str) -> float:
        """Relative squared error of the int8 model's outputs against the float model's, calibration data."""
        outs = outputs_of(runtime_runner(path, backend, layout), calib_x)
        return float(np.mean((outs - calib_float) ** 2) / (np.mean(calib_float ** 2) + 1e-12))

    base_conv = convert_graph(graph, prof, calib_x, os.path.join(out, "unpruned"))
    f = base_conv.fit
    base_q = evaluate(base_conv.tflite_path)
    baseline = Candidate(0.0, "none", base_conv.tflite_path, None, f.flash_bytes, f.arena_bytes, f.ram_bytes, f.fits,
                         base_q, 0.0, 0.0)
    kind = "channels" if structured else "unstructured"
    result = CompressResult(graph.name, prof.name, baseline, float_q, [], None, max_drop)
    if fit_profile and baseline.fits:
        result.chosen = baseline
        result.stopped_because = "the unpruned int8 model already fits the profile"
        return _finish(result, out)
    from edge_runtime.progress import track

    todo = [sparsity] if sparsity is not None else list(levels)
    for level in track(todo, f"prune {graph.name}", unit="level", show=bool(progress)):
        tag = f"{kind}_{int(round(level * 100)):02d}"
        d = os.path.join(out, tag)
        pr: PruneResult = (channel_prune(graph, level) if structured
                           else magnitude_prune(graph, level, scope=scope, block=block))
        options: list[tuple[float, Any, str]] = []
        for i, ridge in enumerate(ridges if refit else (None,)):
            g = pr.graph if ridge is None else reconstruct(graph, copy.deepcopy(pr.graph), refit_x, ridge=ridge,
                                                            kept_outputs=pr.kept_outputs)
            sub = d if len(ridges) == 1 or not refit else os.path.join(d, f"refit{i}")
            conv_i = convert_graph(g, prof, calib_x, sub, name=f"{graph.name}_{tag}")
            cq = calib_error(conv_i.tflite_path) if refit and len(ridges) > 1 else 0.0
            options.append((cq, conv_i, sub))
        _, conv, d = min(options, key=lambda o: o[0])
        fit = conv.fit
        flash, sparse_path, sparse_rep, deploy = fit.flash_bytes, None, None, conv.tflite_path
        if not structured:
            sparse_path = os.path.join(d, f"{graph.name}_{tag}_int8_sparse.tflite")
            rep = sparsify_tflite(conv.tflite_path, sparse_path, litert=for_litert)
            sparse_rep = rep.to_dict()
            if not runs_tflm:  # TensorFlow Lite Micro has no sparse kernels: it holds the dense file
                flash, deploy = rep.flash_after, sparse_path
        fits = flash <= prof.model_flash_budget_bytes and fit.ram_bytes <= prof.inference_ram_budget_bytes
        q = evaluate(conv.tflite_path)
        cand = Candidate(level, kind, conv.tflite_path, sparse_path, flash, fit.arena_bytes, fit.ram_bytes, fits, q,
                         q.drop_from(base_q), pr.sparsity, pr.removed_channels, sparse_rep, deploy)
        result.candidates.append(cand)
        if max_drop is not None and cand.drop is not None and cand.drop > max_drop:
            result.stopped_because = (f"stopped: pruning {level:.0%} ({kind}) costs {cand.drop:.3f} points, more than "
                                      f"--max-drop {max_drop:g}")
            break
        if sparsity is not None or fits:
            result.chosen = cand
            break
    else:
        if fit_profile:
            result.stopped_because = f"no pruning level up to {levels[-1]:.0%} makes the model fit {prof.name}"
    if fit_profile and result.chosen is None and not result.stopped_because:
        result.stopped_because = f"no pruning level fits {prof.name} within the allowed drop"
    return _finish(result, out)


def _finish(result: CompressResult, out: str) -> CompressResult:
    path = os.path.join(out, "prune_report.json")
    with open(path, "w") as fh:
        json.dump(result.to_dict(), fh, indent=2, default=float)
    result.report_path = path
    return result


__all__ = ["LEVELS", "Candidate", "CompressResult", "compress_model", "profile_uses_litert"]

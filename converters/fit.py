"""Size a converted int8 .tflite against a device profile, and check accelerator op coverage.

Flash is the file size, except that microcontroller profiles (TFLite Micro) count sparse weights
dense: TFLM has no sparse kernels and no DENSIFY, so a file with weights stored sparse (what
``edge-convert prune`` writes for LiteRT and the micro backend) is not what such a device can hold;
the figure is the file with every sparse tensor's stored values replaced by its dense bytes
(:func:`tflm_flash_bytes`), and the advice says to deploy the dense file. RAM is the activation arena planned by
:func:`edge_runtime.arena.plan.plan_arena` plus an estimate of the backend's own
overhead:

- microcontrollers (TFLite Micro): the arena as TFLM plans it (no in-place reuse) plus its
  persistent "tail" (tensor structs, per-channel multipliers and shifts, op data), estimated from
  the counts of tensors, ops and channels (fitted to the tails TFLM recorded for the MLPerf models);
- Linux boards: the micro backend's in-place plan plus the interpreter's resident overhead
  (a documented round figure per backend) and, since runtimes such as XNNPACK repack weights, one
  copy of the weights.

For each accelerator of the profile the ops are checked against ``supported_ops``; the Edge TPU
also gets its documented rules (full int8, static shapes, at most 3 dimensions larger than 1,
the first unsupported op and every op after it on the CPU).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from edge_runtime.formats.tflite import TFLiteModel

if TYPE_CHECKING:  # the schema imports pydantic; a shipped profile is read without it
    from device_profiles.schema import Accelerator, DeviceProfile

MiB = 1024 * 1024
#: Resident memory of the runtime itself on a Linux board (interpreter, kernels, Python bindings),
#: round figures measured as peak RSS of an empty-model session on x86_64/aarch64 hosts.
RUNTIME_OVERHEAD = {"litert": 24 * MiB, "tflite": 16 * MiB, "onnx": 40 * MiB, "micro": 2 * MiB}
#: TFLite Micro persistent allocations: per tensor, per op, per per-channel scale entry (weights and
#: biases both count, so 8 B per output channel: multiplier + shift), fixed. Fitted to the five
#: recorded TFLM tails in ../shared/models/README.md (all within 4 %).
TFLM_PER_TENSOR, TFLM_PER_OP, TFLM_PER_CHANNEL, TFLM_FIXED = 64, 100, 4, 256


@dataclass
class AcceleratorCoverage:
    """Which ops an accelerator takes and where the graph splits."""

    name: str
    ops_total: int
    ops_on_accelerator: int
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    segments: int = 1
    split: bool = False
    first_cpu_op: Optional[int] = None
    warning: str = ""


@dataclass
class FitReport:
    """Flash and RAM against the profile's budgets, plus accelerator coverage."""

    profile: str
    flash_bytes: int
    flash_budget_bytes: int
    arena_bytes: int
    arena_planner: str
    overhead_bytes: int
    overhead_note: str
    ram_bytes: int
    ram_budget_bytes: int
    fits: bool
    advice: list[str]
    accelerators: list[AcceleratorCoverage]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    def summary(self) -> str:
        """One paragraph for people."""
        lines = [
            f"profile {self.profile}: flash {self.flash_bytes:,} B of {self.flash_budget_bytes:,} B budget; "
            f"RAM {self.ram_bytes:,} B (arena {self.arena_bytes:,} B + {self.overhead_note} {self.overhead_bytes:,} B) "
            f"of {self.ram_budget_bytes:,} B budget: {'fits' if self.fits else 'DOES NOT FIT'}"]
        for a in self.accelerators:
            lines.append(f"accelerator {a.name}: {a.ops_on_accelerator}/{a.ops_total} ops supported"
                         + (f"; {a.warning}" if a.warning else ""))
        lines += [f"advice: {x}" for x in self.advice]
        return "\n".join(lines)


def runs_tflite_micro(profile: "DeviceProfile") -> bool:
    """True when ``profile`` runs models with TensorFlow Lite Micro: a microcontroller, or any board without
    Python (sized as TFLM plans the arena, sparse weights counted dense, the dense pruned file deployed)."""
    return bool(profile.microcontroller or not profile.python)


def _runtime_overhead(model: TFLiteModel, profile: "DeviceProfile") -> tuple[int, str]:
    sg = model.main
    if runs_tflite_micro(profile):
        channels = 0
        for t in sg.tensors:
            if t.quantization is not None and t.quantization.per_channel:
                channels += int(t.quantization.scale.size)
        est = (TFLM_FIXED + TFLM_PER_TENSOR * len(sg.tensors) + TFLM_PER_OP * len(sg.operators)
               + TFLM_PER_CHANNEL * channels)
        return est, "TFLM persistent data (estimate)"
    backend = next((b for b in profile.backends if b in RUNTIME_OVERHEAD), "litert")
    return RUNTIME_OVERHEAD[backend] + model.weight_bytes(), f"{backend} runtime + repacked weights (estimate)"


def sparse_weight_tensors(model: TFLiteModel) -> list[Any]:
    """The constant tensors of ``model`` stored sparse (TFLite SparsityParameters), in every subgraph."""
    return [t for sg in model.subgraphs for t in sg.tensors if t.sparse and t.data is not None]


def tflm_flash_bytes(model: TFLiteModel, file_bytes: int) -> int:
    """Flash TFLite Micro needs for ``model`` (a ``file_bytes``-byte file): the file with each sparse tensor's
    stored values replaced by its dense bytes. TFLM has no sparse kernels and no DENSIFY, so the weights must
    be stored dense; the sparsity metadata is still counted (an over-estimate by its few bytes)."""
    extra = 0
    for t in sparse_weight_tensors(model):
        extra += max(t.nbytes - int(t.data.size), 0)
    return file_bytes + extra


def _dims_ok(shape: tuple[int, ...]) -> bool:
    return len(shape) <= 3 or all(d == 1 for d in shape[:-3])


def accelerator_coverage(model: TFLiteModel, acc: "Accelerator") -> AcceleratorCoverage:
    """Op-by-op check of ``model`` against ``acc``; Edge TPU rules for Edge TPU accelerators."""
    sg = model.main
    supported = set(acc.supported_ops)
    edgetpu = "edgetpu" in (acc.library or "").lower() or "edge tpu" in acc.name.lower()
    ok: list[bool] = []
    unsupported = []
    for op in sg.operators:
        reasons = []
        if supported and op.name not in supported:
            reasons.append("op not in the supported list")
        if edgetpu:
            tensors = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
            if any(t.type_name not in ("INT8", "UINT8", "INT32") for t in tensors):
                reasons.append("not fully 8-bit quantized")
            if any(t.shape_signature is not None and any(d < 0 for d in t.shape_signature[1:]) for t in tensors):
                reasons.append("dynamic shape")
            big = [t.shape for t in tensors if not t.is_constant and not _dims_ok(t.shape)]
            if big:
                reasons.append(f"tensor {big[0]} has more than 3 dimensions larger than 1")
        ok.append(not reasons)
        if reasons:
            unsupported.append({"op_index": op.index, "op": op.name, "reasons": reasons})
    segments = 1 + sum(1 for a, b in zip(ok, ok[1:]) if a != b) if ok else 0
    cov = AcceleratorCoverage(acc.name, len(ok), sum(ok), unsupported, segments)
    if edgetpu and not all(ok):
        first = next(i for i, v in enumerate(ok) if not v)
        cov.first_cpu_op = first
        cov.ops_on_accelerator = first
        cov.split = 0 < first < len(ok)
        cov.warning = (f"the Edge TPU compiler stops at op {first} ({sg.operators[first].name}: "
                       f"{'; '.join(unsupported[0]['reasons'])}); it and the {len(ok) - first - 1} ops after it run "
                       "on the CPU" + (" - the graph splits between TPU and CPU" if cov.split else ""))
    elif not all(ok):
        cov.split = segments > 1
        names = sorted({u["op"] for u in unsupported})
        cov.warning = (f"{len(unsupported)} op(s) stay on the CPU ({', '.join(names)})"
                       + (f"; the graph splits into {segments} segments" if cov.split else ""))
    return cov


def fit_model(tflite_path: "str | os.PathLike[str]", profile: "DeviceProfile") -> FitReport:
    """Flash, arena and overhead of ``tflite_path`` against ``profile``'s budgets."""
    return _Sizing(tflite_path).fit(profile)


class _Sizing:
    """One model file, opened once, sized against any number of profiles.

    The arena plan depends only on the model and on whether ops run in place (Linux boards)
    or not (microcontrollers), so at most two plans are made, whatever the profiles."""

    def __init__(self, tflite_path: "str | os.PathLike[str]") -> None:
        self.path = os.fspath(tflite_path)
        self.model = TFLiteModel.open(self.path)
        self.flash = os.path.getsize(self.path)
        self._plans: dict[bool, Any] = {}

    def plan(self, in_place: bool) -> Any:
        """The arena plan (made on first use); a failure is not kept, so it is raised again."""
        if in_place not in self._plans:
            from edge_runtime.arena.plan import plan_arena

            self._plans[in_place] = plan_arena(self.model, in_place=in_place)
        return self._plans[in_place]

    def fit(self, profile: "DeviceProfile") -> FitReport:
        """Flash, arena and overhead against ``profile``'s budgets."""
        model, flash = self.model, self.flash
        mcu = runs_tflite_micro(profile)
        plan = self.plan(not mcu)
        overhead, note = _runtime_overhead(model, profile)
        ram = plan.arena_bytes + overhead
        advice: list[str] = []
        sparse = sparse_weight_tensors(model) if mcu else []
        if sparse:
            flash = tflm_flash_bytes(model, self.flash)
            advice.append(f"the file stores {len(sparse)} weight tensor(s) sparse, which TensorFlow Lite Micro cannot "
                          f"load (no sparse kernels, no DENSIFY): flash is counted dense ({flash:,} B, not the "
                          f"{self.flash:,}-byte file); deploy the dense .tflite on {profile.name}")
        if flash > profile.model_flash_budget_bytes:
            advice.append(f"the model is {flash - profile.model_flash_budget_bytes:,} B over the flash budget "
                          f"({flash:,} > {profile.model_flash_budget_bytes:,}): use fewer or narrower layers, prune, "
                          "or pick a board with more flash")
        if ram > profile.inference_ram_budget_bytes:
            over = ram - profile.inference_ram_budget_bytes
            biggest = max(plan.tensor_entries(), key=lambda e: e.size, default=None)
            short = biggest.name.split(";")[-1][:60] if biggest is not None else ""
            tip = (f"; the largest activation is '{short}' ({biggest.size:,} B): lower the input resolution or "
                   "the channel count of the early layers" if biggest is not None else "")
            advice.append(f"RAM is {over:,} B over the inference budget ({ram:,} > "
                          f"{profile.inference_ram_budget_bytes:,})"
                          + tip + ("" if mcu else "; on Linux boards the micro backend has the smallest overhead"))
        covs = [accelerator_coverage(model, a) for a in profile.accelerators]
        return FitReport(profile.name, flash, profile.model_flash_budget_bytes, plan.arena_bytes,
                         f"{plan.planner}{' in-place' if plan.in_place else ''}", overhead, note, ram,
                         profile.inference_ram_budget_bytes,
                         flash <= profile.model_flash_budget_bytes and ram <= profile.inference_ram_budget_bytes,
                         advice, covs)


def profiles_that_fit(tflite_path: "str | os.PathLike[str]") -> list[str]:
    """Names of the shipped profiles this model fits (for advice when it does not fit the chosen one)."""
    from device_profiles import list_profiles

    out: list[str] = []
    profiles = list_profiles()
    try:
        sizing = _Sizing(tflite_path)
    except Exception:  # (a model that cannot be opened fits no profile)
        return out
    for prof in profiles:
        try:
            if sizing.fit(prof).fits:
                out.append(prof.name)
        except Exception:  # a profile we cannot size is simply not suggested
            continue
    return out


__all__ = ["FitReport", "AcceleratorCoverage", "fit_model", "accelerator_coverage", "profiles_that_fit",
           "tflm_flash_bytes", "sparse_weight_tensors", "runs_tflite_micro"]

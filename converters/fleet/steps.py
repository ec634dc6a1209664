"""The conversion steps of a fleet build, each a plain function so others can be plugged in.

A step function has the signature ``convert(job, out_dir) -> (files, report)``: it writes
artefacts into ``out_dir`` and returns ``{file name: role}`` and a JSON-friendly report.
:func:`run_job` resolves the job's converter from a dotted name (so it also works in
worker processes), runs it, and for microcontroller profiles embeds the offline arena plan
and writes the arena report.

- :func:`convert_prebuilt`: the source is already converted; copy it.
- :func:`convert_with_pipeline`: :func:`converters.pipeline.convert_model` (int8 TFLite/ONNX).
- :func:`microcontroller_step`: :func:`converters.offline_plan.embed_offline_plan`, plus the
  TFLM arena size measured with the ``tflite-micro`` package where it is installed.
"""
from __future__ import annotations

import importlib
import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from edge_runtime.errors import ConfigError, EdgeRuntimeError

if TYPE_CHECKING:
    from device_profiles import DeviceProfile

ConvertFn = Callable[["ConversionJob", Path], tuple[dict[str, str], dict[str, Any]]]
DEFAULT_CONVERTER = "converters.fleet.steps:convert_auto"


@dataclass
class ConversionJob:
    """One (model, profile) conversion. Plain data, so it can go to a worker process."""

    key: str
    model_name: str
    source: str
    source_sha256: str
    calibration: Optional[str]
    calibration_sha256: Optional[str]
    profile: dict[str, Any]
    formats: list[str]
    calibration_samples: Optional[int]
    options: dict[str, Any]
    prebuilt: bool
    converter: str = DEFAULT_CONVERTER
    groups: list[str] = field(default_factory=list)

    @property
    def microcontroller(self) -> bool:
        """True for a sizing-only microcontroller profile."""
        return bool(self.profile.get("microcontroller"))

    def device_profile(self) -> "DeviceProfile":
        """The profile as a :class:`DeviceProfile`."""
        from device_profiles import DeviceProfile

        return DeviceProfile.model_validate(self.profile)


def resolve(dotted: str) -> ConvertFn:
    """``'package.module:function'`` -> the function."""
    mod, _, name = dotted.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"converter '{dotted}' cannot be loaded: {exc}") from None


def convert_prebuilt(job: ConversionJob, out_dir: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Ship an already converted model as it is."""
    src = Path(job.source)
    ext = src.suffix.lower().lstrip(".")
    name = f"model.{ext}"
    shutil.copyfile(src, out_dir / name)
    return {name: "model"}, {"converter": "prebuilt", "source": src.name, "format": ext}


def convert_with_pipeline(job: ConversionJob, out_dir: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Quantize with :func:`converters.pipeline.convert_model`."""
    try:
        from converters.pipeline import convert_model
    except ImportError as exc:
        raise ConfigError(f"model '{job.model_name}': the converter (converters.pipeline) is not available "
                          f"in this installation ({exc}); set prebuilt: true to ship converted models") from None
    work = out_dir / "work"
    work.mkdir()
    kwargs = dict(job.options)
    if job.calibration_samples is not None:
        kwargs.setdefault("limit", job.calibration_samples)
    result = convert_model(job.source, job.device_profile(), job.calibration, str(work),
                           formats=tuple(job.formats), **kwargs)
    files: dict[str, str] = {}
    for fmt in job.formats:
        p = getattr(result, f"{fmt}_path", None)
        if p:
            shutil.move(str(p), out_dir / f"model.{fmt}")
            files[f"model.{fmt}"] = "model"
    report = dict(getattr(result, "report", None) or {})
    report.setdefault("fits", getattr(result, "fits", None))
    shutil.rmtree(work, ignore_errors=True)
    if not files:
        raise EdgeRuntimeError(f"model '{job.model_name}': the converter produced none of {job.formats}")
    return files, report


def convert_auto(job: ConversionJob, out_dir: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Prebuilt models are copied; the others go through the converter pipeline."""
    return convert_prebuilt(job, out_dir) if job.prebuilt else convert_with_pipeline(job, out_dir)


def microcontroller_step(job: ConversionJob, out_dir: Path, files: dict[str, str],
                         report: dict[str, Any]) -> None:
    """Embed the offline arena plan in the .tflite and write ``arena.json`` / ``arena.txt``."""
    from converters.offline_plan import embed_offline_plan, run_tflm, tflm_available
    from edge_runtime.arena.align import align_up
    from edge_runtime.formats.tflite import TFLiteModel

    model_path = out_dir / "model.tflite"
    if not model_path.exists():
        raise ConfigError(f"model '{job.model_name}': a microcontroller profile needs a .tflite model")
    planned = out_dir / "model.planned.tflite"
    plan = embed_offline_plan(model_path, planned)
    planned.replace(model_path)
    profile = job.device_profile()
    measured = None
    if tflm_available():
        m = TFLiteModel.open(model_path)
        x = np.stack([np.zeros(m.main.tensors[i].shape, m.main.tensors[i].dtype) for i in m.main.inputs[:1]])
        run = run_tflm(model_path, x)
        measured = {"head_bytes": run.head_bytes, "total_bytes": run.total_bytes,
                    "host": f"{platform.system()} {platform.machine()} (tflite-micro Python package)"}
    recommended = align_up(measured["total_bytes"]) if measured else None
    model_bytes = model_path.stat().st_size
    arena = {
        "model": "model.tflite",
        "offline_plan_embedded": True,
        "planned_activation_bytes": plan.arena_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes,
        "tflm_measured": measured,
        "recommended_arena_bytes": recommended,
        "inference_ram_budget_bytes": profile.inference_ram_budget_bytes,
        "model_bytes": model_bytes,
        "model_flash_budget_bytes": profile.model_flash_budget_bytes,
        "fits_ram": (recommended or plan.arena_bytes) <= profile.inference_ram_budget_bytes,
        "fits_flash": model_bytes <= profile.model_flash_budget_bytes,
    }
    (out_dir / "arena.json").write_text(json.dumps(arena, indent=2) + "\n")
    lines = [f"TFLite Micro arena for {job.model_name} on {profile.display_name}",
             f"  activations (offline plan embedded as OfflineMemoryAllocation): {plan.arena_bytes:,} bytes "
             f"(lower bound {plan.lower_bound_bytes:,})"]
    if measured:
        lines += [f"  TFLM arena measured on {measured['host']}: head {measured['head_bytes']:,} + persistent "
                  f"{measured['total_bytes'] - measured['head_bytes']:,} = {measured['total_bytes']:,} bytes",
                  "  (persistent allocations are measured with 64-bit pointers; a 32-bit MCU needs a little less)",
                  f"  configure: constexpr size_t kTensorArenaSize = {recommended};"]
    else:
        lines += ["  TFLM's persistent allocations were not measured (tflite-micro is not installed here):",
                  f"  configure kTensorArenaSize = {plan.arena_bytes} + what RecordingMicroAllocator reports as tail"]
    lines.append(f"  budget: {profile.inference_ram_budget_bytes:,} bytes of RAM, "
                 f"{profile.model_flash_budget_bytes:,} bytes of flash (model: {model_bytes:,})")
    (out_dir / "arena.txt").write_text("\n".join(lines) + "\n")
    files["arena.json"] = "report"
    files["arena.txt"] = "report"
    report["arena"] = arena


def run_job(job: ConversionJob, cache_root: str) -> str:
    """Convert ``job`` into the cache (worker entry point); return its key."""
    from converters.fleet.cache import ConversionCache

    cache = ConversionCache(cache_root)
    convert = resolve(job.converter)

    def produce(out_dir: Path) -> tuple[dict[str, str], dict[str, Any]]:
        files, report = convert(job, out_dir)
        files = dict(files)
        if job.microcontroller:
            microcontroller_step(job, out_dir, files, report)
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
        files["report.json"] = "report"
        return files, report

    cache.put(job.key, produce)
    return job.key

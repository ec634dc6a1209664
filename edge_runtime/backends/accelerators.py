"""Choose an accelerator from the device profile, try it, and fall back to the CPU.

A profile lists accelerators (:class:`device_profiles.schema.Accelerator`): TFLite
external delegates (``libedgetpu.so.1``, ``libvx_delegate.so``,
``libarmnnDelegate.so`` with its ``backends`` option, ...) or ONNX Runtime
execution providers. The backends ask this module which ones to try; when none
can be used, one log line says what was tried and why it failed, and the model
runs on the CPU. ``require_accelerator=True`` turns that into
:class:`~edge_runtime.errors.AcceleratorUnavailableError`.

The ``accelerator`` option: ``"auto"`` (the profile's accelerators for this
backend, in order), ``"none"`` (CPU only), an accelerator's name from the
profile, or, for ad-hoc use, a delegate library path (``/opt/lib/libfoo.so``) or
an ONNX Runtime provider name (``CUDAExecutionProvider``).
"""
from __future__ import annotations

from edge_runtime import log as logging  # a logging.getLogger stand-in: imports logging on the first message
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from edge_runtime.errors import AcceleratorUnavailableError, ConfigError

log = logging.getLogger("edge_runtime")

TFLITE_DELEGATE = "tflite_delegate"
ONNX_EP = "onnx_ep"


@dataclass(frozen=True)
class AcceleratorSpec:
    """One accelerator to try, independent of where it came from (profile or option)."""

    name: str
    kind: str
    library: Optional[str] = None
    options: dict[str, str] = field(default_factory=dict)
    provider: Optional[str] = None
    provider_options: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``name (library)`` or ``name (provider)``, for log lines and errors."""
        what = self.library if self.kind == TFLITE_DELEGATE else self.provider
        return self.name if what == self.name else f"{self.name} ({what})"

    @property
    def is_edgetpu(self) -> bool:
        """True for the Coral Edge TPU delegate."""
        return bool(self.library) and os.path.basename(self.library or "").startswith("libedgetpu")


@dataclass
class Selection:
    """What was chosen: an accelerator and its handle, or the CPU and the reason."""

    spec: Optional[AcceleratorSpec] = None
    handle: Any = None
    tried: list[str] = field(default_factory=list)
    reason: Optional[str] = None

    def info(self) -> dict[str, Any]:
        """A JSON-friendly record for :attr:`Model.info`."""
        if self.spec is not None:
            return {"accelerator": self.spec.describe(), "fallback_reason": None}
        return {"accelerator": None, "fallback_reason": self.reason}


def _from_profile(acc: Any) -> AcceleratorSpec:
    return AcceleratorSpec(
        name=acc.name, kind=acc.kind, library=acc.library, options=dict(acc.options),
        provider=acc.provider, provider_options=dict(acc.provider_options),
    )


def candidates(profile: Any, kind: str, accelerator: Optional[str] = "auto",
               extra_options: Optional[dict[str, str]] = None) -> list[AcceleratorSpec]:
    """The accelerators of ``kind`` to try, in order, for the ``accelerator`` option.

    Raises :class:`ConfigError` when a named accelerator is not in the profile and
    does not look like a library path or a provider name.
    """
    choice = "auto" if accelerator is None else str(accelerator)
    listed = [_from_profile(a) for a in (profile.accelerators if profile is not None else []) if a.kind == kind]
    if choice.lower() == "none":
        out: list[AcceleratorSpec] = []
    elif choice.lower() == "auto":
        out = listed
    else:
        matches = [a for a in listed if choice.lower() in (a.name.lower(), (a.library or "").lower(),
                                                          (a.provider or "").lower())]
        if matches:
            out = matches
        elif kind == TFLITE_DELEGATE and (choice.endswith((".so", ".dylib", ".dll")) or ".so." in choice
                                          or os.sep in choice):
            out = [AcceleratorSpec(name=os.path.basename(choice), kind=kind, library=choice)]
        elif kind == ONNX_EP and choice.endswith("ExecutionProvider"):
            out = [AcceleratorSpec(name=choice, kind=kind, provider=choice)]
        else:
            known = ", ".join(a.name for a in listed) or "none"
            where = f"profile '{profile.name}'" if profile is not None else "no profile given"
            raise ConfigError(
                f"unknown accelerator '{choice}' ({where}; its accelerators for this backend: {known}); "
                "give 'auto', 'none', a name from the profile, a delegate library path or an ONNX Runtime provider"
            )
    if extra_options:
        out = [AcceleratorSpec(a.name, a.kind, a.library, {**a.options, **extra_options}, a.provider,
                               {**a.provider_options, **extra_options}) for a in out]
    return out


def select(specs: list[AcceleratorSpec], open_one: Callable[[AcceleratorSpec], Any], *,
           require: bool, backend: str, profile_name: Optional[str]) -> Selection:
    """Try ``open_one`` on each spec in turn; the first that returns a handle wins.

    ``open_one`` raises any exception to say the accelerator is unusable; its text
    becomes the reason. With no success: log one line and return a CPU selection,
    or raise :class:`AcceleratorUnavailableError` when ``require`` is set.
    """
    sel = Selection()
    failures = []
    for spec in specs:
        sel.tried.append(spec.describe())
        try:
            handle = open_one(spec)
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
            failures.append(f"{spec.describe()}: {_clean(exc)}")
            continue
        sel.spec, sel.handle = spec, handle
        return sel
    if not specs:
        where = f"profile '{profile_name}'" if profile_name else "no device profile given"
        sel.reason = f"no accelerator configured for the {backend} backend ({where})"
    else:
        sel.reason = "; ".join(failures)
    if require:
        raise AcceleratorUnavailableError(f"an accelerator is required but none can be used: {sel.reason}")
    if specs:
        log.warning("accelerator unavailable, running on the CPU: tried %s", sel.reason)
    else:
        log.debug("running on the CPU: %s", sel.reason)
    return sel


def fail_after_open(sel: Selection, reason: str, *, require: bool) -> Selection:
    """An accelerator opened but could not be applied to the model: fall back the same way."""
    spec = sel.spec
    text = f"{spec.describe() if spec else 'accelerator'}: {reason}"
    if require:
        raise AcceleratorUnavailableError(f"an accelerator is required but none can be used: {text}")
    log.warning("accelerator unavailable, running on the CPU: tried %s", text)
    return Selection(spec=None, handle=None, tried=sel.tried, reason=text)


def _clean(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def onnx_providers_available() -> list[str]:
    """ONNX Runtime's available execution providers (empty when onnxruntime is missing)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


#: Above this share of the model's nodes on the CPU, a model "runs mostly on the CPU" despite its accelerator.
MOSTLY_CPU_SHARE = 0.5


def placement_warning(path: str, accelerator: str, placed: int, total: int, cpu_ops: dict[str, int]) -> Optional[str]:
    """One warning line when an accelerator runs at most half of ``total`` nodes, naming the ops left on the CPU."""
    if total <= 0 or (total - placed) / total <= MOSTLY_CPU_SHARE:
        return None
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(cpu_ops.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"{path}: the model runs mostly on the CPU: {accelerator} runs {placed} of its {total} nodes; "
            f"not placed: {ops or 'none'}")

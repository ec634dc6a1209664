"""Device profiles: one YAML file per board in ``boards/``, validated by :mod:`device_profiles.schema`.

``load_profile(name_or_path)`` accepts a shipped profile name (``rpi5``) or the path
to a user's own YAML file. A shipped profile comes from its pre-validated values
(:mod:`device_profiles.shipped`) while they match the YAML file and the schema, without importing
pydantic or PyYAML; a user's file is always read and validated.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edge_runtime.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from device_profiles.schema import Accelerator, DeviceProfile

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
__all__ = ["DeviceProfile", "Accelerator", "load_profile", "list_profiles", "profile_names", "BOARDS_DIR"]


def __getattr__(name: str) -> Any:
    """``DeviceProfile`` and ``Accelerator`` import the schema (and pydantic) on first use."""
    if name in ("DeviceProfile", "Accelerator"):
        from device_profiles import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'device_profiles' has no attribute '{name}'")


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def _format_validation_error(path: str, exc: "ValidationError") -> str:
    from edge_runtime.config_errors import field_message

    errs = exc.errors()
    lines = [f"{path}: invalid device profile ({len(errs)} problem{'s' if len(errs) != 1 else ''})"]
    for err in errs:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg, special = field_message(
            err, unknown="unknown field (check the spelling; allowed fields are in device_profiles/schema.py)",
            missing="required field is missing")
        if not special and "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        lines.append(f"  field '{loc}': {msg}")
    return "\n".join(lines)


def load_profile_file(path: Union[str, os.PathLike]) -> "DeviceProfile":
    """Read and validate one profile YAML file; raise :class:`ConfigError` naming file and field."""
    from pydantic import ValidationError

    from device_profiles.schema import DeviceProfile
    from edge_runtime.safe_yaml import load_yaml_file

    p = os.fspath(path)
    data = load_yaml_file(p, "profile file", hint="a profile is UTF-8 YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a profile must be a YAML mapping, got {type(data).__name__}")
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(p, exc)) from None


def load_profile(name_or_path: "Union[str, os.PathLike, DeviceProfile]") -> "DeviceProfile":
    """A shipped profile by name, or a user's YAML file by path (a profile object is returned as it is)."""
    from device_profiles.shipped import ProfileView, shipped_view

    if type(name_or_path) is ProfileView:
        return name_or_path  # type: ignore[return-value]
    if not isinstance(name_or_path, (str, os.PathLike)):
        from device_profiles.schema import DeviceProfile

        if isinstance(name_or_path, DeviceProfile):
            return name_or_path
    s = os.fspath(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s or os.path.exists(s):
        return load_profile_file(s)
    candidate = BOARDS_DIR / f"{s}.yaml"
    if not candidate.exists():
        raise ConfigError(f"unknown device profile '{s}'; known profiles: {', '.join(profile_names())}")
    view = shipped_view(s)
    return view if view is not None else load_profile_file(candidate)  # type: ignore[return-value]


def list_profiles() -> "list[DeviceProfile]":
    """Every shipped profile, validated."""
    return [load_profile_file(BOARDS_DIR / f"{n}.yaml") for n in profile_names()]

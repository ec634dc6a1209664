"""The fleet file's schema: three layers, ``defaults`` -> ``groups`` -> ``devices``.

Each layer overrides the one before, the way balena's fleet-wide and per-device
variables do: ``convert`` and ``daemon`` mappings are merged key by key (deeply),
lists and scalars are replaced. Unknown keys are errors at every level.

- ``defaults``: settings every group starts from (profile, convert, daemon).
- ``groups.<name>``: a profile, its models (source, calibration, preprocess,
  postprocess, labels), which model the daemon serves, and daemon settings.
  One bundle is built per group.
- ``devices.<id>``: a device's group and its own daemon overrides; the group's
  bundle carries one ``devices/<id>.yaml`` per device.

The ``daemon`` mappings are validated, after merging, against
:class:`edge_runtime.daemon.config.DaemonConfig` (the ``device.yaml`` of
``edge-runtime serve``); the build fills in ``model.path``, ``model.labels``,
``preprocess``, ``postprocess`` and ``profile``.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"

Format = Literal["tflite", "onnx"]
#: Group names and device ids become file names in bundles.
Name = Annotated[str, Field(pattern=_NAME, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConvertSettings(_Strict):
    """Converter settings; any layer may set them, and a model may override them."""

    formats: Optional[list[Format]] = Field(None, min_length=1, description="what to produce; default [tflite]")
    calibration_samples: Optional[int] = Field(None, ge=1, description="samples of the calibration data to use")
    options: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments for the converter")


class ModelSpec(_Strict):
    """One model of a group."""

    source: str = Field(description="the float model (.onnx or .tflite), relative to the fleet file")
    prebuilt: bool = Field(False, description="the source is already converted for this profile; ship it as is")
    calibration: Optional[str] = Field(None, description="calibration data (.npy/.npz/folder), relative to the fleet file")
    preprocess: Optional[Any] = Field(None, description="the daemon's preprocess chain (edge_runtime.preprocess config)")
    postprocess: Optional[list[dict[str, Any]]] = Field(None, description="the daemon's postprocess steps")
    labels: Optional[Union[str, list[str]]] = Field(None, description="a labels file (one per line) or a list")
    test_input: Optional[str] = Field(None, description=".npy input the daemon uses to check a new model")
    convert: ConvertSettings = Field(default_factory=ConvertSettings)


class Defaults(_Strict):
    """The first layer."""

    profile: Optional[str] = None
    convert: ConvertSettings = Field(default_factory=ConvertSettings)
    daemon: dict[str, Any] = Field(default_factory=dict)


class Group(_Strict):
    """A device group: one profile, one bundle."""

    description: str = ""
    profile: Optional[str] = Field(None, description="a shipped profile name or a YAML path (relative to the fleet file)")
    models: dict[Name, ModelSpec] = Field(min_length=1)
    serve: Optional[str] = Field(None, description="the model the daemon serves; required with several models")
    convert: ConvertSettings = Field(default_factory=ConvertSettings)
    daemon: dict[str, Any] = Field(default_factory=dict)


class Device(_Strict):
    """One device: its group and its overrides."""

    group: str
    description: str = ""
    daemon: dict[str, Any] = Field(default_factory=dict)


class FleetFile(_Strict):
    """The whole fleet file."""

    version: Literal[1] = 1
    name: str = Field(pattern=_NAME)
    defaults: Defaults = Field(default_factory=Defaults)
    groups: dict[Name, Group] = Field(min_length=1)
    devices: dict[Name, Device] = Field(default_factory=dict)

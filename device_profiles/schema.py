"""The device-profile schema: what a board offers and what inference may use.

Profiles are YAML files validated by :class:`DeviceProfile`. Unknown keys are
errors, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Backend = Literal["litert", "tflite", "onnx", "micro"]

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> Any:
    """Accept byte counts as integers or as strings such as ``'512 KiB'``, ``'4GiB'``, ``'2 MB'``.

    Binary units (KiB, MiB, GiB) are powers of 1024; decimal units (kB, MB, GB) powers
    of 1000, as datasheets use them. Anything else is passed through for pydantic to reject.
    """
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"'{value}' is not a size; use bytes or a number with KiB/MiB/GiB/kB/MB/GB")
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if n != int(n):
            raise ValueError(f"'{value}' is not a whole number of bytes")
        return int(n)
    return value


#: A byte count; YAML may write it as ``4 GiB``.
ByteCount = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CPU(_Strict):
    """The application processor (or MCU core)."""

    model: str = Field(description="CPU core, e.g. 'Cortex-A76'")
    cores: int = Field(ge=1)
    clock_mhz: int = Field(ge=1)
    simd: list[str] = Field(default_factory=list, description="e.g. ['neon', 'dotprod']")


class Accelerator(_Strict):
    """One accelerator and how to reach it from a backend."""

    name: str = Field(description="human name, e.g. 'Coral Edge TPU'")
    kind: Literal["tflite_delegate", "onnx_ep"]
    #: TFLite external delegate shared library, e.g. 'libedgetpu.so.1'.
    library: Optional[str] = None
    #: Options passed to the delegate (string values, as TFLite's external delegate takes them).
    options: dict[str, str] = Field(default_factory=dict)
    #: ONNX Runtime execution provider name, e.g. 'TensorrtExecutionProvider'.
    provider: Optional[str] = None
    provider_options: dict[str, str] = Field(default_factory=dict)
    #: What the accelerator can run, used by the converter's op-coverage report.
    supported_ops: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list, description="documented limits, free text")

    @model_validator(mode="after")
    def _check_kind(self) -> "Accelerator":
        if self.kind == "tflite_delegate" and not self.library:
            raise ValueError("a tflite_delegate accelerator needs 'library'")
        if self.kind == "onnx_ep" and not self.provider:
            raise ValueError("an onnx_ep accelerator needs 'provider'")
        return self


class DeviceProfile(_Strict):
    """A board: CPU, memory, storage, backends and accelerators."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    display_name: str
    #: System on chip or MCU part number, e.g. 'BCM2712'.
    soc: str = ""
    arch: Literal["aarch64", "armv7l", "armv6l", "x86_64", "armv7e-m", "xtensa", "riscv64"]
    cpu: CPU
    ram_bytes: ByteCount
    #: Non-volatile storage for the model: eMMC/SD for Linux boards, internal flash for MCUs.
    storage_bytes: ByteCount
    #: RAM the model's arena, buffers and runtime may use.
    inference_ram_budget_bytes: ByteCount
    #: Flash or storage the model file may use.
    model_flash_budget_bytes: ByteCount
    python: bool = Field(description="whether the device can run CPython (False: sizing only)")
    backends: list[Backend] = Field(default_factory=list)
    accelerators: list[Accelerator] = Field(default_factory=list)
    default_threads: int = Field(ge=1, default=1)
    #: Model input/output type the converter should produce for this board.
    io_dtype: Literal["int8", "uint8", "float32"] = "int8"
    microcontroller: bool = False
    sources: list[str] = Field(default_factory=list, description="datasheets the values come from")
    notes: str = ""

    @property
    def accelerator_names(self) -> list[str]:
        """Names of the accelerators, in preference order."""
        return [a.name for a in self.accelerators]

    @model_validator(mode="after")
    def _check_budgets(self) -> "DeviceProfile":
        if self.inference_ram_budget_bytes > self.ram_bytes:
            raise ValueError(
                f"inference_ram_budget_bytes ({self.inference_ram_budget_bytes}) exceeds ram_bytes ({self.ram_bytes})"
            )
        if self.model_flash_budget_bytes > self.storage_bytes:
            raise ValueError(
                f"model_flash_budget_bytes ({self.model_flash_budget_bytes}) exceeds storage_bytes ({self.storage_bytes})"
            )
        if self.python and not self.backends:
            raise ValueError("a profile with python: true must list at least one backend")
        if self.microcontroller and self.python:
            raise ValueError("a microcontroller profile must have python: false (it is used for sizing only)")
        if self.default_threads > self.cpu.cores:
            raise ValueError(f"default_threads ({self.default_threads}) exceeds cpu.cores ({self.cpu.cores})")
        return self

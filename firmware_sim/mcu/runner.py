"""Build a generated C project and run inputs through it: on the host (gcc) or on an emulated
Cortex-M4 / Cortex-M7 (qemu-system-arm, mps2-an386 / mps2-an500, semihosting file I/O).

All inputs go through one process (one QEMU boot): the firmware reads ``inputs.bin`` and writes
``outputs.bin`` in a work directory and ends it with a 16-byte record (four uint32: inputs, stack
high-water mark, ticks, calibration ticks); it prints nothing (no text in the image), and a
failure is its exit status (``EXIT_STATUSES``, through semihosting SYS_EXIT_EXTENDED), named here
in one line. With
``-icount shift=0`` QEMU runs deterministically and guest time advances one nanosecond per
instruction: the firmware times each ``model_invoke`` with SysTick on the boards' 1 MHz reference
clock and calibrates ticks against a loop of known instruction count, giving
``instructions_per_inference`` (QEMU models no cycles; the resolution is one tick, 1,000
instructions, per inference).
Sizes come from the linker: flash is the load image (.vectors, .text, .rodata, the .data image and
the alignment between them), itemised from the map file by :mod:`firmware_sim.mcu.flash`; code is
.text; RAM is .data+.bss (``arm-none-eabi-size -A``) plus the stack high-water mark measured by
painting.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edge_runtime.errors import EdgeRuntimeError
from firmware_sim.mcu.flash import MapParseError, flash_breakdown

CPUS = ("host", "cortex-m4", "cortex-m7")
MACHINES = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
TOOLS = {"host": ("gcc", "make"), "cortex-m4": ("arm-none-eabi-gcc", "make", "qemu-system-arm"),
         "cortex-m7": ("arm-none-eabi-gcc", "make", "qemu-system-arm")}


class McuRunError(EdgeRuntimeError):
    """A build or run of a generated C project failed."""


@dataclass
class RunResult:
    """Outputs of a run and what it measured."""

    cpu: str
    inputs: int
    outputs: np.ndarray = field(repr=False)
    arena_bytes: int = 0
    flash_bytes: Optional[int] = None
    ram_bytes: Optional[int] = None
    code_bytes: Optional[int] = None
    rodata_bytes: Optional[int] = None
    data_bytes: Optional[int] = None
    bss_bytes: Optional[int] = None
    stack_bytes: Optional[int] = None
    weight_bytes: int = 0
    stored_weight_bytes: Optional[int] = None
    other_flash_bytes: Optional[int] = None
    flash_items: Optional[dict] = None
    opt: str = ""
    instructions_per_inference: Optional[int] = None
    elf: Optional[str] = None

    def summary(self) -> dict:
        """The JSON summary (everything but the outputs)."""
        d = asdict(self)
        d.pop("outputs")
        return d


def missing_tools(cpu: str) -> list[str]:
    """Programs the ``cpu`` target needs that are not on PATH."""
    return [t for t in TOOLS[cpu] if shutil.which(t) is None]


def build_dir(opt: Optional[str] = None) -> str:
    """The project's build directory for optimisation flags ``opt`` (None: the Makefile's own)."""
    return "build" if not opt else "build" + opt.replace(" ", "")


def build(project: "str | os.PathLike[str]", cpu: str, opt: Optional[str] = None) -> Path:
    """``make <cpu>`` in the project (with ``OPT=opt`` in its own build directory when given);
    the built program's path."""
    if cpu not in CPUS:
        raise McuRunError(f"unknown cpu {cpu!r}; choose one of {', '.join(CPUS)}")
    missing = missing_tools(cpu)
    if missing:
        raise McuRunError(f"building for {cpu} needs {', '.join(missing)} (scripts/setup.sh installs them)")
    if opt is not None and not opt.startswith("-O"):
        raise McuRunError(f"opt must be an optimisation flag such as -O2 or -Os, not {opt!r}")
    extra = [f"OPT={opt}", f"BUILD={build_dir(opt)}"] if opt else []
    proc = subprocess.run(["make", "-s", "-C", str(project), cpu, *extra], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise McuRunError(f"make {cpu} failed in {project}: {proc.stderr.strip()[-1500:]}")
    exe = Path(project) / build_dir(opt) / cpu / ("runner" if cpu == "host" else "runner.elf")
    if not exe.exists():
        raise McuRunError(f"make {cpu} did not produce {exe}")
    return exe


def section_sizes(elf: "str | os.PathLike[str]") -> dict[str, int]:
    """Section name -> bytes, from ``arm-none-eabi-size -A``."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


CALIB_LOOPS = 10_000_000  # board/er_io.h ER_CALIB_LOOPS
CALIB_INSNS = 2 * CALIB_LOOPS + 1  # er_calibrate: mov + loops x (subs, bne)
#: the runner's exit statuses (board/er_io.h ER_EXIT_*) -> what went wrong
EXIT_STATUSES = {2: "could not open inputs.bin or outputs.bin",
                 3: "a write to outputs.bin fell short",
                 4: "the program faulted (HardFault)"}
#: the record ending outputs.bin, four little-endian uint32: inputs run, stack high-water mark, ticks
#: in model_invoke, ticks of the calibration loop
STATS_FIELDS = ("inputs", "stack", "ticks", "calib_ticks")
STATS_BYTES = 4 * len(STATS_FIELDS)


def _run_once(cmd: list[str], workdir: Path, x: np.ndarray, out_bytes: int, timeout: float
              ) -> tuple[np.ndarray, dict[str, int]]:
    (workdir / "inputs.bin").write_bytes(np.ascontiguousarray(x).tobytes())
    out_file = workdir / "outputs.bin"
    if out_file.exists():
        out_file.unlink()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise McuRunError(f"{cmd[0]} did not finish within {timeout:.0f} s") from None
    who = " ".join(cmd[:3])
    if proc.returncode in EXIT_STATUSES:
        raise McuRunError(f"{who}: {EXIT_STATUSES[proc.returncode]} (exit status {proc.returncode})")
    data = out_file.read_bytes() if out_file.exists() else b""
    if proc.returncode != 0 or len(data) < STATS_BYTES:
        tail = " ".join((proc.stdout + " " + proc.stderr).split())[-800:]
        raise McuRunError(f"{who} failed (exit status {proc.returncode}, {len(data)}-byte outputs.bin)"
                          + (f": {tail}" if tail else ""))
    data, record = data[:-STATS_BYTES], data[-STATS_BYTES:]
    fields = dict(zip(STATS_FIELDS, (int(v) for v in np.frombuffer(record, "<u4"))))
    n = fields["inputs"]
    if n != len(x) or len(data) != n * out_bytes:
        raise McuRunError(f"the runner processed {n} of {len(x)} inputs and wrote {len(data)} bytes")
    return np.frombuffer(data, np.int8).copy(), fields


def qemu_command(cpu: str, elf: Path) -> list[str]:
    """The qemu-system-arm command line for ``elf`` on ``cpu``'s board."""
    return ["qemu-system-arm", "-M", MACHINES[cpu], "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]


def run(project: "str | os.PathLike[str]", cpu: str, x: np.ndarray, *, timeout: float = 600.0,
        opt: Optional[str] = None) -> RunResult:
    """Build the project for ``cpu`` if needed (``opt``: optimisation flag, default the Makefile's
    -O2) and run every input of ``x`` (N, *input shape) once."""
    project = Path(project).resolve()
    if not (project / "manifest.json").is_file() or not (project / "Makefile").is_file():
        raise McuRunError(f"{project} is not a generated C project (no manifest.json/Makefile); "
                          "write one with: edge-convert export MODEL --profile P --format c -o DIR")
    manifest = json.loads((project / "manifest.json").read_text())
    in_shape, out_shape = tuple(manifest["input"]["shape"]), tuple(manifest["output"]["shape"])
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise McuRunError(f"inputs must be int8, got {x.dtype}")
    if x.shape == in_shape:
        x = x[None]
    elif x.shape[1:] != in_shape and x.shape[1:] != in_shape[1:]:
        raise McuRunError(f"inputs of shape {x.shape} do not match the model input {list(in_shape)}")
    exe = build(project, cpu, opt)
    cmd = [str(exe)] if cpu == "host" else qemu_command(cpu, exe)
    out_bytes = int(manifest["output"]["bytes"])
    with tempfile.TemporaryDirectory() as d:
        y, fields = _run_once(cmd, Path(d), x, out_bytes, timeout)
    stack = fields.get("stack", 0)
    y = y.view(np.dtype(manifest["output"].get("dtype", "int8")))  # the model's output bytes (int8 or uint8)
    res = RunResult(cpu=cpu, inputs=int(len(x)), outputs=y.reshape((len(x),) + out_shape),
                    arena_bytes=int(manifest["arena_bytes"]), weight_bytes=int(manifest["weight_bytes"]),
                    elf=str(exe), opt=opt or "-O2")
    if cpu != "host":
        s = section_sizes(exe)
        res.code_bytes = s.get(".text", 0)
        res.rodata_bytes = s.get(".rodata", 0)
        res.data_bytes = s.get(".data", 0)
        res.bss_bytes = s.get(".bss", 0)
        res.stack_bytes = stack
        try:
            fb = flash_breakdown(exe.with_name("runner.map"), manifest.get("constants", {}))
        except MapParseError as exc:
            raise McuRunError(str(exc)) from None
        res.flash_bytes, res.stored_weight_bytes, res.other_flash_bytes = fb.flash, fb.stored_weights, fb.other
        res.flash_items = dict(fb.items)
        if fb.code != res.code_bytes:
            raise McuRunError(f"the map file accounts for {fb.code} bytes of code, .text holds {res.code_bytes}")
        res.ram_bytes = res.data_bytes + res.bss_bytes + stack
        calib, ticks = fields.get("calib_ticks", 0), fields.get("ticks", 0)
        if calib > 0 and len(x):
            res.instructions_per_inference = int(round(ticks * CALIB_INSNS / calib / len(x)))
    return res

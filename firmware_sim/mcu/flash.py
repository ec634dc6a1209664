"""What sits in flash, byte for byte, from the linker's map file of a generated C project.

Every input section the linker placed in a flash output section (.vectors, .text, .rodata,
.ARM.exidx, and the load image of .data) is put in one category by the object it comes from and,
for the model's constants, by the kind the generator recorded for each C name in
``manifest.json`` (``constants``: ``op3_w`` -> weights, ``op3_b`` -> biases, ``op3_rq`` ->
requantization, ``op3_p`` -> parameters, ``op5_lut`` -> tables). With ``-ffunction-sections
-fdata-sections`` each function and constant is its own input section.

- code (all of .text): ``kernels``, ``invoke`` (model.c: model_invoke and the I/O pointers),
  ``startup`` (reset handler, fault handler, SysTick), ``libc`` (memcpy/memset), ``runner`` (the
  test runner and its semihosting I/O, which a firmware replaces by its own application),
  ``libgcc`` (compiler support routines), ``code alignment`` (fill between functions);
- weights as stored: ``weights`` (int8 weights and constant operands), ``biases``;
- other flash: ``requantization``, ``parameters`` (op parameter blocks, broadcast descriptors),
  ``row index`` (where a CONV_2D's all-zero filters are not stored), ``tables`` (256-entry lookup
  tables of elementwise ops), ``kernel constants``, ``vector table``,
  ``runner strings``, ``padding`` (alignment fill outside .text and gaps between sections),
  ``unclassified``.

``flash`` is the extent of the load image (highest flash address used), so the categories sum to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.errors import EdgeRuntimeError

CODE = ("kernels", "invoke", "startup", "libc", "runner", "libgcc", "code alignment")
WEIGHTS = ("weights", "biases")
OTHER = ("requantization", "parameters", "row index", "tables", "kernel constants", "vector table", "runner strings",
         "padding", "unclassified")
#: output sections of board/link.ld that occupy flash (.data by its load image)
FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".data")
FLASH_END = 0x20000000  # RAM starts here on both boards

_OUT = re.compile(r"^(\.[\w.]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)(?:\s+load address 0x([0-9a-f]+))?")
_IN = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s*(.*)$")
_RUNNER = ("er_main", "er_io_semihost", "er_io_host")


class MapParseError(EdgeRuntimeError):
    """The map file is missing or not a GNU ld map."""


@dataclass
class FlashBreakdown:
    """Bytes per category (see the module docstring); ``flash`` is their sum."""

    items: dict[str, int] = field(default_factory=dict)

    @property
    def flash(self) -> int:
        """The whole load image."""
        return sum(self.items.values())

    @property
    def code(self) -> int:
        """All of .text."""
        return sum(self.items.get(k, 0) for k in CODE)

    @property
    def stored_weights(self) -> int:
        """Weights and biases as the generated C stores them."""
        return sum(self.items.get(k, 0) for k in WEIGHTS)

    @property
    def other(self) -> int:
        """Everything that is neither code nor weights."""
        return sum(self.items.get(k, 0) for k in OTHER)

    def add(self, category: str, n: int) -> None:
        """Count ``n`` more bytes in ``category``."""
        if n:
            self.items[category] = self.items.get(category, 0) + n


def _category(out_section: str, in_section: str, obj: str, constants: dict[str, str]) -> str:
    stem = Path(obj).stem
    if out_section == ".vectors":
        return "vector table"
    if in_section == "*fill*":
        return "code alignment" if out_section == ".text" else "padding"
    is_text = out_section == ".text"
    if "libgcc" in obj or obj.endswith(".a") or ".a(" in obj:
        return "libgcc" if is_text else "unclassified"
    if "/kernels/" in obj or obj.startswith("kernels/"):
        return "kernels" if is_text else "kernel constants"
    if stem == "model":
        if is_text:
            return "invoke"
        name = in_section.split(".")[-1]
        return constants.get(name, "unclassified")
    if stem == "startup":
        return "startup" if is_text else "runner strings"
    if stem == "er_libc":
        return "libc" if is_text else "unclassified"
    if stem in _RUNNER:
        return "runner" if is_text else "runner strings"
    return "unclassified"


def flash_breakdown(map_file: "str | Path", constants: dict[str, str]) -> FlashBreakdown:
    """Categorise every flash byte of the image the map file describes (``constants``: the
    manifest's C name -> kind of the model's constants)."""
    path = Path(map_file)
    if not path.is_file():
        raise MapParseError(f"no linker map at {path} (the Makefile writes build/<cpu>/runner.map)")
    lines = path.read_text().splitlines()
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        raise MapParseError(f"{path} is not a GNU ld map file") from None
    out = FlashBreakdown()
    end = 0
    section, in_flash, pending, pending_out = "", False, None, None
    for line in lines[start + 1:]:
        if re.match(r"^\.\S+$", line):  # a long output-section name: its address and size follow
            pending_out, in_flash = line, False
            continue
        if pending_out is not None:
            line, pending_out = pending_out + " " + line.strip(), None
        m = _OUT.match(line)
        if m:
            section = m.group(1)
            addr, size = int(m.group(2), 16), int(m.group(3), 16)
            load = int(m.group(4), 16) if m.group(4) else addr
            in_flash = section in FLASH_SECTIONS and load < FLASH_END
            if in_flash and size:
                end = max(end, load + size)
            pending = None
            continue
        if not line.startswith(" ") or not in_flash:
            pending = None
            continue
        if re.match(r"^ \S+$", line):  # a long input-section name: its address and size follow
            pending = line.strip()
            continue
        m = _IN.match(line)
        if not m:
            continue
        name = m.group(1) or pending
        pending = None
        if name is None or name.startswith("0x") or not m.group(4) and name != "*fill*":
            continue  # a symbol line (address and name) or a linker-script assignment
        if name.startswith("*(") or name == "*(COMMON)":
            continue
        out.add(_category(section, name, m.group(4).strip(), constants), int(m.group(3), 16))
    if end == 0:
        raise MapParseError(f"{path} places nothing in flash")
    out.add("padding", end - out.flash)
    unknown = set(out.items) - set(CODE + WEIGHTS + OTHER)
    if unknown:
        raise MapParseError(f"constants of unknown kind in {path}: {', '.join(sorted(unknown))}")
    return out

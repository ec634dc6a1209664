"""Arena alignment: every buffer starts on, and is rounded up to, a 16-byte boundary (as in TFLM)."""
from __future__ import annotations

ALIGNMENT = 16


def align_up(n: int, alignment: int = ALIGNMENT) -> int:
    """``n`` rounded up to a multiple of ``alignment``."""
    return -(-int(n) // alignment) * alignment

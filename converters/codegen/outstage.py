"""The per-channel output stage of the generator's layers (CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, TRANSPOSE_CONV): biases and requantization constants in the smallest layout of
``er_kernels.h``, with all-zero filters re-expressed (see :func:`out_stage`)."""
from __future__ import annotations

import numpy as np

from converters.codegen.cop import CONST_KINDS, COp, c_struct, c_values
from edge_runtime.backends.micro.fixedpoint import rounding_divide_by_pot_scalar, srdhm_scalar

_struct = c_struct


def _mbqm(x: int, m: int, s: int) -> int:
    """MultiplyByQuantizedMultiplier on one int32, as ``er_mbqm`` computes it."""
    v = (x << max(s, 0)) & 0xFFFFFFFF
    return rounding_divide_by_pot_scalar(srdhm_scalar(v - (1 << 32) if v >= 1 << 31 else v, m), max(-s, 0))


def dead_channels(w: np.ndarray, axis: int) -> np.ndarray:
    """Output channels whose filter is all zero (the accumulator is then the bias alone)."""
    w = np.moveaxis(np.asarray(w), axis, 0)
    return np.all(w.reshape(w.shape[0], -1) == 0, axis=1)


def _revive(m: np.ndarray, s: np.ndarray, bias: "np.ndarray | None", dead: np.ndarray, zp: int, lo: int,
            hi: int) -> tuple[np.ndarray, np.ndarray, "np.ndarray | None"]:
    """Give channels with an all-zero filter the live channels' largest multiplier and largest
    shift, with a bias that yields the same constant output (checked with the kernels'
    arithmetic); a channel for which no int16 bias does keeps its own values. Their
    output never depends on the input, so any such triple is exact, and the op's multipliers then
    usually pack into one uint32 per channel and its biases into int16."""
    live = ~dead
    if not dead.any() or not live.any():
        return m, s, bias
    m, s = m.copy(), s.copy()
    b = np.zeros(m.size, np.int64) if bias is None else bias.astype(np.int64).copy()
    ref_m, ref_s = int(m[live].max()), int(s[live].max())
    for ch in np.flatnonzero(dead):
        target = min(max(_mbqm(int(b[ch]), int(m[ch]), int(s[ch])) + zp, lo), hi)
        guess = int(round((target - zp) * 2.0 ** (31 - ref_s) / ref_m))
        for cand in [0] + [guess + d for d in range(-2, 3)]:
            if abs(cand) <= 32767 and min(max(_mbqm(cand, ref_m, ref_s) + zp, lo), hi) == target:
                m[ch], s[ch], b[ch] = ref_m, ref_s, cand
                break
    return m, s, (None if bias is None and not b.any() else b)


def out_stage(c: COp, m: np.ndarray, s: np.ndarray, bias: "np.ndarray | None", out_zp: int, lo: int,
              hi: int, dead: "np.ndarray | None" = None) -> str:
    """The ``er_out_stage`` initializer of a layer with per-channel multipliers ``m`` and shifts ``s``:
    biases as int16 when they fit (none when all zero), requantization in the smallest layout of
    ``er_kernels.h`` (one pair; multiplier and shift offset packed in a uint32; or split).
    ``dead``: channels with an all-zero filter (see :func:`_revive`)."""
    m, s = np.asarray(m, np.int64).reshape(-1), np.asarray(s, np.int64).reshape(-1)
    if dead is not None:
        m, s, bias = _revive(m, s, bias, dead, out_zp, lo, hi)
    bias_ptr, bias_bytes = "0", 0
    if bias is not None and np.any(bias != 0):
        wide = bool(np.abs(bias).max() > 32767)
        bias_ptr = c.array("b", "int32_t" if wide else "int16_t", bias)
        bias_bytes = 4 if wide else 2
    rq_ptr, kind, mult, shift = "0", "ER_RQ_ONE", int(m[0]), int(s[0])
    if not (np.all(m == m[0]) and np.all(s == s[0])):
        if np.all((m >= 1 << 30) & (m < 1 << 31)) and s.max() - s.min() <= 3:
            kind, mult, shift = "ER_RQ_PACKED", 0, int(s.max())
            rq_ptr = c.array("rq", "uint32_t", (m - (1 << 30)) | ((s.max() - s) << 30))
        else:
            kind, mult, shift = "ER_RQ_SPLIT", 0, 0
            rq_ptr = f"op{c.index}_rq"
            c.consts[rq_ptr] = (CONST_KINDS["rq"], (
                f"static const struct {{ int32_t m[{m.size}]; int8_t s[{s.size}]; }} {rq_ptr} = {{\n"
                f"    {{ {c_values('int32_t', m, c)} }},\n    {{ {c_values('int8_t', s, c)} }}\n}};\n"))
            rq_ptr = f"&{rq_ptr}"
    return _struct(c, [("bias", None, bias_ptr), ("rq", None, rq_ptr), ("mult", "int32_t", mult),
                       ("channels", "int16_t", m.size), ("shift", "int8_t", shift), ("rq_kind", None, kind),
                       ("bias_bytes", "uint8_t", bias_bytes), ("out_offset", "int8_t", out_zp),
                       ("act_min", "int8_t", lo), ("act_max", "int8_t", hi)])


__all__ = ["dead_channels", "out_stage"]

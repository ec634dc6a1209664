"""The per-channel output stage of the generator's layers (CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED, TRANSPOSE_CONV): biases and requantization constants in the smallest layout of
``er_kernels.h``, with all-zero filters re-expressed (see :func:`out_stage`)."""
from __future__ import annotations

import numpy as np

from converters.codegen.cop import CONST_KINDS, COp, c_struct, c_values
from converters.codegen.requant_scale import MANTISSA_BITS, scale_layout
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


#: ``bias_bytes`` flag of biases bit-packed as ``bits``-wide two's complement fields (low 5 bits: width)
BIAS_PACKED = 0x80
#: the widest packed bias: the kernel reads three bytes, and a field may start at bit 7 of the first
BIAS_MAX_BITS = 17


def bias_bits(bias: np.ndarray) -> int:
    """The smallest two's complement width holding every value of ``bias``."""
    b = np.asarray(bias, np.int64)
    return max(1, int(max(int(b.max()).bit_length(), int(-b.min() - 1).bit_length() if b.min() < 0 else 0)) + 1)


def pack_bias(bias: np.ndarray, bits: int) -> "np.ndarray | None":
    """``bias`` as consecutive ``bits``-wide little-endian fields (channel c at bit c * bits), with
    the bytes the kernel's three-byte read of the last field touches; None when too wide to pack."""
    b = np.asarray(bias, np.int64).reshape(-1)
    if bits > BIAS_MAX_BITS:
        return None
    nbytes = ((b.size - 1) * bits >> 3) + 3
    acc = 0
    for i, v in enumerate(b.tolist()):
        acc |= (v & ((1 << bits) - 1)) << (i * bits)
    return np.frombuffer(acc.to_bytes(nbytes, "little"), np.uint8).copy()


def unpack_bias(blob: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The inverse of :func:`pack_bias`, read as ``er_out_value`` reads it (three bytes per field)."""
    out = np.empty(n, np.int64)
    for c in range(n):
        bit = c * bits
        f = blob[bit >> 3: (bit >> 3) + 3].astype(np.int64)
        v = (int(f[0]) | int(f[1]) << 8 | int(f[2]) << 16) >> (bit & 7)
        v &= (1 << bits) - 1
        out[c] = v - (1 << bits) if v >> (bits - 1) else v
    return out


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
              hi: int, dead: "np.ndarray | None" = None,
              scales: "tuple[float, np.ndarray, float] | None" = None) -> str:
    """The ``er_out_stage`` initializer of a layer with per-channel multipliers ``m`` and shifts ``s``:
    biases bit-packed at their layer's width when it is at most 17 bits (else int32; none when all
    zero), requantization in the smallest layout of
    ``er_kernels.h`` (one pair; multiplier and shift offset packed in a uint32; or split).
    ``dead``: channels with an all-zero filter (see :func:`_revive`). ``scales``: the layer's
    (input scale, float32 weight scales, output scale); when given, the multipliers may be stored as
    the weight scales' bits and recomputed in the kernel (ER_RQ_SCALE, see :mod:`requant_scale`)."""
    m, s = np.asarray(m, np.int64).reshape(-1), np.asarray(s, np.int64).reshape(-1)
    if dead is not None:
        m, s, bias = _revive(m, s, bias, dead, out_zp, lo, hi)
    bias_ptr, bias_bytes = "0", 0
    if bias is not None and np.any(bias != 0):
        bits = bias_bits(bias)
        packed = pack_bias(bias, bits)
        if packed is not None:
            bias_ptr = c.array("b", "uint8_t", packed)
            c.tails[bias_ptr] = packed.size - (bias.size * bits + 7) // 8
            bias_bytes = BIAS_PACKED | bits
        else:
            bias_ptr = c.array("b", "int32_t", bias)
            bias_bytes = 4
    rq_ptr, kind, mult, shift = "0", "ER_RQ_ONE", int(m[0]), int(s[0])
    if not (np.all(m == m[0]) and np.all(s == s[0])):
        packed = bool(np.all((m >= 1 << 30) & (m < 1 << 31)) and s.max() - s.min() <= 3)
        fit = None if scales is None else scale_layout(m, s, *scales)
        if fit is not None and fit.nbytes < m.size * (4 if packed else 5):
            kind, mult, shift = "ER_RQ_SCALE", fit.c_hi_i32, fit.base_shift
            rq_ptr = c.array("rq", "uint8_t", fit.blob)
            c.tails[rq_ptr] = fit.blob.size - 3 - (m.size * (MANTISSA_BITS + fit.exp_bits) + 7) // 8
            return _struct(c, [("bias", None, bias_ptr), ("rq", None, rq_ptr), ("mult", "int32_t", mult),
                               ("channels", "er_dim_t", fit.exp_bits), ("shift", "int8_t", shift),
                               ("rq_kind", None, kind), ("bias_bytes", "uint8_t", bias_bytes),
                               ("out_offset", "int8_t", out_zp), ("act_min", "int8_t", lo), ("act_max", "int8_t", hi)])
        if packed:
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
                       ("channels", "er_dim_t", m.size), ("shift", "int8_t", shift), ("rq_kind", None, kind),
                       ("bias_bytes", "uint8_t", bias_bytes), ("out_offset", "int8_t", out_zp),
                       ("act_min", "int8_t", lo), ("act_max", "int8_t", hi)])


__all__ = ["BIAS_PACKED", "bias_bits", "dead_channels", "out_stage", "pack_bias", "unpack_bias"]

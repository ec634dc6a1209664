"""[OPS] Exhaustive scale sweeps: micro against tflite-micro on rare scale values.

A quantized kernel's Prepare turns float32 scales into fixed-point multipliers, tables and
constants. Taking a ratio in float32 where TFLM takes it in double, multiplying in another
order, or rounding a Q31 multiplier to Q15 differently changes results only for rare scale
values (a real model hit one in HARD_SWISH; see ``test_micro_multiplier_ties.py``). Random
parity tests rarely draw them, so this file builds them on purpose:

- ``rand``: log-uniform scales;
- ``q15``: the double ratio's Q31 multiplier lies within one unit of a Q31 -> Q15 rounding tie;
- ``split15``: the float32 and the double ratio round to different Q15 multipliers;
- ``near31``: the double ratio lies within 1/500 of a unit of a Q31 rounding tie;
- ``split31``: requantizing some value in -255..255 by the float32 ratio and by the double ratio
  gives different results;
- ``tie31``: (products of scales) the ratio is *exactly* on a Q31 rounding tie, and its float32
  product is not (a power-of-two output scale, 24-bit mantissas whose product ends in 1000...);
- ``wide`` (output stages): filter scales over 2**50, from left shifts to multipliers that
  underflow to 0; dyadic multipliers put many accumulators exactly on rounding ties;
- clamps: ``round(6 / scale)`` and fused-activation bounds on scales where the float32 and double
  quotients round differently; QUANTIZE from float32 on inputs at ``(k + 1/2) * scale``.

Every case runs every int8 input value (binary ops: all 256 x 256 pairs, by broadcasting)
through many independent copies of the op in one model, one copy per scale set, and requires
``np.array_equal`` with tflite-micro on every output. The reference is the installed tflite-micro:
where it differs from the TFLM sources on GitHub (LEAKY_RELU takes its ratios in double), it wins.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pytest

from tflite_builder import ModelBuilder, T, opts, run_micro, run_tflm

ALL8 = np.arange(-128, 128, dtype=np.int8)
ALL16 = np.arange(-32768, 32768, dtype=np.int16)
PER_MODEL = 48          # op copies per model
PER_KIND = 96           # scale sets per kind and op
KINDS = ("rand", "q15", "split15", "near31")

Group = tuple[list[T], T, list[np.ndarray]]   # inputs, output, arrays for the non-constant inputs


# ------------------------------------------------------------------------------------ scale sets
def _q31(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """QuantizeMultiplier, vectorised: (Q31 multiplier, exponent) of double ratios."""
    frac, exp = np.frexp(np.asarray(real, np.float64))
    q = np.floor(frac * 2.0 ** 31 + 0.5).astype(np.int64)
    top = q == (1 << 31)
    return np.where(top, q >> 1, q), np.where(top, exp + 1, exp)


def _q15(q: np.ndarray) -> np.ndarray:
    """DownScaleInt32ToInt16Multiplier: round half up of ``q / 2**16``, saturated."""
    return np.minimum((q + (1 << 15)) >> 16, (1 << 15) - 1)


def _mbqm(x: np.ndarray, q: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (TFLM's double rounding), rows of ``x`` by per-row (q, shift)."""
    q, shift = q[:, None], shift[:, None]
    x = x * (np.int64(1) << np.maximum(shift, 0))
    p = x * q
    p = p + np.where(p >= 0, 1 << 30, 1 - (1 << 30))
    hi = np.where(p >= 0, p >> 31, -((-p) >> 31))
    e = np.maximum(-shift, 0)
    mask = (np.int64(1) << e) - 1
    return (hi >> e) + ((hi & mask) > (mask >> 1) + (hi < 0))


#: products of two int8 values (zero points 0): what MUL / PRELU / BATCH_MATMUL requantize
PRODUCTS = np.unique(np.multiply.outer(ALL8.astype(np.int64), ALL8.astype(np.int64)))
PRODUCTS = PRODUCTS[np.abs(PRODUCTS) >= 4096][::4]   # (a sample of the larger ones, for speed)
SPAN = np.arange(-255, 256, dtype=np.int64)


def _split31(num32: np.ndarray, num64: np.ndarray, so: np.ndarray, values: np.ndarray = SPAN) -> np.ndarray:
    """Which pairs give a different requantized value for some of ``values`` (default -255..255)
    when the ratio is taken in float32 (``num32 / so``) instead of double (``num64 / so``)."""
    v = values.astype(np.int64)[None, :]
    q32, e32 = _q31((num32 / so).astype(np.float64))
    q64, e64 = _q31(num64 / so.astype(np.float64))
    return np.any(_mbqm(v, q32, e32) != _mbqm(v, q64, e64), axis=1)


def scale_pairs(rng: np.random.Generator, kind: str, n: int, c: float = 1.0, lo: float = 0.05,
                hi: float = 2.0, pool: int = 300_000, power: int = 1,
                values: np.ndarray = SPAN) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 (input, output) scale pairs of a kind for the ratio ``c * s_in**power / s_out``
    (``s_out / s_in**power`` log-uniform in [lo, hi]); the double ratio is what TFLM takes."""
    size = n if kind == "rand" else pool if kind != "split31" else max(400, 128_000 // values.size) * n
    si = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), size)).astype(np.float32)
    num = np.float64(c) * si.astype(np.float64) ** power
    so = (si.astype(np.float64) ** power * np.exp(rng.uniform(np.log(lo), np.log(hi), size))).astype(np.float32)
    if kind == "rand":
        return si, so
    r64 = num / so.astype(np.float64)
    q, e = _q31(r64)
    if kind == "q15":  # aim at a Q15 tie, then keep the float32 output scales that land within 1 of it
        aim = np.ldexp(((q >> 16) << 16 | 0x8000).astype(np.float64), e - 31)
        so = (num / aim).astype(np.float32)
        r64 = num / so.astype(np.float64)
        q, e = _q31(r64)
    if kind == "q15":
        keep = np.abs((q & 0xFFFF) - 0x8000) <= 1
    elif kind == "split15":
        r32 = (np.float32(c) * si ** power / so).astype(np.float64)
        keep = _q15(_q31(r32)[0]) != _q15(q)
    elif kind == "split31":
        keep = _split31((np.float32(c) * si ** power).astype(np.float32), num, so, values)
    elif kind == "near31":
        f = np.frexp(r64)[0] * 2.0 ** 31
        keep = np.abs(f - np.floor(f) - 0.5) < 2e-3
    else:
        raise ValueError(kind)
    idx = np.flatnonzero(keep)[:n]
    assert idx.size >= (n // 2 if kind != "split31" else min(8, n // 2)), f"only {idx.size} {kind} pairs in the pool"
    return si[idx], so[idx]


def tie_products(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` float32 triples (a, b, out) with out a power of two and ``a * b / out`` exactly on a
    Q31 rounding tie in double (its 48-bit product ends in 1 followed by zeros at bit 17)."""
    out_a, out_b, out_o = [], [], []
    while len(out_a) < n:
        ma = int(rng.integers(1 << 23, 1 << 24)) | 1
        inv = pow(ma, -1, 1 << 17)
        mb = (0x10000 * inv) % (1 << 17)
        mb += int(rng.integers((1 << 23) // (1 << 17) + 1, (1 << 24) // (1 << 17))) << 17
        p = ma * mb
        if not (1 << 23) <= mb < (1 << 24) or p.bit_length() != 48 or p % (1 << 17) != 0x10000:
            continue
        a = np.float32(np.ldexp(ma, -24 - int(rng.integers(1, 8))))
        b = np.float32(np.ldexp(mb, -24 - int(rng.integers(1, 8))))
        o = np.float32(np.ldexp(1.0, -int(rng.integers(0, 8))))
        r = float(a) * float(b) / float(o)
        f = np.frexp(r)[0] * 2.0 ** 31
        assert f - np.floor(f) == 0.5  # exactly on the tie
        out_a.append(a), out_b.append(b), out_o.append(o)
    return np.array(out_a), np.array(out_b), np.array(out_o)


# --------------------------------------------------------------------------------- model running
def multi_model(path: Path, op: str, groups: Sequence[Group], options: Optional[tuple[str, Any]] = None,
                version: int = 1) -> Path:
    """One model holding an independent copy of ``op`` per group (inputs and output of its own)."""
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ins, outs = [], []
    for inputs, output, _ in groups:
        idx = [sg.tensor(t) for t in inputs]
        o = sg.tensor(output)
        sg.op(op, idx, [o], options, version)
        ins += [i for i, t in zip(idx, inputs) if t.data is None]
        outs.append(o)
    sg.io(ins, outs)
    return mb.write(path)


def sweep(tmp_path: Path, op: str, groups: Sequence[Group], options: Optional[tuple[str, Any]] = None,
          version: int = 1) -> list[str]:
    """Run the groups in models of PER_MODEL copies on both runtimes; describe each mismatch."""
    bad = []
    for start in range(0, len(groups), PER_MODEL):
        chunk = groups[start:start + PER_MODEL]
        path = multi_model(tmp_path / f"{op.lower()}_{start}.tflite", op, chunk, options, version)
        feeds = [a for _, _, arrays in chunk for a in arrays]
        want = run_tflm(path, [feeds])[0]
        got = run_micro(path, [feeds])[0]
        for (inputs, output, arrays), w, g in zip(chunk, want, got):
            if not np.array_equal(w, g):
                k = int(np.flatnonzero(w.ravel() != g.ravel())[0])
                scales = [(float(np.float32(t.scale)), t.zp) for t in inputs if t.scale is not None
                          and np.size(t.scale) == 1]
                out_q = (float(np.float32(output.scale)), output.zp) if output.scale is not None else output.dtype
                bad.append(f"{op} in {scales} out {out_q}: "
                           f"{int((w.ravel() != g.ravel()).sum())} values differ, first at flat index {k}: "
                           f"micro {g.ravel()[k]} vs tflite-micro {w.ravel()[k]}")
    return bad


def _unary(si: float, zi: int, so: float, zo: int, dtype: str = "int8", out_dtype: Optional[str] = None) -> Group:
    values = ALL8 if dtype == "int8" else ALL16
    return ([T([1, values.size], dtype, scale=float(si), zp=int(zi))],
            T([1, values.size], out_dtype or dtype, scale=float(so), zp=int(zo)), [values.reshape(1, -1)])


def _report(bad: list[str], n: int) -> None:
    assert not bad, f"{len(bad)} of {n} scale sets differ from tflite-micro:\n" + "\n".join(bad[:5])


# ------------------------------------------------------------------------------------ unary int8
UNARY = {
    # name: (op, options, c in ratio c * s_in / s_out, s_out / s_in range, zero-point ranges)
    "HARD_SWISH": ("HARD_SWISH", None, 1 / 128, 0.3, 1.0, (-40, 40), (-128, -100)),
    "LEAKY_RELU_0.1": ("LEAKY_RELU", ("LeakyReluOptions", {"alpha": 0.1}), 0.1, 0.05, 2.0, (-60, 60), (-60, 60)),
    "LEAKY_RELU_-0.3": ("LEAKY_RELU", ("LeakyReluOptions", {"alpha": -0.3}), 0.3, 0.05, 2.0, (-60, 60), (-60, 60)),
    "LEAKY_RELU_1.7": ("LEAKY_RELU", ("LeakyReluOptions", {"alpha": 1.7}), 1.0, 0.05, 2.0, (-60, 60), (-60, 60)),
    "ELU": ("ELU", None, 1.0, 0.05, 2.0, (-60, 60), (-60, 60)),
    "RELU": ("RELU", None, 1.0, 0.05, 2.0, (-60, 60), (-60, 60)),
    "QUANTIZE": ("QUANTIZE", None, 1.0, 0.05, 4.0, (-60, 60), (-60, 60)),
    "ABS": ("ABS", None, 1.0, 0.05, 2.0, (-60, 60), (-60, 60)),
    "RSQRT": ("RSQRT", None, 1.0, 0.05, 2.0, (-128, -127), (-60, 60)),
}


#: ops whose int8 result is ``zp_out + MultiplyByQuantizedMultiplier(q - zp_in, c * s_in / s_out)``
SPLIT31_OPS = ("LEAKY_RELU", "RELU", "QUANTIZE", "ABS")


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_int8_scale_sweep(tmp_path: Path, name: str) -> None:
    """Every int8 input, PER_KIND scale pairs of each kind."""
    op, options, c, lo, hi, zin, zout = UNARY[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    groups = []
    for kind in KINDS + (("split31",) if op in SPLIT31_OPS else ()):
        si, so = scale_pairs(rng, kind, PER_KIND if kind != "split31" else PER_KIND // 2, c, lo, hi)
        for a, b in zip(si, so):
            groups.append(_unary(a, rng.integers(*zin), b, rng.integers(*zout)))
    o = opts(options[0], **options[1]) if options else None
    _report(sweep(tmp_path, op, groups, o), len(groups))


def test_relu6_int8_six_rounding(tmp_path: Path) -> None:
    """RELU6 (equal input and output quantization): the clamp ``round(6 / scale)`` on scales whose
    float32 and double quotients round differently, on near-ties, and random."""
    rng = np.random.default_rng(6)
    aim = (6.0 / (np.arange(2, 127) + 0.5)).astype(np.float32)      # 6 / scale = k + 1/2, then +-4 ulps
    si = np.concatenate([np.nextafter(aim, np.float32(np.inf * d)) if d else aim for d in (-1, 0, 1)]
                        + [aim * np.float32(1 + k * 2.0 ** -23) for k in (-4, -3, -2, 2, 3, 4)]).astype(np.float32)
    q32 = np.floor((np.float32(6.0) / si).astype(np.float64) + 0.5)
    q64 = np.floor(6.0 / si.astype(np.float64) + 0.5)
    assert (q32 != q64).any()
    rand = np.exp(rng.uniform(np.log(6 / 120), np.log(6 / 2), PER_KIND)).astype(np.float32)
    picks = np.concatenate([si, rand])
    groups = [_unary(s, z, s, z) for s, z in zip(picks, rng.integers(-128, 0, picks.size))]
    _report(sweep(tmp_path, "RELU6", groups), len(groups))


@pytest.mark.parametrize("op,zy,sy", [("LOGISTIC", -128, 1 / 256), ("TANH", 0, 1 / 128)])
def test_sigmoid_int8_input_scales(tmp_path: Path, op: str, zy: int, sy: float) -> None:
    """LOGISTIC / TANH int8: the input rescale (frexp of ``scale * 2**27``) over input scales 2**-12..4."""
    rng = np.random.default_rng(len(op))
    si = np.exp(rng.uniform(np.log(2.0 ** -12), np.log(4.0), 3 * PER_KIND)).astype(np.float32)
    groups = [_unary(s, z, sy, zy) for s, z in zip(si, rng.integers(-128, 128, si.size))]
    _report(sweep(tmp_path, op, groups), len(groups))


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_sigmoid_int16_input_scales(tmp_path: Path, op: str) -> None:
    """LOGISTIC / TANH int16 (zero points 0, output scale 2**-15): every int16 input, input scales
    2**-16..2**-6 (including powers of two and 3 * 2**-k, whose rescale is exact)."""
    rng = np.random.default_rng(16 + len(op))
    si = np.exp(rng.uniform(np.log(2.0 ** -16), np.log(2.0 ** -6), 40)).astype(np.float32)
    si = np.concatenate([si, 2.0 ** -np.arange(6, 17), 3 * 2.0 ** -np.arange(8, 18)]).astype(np.float32)
    groups = [_unary(s, 0, 2.0 ** -15, 0, "int16") for s in si]
    _report(sweep(tmp_path, op, groups), len(groups))


@pytest.mark.parametrize("dtype,out", [("int8", "int16"), ("int16", "int8"), ("int16", "int16")])
def test_quantize_requant_int16(tmp_path: Path, dtype: str, out: str) -> None:
    """QUANTIZE between int8 and int16 (requantization by ``s_in / s_out``): every input value."""
    rng = np.random.default_rng(len(dtype + out))
    groups = []
    for kind in KINDS:
        si, so = scale_pairs(rng, kind, 24 if dtype == "int16" else PER_KIND, 1.0, 0.005, 4.0)
        for a, b in zip(si, so):
            zi = 0 if dtype == "int16" else int(rng.integers(-60, 60))
            zo = 0 if out == "int16" else int(rng.integers(-60, 60))
            groups.append(_unary(a, zi, b, zo, dtype, out))
    _report(sweep(tmp_path, "QUANTIZE", groups), len(groups))


@pytest.mark.parametrize("op", ["LEAKY_RELU", "ABS"])
def test_int16_requant_unary(tmp_path: Path, op: str) -> None:
    """int16 LEAKY_RELU / ABS (zero points 0) on every int16 input."""
    rng = np.random.default_rng(len(op) + 100)
    groups = []
    for kind in KINDS:
        si, so = scale_pairs(rng, kind, 16, 0.2 if op == "LEAKY_RELU" else 1.0, 0.05, 2.0)
        groups += [_unary(a, 0, b, 0, "int16") for a, b in zip(si, so)]
    o = opts("LeakyReluOptions", alpha=0.2) if op == "LEAKY_RELU" else None
    _report(sweep(tmp_path, op, groups, o), len(groups))


def test_dequantize_int8(tmp_path: Path) -> None:
    """DEQUANTIZE int8 -> float32 on every input value and random scales (float results equal bit for bit)."""
    rng = np.random.default_rng(9)
    si = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), 2 * PER_KIND)).astype(np.float32)
    groups: list[Group] = [([T([1, 256], scale=float(s), zp=int(z))], T([1, 256], "float32"), [ALL8.reshape(1, -1)])
                           for s, z in zip(si, rng.integers(-128, 128, si.size))]
    bad = sweep(tmp_path, "DEQUANTIZE", groups)
    _report(bad, len(groups))


# ------------------------------------------------------------------------------------ binary int8
def _binary(sa: float, za: int, sb: float, zb: int, so: float, zo: int, grid: bool = True,
            b_values: np.ndarray = ALL8) -> Group:
    """All value pairs (256 x ``b_values``): by broadcasting ([256, 1] with [1, n]) or element by element."""
    n = b_values.size
    if grid:
        return ([T([256, 1], scale=float(sa), zp=int(za)), T([1, n], scale=float(sb), zp=int(zb))],
                T([256, n], scale=float(so), zp=int(zo)), [ALL8.reshape(256, 1), b_values.reshape(1, n)])
    a, b = np.meshgrid(ALL8, b_values, indexing="ij")
    return ([T([1, a.size], scale=float(sa), zp=int(za)), T([1, a.size], scale=float(sb), zp=int(zb))],
            T([1, a.size], scale=float(so), zp=int(zo)), [a.reshape(1, -1), b.reshape(1, -1)])


def binary_scales(rng: np.random.Generator, op: str, kind: str, n: int) -> list[tuple[float, float, float]]:
    """(s_a, s_b, s_out) triples whose output multiplier (ADD/SUB: ``2 max / (2**20 s_out)``,
    SQUARED_DIFFERENCE: ``4 max**2 / (2**14 s_out)``, MUL: ``s_a s_b / s_out``, DIV:
    ``s_a / (s_b s_out)``) is of the kind."""
    if kind == "tie31":
        a, b, o = tie_products(rng, n)
        return list(zip(a, b, o))
    out = []
    for _ in range(4):
        sb = float(np.float32(np.exp(rng.uniform(np.log(1e-3), np.log(0.5)))))
        if op in ("ADD", "SUB"):   # s_a is the larger scale; the ratio is 2 s_a / 2**20 / s_out
            sa, so = scale_pairs(rng, kind, n // 4, 2.0 ** -19, 0.5, 4.0)
            sb_v = (sa * np.float32(rng.uniform(0.1, 1.0))).astype(np.float32)
            out += [(float(x), float(y), float(z)) for x, y, z in zip(sa, sb_v, so)]
        elif op == "SQUARED_DIFFERENCE":
            sa, so = scale_pairs(rng, kind, n // 4, 4.0 * 2.0 ** -14, 4.0, 500.0, power=2)
            sb_v = (sa * np.float32(rng.uniform(0.1, 1.0))).astype(np.float32)
            out += [(float(x), float(y), float(z)) for x, y, z in zip(sa, sb_v, so)]
        elif op == "MUL":
            sa, so = scale_pairs(rng, kind, n // 4, sb, 8.0 * sb, 256.0 * sb, values=PRODUCTS)
            out += [(float(x), sb, float(z)) for x, z in zip(sa, so)]
        else:  # DIV
            sa, so = scale_pairs(rng, kind, n // 4, 1.0 / sb, 0.05 / sb, 2.0 / sb)
            out += [(float(x), sb, float(z)) for x, z in zip(sa, so)]
    return out


BINARY_KINDS = {"ADD": KINDS, "SUB": KINDS, "MUL": KINDS + ("tie31", "split31"), "SQUARED_DIFFERENCE": KINDS,
                "DIV": ("rand", "near31")}


@pytest.mark.parametrize("grid", [True, False], ids=["broadcast", "elementwise"])
@pytest.mark.parametrize("op", list(BINARY_KINDS))
def test_binary_int8_scale_sweep(tmp_path: Path, op: str, grid: bool) -> None:
    """All 256 x 256 int8 value pairs, 24 scale triples per kind (ADD/SUB/SQUARED_DIFFERENCE:
    the output multiplier of the kind; MUL also exact Q31 ties of a double product)."""
    rng = np.random.default_rng(zlib.crc32(op.encode()) + grid)
    groups = []
    for kind in BINARY_KINDS[op]:
        for sa, sb, so in binary_scales(rng, op, kind, 24):
            za, zb, zo = (int(v) for v in rng.integers(-60, 60, 3))
            if kind == "split31":   # products of the raw values, as the kind was selected on
                za = zb = 0
            if op == "DIV":   # TFLM refuses a zero divisor: zero point -128, divisors -127..127
                groups.append(_binary(sa, za, sb, -128, so, zo, grid, ALL8[1:]))
            else:
                groups.append(_binary(sa, za, sb, zb, so, zo, grid))
    _report(sweep(tmp_path, op, groups), len(groups))


@pytest.mark.parametrize("kind", ["rand", "near31", "tie31", "split31"])
def test_prelu_int8_scale_sweep(tmp_path: Path, kind: str) -> None:
    """PRELU int8 with a non-constant int8 alpha: all 256 x 256 (input, alpha) pairs; the alpha
    multiplier ``s_in * s_alpha / s_out`` of the kind (tie31: exactly on a Q31 tie in double)."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    groups = []
    for sa, sb, so in binary_scales(rng, "MUL", kind, 32):
        zi, za, zo = (int(v) for v in rng.integers(-60, 60, 3))
        if kind == "split31":
            zi = za = 0
        groups.append(_binary(sa, zi, sb, za, so, zo, grid=False))
    _report(sweep(tmp_path, "PRELU", groups), len(groups))


# --------------------------------------------------------------------------- output stages (per channel)
def channel_scales(rng: np.random.Generator, kind: str, n: int, si: np.float32, so: np.float32,
                   accs: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """``n`` float32 filter scales ``s_w`` for which ``s_in * s_w / s_out`` (double) is of the kind;
    tie31 needs ``s_out`` a power of two and gives exact Q31 ties; split31 needs the accumulators
    of each channel (``accs``, one array per scale wanted)."""
    if kind == "tie31":
        ma, _ = np.frexp(np.float64(si))
        a = int(ma * 2 ** 24)
        assert a % 2 == 1, "tie31 needs an input scale with an odd 24-bit mantissa"
        base = (0x10000 * pow(a, -1, 1 << 17)) % (1 << 17)
        mbs = [base + (k << 17) for k in range(1 << 6, 1 << 7)]
        mbs = [m for m in mbs if (a * m).bit_length() == 48]
        if not mbs:
            return np.zeros(0, np.float32)
        sw = np.resize(np.array([np.ldexp(m, -24 - 6) for m in mbs], np.float32), n)
        r = np.float64(si) * sw.astype(np.float64) / np.float64(so)
        f = np.frexp(r)[0] * 2.0 ** 31
        assert np.all(f - np.floor(f) == 0.5)
        return sw
    typical = float(so) / float(si) / 300.0
    size = n if kind in ("rand", "wide") else 200_000
    spread = (-28.0, 8.0) if kind == "wide" else (-1.5, 1.5)   # wide: shifts from left 8 to below -31
    sw = (typical * np.exp(rng.uniform(*spread, size))).astype(np.float32)
    if kind == "near31":
        f = np.frexp(np.float64(si) * sw.astype(np.float64) / np.float64(so))[0] * 2.0 ** 31
        sw = sw[np.abs(f - np.floor(f) - 0.5) < 2e-4][:n]
    elif kind == "split31":   # the float32 product s_in * s_w and the double one requantize differently
        assert accs is not None and len(accs) == n
        picked = []
        for acc in accs:   # (a channel with no such scale among the candidates keeps a random one)
            acc = acc if acc.size <= 1024 else rng.choice(acc, 1024, replace=False)
            cand = sw[rng.integers(0, sw.size, 400)]
            hit = cand[_split31((si * cand).astype(np.float32), np.float64(si) * cand.astype(np.float64),
                                np.full(cand.size, so, np.float32), acc)]
            picked.append(hit[0] if hit.size else cand[0])
        sw = np.array(picked, np.float32)
    return sw


def _odd_scale(rng: np.random.Generator) -> np.float32:
    m = int(rng.integers(1 << 22, 1 << 23)) * 2 + 1
    return np.float32(np.ldexp(m, -24 - int(rng.integers(3, 8))))


def _stage_groups(rng: np.random.Generator, kind: str, op: str, per_channel: bool, copies: int,
                  dtype: str = "int8") -> list[Group]:
    """Copies of a 1x1 CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV / FULLY_CONNECTED over every
    int8 input value (int16: 256 spread values, zero points 0, int64 bias), 32 output channels
    with random weights and biases, filter scales of the kind."""
    groups = []
    units = 32
    values = ALL8 if dtype == "int8" else _int16_values(rng)
    bias_t = "int32" if dtype == "int8" else "int64"
    for _ in range(copies):
        si = _odd_scale(rng)
        so = np.float32(2.0 ** -int(rng.integers(0, 6))) if kind == "tie31" else \
            np.float32(si * np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
        zi, zo = (int(rng.integers(-60, 60)), int(rng.integers(-60, 60))) if dtype == "int8" else (0, 0)
        if dtype == "int16":
            so = np.float32(so * 256)
        w = rng.integers(-127, 128, units).astype(np.int8)
        bias = rng.integers(-3000, 3000, units).astype(bias_t)
        acc = (values.astype(np.int64)[:, None] - zi) * w + bias            # (256, units)
        accs = [acc[:, c] for c in range(units)] if per_channel else [acc.ravel()]
        sw = channel_scales(rng, kind, units if per_channel else 1, si, so, accs)
        if sw.size < (units if per_channel else 1):
            continue
        sw = sw if per_channel else np.float32(sw[0])
        bscale = (np.float64(si) * np.asarray(sw, np.float64) * np.ones(units)).astype(np.float32)
        b = T([units], bias_t, scale=bscale, zp=np.zeros(units, np.int64), data=bias)
        if op == "FULLY_CONNECTED":
            x = T([256, 1], dtype, scale=float(si), zp=zi)
            wt = T([units, 1], scale=sw, data=w.reshape(units, 1))
            out = T([256, units], dtype, scale=float(so), zp=zo)
            groups.append(([x, wt, b], out, [values.reshape(256, 1)]))
            continue
        x = T([1, 16, 16, 1], dtype, scale=float(si), zp=zi)
        shape = [1, 1, 1, units] if op == "DEPTHWISE_CONV_2D" else [units, 1, 1, 1]
        wt = T(shape, scale=sw, data=w.reshape(shape), axis=3 if op == "DEPTHWISE_CONV_2D" else 0)
        out = T([1, 16, 16, units], dtype, scale=float(so), zp=zo)
        feed = values.reshape(1, 16, 16, 1)
        if op == "TRANSPOSE_CONV":
            groups.append(([T([4], "int32", data=np.array([1, 16, 16, units], np.int32)), wt, x, b], out, [feed]))
        else:
            groups.append(([x, wt, b], out, [feed]))
    return groups


STAGE_OPTIONS = {
    "FULLY_CONNECTED": (lambda: opts("FullyConnectedOptions", fusedActivationFunction=0), 4),
    "CONV_2D": (lambda: opts("Conv2DOptions", padding=1, strideW=1, strideH=1, dilationWFactor=1,
                             dilationHFactor=1, fusedActivationFunction=0), 3),
    "DEPTHWISE_CONV_2D": (lambda: opts("DepthwiseConv2DOptions", padding=1, strideW=1, strideH=1,
                                       depthMultiplier=32, dilationWFactor=1, dilationHFactor=1,
                                       fusedActivationFunction=0), 3),
    "TRANSPOSE_CONV": (lambda: opts("TransposeConvOptions", padding=1, strideW=1, strideH=1), 3),
}


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
@pytest.mark.parametrize("kind", ["rand", "wide", "near31", "tie31", "split31"])
@pytest.mark.parametrize("op", list(STAGE_OPTIONS))
def test_output_stage_scale_sweep(tmp_path: Path, op: str, kind: str, per_channel: bool) -> None:
    """The int8 output multiplier ``s_in * s_w / s_out`` of FC / CONV / DEPTHWISE / TRANSPOSE_CONV
    on every input value: random, over a wide range of shifts (dead channels whose multiplier
    underflows to 0 included), near Q31 ties, exactly on them (the float32 product of the scales is
    off the tie), and where a float32 product would requantize differently."""
    rng = np.random.default_rng(zlib.crc32((op + kind).encode()) + per_channel)
    make, version = STAGE_OPTIONS[op]
    groups = _stage_groups(rng, kind, op, per_channel, 24 if per_channel or kind == "split31" else 96)
    assert len(groups) >= 12
    _report(sweep(tmp_path, op, groups, make(), version), len(groups))


# ------------------------------------------------------------------------------------ MEAN / SUM
@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 7, 16, 49, 100])
@pytest.mark.parametrize("op", ["MEAN", "SUM"])
def test_mean_sum_scale_sweep(tmp_path: Path, op: str, count: int, dtype: str) -> None:
    """MEAN / SUM int8 / int16 over ``count`` values (the multiplier ``s_in / s_out``, for MEAN
    folded with 1 / count): 256 rows of random values (int8: the first column runs through every
    int8 value; int16: zero points 0)."""
    rng = np.random.default_rng(count + len(op) + len(dtype))
    info = np.iinfo(np.dtype(dtype))
    groups = []
    for kind in KINDS:
        lo, hi = (0.3, 3.0) if op == "MEAN" else (0.5 * count, 4.0 * count)
        si, so = scale_pairs(rng, kind, 12 if dtype == "int8" else 6, 1.0, lo, hi)
        for a, b in zip(si, so):
            x = rng.integers(info.min, info.max + 1, (256, count)).astype(dtype)
            zi, zo = (int(rng.integers(-60, 60)), int(rng.integers(-60, 60))) if dtype == "int8" else (0, 0)
            if dtype == "int8":
                x[:, 0] = ALL8
            axis = T([1], "int32", data=np.array([1], np.int32))
            groups.append(([T([256, count], dtype, scale=float(a), zp=zi), axis],
                           T([256], dtype, scale=float(b), zp=zo), [x]))
    _report(sweep(tmp_path, op, groups, opts("ReducerOptions", keepDims=False)), len(groups))


# ------------------------------------------------------------------------- SOFTMAX / LOG_SOFTMAX / L2
SOFTMAX_OUT = {  # op, output type: (scale, zero point)
    ("SOFTMAX", "int8"): (1 / 256, -128), ("SOFTMAX", "int16"): (1 / 65536, -32768),
    ("LOG_SOFTMAX", "int8"): (16 / 256, 127), ("L2_NORMALIZATION", "int8"): (1 / 128, 0),
}


@pytest.mark.parametrize("op,out", list(SOFTMAX_OUT))
def test_normalizers_int8_input_scales(tmp_path: Path, op: str, out: str) -> None:
    """SOFTMAX (several betas) / LOG_SOFTMAX / L2_NORMALIZATION int8 over input scales 2**-10..4:
    rows of 16 random values, 64 rows per scale."""
    rng = np.random.default_rng(zlib.crc32((op + out).encode()))
    so, zo = SOFTMAX_OUT[(op, out)]
    betas = (1.0, 0.5, 2.3) if op == "SOFTMAX" else (1.0,)
    for beta in betas:
        si = np.exp(rng.uniform(np.log(2.0 ** -10), np.log(4.0), 64)).astype(np.float32)
        groups = [([T([64, 16], scale=float(s), zp=int(rng.integers(-128, 128)) if op != "L2_NORMALIZATION" else 0)],
                   T([64, 16], out, scale=so, zp=zo), [rng.integers(-128, 128, (64, 16)).astype(np.int8)])
                  for s in si]
        o = opts("SoftmaxOptions", beta=beta) if op == "SOFTMAX" else None
        _report(sweep(tmp_path, op, groups, o), len(groups))


# ------------------------------------------------------------------------------------ int16 binary
def _int16_values(rng: np.random.Generator) -> np.ndarray:
    """256 int16 values: the extremes, small values and a random spread."""
    v = np.concatenate([[-32768, -32767, -1, 0, 1, 32767], np.arange(-20, 21),
                        rng.integers(-32768, 32768, 256 - 47)])
    return v.astype(np.int16)


@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "PRELU"])
def test_binary_int16_scale_sweep(tmp_path: Path, op: str) -> None:
    """int16 ADD/SUB/MUL/SQUARED_DIFFERENCE (zero points 0) and PRELU (int8 alpha): 256 x 256
    value pairs per scale triple, 16 triples per kind."""
    rng = np.random.default_rng(zlib.crc32(op.encode()) + 16)
    groups = []
    scale_op = "MUL" if op == "PRELU" else op
    for kind in ("rand", "near31", "q15", "split15") + (("tie31",) if op in ("MUL", "PRELU") else ()):
        for sa, sb, so in binary_scales(rng, scale_op, kind, 16):
            if op == "SQUARED_DIFFERENCE":
                so = float(np.float32(so * 2 ** 14))  # int16: no left shift, results up to 2**32 sa**2
            av = _int16_values(rng)
            if op == "PRELU":
                a, b = np.meshgrid(av, ALL8, indexing="ij")
                groups.append(([T([1, a.size], "int16", scale=float(sa), zp=0),
                                T([1, a.size], "int8", scale=float(sb), zp=int(rng.integers(-60, 60)))],
                               T([1, a.size], "int16", scale=float(so), zp=0), [a.reshape(1, -1), b.reshape(1, -1)]))
            else:
                groups.append(([T([256, 1], "int16", scale=float(sa), zp=0),
                                T([1, 256], "int16", scale=float(sb), zp=0)],
                               T([256, 256], "int16", scale=float(so), zp=0),
                               [av.reshape(256, 1), _int16_values(rng).reshape(1, 256)]))
    _report(sweep(tmp_path, op, groups), len(groups))


# ------------------------------------------------------------------------- fused activation bounds
@pytest.mark.parametrize("act", [1, 2, 3], ids=["RELU", "RELU_N1_TO_1", "RELU6"])
def test_fused_activation_bounds(tmp_path: Path, act: int) -> None:
    """ADD with a fused activation: the clamp ``zp + round(bound / s_out)`` on output scales whose
    bound / scale lies on or next to a rounding tie (float32 and double quotients disagree)."""
    bound = {1: 6.0, 2: 1.0, 3: 6.0}[act]
    aim = (bound / (np.arange(2, 120) + 0.5)).astype(np.float32)
    so = np.concatenate([aim, np.nextafter(aim, np.float32(0)), np.nextafter(aim, np.float32(1)),
                         aim * np.float32(1 + 2.0 ** -22), aim * np.float32(1 - 2.0 ** -22)]).astype(np.float32)
    rng = np.random.default_rng(act)
    groups = [_binary(s * np.float32(0.7), int(rng.integers(-20, 20)), s * np.float32(0.9), int(rng.integers(-20, 20)),
                      s, int(rng.integers(-100, -60)), True) for s in so]
    _report(sweep(tmp_path, "ADD", groups, opts("AddOptions", fusedActivationFunction=act)), len(groups))


@pytest.mark.parametrize("kind", ["rand", "near31", "tie31", "split31"])
@pytest.mark.parametrize("op", list(STAGE_OPTIONS))
def test_output_stage_int16_scale_sweep(tmp_path: Path, op: str, kind: str) -> None:
    """The 16x8 output stages (int16 activations, int8 per-channel weights, int64 bias)."""
    rng = np.random.default_rng(zlib.crc32((op + kind + "16").encode()))
    make, version = STAGE_OPTIONS[op]
    groups = _stage_groups(rng, kind, op, True, 16, "int16")
    assert len(groups) >= 8
    _report(sweep(tmp_path, op, groups, make(), version), len(groups))


@pytest.mark.parametrize("kind", ["rand", "near31", "q15", "split15", "tie31", "split31"])
def test_batch_matmul_int8_scale_sweep(tmp_path: Path, kind: str) -> None:
    """BATCH_MATMUL int8, [256, 1] x [1, 256]: every pair of int8 values, the multiplier
    ``s_lhs * s_rhs / s_out`` of the kind."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()) + 7)
    groups = []
    for sa, sb, so in binary_scales(rng, "MUL", kind, 24):
        za, zb, zo = (int(v) for v in rng.integers(-60, 60, 3))
        if kind == "split31":
            za = zb = 0
        groups.append(([T([256, 1], scale=float(sa), zp=za), T([1, 256], scale=float(sb), zp=zb)],
                       T([256, 256], scale=float(so), zp=zo), [ALL8.reshape(256, 1), ALL8.reshape(1, 256)]))
    _report(sweep(tmp_path, "BATCH_MATMUL", groups, opts("BatchMatMulOptions", adjX=False, adjY=False)), len(groups))


@pytest.mark.parametrize("op", ["FULLY_CONNECTED", "CONV_2D"])
def test_output_stage_dyadic_ties(tmp_path: Path, op: str) -> None:
    """Dyadic multipliers (``s_in * s_w / s_out = k / 2**j``, k odd and small) make many
    accumulators land exactly on a rounding tie of SaturatingRoundingDoublingHighMul or
    RoundingDivideByPOT, with both signs; accumulators span 64-term dot products."""
    rng = np.random.default_rng(zlib.crc32(op.encode()) + 3)
    groups = []
    depth, rows = 64, 256
    for i in range(32):
        k, j = int(rng.choice([1, 3, 5, 7, 9, 15, 33, 127])), int(rng.integers(1, 22))
        si = np.float32(2.0 ** -int(rng.integers(3, 9)))
        sw = np.float32(2.0 ** -int(rng.integers(3, 9)) * (k if i % 2 else 1))
        so = np.float32(float(si) * float(sw) * 2.0 ** j / (1 if i % 2 else k))
        zi, zo = int(rng.integers(-20, 20)), int(rng.integers(-60, 60))
        w = rng.integers(-127, 128, (8, depth)).astype(np.int8)
        bias = rng.integers(-2000, 2000, 8).astype(np.int32)
        x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
        b = T([8], "int32", scale=float(si) * float(sw), data=bias)
        if op == "FULLY_CONNECTED":
            groups.append(([T([rows, depth], scale=float(si), zp=zi), T([8, depth], scale=float(sw), data=w), b],
                           T([rows, 8], scale=float(so), zp=zo), [x]))
        else:
            groups.append(([T([1, 16, 16, depth], scale=float(si), zp=zi),
                            T([8, 1, 1, depth], scale=float(sw), data=w.reshape(8, 1, 1, depth)), b],
                           T([1, 16, 16, 8], scale=float(so), zp=zo), [x.reshape(1, 16, 16, depth)]))
    make, version = STAGE_OPTIONS[op]
    _report(sweep(tmp_path, op, groups, make(), version), len(groups))


def test_softmax_int16_input_scales(tmp_path: Path) -> None:
    """SOFTMAX int16 -> int16 (output 2**-15): the input multiplier ``s_in * beta / (10 / 65535)``,
    random and within 1/500 unit of a Q31 tie, on rows of 16 random int16 values."""
    rng = np.random.default_rng(1616)
    pool = np.exp(rng.uniform(np.log(1e-5), np.log(1e-2), 300_000)).astype(np.float32)
    f = np.frexp(pool.astype(np.float64) * 1.0 / (10.0 / 65535.0))[0] * 2.0 ** 31
    si = np.concatenate([pool[:32], pool[np.abs(f - np.floor(f) - 0.5) < 2e-3][:32]])
    groups = [([T([64, 16], "int16", scale=float(s), zp=0)], T([64, 16], "int16", scale=2.0 ** -15, zp=0),
               [rng.integers(-32768, 32768, (64, 16)).astype(np.int16)]) for s in si]
    _report(sweep(tmp_path, "SOFTMAX", groups, opts("SoftmaxOptions", beta=1.0)), len(groups))


@pytest.mark.parametrize("out", ["int8", "int16"])
def test_quantize_float_ties(tmp_path: Path, out: str) -> None:
    """QUANTIZE float32 -> int8/int16: inputs ``(k + 1/2) * scale`` (rounded to float32) and
    their neighbours, so ``x / scale`` lands on or next to a rounding tie, both signs."""
    rng = np.random.default_rng(len(out))
    scales = np.exp(rng.uniform(np.log(1e-4), np.log(1.0), 64)).astype(np.float32)
    groups = []
    for s in scales:
        zp = int(rng.integers(-20, 20)) if out == "int8" else 0
        k = np.arange(-140, 140) if out == "int8" else rng.integers(-33000, 33000, 280)
        aim = ((k + 0.5) * np.float64(s)).astype(np.float32)
        x = np.concatenate([aim, np.nextafter(aim, np.float32(-np.inf)), np.nextafter(aim, np.float32(np.inf))])
        groups.append(([T([1, x.size], "float32")], T([1, x.size], out, scale=float(s), zp=zp),
                       [x.astype(np.float32).reshape(1, -1)]))
    _report(sweep(tmp_path, "QUANTIZE", groups), len(groups))


def test_dequantize_int16(tmp_path: Path) -> None:
    """DEQUANTIZE int16 -> float32 on every int16 value, random scales."""
    rng = np.random.default_rng(1601)
    si = np.exp(rng.uniform(np.log(1e-6), np.log(1.0), 32)).astype(np.float32)
    groups: list[Group] = [([T([1, ALL16.size], "int16", scale=float(s), zp=0)], T([1, ALL16.size], "float32"),
                            [ALL16.reshape(1, -1)]) for s in si]
    _report(sweep(tmp_path, "DEQUANTIZE", groups), len(groups))


@pytest.mark.parametrize("kind", KINDS)
def test_add_n_int8_scale_sweep(tmp_path: Path, kind: str) -> None:
    """ADD_N int8 (three inputs of one quantization): the output multiplier
    ``2 s_in / (2**20 s_out)`` of the kind, on every pair of int8 values (the third input random)."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()) + 11)
    si, so = scale_pairs(rng, kind, 32, 2.0 ** -19, 1.0, 6.0)
    a, b = np.meshgrid(ALL8, ALL8, indexing="ij")
    groups = []
    for s, o in zip(si, so):
        z = int(rng.integers(-60, 60))
        ins = [T([1, a.size], scale=float(s), zp=z) for _ in range(3)]
        groups.append((ins, T([1, a.size], scale=float(o), zp=int(rng.integers(-60, 60))),
                       [a.reshape(1, -1), b.reshape(1, -1), rng.integers(-128, 128, (1, a.size)).astype(np.int8)]))
    _report(sweep(tmp_path, "ADD_N", groups), len(groups))


# ------------------------------------------------------------------------------------------- SVDF
@pytest.mark.parametrize("kind", ["rand", "near31"])
def test_svdf_int8_scale_sweep(tmp_path: Path, kind: str) -> None:
    """SVDF int8 (int16 state and time weights), 24 copies per model, three invocations carrying
    the state: ``s_in * s_wf / s_state`` and ``s_state * s_wt / s_out`` of the kind."""
    rng = np.random.default_rng(zlib.crc32(kind.encode()) + 5)
    n_in, units, rank, mem, batch = 8, 4, 2, 5, 2
    filters = units * rank
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ins, outs = [], []
    wf_s = 2.0 ** -7
    for sx, st_s in zip(*scale_pairs(rng, kind, 24, wf_s, 8.0 * wf_s, 64.0 * wf_s, pool=100_000)):
        # scale_1 = s_in * s_wf / s_state and scale_2 = s_state * s_wt / s_out are both of the kind
        pair = scale_pairs(rng, kind, 1, float(st_s), 2e4 * float(st_s), 4e5 * float(st_s), pool=20_000)
        if pair[0].size == 0:
            continue
        wt_s, out_s = float(pair[0][0]), float(pair[1][0])
        st_s = float(st_s)
        x = sg.tensor(T([batch, n_in], scale=float(sx), zp=int(rng.integers(-30, 30))))
        wf = sg.tensor(T([filters, n_in], scale=wf_s, data=rng.integers(-127, 128, (filters, n_in)).astype(np.int8)))
        wt = sg.tensor(T([filters, mem], "int16", scale=wt_s,
                         data=rng.integers(-2000, 2001, (filters, mem)).astype(np.int16)))
        bias = sg.tensor(T([units], "int32", scale=float(np.float32(st_s) * np.float32(wt_s)),
                           data=rng.integers(-20000, 20001, units).astype(np.int32)))
        state = sg.tensor(T([batch, filters * mem], "int16", scale=st_s, zp=0, variable=True))
        out = sg.tensor(T([batch, units], scale=out_s, zp=int(rng.integers(-30, 30))))
        sg.op("SVDF", [x, wf, wt, bias, state], [out], opts("SVDFOptions", rank=rank, fusedActivationFunction=0))
        ins.append(x)
        outs.append(out)
    assert len(ins) >= 12
    sg.io(ins, outs)
    path = mb.write(tmp_path / "svdf.tflite")
    feeds = [[rng.integers(-128, 128, (batch, n_in)).astype(np.int8) for _ in ins] for _ in range(3)]
    want = run_tflm(path, feeds, reset_each=False)
    got = run_micro(path, feeds, reset_each=False)
    bad = [f"invocation {k} copy {j}" for k, (w, g) in enumerate(zip(want, got))
           for j, (a, b) in enumerate(zip(w, g)) if not np.array_equal(a, b)]
    _report(bad, len(ins))


def test_hard_swish_reluish_multiplier_ties(tmp_path: Path) -> None:
    """HARD_SWISH's second multiplier, ``(s_in / 128) / (3 / 32768)`` = ``s_in * 256 / 3``, depends on
    the input scale only: input scales that put it within 1 of a Q31 -> Q15 tie (exactly on it when
    the mantissa is a multiple of 3; otherwise its low bits repeat 0101..., so the float32 and double
    quotients never round to different Q15 values: checked here); every int8 input."""
    rng = np.random.default_rng(128)
    si = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), 400_000)).astype(np.float32)
    hires = (np.float32(1 / 128) * si).astype(np.float32)
    reluish = np.float32(3.0) / np.float32(32768.0)
    q64, _ = _q31(hires.astype(np.float64) / np.float64(reluish))
    q32, _ = _q31((hires / reluish).astype(np.float32).astype(np.float64))
    tie = si[np.abs((q64 & 0xFFFF) - 0x8000) <= 1][:PER_KIND]
    split = si[_q15(q32) != _q15(q64)][:PER_KIND]
    assert tie.size >= 16 and split.size == 0
    picks = tie
    so = (picks * rng.uniform(0.3, 1.0, picks.size)).astype(np.float32)
    groups = [_unary(a, rng.integers(-40, 40), b, rng.integers(-128, -100)) for a, b in zip(picks, so)]
    _report(sweep(tmp_path, "HARD_SWISH", groups), len(groups))

"""Compiled CONV_2D (int8) as an implicit GEMM on AVX-512 VNNI (``vpdpbusd``, see :mod:`vnni`).

One call per op:

1. the int8 input is copied, each byte plus 128 (``x ^ 0x80``: an unsigned byte), into a private
   padded image whose border holds the input zero point (plus 128) and, where a tap is one kernel
   position, whose channels are padded to a multiple of 4 (the padded channels have zero weights; see
   :func:`geometry` for taps of whole kernel rows). Every tap of every output position then reads
   inside this image, and the op may run in place (the input is read only through the copy);
2. per run of output positions a constant stride apart in the padded image (an output row, or the
   whole image, see :func:`geometry`), per segment of it, per block of 16 output channels, per tile
   of ``TILE`` positions (``SHORT`` for the last few), :func:`vnni.dot_tile` sums ``(x + 128) * w``
   over the taps (a tap's bytes are contiguous in the padded image);
   the accumulators start at ``-128 * sum(w)`` per channel, so each sum is exactly TFLM's
   ``sum(x * w)`` over the image padded with the input zero point (no partial sum leaves int32 for
   K <= ``MAX_TERMS``; longer sums stay on the BLAS kernel), whose zero point term the folded bias cancels;
3. the output stage of the segment (:func:`requant.requant_row`), along the whole segment when there
   are < 32 channels (constants tiled along it), else per position.

The accumulators of a segment are packed, ``cout`` per position. A tile stores 16 lanes per position,
so where ``cout`` is not a multiple of 16 the last block's store runs into the first lanes of the next
position; blocks run last first, so those lanes (which belong to lower blocks, or for < 16 channels to
the next position, stored after) are rewritten with their own sums afterwards.

The same integers as the other CONV_2D paths, so the same outputs bit for bit.
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.fast.jit import inline, kernel
from edge_runtime.backends.micro.fast.requant import float_part, requant_row
from edge_runtime.backends.micro.fast.vnni import LANES, SHORT, TILE, dot_tile, dot_tile_short

#: Take this path where it applies (tests switch it off to compare with the BLAS kernel).
ENABLED = [True]
#: Longest sum K (taps x padded input channels) whose int32 accumulators never overflow: the start value
#: -128 * sum(w) (at most 128 * 128 * K) plus any partial sum of (x + 128) * w (at most 255 * 128 * K).
MAX_TERMS = ((1 << 31) - 1) // (128 * 128 + 255 * 128)

# geometry vector ``g`` (int64): the meaning of each index (``cin4``: the padded image's channel stride;
# ``groups``: groups of 4 bytes per tap)
_G = ("kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "h", "w", "cin", "cin4", "hp", "wp", "ho", "wo", "n", "cout",
      "cpad", "tiled", "runs", "positions", "lda", "rstride", "seg", "rowtap", "groups")
G_INDEX = {name: i for i, name in enumerate(_G)}
#: Int32 values of the accumulator workspace of one segment (16 KiB: stays in L1 until requantized).
SEGMENT_VALUES = 4096


def geometry(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int, n: int, h: int, w: int,
             cin: int, ho: int, wo: int, cout: int) -> np.ndarray:
    """The geometry vector of :func:`conv_vnni`.

    Taps: with a channel count that is a multiple of 4 (or dilation along x), one tap per kernel
    position, its channels padded to a multiple of 4 in the padded image; otherwise (``rowtap``) one
    tap per kernel row: its ``kw * cin`` bytes are contiguous in the unpadded-channel image, summed in
    groups of 4 (the bytes past them, up to 3, meet zero weights), which wastes less than padding few
    channels (1 channel: 4x fewer products). Runs: output positions whose first taps are a constant
    stride ``lda`` apart in the padded image: each output row, or the whole image as one run when rows
    follow on at the same stride (one output column, or a layer whose output rows are as long as its
    input rows: pointwise, stride 1, no padding). Each run is split into segments of ``seg`` positions
    (their accumulators stay in L1)."""
    rowtap = int(cin % 4 != 0 and dw == 1)
    cin4 = cin if rowtap else -(-cin // 4) * 4
    groups = -(-kw * cin // 4) if rowtap else cin4 // 4
    hp = max(pt + h, (ho - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pl + w, (wo - 1) * sw + (kw - 1) * dw + 1)
    cpad = -(-cout // LANES) * LANES
    if wo == 1:
        runs, positions, lda = 1, ho, sh * wp * cin4
    elif sh * wp == sw * wo:
        runs, positions, lda = 1, ho * wo, sw * cin4
    else:
        runs, positions, lda = ho, wo, sw * cin4
    seg = max(1, min(positions, max(TILE, SEGMENT_VALUES // cpad // TILE * TILE)))
    tiled = int(cout < 32 and seg > 1)
    vals = dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, pt=pt, pl=pl, h=h, w=w, cin=cin, cin4=cin4, hp=hp, wp=wp,
                ho=ho, wo=wo, n=n, cout=cout, cpad=cpad, tiled=tiled, runs=runs, positions=positions, lda=lda,
                rstride=sh * wp * cin4, seg=seg, rowtap=rowtap, groups=groups)
    g = np.array([vals[k] for k in _G], np.int64)
    g.flags.writeable = False
    return g


def fits(kh: int, kw: int, cin: int) -> bool:
    """True when the sums of a layer stay exact in int32 on this path (bounded with the longer of the two
    tap layouts)."""
    return kh * kw * (-(-cin // 4) * 4) <= MAX_TERMS


def pack_weights(w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The int8 weights ``w`` (cout, kh, kw, cin) packed for :func:`vnni.dot_tile`: (cpad / 16, taps,
    groups, 16, 4) flattened, a tap's bytes in the padded image's order (channels, or for ``rowtap``
    the kernel row's columns and channels), zero for padded channels and bytes; and the accumulators'
    start values ``-128 * sum(w)`` per output channel (cpad,) int32."""
    gi = G_INDEX
    cout, kh, kw, cin = w.shape
    cpad, groups = int(g[gi["cpad"]]), int(g[gi["groups"]])
    w8 = np.asarray(w, np.int8)
    if g[gi["rowtap"]]:
        taps = kh
        full = np.zeros((cpad, taps, groups * 4), np.int8)
        full[:cout, :, :kw * cin] = w8.reshape(cout, kh, kw * cin)
    else:
        taps = kh * kw
        full = np.zeros((cpad, taps, groups * 4), np.int8)
        full[:cout, :, :cin] = w8.reshape(cout, taps, cin)
    packed = full.reshape(cpad // LANES, LANES, taps, groups, 4).transpose(0, 2, 3, 1, 4)
    bp = np.ascontiguousarray(packed).reshape(-1)
    init = (-128 * full.astype(np.int64).sum(axis=(1, 2))).astype(np.int32)
    bp.flags.writeable = False
    init.flags.writeable = False
    return bp, init


def tap_offsets(g: np.ndarray) -> np.ndarray:
    """Byte offset of each tap (kernel position, or kernel row for ``rowtap``) from its output position's
    first tap in the padded image."""
    gi = G_INDEX
    kh, kw, dh, dw, wp, cin4 = (int(g[gi[k]]) for k in ("kh", "kw", "dh", "dw", "wp", "cin4"))
    if g[gi["rowtap"]]:
        toff = np.array([ky * dh * wp * cin4 for ky in range(kh)], np.int64)
    else:
        toff = np.array([(ky * dh * wp + kx * dw) * cin4 for ky in range(kh) for kx in range(kw)], np.int64)
    toff.flags.writeable = False
    return toff


def padded_image(g: np.ndarray, zero_point: int) -> np.ndarray:
    """The private padded uint8 image: border = input zero point + 128, padded channels 0, plus slack
    after the end for the last tile's positions past the row and a row tap's last group (computed, never
    stored to the output)."""
    gi = G_INDEX
    n, hp, wp, cin4, cin, lda = (int(g[gi[k]]) for k in ("n", "hp", "wp", "cin4", "cin", "lda"))
    img = np.empty((n, hp, wp, cin4), np.uint8)
    img[..., :cin] = (int(zero_point) + 128) & 0xFF
    img[..., cin:] = 0
    slack = np.zeros((TILE + 1) * lda + 64, np.uint8)
    return np.concatenate([img.reshape(-1), slack])


def accumulators(g: np.ndarray) -> np.ndarray:
    """The int32 workspace of one segment: its positions rounded up to ``TILE``, x cout, plus the lanes
    the last position's padded block stores past it."""
    gi = G_INDEX
    seg, cout, cpad = int(g[gi["seg"]]), int(g[gi["cout"]]), int(g[gi["cpad"]])
    return np.zeros(-(-seg // TILE) * TILE * cout + cpad, np.int32)


@inline
def _copy_row(xu, src, pad, dst, w, cin, cin4, flip):  # type: ignore[no-untyped-def]
    """One input row into the padded image, each byte ``^ flip``; with 1-3 channels, one statement per
    byte of each padded position (so that the loop over positions vectorises), the padding byte(s) 0."""
    one, two, three, z = np.uint64(1), np.uint64(2), np.uint64(3), np.uint8(0)
    if cin4 == cin:
        for j in range(w * cin):
            u = np.uint64(j)
            pad[dst + u] = xu[src + u] ^ flip
    elif cin == 3:
        for ix in range(w):
            d, s = dst + np.uint64(4 * ix), src + np.uint64(3 * ix)
            pad[d] = xu[s] ^ flip
            pad[d + one] = xu[s + one] ^ flip
            pad[d + two] = xu[s + two] ^ flip
            pad[d + three] = z
    elif cin == 1:
        for ix in range(w):
            d = dst + np.uint64(4 * ix)
            pad[d] = xu[src + np.uint64(ix)] ^ flip
            pad[d + one] = z
            pad[d + two] = z
            pad[d + three] = z
    elif cin == 2:
        for ix in range(w):
            d, s = dst + np.uint64(4 * ix), src + np.uint64(2 * ix)
            pad[d] = xu[s] ^ flip
            pad[d + one] = xu[s + one] ^ flip
            pad[d + two] = z
            pad[d + three] = z
    else:
        for ix in range(w):
            for c in range(cin):
                pad[dst + np.uint64(ix * cin4 + c)] = xu[src + np.uint64(ix * cin + c)] ^ flip


@kernel
def conv_vnni(xu, g, toff, bp, init, q, pad, acc, yf):  # type: ignore[no-untyped-def]
    """CONV_2D (int8) in one call (see the module docstring): ``xu`` the flat input viewed as uint8,
    ``g`` :func:`geometry`, ``toff`` :func:`tap_offsets`, ``bp``/``init`` :func:`pack_weights`, ``q``
    packed constants (tiled along a segment when ``g`` says so), ``pad`` :func:`padded_image`, ``acc``
    :func:`accumulators`, ``yf`` the flat int8 output."""
    pt, pl = g[6], g[7]
    h, w, cin, cin4, hp, wp = g[8], g[9], g[10], g[11], g[12], g[13]
    n_img, cout, cpad, tiled = g[16], g[17], g[18], g[19]
    zp, lo, hi = q[5, 0], q[5, 1], q[5, 2]
    qf, mode, soff, flo, fhi = float_part(q)
    flip = np.uint8(128)
    for n in range(n_img):
        for iy in range(h):
            dst = np.uint64(((n * hp + iy + pt) * wp + pl) * cin4)
            src = np.uint64((n * h + iy) * w * cin)
            _copy_row(xu, src, pad, dst, w, cin, cin4, flip)
    groups = g[26]
    blocks = cpad // LANES
    bstride = toff.shape[0] * groups * LANES * 4
    runs, positions, lda, rstride, seg = g[20], g[21], g[22], g[23], g[24]
    for n in range(n_img):
        for r in range(runs):
            runbase = n * hp * wp * cin4 + r * rstride
            for s0 in range(0, positions, seg):
                sl = min(seg, positions - s0)
                for b in range(blocks):
                    blk = blocks - 1 - b  # (last block first: see the module docstring)
                    t0 = 0
                    while t0 < sl:
                        if sl - t0 > SHORT:
                            dot_tile(pad, runbase + (s0 + t0) * lda, lda, toff, groups, bp, blk * bstride, init,
                                     blk * LANES, acc, t0 * cout + blk * LANES, cout)
                            t0 += TILE
                        else:
                            dot_tile_short(pad, runbase + (s0 + t0) * lda, lda, toff, groups, bp, blk * bstride, init,
                                           blk * LANES, acc, t0 * cout + blk * LANES, cout)
                            t0 += SHORT
                ybase = ((n * runs + r) * positions + s0) * cout
                if tiled == 1:
                    requant_row(acc[:sl * cout], q, qf, yf[ybase:ybase + sl * cout], zp, lo, hi, mode, soff, flo, fhi)
                else:
                    for i in range(sl):
                        requant_row(acc[i * cout:(i + 1) * cout], q, qf, yf[ybase + i * cout:ybase + (i + 1) * cout],
                                    zp, lo, hi, mode, soff, flo, fhi)

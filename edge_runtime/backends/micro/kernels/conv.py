"""CONV_2D and DEPTHWISE_CONV_2D, int8 (per-channel, as TFLM's ``ConvPerChannel`` /
``DepthwiseConvPerChannel``) and float32, including hybrid models (int8 weights,
float activations: the weights are dequantized).

Method: the output is produced in chunks of rows. For each chunk a *band* of input
rows, padded with the input zero point (so that padding contributes nothing once
the zero point is folded into the bias), is copied into the float64 workspace.
CONV_2D gathers the band into an im2col matrix through a strided view and does one
float64 matrix product: products of int8 values and their sums (< 2**53) are exact
in float64, so the int32 accumulator of TFLM is reproduced exactly. DEPTHWISE sums
the kh*kw shifted views of the band times their per-channel weights. The int8
tail is :class:`Requantizer` (MultiplyByQuantizedMultiplier, zero point, clamp).

Weights stay int8 views over the model's memory map (the source of truth); at bind
time each kernel widens them once into a cached float array in the compute dtype
(dequantized for hybrid models), counted in ``Interpreter.cache_bytes``. The int8
tail is :class:`FloatRequantizer` (a few float64 passes, exact) wherever its bound
holds for the layer's weights, else the int64 :class:`Requantizer`.

Compiled path (``edge-runtime[fast]``, see :mod:`edge_runtime.backends.micro.fast`): for int8
ops, when numba imports and ``EDGE_RUNTIME_MICRO_FAST`` is not 0, :func:`choose_path` (at bind
time) runs CONV_2D as one compiled call per op (on hosts with AVX-512 VNNI an int8 implicit GEMM,
:mod:`~edge_runtime.backends.micro.fast.conv_vnni`; else im2col from the int8 input, BLAS through numba's
``np.dot``, output stage; without SciPy the band, im2col and product above with a compiled tail),
and DEPTHWISE_CONV_2D as one compiled call from the int8 input (int32 sums).
``self.path`` records the choice ("numba" or "numpy").
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_runtime.backends.micro import fast, options as opt
from edge_runtime.formats.tflite import TensorInfo
from edge_runtime.backends.micro.fixedpoint import (
    CLIP, FloatRequantizer, Requantizer, quantize_multiplier, quantize_multipliers,
)
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Inputs, Kernel, OpContext, Outputs, Scratch, Workspace, compute_padding,
    float_activation_range, qparams, quantized_activation_range, require_constant, require_type, scales32,
)

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)


_Pair = tuple[np.ndarray, np.ndarray]
#: Compiled CONV_2D with y-stride 1 sums kh products of the kw-tap rows (see fast.conv.conv_gemm).
ROWSHIFT = [True]


def exact_dtype(quantized: bool, terms: int) -> np.dtype:
    """Compute dtype for sums of ``terms`` int8 x int8 products.

    Each product is at most 2**14 in magnitude, so every partial sum of up to 1024
    of them is an integer below 2**24 and float32 (BLAS included, in any order, with
    or without FMA) represents it exactly. Longer sums use float64 (exact below
    2**53). Float models compute in float32, as LiteRT's float kernels do.
    """
    return np.dtype(np.float32) if (not quantized) or terms * (1 << 14) <= (1 << 24) else F64


def _same_start(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two arena views start at the same address (the plan runs the op in place)."""
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def per_channel_multipliers(ctx: OpContext, input_scale: float, filter_scales: np.ndarray, output_scale: float,
                            channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``PopulateConvolutionQuantizationParams``: per-channel (multiplier, shift), computed in double."""
    if filter_scales.size not in (1, channels):
        raise ctx.fail(f"the filter has {filter_scales.size} scales for {channels} output channels")
    a, b = float(np.float32(input_scale)), float(np.float32(output_scale))
    if b != 0.0 and channels > 0:  # (the same double operations per channel, in one pass)
        fs = np.broadcast_to(np.asarray(filter_scales).reshape(-1).astype(np.float64), (channels,))
        with np.errstate(all="ignore"):
            eff = (a * fs) / b
        if np.all(np.isfinite(eff)):
            return quantize_multipliers(eff)
    mults = np.empty(channels, np.int64)  # a zero output scale or a non-finite multiplier raises here
    shifts = np.empty(channels, np.int64)
    for c in range(channels):
        fs = float(filter_scales[c if filter_scales.size > 1 else 0])
        eff = float(np.float32(input_scale)) * fs / float(np.float32(output_scale))
        mults[c], shifts[c] = quantize_multiplier(eff)
    return mults, shifts


def weight_sums(w: np.ndarray, channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel: the sum of the int8 weights and the sum of their magnitudes (int64).

    ``w`` holds the channels along ``channel_axis`` (0 or 1) and the summed values along the
    other axis. Integer sums: the same integers as rounding float64 sums of the weights."""
    other = 1 - channel_axis
    w16 = np.asarray(w).astype(np.int16)  # (|-128| fits)
    total = w16.sum(axis=other, dtype=np.int64)
    np.abs(w16, out=w16)
    return total, w16.sum(axis=other, dtype=np.int64)


def prepare_output_stage(k: Kernel, w: np.ndarray, channel_axis: int, terms: int, channels: int,
                         bias_tensor: Optional[TensorInfo]) -> None:
    """Constants of the output stage shared by the convolutions and FULLY_CONNECTED.

    ``w`` holds the weights as stored (int8 for int8 models) with the output channels along
    ``channel_axis`` (0 or 1) and the ``terms`` summed values along the other axis. Sets
    ``k.bias`` (the input zero point folded in: bias - zp * sum(weights); int64 for int8 models,
    in the compute dtype for float ones), ``k.cdt`` (see :func:`exact_dtype`) and ``k.frq``; for
    int8 models also ``k.requant`` from ``k.requant_args``, with the float64 requantizer
    where it is exact for every accumulator these weights can produce (|x| <= 128 per
    int8 input); for float models casts ``k.weight_scale`` to the compute dtype."""
    if k.weight_scale is not None and k.weight_scale.size not in (1, w.shape[channel_axis]):
        raise k.ctx.fail(f"the weights have {k.weight_scale.size} scales for {w.shape[channel_axis]} output channels")
    if bias_tensor is not None and bias_tensor.num_elements != channels:
        raise k.ctx.fail(f"bias '{bias_tensor.name}' has {bias_tensor.num_elements} values for {channels} "
                         "output channels")
    q = k.quantized
    if q:
        sums, magnitudes = weight_sums(w, channel_axis)
        bias = np.zeros(channels, np.int64)
        if bias_tensor is not None:
            bias += bias_tensor.array().astype(np.int64).reshape(-1)
        if k.in_zp:
            bias -= np.int64(k.in_zp) * sums
    else:
        bias = np.zeros(channels, np.float64)
        if bias_tensor is not None:
            bias += bias_tensor.array().astype(np.float64).reshape(-1)
    k.bias = bias
    k.cdt = cdt = exact_dtype(q, terms)
    k.frq = None
    if q:
        k.requant = Requantizer(*k.requant_args, bias=bias)
        bound = 128 * magnitudes
        k.frq = FloatRequantizer.create(*k.requant_args, bias=bias, acc_bound=bound)
    else:
        k.bias = bias.astype(cdt)
        if k.weight_scale is not None:
            k.weight_scale = k.weight_scale.astype(cdt)


def int_workspace(rows: int, channels: int) -> dict[str, tuple[tuple[int, int], np.dtype]]:
    """Workspace of the int64 requantization tail: the accumulator copy and a temporary."""
    return {"acc_i": ((rows, channels), I64), "tmp": ((rows, channels), I64)}


def widened(src: np.ndarray, scale: Optional[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """The weights widened (and dequantized for hybrid models) once, into a new read-only array."""
    out = np.empty(src.shape, dtype)
    if scale is None:
        np.copyto(out, src, casting="unsafe")
    else:
        np.multiply(src, scale, out=out)
    out.flags.writeable = False
    return out


def output_tail(k: Kernel, acc: np.ndarray, acc_i: Optional[np.ndarray], tmp: Optional[np.ndarray],
                out: np.ndarray) -> Callable[[], None]:
    """A closure adding the bias and requantizing (int8) or clamping (float) ``acc`` into ``out``.

    Reads ``k.quantized``, ``k.frq``, ``k.requant`` (int8) or ``k.bias`` and ``k.act`` (float); with
    ``k.fast`` set (the compiled path, see :func:`choose_path`), one compiled pass."""
    if getattr(k, "fast", None) is not None:
        from edge_runtime.backends.micro.fast.conv import tail
        q, wo, c = k.fast, getattr(k, "wo", 0), acc.shape[1]
        if c < 32 and wo > 1 and acc.shape[0] % wo == 0:  # few channels: requantize whole output rows
            from edge_runtime.backends.micro.fast.requant import tiled
            if getattr(k, "fast_rows", None) is None:
                k.fast_rows = tiled(q, c, wo)
            q, acc, out = k.fast_rows, acc.reshape(-1, wo * c), out.reshape(-1, wo * c)
        return partial(fast.jit_prepare(tail, acc, q, out), acc, q, out)
    if k.quantized:
        if k.frq is not None:
            return k.frq.bind(acc, acc_i.view(np.float64), tmp.view(np.float64), out)
        requant = k.requant

        def int_tail() -> None:
            np.copyto(acc_i, acc, casting="unsafe")
            requant.apply(acc_i, tmp, out)  # adds the bias
        return int_tail
    bias, act = k.bias, k.act

    def float_tail() -> None:
        np.add(acc, bias, out=acc)
        CLIP(acc, act[0], act[1], out=acc)
        np.copyto(out, acc, casting="same_kind")
    return float_tail


def choose_path(k: Any, contiguous: list[np.ndarray]) -> bool:
    """Pick the compiled path for an int8 kernel when numba is available and its views are
    C-contiguous; sets ``k.path`` ("numba" or "numpy") and, on the compiled path, ``k.fast``
    (packed requantization constants) and drops the numpy float requantizer's tiles."""
    use = (bool(k.quantized) and fast.available() and all(a.flags.c_contiguous for a in contiguous))
    k.path = "numba" if use else "numpy"
    k.fast = None
    if use:
        from edge_runtime.backends.micro.fast.requant import pack
        k.fast = pack(k.requant, frq=k.frq)  # (the float form where the float requantizer is exact)
        k.frq = None
    return use


class _ConvBase(Kernel):
    """Shared setup of both convolutions: types, padding, chunking and the band."""

    depthwise = False
    inplace_ok = True  # with the line-buffer schedule of ``inplace_schedule``

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.depthwise(ctx.op) if self.depthwise else opt.conv2d(ctx.op)
        x = require_type(ctx, ctx.input(0), ("INT8", "FLOAT32"), "input")
        w = require_constant(ctx, require_type(ctx, ctx.input(1), ("INT8", "FLOAT32"), "filter"), "filter")
        b = ctx.input(2)
        y = require_type(ctx, ctx.output(0), (x.type_name,), "output")
        if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input, filter and output must be 4-D (NHWC)")
        self.n, self.h, self.w_in, self.cin = x.shape
        yn, self.ho, self.wo, self.cout = y.shape
        if yn != self.n:
            raise ctx.fail(f"input batch {self.n} and output batch {yn} differ")
        if self.depthwise:
            _, self.kh, self.kw, wc = w.shape
            if w.shape[0] != 1 or wc != self.cout or self.cout % self.cin:
                raise ctx.fail(f"depthwise filter shape {w.shape} does not fit input {x.shape} / output {y.shape}")
            self.mult = self.cout // self.cin
            if o["depth_multiplier"] not in (0, self.mult) and self.cin != 1:
                raise ctx.fail(f"depth_multiplier {o['depth_multiplier']} does not match the shapes")
        else:
            wco, self.kh, self.kw, wcin = w.shape
            if wco != self.cout or wcin != self.cin:
                raise ctx.fail(f"filter shape {w.shape} does not fit input {x.shape} / output {y.shape} "
                               "(grouped convolution is not supported)")
        self.sh, self.sw = o["stride_h"], o["stride_w"]
        self.dh, self.dw = o["dilation_h"], o["dilation_w"]
        self.pt, self.pb = compute_padding(ctx, o["padding"], self.h, self.kh, self.sh, self.dh, self.ho)
        self.pl, self.pr = compute_padding(ctx, o["padding"], self.w_in, self.kw, self.sw, self.dw, self.wo)
        self.wp = self.w_in + self.pl + self.pr
        self.w_tensor = w
        self.itemsize = 1 if x.type_name == "INT8" else 4
        self.quantized = x.type_name == "INT8"
        if self.quantized:
            if w.type_name != "INT8":
                raise ctx.fail("int8 input with a float filter is not supported")
            if b is not None:
                require_constant(ctx, require_type(ctx, b, ("INT32",), "bias"), "bias")
            in_scale, self.in_zp = qparams(x)
            out_scale, out_zp = qparams(y)
            wq = w.quantization
            if wq is None:
                raise ctx.fail("the int8 filter has no quantization parameters")
            if np.any(wq.zero_point != 0):
                raise ctx.fail("the filter zero point must be 0 (symmetric weights): tflite-micro's int8 "
                               "convolutions ignore it")
            m, s = per_channel_multipliers(ctx, in_scale, scales32(w), out_scale, self.cout)
            lo, hi = quantized_activation_range(ctx, o["activation"], out_scale, out_zp)
            self.requant_args = (m, s, out_zp, lo, hi)
            self.weight_scale: Optional[np.ndarray] = None
        else:
            self.in_zp = 0
            if b is not None:
                require_constant(ctx, require_type(ctx, b, ("FLOAT32",), "bias"), "bias")
            self.act = float_activation_range(ctx, o["activation"])
            self.weight_scale = None
            if w.type_name == "INT8":  # hybrid: dequantize the weights
                wq = w.quantization
                if wq is None:
                    raise ctx.fail("the int8 filter of a float convolution has no scale")
                sc = np.asarray(wq.scale, dtype=np.float64)
                if sc.size not in (1, self.cout):
                    raise ctx.fail(f"the filter has {sc.size} scales for {self.cout} channels")
                if np.any(wq.zero_point != 0):
                    raise ctx.fail("the hybrid filter zero point must be 0")
                self.weight_scale = sc
        self.bias_tensor = b

    # -- chunking ---------------------------------------------------------
    def band_rows(self, r: int) -> int:
        """Input rows needed for ``r`` output rows."""
        return (r - 1) * self.sh + (self.kh - 1) * self.dh + 1

    def plan_workspace(self, ctx: OpContext, w: np.ndarray, channel_axis: int, terms: int, per_output: int,
                       extra: Callable[[int], dict[str, tuple[tuple[int, ...], np.dtype]]]) -> None:
        """Output-stage constants (:func:`prepare_output_stage`), the rows per chunk and the workspace.

        ``per_output`` counts the compute-dtype values each output position needs besides the
        band (accumulator, im2col row or tap products); ``extra(m)`` gives the op's own buffers
        for ``m`` output positions, placed after the band and the accumulator."""
        prepare_output_stage(self, w, channel_axis, terms, self.cout, self.bias_tensor)
        q, cdt = self.quantized, self.cdt
        cs = cdt.itemsize

        def per_rows(r: int) -> int:
            m = r * self.wo
            band = self.band_rows(r) * self.wp * self.cin
            ints = 16 * m * self.cout if q else 0
            return cs * (band + per_output * m) + ints

        # (the chunking still counts the widened weights, which now live in a per-op cache,
        # so that chunk sizes and the in-place line buffers of the arena plan do not change)
        ch = Chunking.fit(self.ho, cs * terms * self.cout, per_rows, ctx.workspace_limit)
        self.plan_bands(ch.rows)
        m = ch.rows * self.wo
        self.workspace = {"band": ((self.band_rows(ch.rows), self.wp, self.cin), cdt), "acc": ((m, self.cout), cdt),
                          **extra(m)}
        if q:
            self.workspace.update(int_workspace(m, self.cout))

    def chunk_views(self, fills: list[tuple[list[np.ndarray], list[_Pair], list[_Pair]]], ws: Workspace,
                    y: np.ndarray) -> Iterator[tuple[int, int, tuple[list[np.ndarray], list[_Pair], list[_Pair]],
                                                     np.ndarray, Callable[[], None]]]:
        """Per (batch, chunk): output rows, output positions, the band fill (see :meth:`bind_band`),
        the accumulator view and the tail writing it into the chunk's output rows."""
        i = 0
        for n in range(self.n):
            for (r0, r, _j0, _j1, _i0) in self.chunks:
                m = r * self.wo
                acc = ws["acc"][:m]
                acc_i = ws["acc_i"][:m] if self.quantized else None
                tmp = ws["tmp"][:m] if self.quantized else None
                out = y[n, r0:r0 + r].reshape(m, self.cout)
                yield r, m, fills[i], acc, output_tail(self, acc, acc_i, tmp, out)
                i += 1

    def plan_bands(self, rows: int) -> None:
        """Per chunk: band fill plan (which band rows are padding, which come from the input)."""
        self.rows = rows
        self.chunks: list[tuple[int, int, int, int, int]] = []  # (r0, r, j0, j1, i0)
        for r0 in range(0, self.ho, rows):
            r = min(rows, self.ho - r0)
            first = r0 * self.sh - self.pt
            nb = self.band_rows(r)
            j0 = max(0, -first)
            j1 = min(nb, self.h - first)
            self.chunks.append((r0, r, j0, max(j0, j1), first + j0))

    def inplace_schedule(self) -> tuple[int, list[tuple[list[tuple[int, str, int]], list[tuple[int, int]]]]]:
        """Line-buffer schedule for running in place (output over the input, same start).

        Simulates the chunk order: writing chunk k's output rows destroys the input
        rows whose bytes lie below the written end. Rows destroyed but still needed
        by a later chunk are saved to a line-buffer slot just before the write, and
        read back from there. Returns (slots needed, per chunk: (band row sources
        [(band row, "x"|"line", row or slot)], saves [(slot, input row)])).
        """
        row_in = self.w_in * self.cin
        row_out = self.wo * self.cout
        rows_of = []
        for (_r0, _r, j0, j1, i0) in self.chunks:
            rows_of.append(list(range(i0, i0 + (j1 - j0))))
        last_need: dict[int, int] = {}
        for k, rows in enumerate(rows_of):
            for i in rows:
                last_need[i] = k
        destroyed_end = 0
        saved: dict[int, int] = {}
        free: list[int] = []
        nslots = 0
        sched = []
        for k, (r0, r, j0, _j1, _i0) in enumerate(self.chunks):
            srcs = []
            for b, i in enumerate(rows_of[k]):
                if i * row_in < destroyed_end:
                    srcs.append((j0 + b, "line", saved[i]))
                else:
                    srcs.append((j0 + b, "x", i))
            for i in [i for i in saved if last_need[i] <= k]:
                free.append(saved.pop(i))
            write_end = (r0 + r) * row_out
            saves = []
            for i in range(self.h):
                start = i * row_in
                if destroyed_end <= start < write_end and last_need.get(i, -1) > k:
                    if free:
                        slot = free.pop()
                    else:
                        slot = nslots
                        nslots += 1
                    saved[i] = slot
                    saves.append((slot, i))
            destroyed_end = max(destroyed_end, write_end)
            sched.append((srcs, saves))
        return nslots, sched

    def inplace_scratch_bytes(self) -> int:
        """Arena bytes of the line buffer needed to run in place."""
        nslots, _ = self.inplace_schedule()
        return nslots * self.w_in * self.cin * self.itemsize

    def bind_band(self, x: np.ndarray, y: np.ndarray, band: np.ndarray, scratch: Optional[np.ndarray]
                  ) -> list[tuple[list[np.ndarray], list[_Pair], list[_Pair]]]:
        """Views per (batch, chunk): padding views, (band, source) copies, (line, row) saves before the write."""
        in_place = _same_start(x, y)
        if not in_place and np.shares_memory(x, y):
            raise self.ctx.fail("the arena plan overlaps this op's input and output")
        if in_place:
            if self.n != 1:
                raise self.ctx.fail("in-place execution needs batch 1")
            nslots, sched = self.inplace_schedule()
            need = nslots * self.w_in * self.cin * self.itemsize
            if need and (scratch is None or scratch.nbytes < need):
                raise self.ctx.fail(f"running in place needs {need} bytes of line-buffer scratch, the plan gives "
                                    f"{0 if scratch is None else scratch.nbytes}")
            line = scratch[:need].view(x.dtype).reshape(max(nslots, 0), self.w_in, self.cin) if need else None
        self.in_place = in_place
        out = []
        for n in range(self.n):
            for k, (r0, r, j0, j1, i0) in enumerate(self.chunks):
                nb = self.band_rows(r)
                pads = []
                if j0 > 0:
                    pads.append(band[:j0])
                if j1 < nb:
                    pads.append(band[j1:nb])
                if j1 > j0:
                    if self.pl:
                        pads.append(band[j0:j1, :self.pl])
                    if self.pr:
                        pads.append(band[j0:j1, self.pl + self.w_in:])
                interior = band[:, self.pl:self.pl + self.w_in]
                copies: list[tuple[np.ndarray, np.ndarray]] = []
                saves: list[tuple[np.ndarray, np.ndarray]] = []
                if not in_place:
                    if j1 > j0:
                        copies.append((interior[j0:j1], x[n, i0:i0 + (j1 - j0)]))
                else:
                    srcs, sv = sched[k]
                    run_start = 0
                    while run_start < len(srcs):
                        b0, kind, v0 = srcs[run_start]
                        run_end = run_start + 1
                        while (run_end < len(srcs) and srcs[run_end][1] == kind
                               and srcs[run_end][2] == v0 + (run_end - run_start)):
                            run_end += 1
                        cnt = run_end - run_start
                        src = x[0, v0:v0 + cnt] if kind == "x" else line[v0:v0 + cnt]
                        copies.append((interior[b0:b0 + cnt], src))
                        run_start = run_end
                    for slot, i in sv:
                        saves.append((line[slot], x[0, i]))
                out.append((pads, copies, saves))
        return out

    def private_band(self, x: np.ndarray, y: np.ndarray, band: np.ndarray, scratch: Optional[np.ndarray]
                     ) -> tuple[np.ndarray, list[tuple[list[np.ndarray], list[_Pair], list[_Pair]]]]:
        """:meth:`bind_band`, with a private band for a padded op that runs in one chunk.

        Its padding then never changes, so it is written once here instead of on every
        call (the shared workspace band is overwritten by other ops). Costs the band's
        bytes (counted in ``cache_bytes``)."""
        if self.n * len(self.chunks) == 1 and any((self.pt, self.pb, self.pl, self.pr)):
            band = np.empty(band.shape, band.dtype)
            self.own_band = band
            fills = self.bind_band(x, y, band, scratch)
            pads, copies, saves = fills[0]
            for p in pads:
                p.fill(self.in_zp)
            return band, [([], copies, saves)]
        return band, self.bind_band(x, y, band, scratch)

    def fill_band(self, pads: list[np.ndarray], copies: list[tuple[np.ndarray, np.ndarray]],
                  saves: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Copy input rows into the band, set padding to the input zero point, save rows about to be overwritten."""
        for p in pads:
            p.fill(self.in_zp)
        for dst, src in copies:
            np.copyto(dst, src, casting="unsafe")
        for dst, src in saves:
            np.copyto(dst, src)

    def fill_calls(self, pads: list[np.ndarray], copies: list[_Pair], saves: list[_Pair]) -> list[Callable[[], Any]]:
        """:meth:`fill_band` as a list of bound calls, in the same order (the compiled path runs a flat list)."""
        calls: list[Callable[[], Any]] = [partial(p.fill, self.in_zp) for p in pads]
        calls += [partial(np.copyto, dst, src, casting="unsafe") for dst, src in copies]
        calls += [partial(np.copyto, dst, src) for dst, src in saves]
        return calls

    def run_calls(self) -> None:
        """Run the op as its flat list of bound calls (the compiled path)."""
        for call in self.calls:
            call()

    @property
    def cache_bytes(self) -> int:
        """Bytes of the widened weights and tiled requantization constants built at bind time."""
        n = int(self.wcache.nbytes) if getattr(self, "wcache", None) is not None else 0
        n += int(self.wrow.nbytes) if getattr(self, "wrow", None) is not None else 0
        n += int(self.own_band.nbytes) if getattr(self, "own_band", None) is not None else 0
        for name in ("fast", "fast_q", "fast_rows", "fast_acc", "fast_g", "fast_corr", "own_x", "fast_init",
                     "fast_toff", "fast_pad"):  # (compiled path: constants, buffers)
            n += int(getattr(self, name).nbytes) if getattr(self, name, None) is not None else 0
        return n + (self.frq.tile_bytes() if getattr(self, "frq", None) is not None else 0)

    def widen_weights(self, src: np.ndarray, scale: Optional[np.ndarray], dtype: np.dtype) -> np.ndarray:
        """The weights widened (and dequantized for hybrid models) once, into a cached array."""
        self.wcache = widened(src, scale, dtype)
        return self.wcache


class Conv2D(_ConvBase):
    """CONV_2D via banded im2col and one matrix product per chunk."""

    max_version = 8

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        self.k = self.kh * self.kw * self.cin
        self.pointwise = (self.kh == 1 and self.kw == 1 and self.sh == 1 and self.sw == 1
                          and self.pt == self.pb == self.pl == self.pr == 0)
        w2 = self.w_tensor.array().reshape(self.cout, self.k)
        self.plan_workspace(ctx, w2, 0, self.k, (0 if self.pointwise else self.k) + self.cout,
                            lambda m: {} if self.pointwise else {"im2col": ((m, self.k), self.cdt)})

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Precompute every view used by ``run``."""
        x, w = inputs[0], inputs[1]
        y = outputs[0]
        self.wmat = self.widen_weights(w.reshape(self.cout, self.k).T, self.weight_scale, self.cdt)
        band, fills = self.private_band(x, y, ws["band"], scratch)
        choose_path(self, [x, y])  # (compiled requantization tail)
        if self.path == "numba" and self.bind_vnni(x, y):  # (AVX-512 VNNI hosts: int8 implicit GEMM)
            return
        self.steps = []
        for r, m, (pads, copies, saves), acc, tail in self.chunk_views(fills, ws, y):
            if self.pointwise:
                lhs = band[:r].reshape(m, self.k)
                gather = None
            else:
                s0, s1, s2 = band.strides
                view = as_strided(band, shape=(r, self.wo, self.kh, self.kw, self.cin),
                                  strides=(s0 * self.sh, s1 * self.sw, s0 * self.dh, s1 * self.dw, s2),
                                  writeable=False)
                lhs = ws["im2col"][:m]
                gather = (lhs.reshape(r, self.wo, self.kh, self.kw, self.cin), view)
            self.steps.append((pads, copies, saves, gather, lhs, acc, tail))
        if self.path == "numba" and fast.blas_available():  # one compiled call: im2col, product, tail
            self.bind_fast(x, y, ws)
        elif self.path == "numba":  # one flat list of bound calls: fill, gather, product, compiled tail
            calls: list[Callable[[], Any]] = []
            for pads, copies, saves, gather, lhs, acc, tail in self.steps:
                calls += self.fill_calls(pads, copies, saves)
                if gather is not None:
                    calls.append(partial(np.copyto, gather[0], gather[1]))
                calls += [partial(np.matmul, lhs, self.wmat, out=acc), tail]
            self.calls = tuple(calls)
            self.run = self.run_calls  # type: ignore[method-assign]

    def bind_vnni(self, x: np.ndarray, y: np.ndarray) -> bool:
        """Compiled path on hosts with AVX-512 VNNI (:mod:`~edge_runtime.backends.micro.fast.conv_vnni`): one
        call per op, int8 products summed in int32 from a private padded copy of the input (so in place
        needs no line buffer). Returns False (nothing bound) where it does not apply."""
        from edge_runtime.backends.micro.fast import conv_vnni, vnni

        if not (conv_vnni.ENABLED[0] and vnni.supported() and conv_vnni.fits(self.kh, self.kw, self.cin)):
            return False
        g = conv_vnni.geometry(self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.pt, self.pl, self.n, self.h,
                               self.w_in, self.cin, self.ho, self.wo, self.cout)
        bp, init = conv_vnni.pack_weights(self.w_tensor.array().reshape(self.cout, self.kh, self.kw, self.cin), g)
        q = self.fast
        if g[conv_vnni.G_INDEX["tiled"]]:
            from edge_runtime.backends.micro.fast.requant import tiled
            q = tiled(self.fast, self.cout, int(g[conv_vnni.G_INDEX["seg"]]))
        args = (x.reshape(-1).view(np.uint8), g, conv_vnni.tap_offsets(g), bp, init, q,
                conv_vnni.padded_image(g, self.in_zp), conv_vnni.accumulators(g), y.reshape(-1))
        try:
            entry = fast.jit_prepare(conv_vnni.conv_vnni, *args)
        except Exception:  # noqa: BLE001  # (LLVM without the instruction: the BLAS kernel instead)
            conv_vnni.ENABLED[0] = False
            return False
        self.wmat = self.wcache = bp
        self.own_band = None
        self.fast_g, self.fast_init, self.fast_toff, self.fast_pad, self.fast_acc = g, init, args[2], args[6], args[7]
        self.fast_rows = q if q is not self.fast else None
        self.steps = []
        self.run = partial(entry, *args)  # type: ignore[method-assign]
        self.calls = (self.run,)
        return True

    def bind_fast(self, x: np.ndarray, y: np.ndarray, ws: Workspace) -> None:
        """Compiled path: one call per op gathering the im2col rows of each chunk straight from the int8
        input (padding taps get the input zero point), multiplying (BLAS) and requantizing. In place over
        several chunks, the call first copies the input to a private buffer (counted in ``cache_bytes``)."""
        from edge_runtime.backends.micro.fast.conv import conv_gemm
        from edge_runtime.backends.micro.fast.requant import tiled

        self.own_band = None  # (the band is not used on this path)
        in_place = np.shares_memory(x, y) and self.n * len(self.chunks) > 1
        xcopy = self.own_x = np.empty(x.size if in_place else 0, np.int8)
        rows_tiled = self.cout < 32 and self.wo > 1
        q = self.fast_rows = tiled(self.fast, self.cout, self.wo) if rows_tiled else None
        rowshift = self.sh == 1 and self.kh > 1 and self.rows >= self.dh and ROWSHIFT[0]
        g = np.array([self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.pt, self.pl, self.wo, self.in_zp,
                      self.h, self.w_in, self.cin, self.rows, self.n, self.ho, int(rows_tiled), int(rowshift)],
                     np.int64)
        self.fast_g = g
        m = self.rows * self.wo
        buf = ws["band"] if self.pointwise else ws["im2col"]
        lhs = buf.reshape(-1)[:m * self.k].reshape(m, self.k)
        tmp = ws["tmp"].reshape(-1).view(self.cdt)[:m * self.cout].reshape(m, self.cout)
        args = (x.reshape(-1), xcopy, g, self.wmat, self.fast if q is None else q, lhs, ws["acc"][:m], tmp,
                y.reshape(-1))
        self.run = partial(fast.jit_prepare(conv_gemm, *args), *args)  # type: ignore[method-assign]
        self.calls = (self.run,)

    def run(self) -> None:
        """Compute the convolution chunk by chunk."""
        wmat, fill, copyto, matmul = self.wmat, self.fill_band, np.copyto, np.matmul
        for pads, copies, saves, gather, lhs, acc, tail in self.steps:
            fill(pads, copies, saves)
            if gather is not None:
                copyto(gather[0], gather[1])
            matmul(lhs, wmat, out=acc)
            tail()


class DepthwiseConv2D(_ConvBase):
    """DEPTHWISE_CONV_2D: all kernel taps at once. A strided view of the band (tap row,
    tap column, output row, output column, channel) and the per-tap channel weights
    go through one ``np.einsum`` that multiplies and sums over the taps without an
    intermediate product array (one output per channel; with stride 1 along x the
    (column, channel) pair is one contiguous run and the weights are tiled along it).
    With a depth multiplier > 1, one broadcast product call and a sum over the taps.
    Products of int8 values and sums of at most 1024 of them are exact in float32,
    so the order of summation does not matter for int8 models."""

    max_version = 7
    depthwise = True

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        taps = self.kh * self.kw
        wt = self.w_tensor.array().reshape(taps, self.cout)
        self.plan_workspace(ctx, wt, 1, taps, (taps + 1) * self.cout,
                            lambda m: {"prod": ((taps, m, self.cout), self.cdt)})

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Precompute the 5-D tap view of every chunk."""
        x, w = inputs[0], inputs[1]
        y = outputs[0]
        taps = self.kh * self.kw
        self.wtaps = self.widen_weights(w.reshape(taps, self.cout), self.weight_scale, self.cdt)
        band, fills = self.private_band(x, y, ws["band"], scratch)
        mlt = self.mult
        w6 = self.wtaps.reshape(self.kh, self.kw, 1, 1, self.cin, mlt)
        s0, s1, s2 = band.strides
        # Stride 1 along x and one output per channel: a tap's (output column, channel) values are
        # contiguous in the band row, so each tap row is one run of wo*cin values; the tap weights,
        # tiled along x once, make every product pass run over those long rows.
        rowwise = self.sw == 1 and mlt == 1
        if rowwise:
            wrow = np.tile(self.wtaps.reshape(self.kh, self.kw, 1, self.cin), (1, 1, 1, self.wo))
            wrow.flags.writeable = False
            self.wrow = wrow
        self.steps = []
        self.taps_compiled = False
        if choose_path(self, [x, y]):
            self.wrow = None
            self.taps_compiled = True
            self.bind_fast(x, y, ws)
            return
        for r, m, (pads, copies, saves), acc, tail in self.chunk_views(fills, ws, y):
            prod = ws["prod"][:, :m]
            if rowwise:
                view = as_strided(band, shape=(self.kh, self.kw, r, self.wo * self.cin),
                                  strides=(s0 * self.dh, s1 * self.dw, s0 * self.sh, s2), writeable=False)
                products = ("ijrk,ijk->rk", view, wrow[:, :, 0], acc.reshape(r, self.wo * self.cin))
            elif mlt == 1 and self.cin >= 64:  # (einsum's inner loop runs over channels: long enough)
                view = as_strided(band, shape=(self.kh, self.kw, r, self.wo, self.cin),
                                  strides=(s0 * self.dh, s1 * self.dw, s0 * self.sh, s1 * self.sw, s2),
                                  writeable=False)
                products = ("ijrwc,ijc->rwc", view, self.wtaps.reshape(self.kh, self.kw, self.cin),
                            acc.reshape(r, self.wo, self.cin))
            else:
                view = as_strided(band, shape=(self.kh, self.kw, r, self.wo, self.cin, 1),
                                  strides=(s0 * self.dh, s1 * self.dw, s0 * self.sh, s1 * self.sw, s2, 0),
                                  writeable=False)
                products = (view, w6, prod.reshape(self.kh, self.kw, r, self.wo, self.cin, mlt), prod, acc)
            self.steps.append((pads, copies, saves, products, tail))

    def bind_fast(self, x: np.ndarray, y: np.ndarray, ws: Workspace) -> None:
        """Compiled path: one call reading the int8 input directly (taps in the padding read the input
        zero point), summing in int32 and requantizing. In place, the call first copies the input to a
        private buffer (counted in ``cache_bytes``)."""
        from edge_runtime.backends.micro.fast.conv import depthwise_direct
        from edge_runtime.backends.micro.fast.requant import with_extra

        q = with_extra(self.fast, (self.sh, self.sw, self.dh, self.dw, self.pt, self.pl, self.mult))
        self.fast = None  # (the tail is part of the depthwise call)
        self.fast_q = q
        w = np.ascontiguousarray(self.w_tensor.array().reshape(self.kh, self.kw, self.cout), dtype=np.int32)
        w.flags.writeable = False
        self.wcache = w
        zrow = np.full(self.cin, self.in_zp, np.int8)
        self.own_band = None  # (the band is not used on this path)
        acc = self.fast_acc = np.zeros(self.cout, np.int32)
        in_place = np.shares_memory(x, y)
        xcopy = self.own_x = np.empty(x.size if in_place else 0, np.int8)
        columns = (self.kw == 1 and self.sw == self.sh == 1 and self.pl == self.pr == 0 and self.mult == 1
                   and self.kh * self.ho * self.wo * self.cout * 4 <= (128 << 10))
        if columns:  # one-column kernel: each tap is one run over the whole image (weights tiled over it)
            from edge_runtime.backends.micro.fast.conv import depthwise_columns
            from edge_runtime.backends.micro.fast.requant import tiled

            L = self.ho * self.wo * self.cout
            qt = with_extra(tiled(q, self.cout, self.wo), (self.sh, self.dh, self.dw, self.pt, self.pl, self.kh,
                                                           self.kw, self.h, self.w_in, self.ho, self.in_zp, self.cout))
            w2 = np.ascontiguousarray(np.tile(w.reshape(self.kh, 1, self.cout), (1, self.ho * self.wo, 1)).reshape(-1))
            w2.flags.writeable = False
            self.wcache, self.fast_q, acc = w2, qt, np.zeros(L, np.int32)
            self.fast_acc = acc
            # (every tap is summed over the whole image before any output is written: in place needs no copy)
            xcopy = self.own_x = np.empty(0, np.int8)
            args = (x.reshape(-1), xcopy, w2, qt, acc, y.reshape(-1))
            self.run = partial(fast.jit_prepare(depthwise_columns, *args), *args)  # type: ignore[method-assign]
        elif self.sw == 1 and self.mult == 1:  # whole output rows: long runs per tap
            from edge_runtime.backends.micro.fast.conv import depthwise_rows
            from edge_runtime.backends.micro.fast.requant import tiled

            L = self.wo * self.cout
            qt = with_extra(tiled(q, self.cout, self.wo), (self.sh, self.dh, self.dw, self.pt, self.pl, self.kh,
                                                           self.kw, self.h, self.w_in, self.ho, self.in_zp, self.cout))
            w2 = np.ascontiguousarray(np.tile(w.reshape(self.kh * self.kw, 1, self.cout), (1, self.wo, 1))
                                      .reshape(self.kh * self.kw, L))
            w2.flags.writeable = False
            self.wcache, self.fast_q, acc = w2, qt, np.zeros(L, np.int32)
            self.fast_acc = acc
            corr, rowsel = self.padding_sums(w)
            self.fast_corr = corr
            args = (x.reshape(-1), xcopy, w2.reshape(-1), qt, corr, rowsel, acc, y.reshape(-1))
            from edge_runtime.backends.micro.fast.depthwise_wide import MIN_CHANNELS, depthwise_rows_wide

            if self.cout >= MIN_CHANNELS:  # many channels: untiled weights (the tiled ones would not stay cached)
                self.wcache = w.reshape(-1)
                self.fast_q = with_extra(q, tuple(int(v) for v in qt[5, 3:15]))  # (untiled constants)
                args = (x.reshape(-1), xcopy, self.wcache, self.fast_q, corr, rowsel, acc, y.reshape(-1))
                self.run = partial(fast.jit_prepare(depthwise_rows_wide, *args), *args)  # type: ignore[method-assign]
            else:
                self.run = partial(fast.jit_prepare(depthwise_rows, *args), *args)  # type: ignore[method-assign]
        else:
            args = (x, xcopy.reshape(x.shape) if in_place else np.empty((0, 0, 0, 0), np.int8), w, q, zrow, acc, y)
            self.run = partial(fast.jit_prepare(depthwise_direct, *args), *args)  # type: ignore[method-assign]

    def padding_sums(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For x-stride 1: what the taps in the padding add to each output row (they read the input zero
        point), per kind of row: (kinds, wo * cout) int32, and the kind of each output row (Ho,) int64."""
        kinds: dict[tuple[bool, ...], int] = {}
        rows: list[np.ndarray] = []
        rowsel = np.empty(self.ho, np.int64)
        ix = np.arange(self.wo)[:, None] - self.pl + np.arange(self.kw)[None, :] * self.dw
        vx = (ix >= 0) & (ix < self.w_in)  # (wo, kw)
        for oy in range(self.ho):
            iy = oy * self.sh - self.pt + np.arange(self.kh) * self.dh
            vy = (iy >= 0) & (iy < self.h)
            key = tuple(bool(v) for v in vy)
            if key not in kinds:
                pad = ~(vy[None, :, None] & vx[:, None, :])  # (wo, kh, kw)
                sums = np.einsum("okl,klc->oc", pad.astype(np.int64), w.astype(np.int64)) * int(self.in_zp)
                kinds[key] = len(rows)
                rows.append(sums.reshape(-1))
            rowsel[oy] = kinds[key]
        corr = np.ascontiguousarray(np.array(rows), dtype=np.int32)
        corr.flags.writeable = False
        rowsel.flags.writeable = False
        return corr, rowsel

    def run(self) -> None:
        """Compute the depthwise convolution chunk by chunk."""
        fill, einsum, multiply, add_reduce = self.fill_band, np.einsum, np.multiply, np.add.reduce
        for pads, copies, saves, products, tail in self.steps:
            fill(pads, copies, saves)
            if len(products) == 4:
                spec, view, w, acc = products
                einsum(spec, view, w, out=acc)
            else:
                view, w6, prod6, prod, acc = products
                multiply(view, w6, out=prod6)
                add_reduce(prod, axis=0, out=acc)
            tail()

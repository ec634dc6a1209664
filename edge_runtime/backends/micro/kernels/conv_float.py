"""CONV_2D on float32 inputs and float32 weights, bit-exact with tflite-micro.

tflite-micro's float kernel (``reference_ops::Conv``) sums each output from ``0.0f`` over filter row, filter
column and input channel, in that order, one float32 multiplication and one float32 addition per term
(``total += input * filter``; its x86-64 build does not contract them into a fused multiply-add), skipping
taps outside the input; then ``total + bias`` (``0.0f`` without a bias) and the clamp of the fused activation.
A BLAS product (the int8 kernel's im2col + matmul) sums in blocks, with FMA, and differs in the last bits.

Here the same operations run in the same order:

- numpy: per chunk of output rows, the zero-padded band of input rows (as :class:`~.conv.Conv2D` builds it,
  with the same chunks, so the in-place line buffers of the arena plan do not change); then the terms in
  groups (:func:`tap_groups`: the whole filter, whole filter rows, runs of filter columns or blocks of input
  channels, at most :data:`GROUP` terms, their products within the workspace limit): one multiplication
  gives every product of the group (all output positions and channels), one ``np.add.reduce`` along the
  group's outer axis adds them in order to the running sum (``initial=0.0`` for the first group, then the
  sum copied into the group's first slot; numpy reduces an outer axis element by element:
  ``((sum + p0) + p1) + ...``, each a float32 addition; its output never overlaps its input, which would
  make numpy copy). Two layouts: *positions* (the band channel-major, output positions innermost; with
  stride 1 whole band rows, so each term's positions are one contiguous run and the extra columns are
  dropped) when a run is at least :data:`POSITIONS_OVER_CHANNELS` times the output channels, else
  *channels* (output channels innermost, straight from the NHWC band). A chunk of a single output value
  (numpy would reduce a group along its only axis, pairwise) goes one term at a time;
- compiled (``edge-runtime[fast]``): :func:`~edge_runtime.backends.micro.fast.conv_float.conv_float`, the same
  chains in one call.

A tap in the zero padding adds ``0 * w`` = ±0, which leaves every sum (never -0.0: it starts at +0.0)
unchanged as skipping the tap does, while every weight is finite; a filter holding inf or NaN goes to
:class:`~edge_runtime.backends.micro.kernels.variable_weights.VariableWeights`, which skips such taps.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_runtime.backends.micro import fast
from edge_runtime.backends.micro.fixedpoint import CLIP
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.conv import Conv2D, _ConvBase
from edge_runtime.backends.micro.kernels.variable_weights import VariableWeights

F32 = np.dtype(np.float32)
#: at most this many terms (filter taps x input channels) multiplied in one call and summed in one reduction
GROUP = 16
#: the positions form when a tap's run of output positions is at least this many times the output channels
POSITIONS_OVER_CHANNELS = 4


def float_with_finite_filter(ctx: OpContext) -> "bool | None":
    """For a float32 input with a constant float32 filter: True when every filter value is finite, False when
    one is inf or NaN; None for any other op (int8, int16, hybrid int8 weights, a filter that is not data)."""
    x, w = ctx.input(0), ctx.input(1)
    if x is None or w is None or x.type_name != "FLOAT32" or w.type_name != "FLOAT32" or w.data is None:
        return None
    return bool(np.isfinite(np.asarray(w.array(), F32)).all())


def padded_input(k: _ConvBase, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """The compiled kernels' input: a private zero-padded copy (written by the kernel at every call) when the
    op has padding or runs in place, else ``x`` itself; and 1 when the copy is made. Kept as ``k.own_x``."""
    copy = bool(any((k.pt, k.pb, k.pl, k.pr)) or np.shares_memory(x, y))
    shape = (k.n, k.h + k.pt + k.pb, k.w_in + k.pl + k.pr, k.cin) if copy else (0, 0, 0, 0)
    k.own_x = np.zeros(shape, F32)
    return (k.own_x if copy else x), int(copy)


def compiled_args(k: _ConvBase, x: np.ndarray, y: np.ndarray, wt: np.ndarray, acc: np.ndarray) -> tuple[Any, ...]:
    """Arguments of :func:`~edge_runtime.backends.micro.fast.conv_float.conv_float` (and of the depthwise one)."""
    xp, copy = padded_input(k, x, y)
    g = np.array([k.sh, k.sw, k.dh, k.dw, k.pt, k.pl, copy], np.int64)
    k.fast_g, k.fast_acc = g, acc
    return (x, xp, wt, k.bias, g, np.float32(k.act[0]), np.float32(k.act[1]), acc, y)


class Conv2DFloat(Conv2D):
    """float32 x float32 CONV_2D in tflite-micro's summation order (finite weights)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)  # (Conv2D's chunks: the same in-place line buffers in the arena plan)
        full = self.sh == 1 and self.sw == 1  # (whole band rows: each tap's positions are one contiguous run)
        run = self.rows * self.wp if full else self.wo  # (the positions form's innermost loop)
        #: "positions": channel-major planes, output positions innermost; "channels": output channels innermost
        self.form = "positions" if run >= POSITIONS_OVER_CHANNELS * self.cout else "channels"
        self.wq = self.wp if full and self.form == "positions" else self.wo
        self.plane = self.band_rows(self.rows) * self.wp + ((self.kw - 1) * self.dw if self.wq > self.wo else 0)
        cells = self.cout * self.rows * self.wq
        # (the products of a group fit in the workspace limit; one output value per chunk: numpy would sum a
        # group along its inner axis, pairwise, so one term at a time)
        held = int(np.prod(self.workspace["band"][0])) + cells  # (the band, the sums and the planes)
        held += self.cin * self.plane if self.form == "positions" else 0
        most = max(2 * cells, ctx.workspace_limit // F32.itemsize - held) // cells - 1
        self.group_max = 1 if self.cout * self.wq == 1 else max(1, min(GROUP, most))
        self.groups = tap_groups(self.kh, self.kw, self.cin, self.group_max)
        g = max(len(ys) * len(xs) * len(cs) for ys, xs, cs in self.groups)
        planes = ((self.cin, self.plane) if self.form == "positions" else (0,), F32)
        # (slot 0 carries the running sum into the second and later groups; the first starts from 0.0)
        self.workspace = {"band": self.workspace["band"], "planes": planes,
                          "prod": ((g + (len(self.groups) > 1), cells), F32), "acc": ((cells,), F32)}
        self.fast = None  # (the float tail of conv.output_tail)
        self.path = "numpy"

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """The weights as (kh, kw, Cin, Cout); the compiled call, or the views of every chunk and tap group."""
        x, y = inputs[0], outputs[0]
        wt = np.ascontiguousarray(np.asarray(inputs[1], F32).transpose(1, 2, 3, 0))
        wt.flags.writeable = False
        self.wcache = wt
        if fast.available() and x.flags.c_contiguous and y.flags.c_contiguous:
            from edge_runtime.backends.micro.fast.conv_float import BLOCK, conv_float

            args = compiled_args(self, x, y, wt, np.zeros((BLOCK, self.cout), F32))
            self.run = partial(fast.jit_prepare(conv_float, *args), *args)  # type: ignore[method-assign]
            self.path = "numba"
            return
        band, fills = self.private_band(x, y, ws["band"], scratch)
        planes, prod = ws["planes"], ws["prod"]
        e, wp, wq, slot = F32.itemsize, self.wp, self.wq, prod.strides[0]
        first = int(len(self.groups) > 1)  # (the slot of a group's first product)
        positions = self.form == "positions"
        s0, s1, s2 = band.strides
        self.steps = []
        i = 0
        for n in range(self.n):
            for (r0, r, _j0, _j1, _i0) in self.chunks:
                nb, cells = self.band_rows(r), self.cout * r * wq
                acc = ws["acc"][:cells]
                to_planes = ((planes[:, :nb * wp].reshape(self.cin, nb, wp), band[:nb].transpose(2, 0, 1))
                             if positions else None)
                terms = []
                for ys, xs, cs in self.groups:
                    box = (len(ys), len(xs), len(cs))
                    g = box[0] * box[1] * box[2]
                    w = wt[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1, cs[0]:cs[-1] + 1]
                    if positions:  # (products (terms, Cout, rows, columns); each tap's channel planes)
                        off = cs[0] * self.plane + ys[0] * self.dh * wp + xs[0] * self.dw
                        xv = as_strided(planes.reshape(-1)[off:], shape=box + (1, r, wq),
                                        strides=(self.dh * wp * e, self.dw * e, self.plane * e, 0,
                                                 self.sh * wp * e, self.sw * e), writeable=False)
                        wv = w[..., None, None]
                        inner = (self.cout, r, wq)
                    else:  # (products (terms, rows, columns, Cout) straight from the NHWC band)
                        xv = as_strided(band[ys[0] * self.dh:, xs[0] * self.dw:, cs[0]:], shape=box + (r, self.wo, 1),
                                        strides=(self.dh * s0, self.dw * s1, s2, self.sh * s0, self.sw * s1, 0),
                                        writeable=False)
                        wv = w[:, :, :, None, None, :]
                        inner = (r, self.wo, self.cout)
                    slots = as_strided(prod[first:], shape=box + inner,
                                       strides=(box[1] * box[2] * slot, box[2] * slot, slot)
                                       + tuple(int(v) for v in np.cumprod((1,) + inner[:0:-1])[::-1] * e))
                    # (the first group sums from 0.0f, the others from the running sum carried into slot 0)
                    block, initial = (prod[first:first + g, :cells], 0.0) if not terms else (prod[:g + 1, :cells], None)
                    terms.append((xv, wv, slots, block, initial, (prod[0, :cells], acc)))
                terms[-1] = terms[-1][:5] + (None,)  # (the last group's sums stay in acc)
                window = (acc.reshape(self.cout, r, wq).transpose(1, 2, 0)[:, :self.wo] if positions
                          else acc.reshape(r, self.wo, self.cout))
                self.steps.append((fills[i], to_planes, acc, terms, window, y[n, r0:r0 + r]))
                i += 1

    def run(self) -> None:
        """Per chunk: the band (channel-major for the positions form); ``sum = 0``, then per tap group all its
        products at once and one sequential reduction ``sum + p0 + p1 + ...`` along the group's axis (numpy
        reduces an outer axis element by element, in order); then bias and clamp."""
        mul, reduce, copyto, add, bias, (lo, hi) = np.multiply, np.add.reduce, np.copyto, np.add, self.bias, self.act
        for (pads, copies, saves), to_planes, acc, terms, window, out in self.steps:
            self.fill_band(pads, copies, saves)
            if to_planes is not None:
                copyto(*to_planes)
            for xv, wv, slots, block, initial, carry in terms:
                mul(xv, wv, out=slots)
                # (from 0.0, or from the running sum in block[0]: each value sums its terms in order)
                reduce(block, axis=0, out=acc, initial=initial)
                if carry is not None:  # (into the next group's first slot; out= never overlaps the block)
                    copyto(*carry)
            copyto(out, window)
            add(out, bias, out=out)
            CLIP(out, lo, hi, out=out)


def tap_groups(kh: int, kw: int, cin: int, most: int) -> list[tuple[range, range, range]]:
    """tflite-micro's terms (filter row, filter column, input channel) cut, in order, into boxes of at most
    ``most`` terms: (filter rows, filter columns, input channels) of each box, whole rows or columns when
    they fit."""
    if kh * kw * cin <= most:
        return [(range(kh), range(kw), range(cin))]
    if kw * cin <= most:
        step = most // (kw * cin)
        return [(range(y, min(kh, y + step)), range(kw), range(cin)) for y in range(0, kh, step)]
    if cin <= most:
        step = most // cin
        return [(range(y, y + 1), range(x, min(kw, x + step)), range(cin))
                for y in range(kh) for x in range(0, kw, step)]
    step = -(-cin // -(-cin // most))  # (blocks of equal size: 16 channels by at most 9 go as 8 + 8)
    return [(range(y, y + 1), range(x, x + 1), range(c, min(cin, c + step)))
            for y in range(kh) for x in range(kw) for c in range(0, cin, step)]


class Conv2DDense:
    """The dense CONV_2D kernel for an op: :class:`Conv2DFloat` for float32 input and finite float32 weights,
    :class:`VariableWeights` (tflite-micro's loop, taps in the padding skipped) for float32 weights holding
    inf or NaN, else :class:`~edge_runtime.backends.micro.kernels.conv.Conv2D`."""

    max_version = Conv2D.max_version

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        finite = float_with_finite_filter(ctx)
        if finite is None:
            return Conv2D(ctx)
        return Conv2DFloat(ctx) if finite else VariableWeights(ctx)

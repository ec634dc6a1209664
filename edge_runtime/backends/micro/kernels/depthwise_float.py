"""DEPTHWISE_CONV_2D on float32 inputs and float32 weights, bit-exact with tflite-micro.

tflite-micro's float kernel (``reference_ops::DepthwiseConv``) sums each output channel ``c`` (input channel
``c // multiplier``) from ``0.0f`` over filter row then filter column, one float32 multiplication and one
float32 addition per tap (no fused multiply-add in its x86-64 build), skipping taps outside the input; then
``total + bias`` (``0.0f`` without a bias) and the clamp. The int8 kernel's ``np.einsum`` sums the taps in
another order (pairwise, SIMD partial sums) and differs in the last bits on float data.

Here, per chunk of output rows (the chunks of :class:`~.conv.DepthwiseConv2D`, so the arena plan's in-place
line buffers do not change), the zero-padded band, then per group of taps (all of them: the chunks leave room
for their products; see :func:`~.conv_float.tap_groups`) one product of the
taps' input views (all positions, all channels; with x-stride 1 and multiplier 1 an output row's (column,
channel) pairs as one run, the weights tiled along it) with their weights, and one sequential
``np.add.reduce`` along the taps from the running sum in the first slot; one tap at a time for a chunk of a
single output value (numpy would reduce it pairwise); compiled,
:func:`~edge_runtime.backends.micro.fast.conv_float.depthwise_float` in one call.
Taps in the zero padding add ±0 (no change) while the weights are finite; see :mod:`.conv_float`.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_runtime.backends.micro import fast
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.conv import DepthwiseConv2D
from edge_runtime.backends.micro.kernels.conv_float import compiled_args, float_with_finite_filter, tap_groups
from edge_runtime.backends.micro.kernels.variable_weights import VariableWeights

F32 = np.dtype(np.float32)


class DepthwiseConv2DFloat(DepthwiseConv2D):
    """float32 x float32 DEPTHWISE_CONV_2D in tflite-micro's summation order (finite weights)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)  # (DepthwiseConv2D's chunks: the same in-place line buffers in the arena plan)
        cells = self.rows * self.wo * self.cout
        #: one output row's (column, channel) pairs are one strided run of the band: weights tiled along it
        self.rowwise = self.sw == 1 and self.mult == 1
        # (all taps at once: DepthwiseConv2D's chunks leave room for their products; one output value per chunk:
        # numpy would sum a group along its inner axis, pairwise, so one tap at a time)
        held = int(np.prod(self.workspace["band"][0])) + cells  # (the band and the sums)
        most = max((self.kh * self.kw + 1) * cells, ctx.workspace_limit // F32.itemsize - held) // cells - 1
        self.group_max = 1 if self.wo * self.cout == 1 else max(1, most)
        self.groups = tap_groups(self.kh, self.kw, 1, self.group_max)
        g = max(len(ys) * len(xs) for ys, xs, _ in self.groups)
        # (slot 0 carries the running sum into the second and later groups; the first starts from 0.0)
        self.workspace = {"band": self.workspace["band"], "prod": ((g + (len(self.groups) > 1), cells), F32),
                          "acc": ((cells,), F32)}
        self.fast = None  # (the float tail of conv.output_tail)
        self.path = "numpy"

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """The weights as (kh, kw, Cout); the compiled call, or the views of every chunk and tap group."""
        x, y = inputs[0], outputs[0]
        wt = np.ascontiguousarray(np.asarray(inputs[1], F32).reshape(self.kh, self.kw, self.cout))
        wt.flags.writeable = False
        self.wcache = wt
        if fast.available() and x.flags.c_contiguous and y.flags.c_contiguous:
            from edge_runtime.backends.micro.fast.conv_float import depthwise_float

            args = compiled_args(self, x, y, wt, np.zeros((self.wo, self.cout), F32))
            self.run = partial(fast.jit_prepare(depthwise_float, *args), *args)  # type: ignore[method-assign]
            self.path = "numba"
            return
        band, fills = self.private_band(x, y, ws["band"], scratch)
        prod = ws["prod"]
        s0, s1, s2 = band.strides
        e, slot, mult, wo, cin = F32.itemsize, prod.strides[0], self.mult, self.wo, self.cin
        first = int(len(self.groups) > 1)  # (the slot of a group's first product)
        if self.rowwise:  # (the tap weights tiled along an output row, once)
            w = np.ascontiguousarray(np.tile(wt, (1, 1, wo)))
            w.flags.writeable = False
            self.wrow = w
        self.steps = []
        for r, m, fill, acc, tail in self.chunk_views(fills, {"acc": ws["acc"].reshape(-1, self.cout)}, y):
            cells = m * self.cout
            terms = []
            for ys, xs, _ in self.groups:
                box = (len(ys), len(xs))
                base = band[ys[0] * self.dh:, xs[0] * self.dw:]
                if self.rowwise:  # (products (taps, rows, columns x channels))
                    xv = as_strided(base, shape=box + (r, wo * cin), strides=(self.dh * s0, self.dw * s1,
                                                                             self.sh * s0, s2), writeable=False)
                    wv = self.wrow[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1, None, :]
                    inner: tuple[int, ...] = (r, wo * cin)
                else:  # (products (taps, rows, columns, input channels, multiplier))
                    xv = as_strided(base, shape=box + (r, wo, cin, 1), strides=(self.dh * s0, self.dw * s1,
                                                                               self.sh * s0, self.sw * s1, s2, 0),
                                    writeable=False)
                    wv = wt[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1].reshape(box + (1, 1, cin, mult))
                    inner = (r, wo, cin, mult)
                steps = tuple(int(v) for v in np.cumprod((1,) + inner[:0:-1])[::-1] * e)
                slots = as_strided(prod[first:], shape=box + inner, strides=(box[1] * slot, slot) + steps)
                g = box[0] * box[1]
                # (the first group sums from 0.0f, the others from the running sum carried into slot 0)
                block, initial = (prod[first:first + g, :cells], 0.0) if not terms else (prod[:g + 1, :cells], None)
                terms.append((xv, wv, slots, block, initial, (prod[0, :cells], acc.reshape(-1))))
            terms[-1] = terms[-1][:5] + (None,)  # (the last group's sums stay in acc, where the tail reads them)
            self.steps.append((fill, acc.reshape(-1), terms, tail))

    def run(self) -> None:
        """Per chunk: the band; ``sum = 0``, then per group of taps all their products at once (every position
        and channel) and one sequential reduction ``acc + p0 + p1 + ...`` along the taps (numpy reduces an
        outer axis element by element, in order); then bias and clamp."""
        mul, reduce, copyto = np.multiply, np.add.reduce, np.copyto
        for (pads, copies, saves), acc, terms, tail in self.steps:
            self.fill_band(pads, copies, saves)
            for xv, wv, slots, block, initial, carry in terms:
                mul(xv, wv, out=slots)
                # (from 0.0, or from the running sum in block[0]: each value sums its taps in order)
                reduce(block, axis=0, out=acc, initial=initial)
                if carry is not None:  # (into the next group's first slot; out= never overlaps the block)
                    copyto(*carry)
            tail()


class DepthwiseConv2DDense:
    """The dense DEPTHWISE_CONV_2D kernel for an op: :class:`DepthwiseConv2DFloat` for float32 input and finite
    float32 weights, :class:`VariableWeights` for float32 weights holding inf or NaN, else
    :class:`~edge_runtime.backends.micro.kernels.conv.DepthwiseConv2D`."""

    max_version = DepthwiseConv2D.max_version

    def __new__(cls, ctx: OpContext) -> Kernel:  # type: ignore[misc]
        finite = float_with_finite_filter(ctx)
        if finite is None:
            return DepthwiseConv2D(ctx)
        return DepthwiseConv2DFloat(ctx) if finite else VariableWeights(ctx)

"""SignalFilterBank (TFLM custom op): accumulate uint32 spectrum energies into mel channels.

Inputs: the energies (uint32, 1-D), then five int16 1-D tensors: weights, unweights, channel
frequency starts, channel weight starts and channel widths (the last three hold
``num_channels + 1`` entries and must be constant). Output: uint64, 1-D. Option
``num_channels``. Channel ``c`` sums ``weights[ws_c + j] * energy[fs_c + j]`` over its width,
plus the previous channel's unweighted sum; channel 0 is scratch and is dropped. Products
and sums wrap modulo 2**64 (the int16 weights are sign-extended to uint64, as in C).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.backends.micro.kernels.base import (
    Inputs,
    Kernel,
    OpContext,
    Outputs,
    Scratch,
    Workspace,
)
from edge_runtime.backends.micro.kernels.custom.signal_common import (
    check_tensor,
    check_type,
    int32_option,
    require_io_count,
    require_rank,
    signal_options,
)

U64 = np.uint64


class SignalFilterBank(Kernel):
    """Triangular (weighted/unweighted) filterbank accumulation."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 6, 1)
        names = ("input", "weights", "unweights", "channel frequency starts", "channel weight starts",
                 "channel widths")
        for i, what in enumerate(names):
            check_type(ctx, ctx.input(i), "UINT32" if i == 0 else "INT16", what)
            require_rank(ctx, ctx.input(i), 1, what)
        y = ctx.output(0)
        check_tensor(ctx, y, "UINT64", 1, "output")
        self.nch = nch = int32_option(signal_options(ctx, ("num_channels",))["num_channels"])
        if nch < 1:
            raise ctx.fail(f"num_channels {nch} must be >= 1")
        if y.shape[0] > nch:
            raise ctx.fail(f"the output holds {y.shape[0]} values; num_channels is {nch}")
        tabs = []
        for i in (3, 4, 5):
            t = ctx.input(i)
            if t.data is None:
                raise ctx.fail(f"the {names[i]} must be a constant tensor")
            if t.shape[0] < nch + 1:
                raise ctx.fail(f"the {names[i]} hold {t.shape[0]} entries; num_channels + 1 = {nch + 1} needed")
            tabs.append(t.array().astype(np.int64)[:nch + 1])
        fstart, wstart, width = tabs
        width = np.maximum(width, 0)
        n_in, n_w = ctx.input(0).shape[0], min(ctx.input(1).shape[0], ctx.input(2).shape[0])
        live = width > 0
        if np.any(live & ((fstart < 0) | (wstart < 0) | (fstart + width > n_in) | (wstart + width > n_w))):
            raise ctx.fail("a channel reads past the input or the weights")
        # flat gather of every (channel, j) term, in channel order
        self.freq_idx = np.concatenate([np.arange(f, f + w) for f, w in zip(fstart, width)] or [[]]).astype(np.intp)
        self.w_idx = np.concatenate([np.arange(s, s + w) for s, w in zip(wstart, width)] or [[]]).astype(np.intp)
        ends = np.cumsum(width)
        self.bounds = np.concatenate([[0], ends]).astype(np.intp)  # cumsum positions of channel ends
        terms = int(ends[-1]) if ends.size else 0
        self.out_n = y.shape[0]
        self.workspace = {"e32": ((terms,), np.dtype(np.uint32)), "w16": ((terms,), np.dtype(np.int16)),
                          "e": ((terms,), np.dtype(U64)), "w": ((terms,), np.dtype(U64)),
                          "u": ((terms,), np.dtype(U64)), "cw": ((terms + 1,), np.dtype(U64)),
                          "cu": ((terms + 1,), np.dtype(U64)), "acc": ((nch + 1,), np.dtype(U64)),
                          "tmp": ((nch + 1,), np.dtype(U64)), "lo": ((nch + 1,), np.dtype(U64))}
        self.hi_idx, self.lo_idx = self.bounds[1:].copy(), self.bounds[:-1].copy()

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Views and staging."""
        self.x, self.weights, self.unweights = inputs[0], inputs[1], inputs[2]
        self.y = outputs[0]
        self.ws = ws

    def run(self) -> None:
        """Per-channel weighted sums by prefix sums (mod 2**64)."""
        ws = self.ws
        e, w, u, cw, cu, acc, tmp = ws["e"], ws["w"], ws["u"], ws["cw"], ws["cu"], ws["acc"], ws["tmp"]
        e32, w16 = ws["e32"], ws["w16"]
        self.x.take(self.freq_idx, out=e32)
        np.copyto(e, e32)
        self.weights.take(self.w_idx, out=w16)
        np.copyto(w, w16, casting="unsafe")  # sign-extended to uint64, as C converts int16 * uint64
        self.unweights.take(self.w_idx, out=w16)
        np.copyto(u, w16, casting="unsafe")
        np.multiply(w, e, out=w)
        np.multiply(u, e, out=u)
        cw[0] = 0
        cu[0] = 0
        np.add.accumulate(w, out=cw[1:])
        np.add.accumulate(u, out=cu[1:])
        lo = ws["lo"]
        cw.take(self.hi_idx, out=acc)
        cw.take(self.lo_idx, out=lo)
        np.subtract(acc, lo, out=acc)                    # weighted sum of channel c
        cu.take(self.hi_idx, out=tmp)
        cu.take(self.lo_idx, out=lo)
        np.subtract(tmp, lo, out=tmp)                    # unweighted sum of channel c
        np.add(acc[1:], tmp[:-1], out=acc[1:])
        np.copyto(self.y, acc[1:1 + self.out_n])

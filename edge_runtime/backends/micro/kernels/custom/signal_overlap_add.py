"""SignalOverlapAdd (TFLM custom op): overlap-add frames into a stream, int16 (saturating) or float32.

Input ``[..., n_frames, frame_size]``, output ``[..., n_frames * frame_step]``. Options ``T``
(TensorType code) and ``frame_step`` (<= frame_size). Per row, each frame is added to a
``frame_size`` accumulator (int16 saturating, or float32), the first ``frame_step`` values are
emitted, and the accumulator shifts left by ``frame_step`` with zeros behind. The
accumulators are state kept between invocations; :meth:`reset` zeroes them.
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
    ResetWithModel,
    int32_option,
    require_io_count,
    signal_options,
)

TYPES = {7: "INT16", 0: "FLOAT32"}


class SignalOverlapAdd(ResetWithModel, Kernel):
    """Overlap-add with persistent per-row accumulators."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        require_io_count(ctx, 1, 1)
        o = signal_options(ctx, ("T", "frame_step"))
        code = o.get("T")
        type_name = TYPES.get(int(code)) if isinstance(code, (int, float)) else None
        if type_name is None:
            raise ctx.fail(f"option T={code!r} is not int16 (7) or float32 (0)")
        x, y = ctx.input(0), ctx.output(0)
        if x.type_name != type_name or y.type_name != type_name:
            raise ctx.fail(f"input and output must be {type_name.lower()} (option T), got {x.type_name}, "
                           f"{y.type_name}")
        if len(x.shape) < 2 or len(x.shape) != len(y.shape) + 1:
            raise ctx.fail(f"input rank {len(x.shape)} must be >= 2 and one more than the output rank "
                           f"{len(y.shape)}")
        self.step = int32_option(o["frame_step"])
        self.size, self.frames = x.shape[-1], x.shape[-2]
        if not 1 <= self.step <= self.size:
            raise ctx.fail(f"frame_step {self.step} outside [1, frame_size={self.size}]")
        self.rows = x.num_elements // max(1, self.size * self.frames)
        if y.num_elements < self.rows * self.frames * self.step:
            raise ctx.fail(f"the output holds {y.num_elements} values; {self.rows * self.frames * self.step} "
                           "needed")
        self.int16 = type_name == "INT16"
        self.accs = [np.zeros((self.rows, self.size), np.int16 if self.int16 else np.float32) for _ in range(2)]
        self.acc = self.accs[0]
        self.workspace = {"wide": ((self.rows, self.size), np.dtype(np.int32))} if self.int16 else {}

    def reset(self) -> None:
        """Zero the accumulators."""
        for a in self.accs:
            a.fill(0)

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Frame views."""
        self.x = inputs[0].reshape(self.rows, self.frames, self.size)
        self.y = outputs[0].reshape(-1)[:self.rows * self.frames * self.step].reshape(
            self.rows, self.frames, self.step)
        self.wide = ws.get("wide")

    def run(self) -> None:
        """Add, emit, shift — frame by frame."""
        acc, s, n = self.acc, self.step, self.size
        for f in range(self.frames):
            if self.int16:
                np.add(acc, self.x[:, f], out=self.wide, dtype=np.int32)
                np.maximum(self.wide, -32768, out=self.wide)
                np.minimum(self.wide, 32767, out=self.wide)
                np.copyto(acc, self.wide, casting="unsafe")
            else:
                np.add(acc, self.x[:, f], out=acc)
            np.copyto(self.y[:, f], acc[:, :s])
            other = self.accs[1] if acc is self.accs[0] else self.accs[0]
            np.copyto(other[:, :n - s], acc[:, s:])  # shift left by a step (into the other buffer)
            other[:, n - s:] = 0
            acc = self.acc = other

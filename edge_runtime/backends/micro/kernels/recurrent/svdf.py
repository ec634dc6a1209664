"""SVDF as tflite-micro runs it (``svdf.cc``, ``svdf_common.cc``): float32, or int8 with an int16/int8 state.

The state (a variable tensor, ``[batch, filters * memory]``) holds the last ``memory``
feature activations of every filter. Each invocation shifts it left by one, writes
``weights_feature @ x`` into the newest slot, takes the per-filter dot product with
``weights_time``, sums groups of ``rank`` filters into ``units`` outputs, adds the bias
and applies the activation (float only, TANH as glibc's ``tanhf``: TFLM's integer kernel
ignores it and only clamps to int8). Integer arithmetic: the feature product is requantized to the
state's type (clamped before its zero point is added, the sum stored with the C cast),
the time products accumulate in int32, the output is requantized to int8; both
multipliers come from the float32 scales multiplied and divided in double. The int8
kernel needs its bias (TFLM's Prepare reads it); the float kernel runs without one
(TFLM's float kernel crashes on a missing bias; micro adds nothing, as TFLite does).
Per-channel feature weights use their first scale, as TFLM's ``params.scale`` does.
Weights and bias that are not constant data (a model input, another op's output) are read at
every invocation, as TFLM reads them, into workspace buffers in the layout the kernel uses.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.fixedpoint import CLIP, wrap32
from edge_runtime.backends.micro.fixedpoint_lstm import ColumnRequant, quantized_multipliers
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.recurrent.common import (check_shape, first_scale, float_activation,
                                                                  require_variable, scratch_bytes, svdf_options)
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel

INPUT, WEIGHTS_FEATURE, WEIGHTS_TIME, BIAS, STATE = 0, 1, 2, 3, 4


def _constant(t: TensorInfo, dtype: type, transpose: bool = False) -> Optional[np.ndarray]:
    """A constant tensor widened to ``dtype`` (transposed if asked); None when it is not constant (read at run)."""
    if t.data is None:
        return None
    a = t.array()
    return np.ascontiguousarray((a.T if transpose else a).astype(dtype))


def _nbytes(*arrays: Optional[np.ndarray]) -> int:
    """Bytes of the arrays cached at prepare time (the constant ones)."""
    return sum(int(a.nbytes) for a in arrays if a is not None)


class Svdf(Kernel):
    """Singular value decomposition filter with a persistent activation state."""

    max_version = 4

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        op = ctx.op
        if len(op.inputs) != 5 or len(op.outputs) != 1:
            raise ctx.fail(f"expects 5 inputs and 1 output, has {len(op.inputs)} and {len(op.outputs)}")
        o = svdf_options(op)
        rank = o["rank"]
        x, wf, wt = ctx.input(INPUT), ctx.input(WEIGHTS_FEATURE), ctx.input(WEIGHTS_TIME)
        bias = ctx.input(BIAS)
        state = require_variable(ctx, ctx.input(STATE), "activation state")
        out = ctx.output(0)
        if x is None or wf is None or wt is None:
            raise ctx.fail("the input, feature weights and time weights are required")
        if x.type_name not in ("FLOAT32", "INT8"):
            raise ctx.fail(f"input type {x.type_name} is not supported; supported: FLOAT32, INT8")
        if len(x.shape) != 2 or len(wf.shape) != 2 or len(wt.shape) != 2:
            raise ctx.fail("the input and both weight tensors must be 2-D")
        batch, n_in = x.shape
        filters, memory = wf.shape[0], wt.shape[1]
        if rank < 1 or filters % rank:
            raise ctx.fail(f"rank {rank} does not divide the {filters} filters")
        units = filters // rank
        check_shape(ctx, wf, (filters, n_in), "feature weights")
        check_shape(ctx, wt, (filters, memory), "time weights")
        check_shape(ctx, out, (batch, units), "output")
        if bias is not None:
            check_shape(ctx, bias, (units,), "bias")
        check_shape(ctx, state, (batch, memory * filters), "activation state")
        if min(batch, n_in, filters, memory) < 1:
            raise ctx.fail("empty input, filter or memory")
        self.batch, self.n_in, self.filters, self.memory, self.units, self.rank = (batch, n_in, filters, memory,
                                                                                  units, rank)
        self.kind = x.type_name
        if self.kind == "FLOAT32":
            for t, what in ((wf, "feature weights"), (wt, "time weights"), (state, "activation state"),
                            (out, "output")) + (((bias, "bias"),) if bias is not None else ()):
                if t.type_name != "FLOAT32":
                    raise ctx.fail(f"float SVDF needs FLOAT32 {what}; '{t.name}' is {t.type_name}")
            self._prepare_float(wf, wt, bias, o["activation"])
        else:
            self._prepare_integer(x, wf, wt, bias, state, out)
        wdt = np.float32 if self.kind == "FLOAT32" else np.int64
        self.workspace = {"x": ((batch, n_in), wdt), "feat": ((batch, filters), wdt),
                          "state": ((batch, filters, memory), wdt), "tmp": ((batch, filters, memory), wdt),
                          "acc": ((batch, units), wdt), "acc_tmp": ((batch, units), wdt)}
        # non-constant weights / bias: (input position, workspace buffer, shape in the kernel's layout)
        self.variable = [(pos, name, shape) for pos, name, shape, t in (
            (WEIGHTS_FEATURE, "wf_var", (n_in, filters), wf), (WEIGHTS_TIME, "wt_var", (filters, memory), wt),
            (BIAS, "bias_var", (units,), bias)) if t is not None and t.data is None]
        for _, name, shape in self.variable:
            self.workspace[name] = (shape, wdt)

    def _prepare_float(self, wf: TensorInfo, wt: TensorInfo, bias: Optional[TensorInfo], activation: int) -> None:
        self.wf = _constant(wf, np.float32, transpose=True)
        self.wt = _constant(wt, np.float32)
        self.bias = None if bias is None else _constant(bias, np.float32)
        self.activation = float_activation(self.ctx, activation, (self.batch, self.units))
        self.cache_bytes = _nbytes(self.wf, self.wt)

    def _prepare_integer(self, x: TensorInfo, wf: TensorInfo, wt: TensorInfo, bias: Optional[TensorInfo],
                         state: TensorInfo, out: TensorInfo) -> None:
        ctx = self.ctx
        if wf.type_name != "INT8":
            raise ctx.fail(f"int8 SVDF needs INT8 feature weights; '{wf.name}' is {wf.type_name}")
        if wt.type_name not in ("INT16", "INT8") or state.type_name != wt.type_name:
            raise ctx.fail(f"int8 SVDF needs time weights and activation state of one type, INT16 or INT8; "
                           f"got {wt.type_name} and {state.type_name}")
        if out.type_name != "INT8":
            raise ctx.fail(f"int8 SVDF needs an INT8 output; '{out.name}' is {out.type_name}")
        if bias is None or bias.type_name != "INT32":
            raise ctx.fail("int8 SVDF needs an INT32 bias (tflite-micro requires it)")
        in_s, in_zp = first_scale(ctx, x, "input")
        wf_s, _ = first_scale(ctx, wf, "feature weights")
        wt_s, _ = first_scale(ctx, wt, "time weights")
        st_s, st_zp = first_scale(ctx, state, "activation state")
        out_s, out_zp = first_scale(ctx, out, "output")
        b_s, _ = first_scale(ctx, bias, "bias")
        # effective scales: the float32 scales multiplied and divided in double (this tflite-micro
        # release; the float32 arithmetic of older ones differs in the multipliers' last bits)
        scale_1 = in_s * wf_s / st_s
        scale_2 = st_s * wt_s / out_s
        if not abs(b_s - st_s * wt_s) < 1e-5:  # TFLM's Prepare check
            raise ctx.fail(f"bias scale {b_s} does not match state scale x time-weight scale {st_s * wt_s}")
        self.req_1 = ColumnRequant(*quantized_multipliers([scale_1]))
        self.req_2 = ColumnRequant(*quantized_multipliers([scale_2]))
        info = np.iinfo(state.dtype)
        self.st_min, self.st_max = int(info.min), int(info.max)
        self.st_zp, self.in_zp, self.out_zp = st_zp, in_zp, out_zp
        self.wf = _constant(wf, np.int64, transpose=True)
        self.wt = _constant(wt, np.int64)
        self.bias = _constant(bias, np.int64)
        self.cache_bytes = _nbytes(self.wf, self.wt, self.bias)

    @staticmethod
    def op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
        """TFLM's scratch: batch x filters accumulators (int32 or float), plus batch x units int32 for int8."""
        try:
            x = subgraph.tensors[op.inputs[INPUT]]
            wf = subgraph.tensors[op.inputs[WEIGHTS_FEATURE]]
            rank = max(1, svdf_options(op)["rank"])
            batch, filters = x.shape[0], wf.shape[0]
            sizes = [batch * filters * 4]
            if x.type_name != "FLOAT32":
                sizes.append(batch * (filters // rank) * 4)
            return OpMemory(scratch_bytes=scratch_bytes(*sizes))
        except (IndexError, ValueError):
            return OpMemory()

    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Keep views of the input, the state (as batch x filters x memory), the output and the work buffers."""
        self.x = inputs[INPUT]
        self.state = inputs[STATE].reshape(self.batch, self.filters, self.memory)
        self.out = outputs[0]
        self.ws = ws
        self.run = self._run_float if self.kind == "FLOAT32" else self._run_integer  # type: ignore[method-assign]
        if self.variable:
            self.copies = []
            for pos, name, _ in self.variable:
                src = inputs[pos].T if pos == WEIGHTS_FEATURE else inputs[pos]
                self.copies.append((ws[name], src))
                setattr(self, {WEIGHTS_FEATURE: "wf", WEIGHTS_TIME: "wt", BIAS: "bias"}[pos], ws[name])
            self.compute = self.run
            self.run = self._run_variable  # type: ignore[method-assign]

    def _run_variable(self) -> None:
        """Read the non-constant weights / bias into their buffers, then run."""
        for dst, src in self.copies:
            np.copyto(dst, src, casting="unsafe")
        self.compute()

    def _shift_state(self, tmp: np.ndarray) -> None:
        """Drop the oldest activation of every filter (TFLM shifts the whole buffer left by one)."""
        m = self.memory
        if m > 1:
            np.copyto(tmp[:, :, :m - 1], self.state[:, :, 1:], casting="unsafe")
            np.copyto(self.state[:, :, :m - 1], tmp[:, :, :m - 1], casting="unsafe")

    def _run_float(self) -> None:
        # float32 throughout, every sum in TFLM's order (one term at a time, no FMA) and the activation as
        # TFLM's ActivationValFloat (glibc's tanhf): bit-exact with tflite-micro
        ws = self.ws
        xb, feat, tmp, acc = ws["x"], ws["feat"], ws["state"], ws["acc"]
        mul = np.multiply
        self._shift_state(tmp)
        np.copyto(xb, self.x)
        feat.fill(0.0)
        for k in range(self.n_in):
            mul(xb[:, k:k + 1], self.wf[k], out=tmp[:, :, 0])
            feat += tmp[:, :, 0]
        self.state[:, :, self.memory - 1] = feat
        feat.fill(0.0)
        for j in range(self.memory):
            mul(self.state[:, :, j], self.wt[:, j], out=tmp[:, :, 0])
            feat += tmp[:, :, 0]
        if self.bias is not None:
            np.copyto(acc, self.bias)
        else:
            acc.fill(0.0)
        ranked = feat.reshape(self.batch, self.units, self.rank)
        for r in range(self.rank):
            acc += ranked[:, :, r]
        self.activation(acc)
        np.copyto(self.out, acc)

    def _run_integer(self) -> None:
        ws = self.ws
        xb, feat, st, tmp, acc, acc_tmp = ws["x"], ws["feat"], ws["state"], ws["tmp"], ws["acc"], ws["acc_tmp"]
        self._shift_state(tmp)
        # feature matmul, requantized to the state's type; the stored value wraps like the C cast
        np.copyto(xb, self.x)
        xb -= self.in_zp
        np.matmul(xb, self.wf, out=feat)
        wrap32(feat)
        self.req_1.apply(feat, tmp[:, :, 0])
        CLIP(feat, self.st_min, self.st_max, out=feat)
        feat += self.st_zp
        np.copyto(self.state[:, :, self.memory - 1], feat, casting="unsafe")
        # time products (int32 accumulation), rank reduction, bias, output requantization
        np.copyto(st, self.state)
        st -= self.st_zp
        st *= self.wt
        np.sum(st, axis=2, out=feat)
        np.sum(feat.reshape(self.batch, self.units, self.rank), axis=2, out=acc)
        acc += self.bias
        wrap32(acc)
        self.req_2.apply(acc, acc_tmp)
        acc += self.out_zp
        CLIP(acc, -128, 127, out=acc)
        np.copyto(self.out, acc, casting="unsafe")

"""UNIDIRECTIONAL_SEQUENCE_LSTM as tflite-micro runs it (``unidirectional_sequence_lstm.cc``, ``lstm_eval``).

TFLM runs the standard LSTM only (all four gates, no CIFG, no peephole, no projection,
no layer norm; its Prepare refuses the other variants, and so does this kernel) in
three flavours: float32; int8 activations with int8 weights, int32 bias and an int16
cell state ("8x8->16"); int16 activations with int8 weights and int64 bias ("16x8").
Each gate is ``act(FC(x) + FC(h))``; both fully connected layers requantize to int16
at scale 2**-12 (Q3.12), are added with int16 saturation, then go through TFLite's
int16 sigmoid (forget, input, output gates) or tanh (cell gate). The cell state
``c = f*c + i*g`` and the hidden state ``h = tanh(c) * o`` use the Mul kernel's
requantization; the hidden state is written to the output at every time step. The
hidden and cell states live in variable tensors and persist across invocations.

Every row (batch entry) evolves independently, so both layouts (time-major
``[T, B, I]`` and batch-major ``[B, T, I]``) run as one loop over time steps on all
rows at once.

Details that decide bit-exactness: the gate multipliers come from the float32 scales
multiplied and divided in double (``scale_in * scale_w / 2**-12``); the 16x8 layers
requantize their int64 accumulators with TFLite's 16-bit reduced multiplier; the cell
state's scale enters tanh as its rounded power of two (``CheckedLog2``). Weights with
per-channel scales are refused: TFLM's gate setup leaves their multipliers undefined.
Intermediate tensors (listed by converted models) are ignored, as TFLM does, and
refused when they would need memory, as TFLM's allocator does. The float kernel is
bit-exact with TFLM: each fully connected product summed in TFLM's order in float32 (no
FMA) and clamped to +-FLT_MAX, the bias added, the recurrent sum plus 0; the gate
nonlinearities with glibc's ``expf`` and ``tanhf`` (``recurrent.common``); the products
of the cell and hidden updates clamped as TFLM's float Mul does. Gate weights and biases
that are not constant data (a model input, another op's output) are read at every
invocation, as TFLM reads them.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.fixedpoint import CLIP, wrap32
from edge_runtime.backends.micro.fixedpoint_lstm import (INT16_MAX, INT16_MIN, ColumnRequant, ColumnRequant64,
                                                        Int16Sigmoid, Int16Tanh, checked_log2,
                                                        quantized_multipliers)
from edge_runtime.backends.micro.kernels.base import Inputs, Kernel, OpContext, Outputs, Scratch, Workspace
from edge_runtime.backends.micro.kernels.recurrent.common import (ACT_TANH, Float32Sigmoid, Float32Tanh,
                                                                  check_shape, first_scale, lstm_options,
                                                                  require_variable, scratch_bytes)
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel

# Input positions (TFLite's lstm_shared.h).
INPUT = 0
INPUT_WEIGHTS = (1, 2, 3, 4)  # to input, forget, cell, output gates
RECURRENT_WEIGHTS = (5, 6, 7, 8)
PEEPHOLE = (9, 10, 11)
BIASES = (12, 13, 14, 15)
PROJECTION = (16, 17)
HIDDEN_STATE = 18
CELL_STATE = 19
LAYER_NORM = (20, 21, 22, 23)
#: Gate order inside the kernel: the three sigmoid gates first (forget, input, output), then the cell gate.
GATE_ORDER = (1, 0, 3, 2)  # indices into the (input, forget, cell, output) tuples above
#: Q3.12: the scale of the fully connected outputs that feed the gate nonlinearities.
GATE_INPUT_SCALE = float(np.float32(2.0 ** -12))
GATE_OUTPUT_SCALE = float(np.float32(2.0 ** -15))
#: The float gate FCs' and inter-gate products' activation range (kTfLiteActNone: lowest .. max float).
FLT_MAX = np.float32(np.finfo(np.float32).max)
F32_ZERO = np.float32(0.0)

KINDS = {  # activation type -> (weight type, bias type, cell type)
    "FLOAT32": ("FLOAT32", "FLOAT32", "FLOAT32"),
    "INT8": ("INT8", "INT32", "INT16"),
    "INT16": ("INT8", "INT64", "INT16"),
}


def _values(t: TensorInfo) -> np.ndarray:
    """A constant tensor's values; zeros of its shape for one read at every invocation."""
    return t.array() if t.data is not None else np.zeros(t.shape, t.dtype)


def _tensor(ctx: OpContext, pos: int) -> Optional[TensorInfo]:
    return ctx.input(pos) if pos < len(ctx.op.inputs) else None


class UnidirectionalSequenceLstm(Kernel):
    """The LSTM over a whole sequence, states carried in variable tensors."""

    max_version = 5  # the converter writes 5 for 16x8; tflite-micro does not look at it

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        op = ctx.op
        if len(op.inputs) != 24 or len(op.outputs) != 1:
            raise ctx.fail(f"expects 24 inputs and 1 output, has {len(op.inputs)} and {len(op.outputs)}")
        o = lstm_options(op)
        if o["activation"] != ACT_TANH:
            raise ctx.fail(f"cell gate activation {o['activation']} is not supported (tflite-micro runs TANH)")
        if o["diagonal_recurrent"]:
            raise ctx.fail("diagonal recurrent weights are not supported by tflite-micro")
        for index in op.intermediates:  # TFLM's allocator refuses intermediates that need memory
            t = ctx.subgraph.tensors[index]
            if t.nbytes > 0:
                raise ctx.fail(f"intermediate tensor '{t.name}' has non-zero size {t.nbytes} "
                               "(tflite-micro allocates none)")
        self.time_major = o["time_major"]
        x = ctx.input(INPUT)
        if x is None or x.type_name not in KINDS:
            raise ctx.fail(f"input type {x.type_name if x else 'missing'} is not supported; "
                           f"supported: {', '.join(KINDS)}")
        self.kind = x.type_name
        w_type, b_type, c_type = KINDS[self.kind]
        for group, what in ((PEEPHOLE, "peephole (cell-to-gate) weights"), (PROJECTION, "projection"),
                            (LAYER_NORM, "layer-norm coefficients")):
            if any(_tensor(ctx, p) is not None for p in group):
                raise ctx.fail(f"LSTM with {what} is not supported (tflite-micro runs the standard LSTM only)")
        weights = [_tensor(ctx, p) for p in INPUT_WEIGHTS + RECURRENT_WEIGHTS]
        if weights[0] is None or weights[4] is None:
            raise ctx.fail("CIFG LSTM (no input gate) is not supported (tflite-micro runs the standard LSTM only)")
        for w in weights:
            if w is None or w.type_name != w_type:
                raise ctx.fail(f"{self.kind} LSTM needs {w_type} weights for all eight gate matrices")
        biases = [_tensor(ctx, p) for p in BIASES]
        for b in biases:
            if b is None or b.type_name != b_type:
                raise ctx.fail(f"{self.kind} LSTM needs {b_type} biases for all four gates")
        # weights / biases that are not constant data: read at every invocation into their slot of the
        # stacked arrays (matrix "w_in" / "w_rec" / "bias", gate slot, op input position, weight zero point)
        positions = INPUT_WEIGHTS + RECURRENT_WEIGHTS
        self.variable: list[tuple[str, int, int, int]] = []
        for k, g in enumerate(GATE_ORDER):
            for name, t, pos in (("w_in", weights[g], positions[g]), ("w_rec", weights[4 + g], positions[4 + g]),
                                 ("bias", biases[g], BIASES[g])):
                if t.data is None:
                    zp = 0 if name == "bias" or self.kind == "FLOAT32" else first_scale(ctx, t, "weights")[1]
                    self.variable.append((name, k, pos, zp))
        h = require_variable(ctx, _tensor(ctx, HIDDEN_STATE), "hidden state")
        c = require_variable(ctx, _tensor(ctx, CELL_STATE), "cell state")
        if h.type_name != self.kind:
            raise ctx.fail(f"the hidden state has type {h.type_name}; it must match the input's {self.kind}")
        if c.type_name != c_type:
            raise ctx.fail(f"the cell state has type {c.type_name}; {self.kind} LSTM needs {c_type}")
        out = ctx.output(0)
        if out.type_name != self.kind:
            raise ctx.fail(f"the output has type {out.type_name}; it must match the input's {self.kind}")

        # sizes (CreateLstmSizeInfo / ValidateTensorSize)
        if len(x.shape) != 3 or len(h.shape) != 2:
            raise ctx.fail(f"needs a 3-D input and a 2-D hidden state; got {x.shape} and {h.shape}")
        self.steps, self.batch = (x.shape[0], x.shape[1]) if self.time_major else (x.shape[1], x.shape[0])
        n_in, n_state = x.shape[2], h.shape[1]
        self.n_in, self.n_state = n_in, n_state
        for w in weights[:4]:
            check_shape(ctx, w, (n_state, n_in), "input weights")
        for w in weights[4:]:
            check_shape(ctx, w, (n_state, n_state), "recurrent weights")
        for b in biases:
            check_shape(ctx, b, (n_state,), "bias")
        for t, what in ((h, "hidden state"), (c, "cell state")):
            if t.num_elements != self.batch * n_state:
                raise ctx.fail(f"the {what} has {t.num_elements} elements; expected {self.batch * n_state}")
        if len(out.shape) != 3 or tuple(out.shape) != (x.shape[0], x.shape[1], n_state):
            raise ctx.fail(f"the output has shape {out.shape}; expected {(x.shape[0], x.shape[1], n_state)}")
        if min(self.steps, self.batch, n_in, n_state) < 1:
            raise ctx.fail("empty input, state or sequence")

        rows, gate_shape = self.batch, (4, self.batch, n_state)
        self.gate_shape = gate_shape
        w_in = [weights[g] for g in GATE_ORDER]
        w_rec = [weights[4 + g] for g in GATE_ORDER]
        b_all = [biases[g] for g in GATE_ORDER]
        if self.kind == "FLOAT32":
            self._prepare_float(o["cell_clip"], w_in, w_rec, b_all)
        else:
            self._prepare_integer(o["cell_clip"], x, h, c, w_in, w_rec, b_all)
        # Integer kernels work on int64, float ones on float32.
        wdt = np.float32 if self.kind == "FLOAT32" else np.int64
        self.workspace = {
            "x": ((rows, n_in), wdt), "h": ((rows, n_state), wdt), "acc_in": (gate_shape, wdt),
            "acc_rec": (gate_shape, wdt), "tmp": (gate_shape, wdt), "cell": ((rows, n_state), wdt),
            "t1": ((rows, n_state), wdt),
        }

    # ------------------------------------------------------------------ prepare
    def _prepare_float(self, cell_clip: float, w_in: list[TensorInfo], w_rec: list[TensorInfo],
                       b_all: list[TensorInfo]) -> None:
        self.w_in = np.ascontiguousarray(np.stack([_values(w).T for w in w_in]).astype(np.float32))
        self.w_rec = np.ascontiguousarray(np.stack([_values(w).T for w in w_rec]).astype(np.float32))
        self.bias = np.stack([_values(b) for b in b_all]).astype(np.float32).reshape(4, 1, self.n_state)
        self.cell_clip = np.float32(cell_clip) if cell_clip > 0.0 else None
        self.sigmoid_f = Float32Sigmoid((3, self.batch, self.n_state))
        self.tanh_f = Float32Tanh((self.batch, self.n_state))
        self.cache_bytes = int(self.w_in.nbytes + self.w_rec.nbytes + self.bias.nbytes
                               + self.sigmoid_f.nbytes + self.tanh_f.nbytes)

    def _prepare_integer(self, cell_clip: float, x: TensorInfo, h: TensorInfo, c: TensorInfo,
                         w_in: list[TensorInfo], w_rec: list[TensorInfo], b_all: list[TensorInfo]) -> None:
        ctx = self.ctx
        in_scale, in_zp = first_scale(ctx, x, "input")
        h_scale, h_zp = first_scale(ctx, h, "hidden state")
        c_scale, _ = first_scale(ctx, c, "cell state")
        self.in_offset, self.h_offset, self.h_zp = -in_zp, -h_zp, h_zp

        def fc(weights: list[TensorInfo], act_scale: float) -> tuple[np.ndarray, list[float]]:
            mats, reals = [], []
            for w in weights:
                if w.quantization is not None and w.quantization.per_channel:
                    # TFLM's gate setup takes the per-channel branch of the FC parameters into a
                    # temporary whose multipliers are never set: its result is undefined.
                    raise ctx.fail(f"per-channel quantized weights ('{w.name}') are not supported "
                                   "(tflite-micro's LSTM handles per-tensor weights only)")
                w_scale, w_zp = first_scale(ctx, w, "weights")
                mats.append(_values(w).astype(np.int64).T - w_zp)
                # This tflite-micro release derives FC multipliers as convolutions do: the float32
                # scales multiplied and divided in double (a float32 product differs in the last bits)
                reals.append(act_scale * w_scale / GATE_INPUT_SCALE)
            return np.ascontiguousarray(np.stack(mats)), reals

        self.w_in, real_in = fc(w_in, in_scale)
        self.w_rec, real_rec = fc(w_rec, h_scale)
        self.bias = np.stack([_values(b).astype(np.int64) for b in b_all]).reshape(4, 1, self.n_state)
        requant = ColumnRequant if self.kind == "INT8" else ColumnRequant64
        self.req_in = requant(*quantized_multipliers(real_in), param_shape=(4, 1, 1))
        self.req_rec = requant(*quantized_multipliers(real_rec), param_shape=(4, 1, 1))
        power, _ = checked_log2(c_scale)
        rows, s = self.batch, self.n_state
        self.sigmoid = Int16Sigmoid((3, rows, s))
        self.tanh_gate = Int16Tanh.for_cell_state((rows, s), -12)
        self.tanh_cell = Int16Tanh.for_cell_state((rows, s), power)
        # inter-gate multiplications (CreateInterGateMulParams): double product / double output scale
        self.mul_forget = ColumnRequant(*quantized_multipliers([GATE_OUTPUT_SCALE * c_scale / c_scale]))
        self.mul_input = ColumnRequant(*quantized_multipliers([GATE_OUTPUT_SCALE * GATE_OUTPUT_SCALE / c_scale]))
        self.mul_output = ColumnRequant(*quantized_multipliers([GATE_OUTPUT_SCALE * GATE_OUTPUT_SCALE / h_scale]))
        info = np.iinfo(np.int8 if self.kind == "INT8" else np.int16)
        self.h_min, self.h_max = int(info.min), int(info.max)
        if cell_clip > 0.0:
            q = min(max(float(cell_clip) / c_scale, -32768.0), 32767.0)
            self.cell_clip_q: Optional[int] = int(q)  # static_cast<int16_t> truncates toward zero
        else:
            self.cell_clip_q = None
        temps = sum(3 * f.a.nbytes for f in (self.sigmoid, self.tanh_gate, self.tanh_cell))
        self.cache_bytes = int(self.w_in.nbytes + self.w_rec.nbytes + self.bias.nbytes + temps)

    # ------------------------------------------------------------------ memory
    @staticmethod
    def op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator, workspace_limit: int) -> OpMemory:
        """TFLM's four gate buffers of batch x state cells each (int16, or float32 for a float LSTM)."""
        try:
            x = subgraph.tensors[op.inputs[INPUT]]
            h = subgraph.tensors[op.inputs[HIDDEN_STATE]]
            batch = x.shape[1] if lstm_options(op)["time_major"] else x.shape[0]
            cell = 4 if x.type_name == "FLOAT32" else 2
            return OpMemory(scratch_bytes=4 * scratch_bytes(batch * h.shape[1] * cell))
        except (IndexError, ValueError):
            return OpMemory()

    # ------------------------------------------------------------------ run
    def bind(self, inputs: Inputs, outputs: Outputs, scratch: Scratch, ws: Workspace) -> None:
        """Keep views of the sequence, the two state tensors, the output and the work buffers."""
        x, out = inputs[INPUT], outputs[0]
        self.h_state = inputs[HIDDEN_STATE].reshape(self.batch, self.n_state)
        self.c_state = inputs[CELL_STATE].reshape(self.batch, self.n_state)
        if self.time_major:
            self.x_steps = [x[t] for t in range(self.steps)]
            self.out_steps = [out[t] for t in range(self.steps)]
        else:
            self.x_steps = [x[:, t, :] for t in range(self.steps)]
            self.out_steps = [out[:, t, :] for t in range(self.steps)]
        self.ws = ws
        if self.kind == "FLOAT32":
            # TFLM's float FC sums products one input at a time in float32: (column of x, row of W) pairs
            self.fc_in = [(ws["x"][:, d:d + 1], self.w_in[:, d:d + 1, :]) for d in range(self.n_in)]
            self.fc_rec = [(ws["h"][:, d:d + 1], self.w_rec[:, d:d + 1, :]) for d in range(self.n_state)]
        self.run = self._run_float if self.kind == "FLOAT32" else self._run_integer  # type: ignore[method-assign]
        if self.variable:
            self.copies = []
            for name, k, pos, zp in self.variable:
                dst = getattr(self, name)[k]
                src = inputs[pos].reshape(dst.shape) if name == "bias" else inputs[pos].T
                self.copies.append((dst, src, zp))
            self.compute = self.run
            self.run = self._run_variable  # type: ignore[method-assign]

    def _run_variable(self) -> None:
        """Read the non-constant weights / biases into their slots (less the weights' zero point), then run."""
        for dst, src, zp in self.copies:
            np.copyto(dst, src, casting="unsafe")
            if zp:
                dst -= zp
        self.compute()

    def _run_float(self) -> None:
        """tflite-micro's float ``LstmStep`` per time step, operation for operation in float32 (no FMA): per gate
        ``FC(x) + bias`` and ``FC(h) + 0``, each sum in depth order and clamped to +-FLT_MAX (the gate FCs'
        activation range), added; logistic / tanh as glibc computes them; ``c = clamp(f * c) + clamp(i * g)``,
        then the cell clip; ``h = clamp(tanh(c) * o)``."""
        ws = self.ws
        xb, hb, acc, rec, tmp, cell, t1 = (ws[k] for k in ("x", "h", "acc_in", "acc_rec", "tmp", "cell", "t1"))
        bias, clip = self.bias, self.cell_clip
        h_state, c_state = self.h_state, self.c_state
        mul, add = np.multiply, np.add
        lo, hi = -FLT_MAX, FLT_MAX
        for x_t, out_t in zip(self.x_steps, self.out_steps):
            np.copyto(xb, x_t)
            np.copyto(hb, h_state)
            acc.fill(0.0)
            for xc, wr in self.fc_in:
                mul(xc, wr, out=tmp)
                add(acc, tmp, out=acc)
            add(acc, bias, out=acc)
            CLIP(acc, lo, hi, out=acc)
            rec.fill(0.0)
            for hc, wr in self.fc_rec:
                mul(hc, wr, out=tmp)
                add(rec, tmp, out=rec)
            add(rec, F32_ZERO, out=rec)  # the recurrent FC has no bias: + 0.0f
            CLIP(rec, lo, hi, out=rec)
            add(acc, rec, out=acc)
            self.sigmoid_f.apply(acc[:3])
            self.tanh_f.apply(acc[3])
            f, i, o, g = acc
            mul(f, c_state, out=cell)
            CLIP(cell, lo, hi, out=cell)
            mul(i, g, out=t1)
            CLIP(t1, lo, hi, out=t1)
            add(cell, t1, out=cell)
            if clip is not None:
                CLIP(cell, -clip, clip, out=cell)  # (a NaN stays NaN, as in tflite-micro's build)
            np.copyto(c_state, cell)
            self.tanh_f.apply(cell, out=t1)
            mul(t1, o, out=t1)
            CLIP(t1, lo, hi, out=h_state)
            np.copyto(out_t, h_state)

    def _run_integer(self) -> None:
        ws = self.ws
        xb, hb, acc, rec, tmp, cell, t1 = (ws[k] for k in ("x", "h", "acc_in", "acc_rec", "tmp", "cell", "t1"))
        w_in, w_rec, bias = self.w_in, self.w_rec, self.bias
        req_in, req_rec = self.req_in, self.req_rec
        narrow = self.kind == "INT8"
        h_state, c_state = self.h_state, self.c_state
        clip_q = self.cell_clip_q
        for x_t, out_t in zip(self.x_steps, self.out_steps):
            # gate pre-activations: int16 FC(x) (+ bias) and int16 FC(h), added with saturation
            np.copyto(xb, x_t)
            xb += self.in_offset
            np.matmul(xb, w_in, out=acc)
            acc += bias
            np.copyto(hb, h_state)
            hb += self.h_offset
            np.matmul(hb, w_rec, out=rec)
            if narrow:
                wrap32(acc)  # the C accumulators are int32
                wrap32(rec)
                req_in.apply(acc, tmp)
                req_rec.apply(rec, tmp)
            else:
                req_in.apply(acc)
                req_rec.apply(rec)
            CLIP(acc, INT16_MIN, INT16_MAX, out=acc)
            CLIP(rec, INT16_MIN, INT16_MAX, out=rec)
            acc += rec
            CLIP(acc, INT16_MIN, INT16_MAX, out=acc)
            self.sigmoid.apply(acc[:3])
            self.tanh_gate.apply(acc[3])
            f, i, o, g = acc
            # cell state: f * c + i * g, each product requantized and saturated to int16
            np.copyto(cell, c_state)
            cell *= f
            self.mul_forget.apply(cell, t1)
            CLIP(cell, INT16_MIN, INT16_MAX, out=cell)
            np.multiply(i, g, out=t1)
            self.mul_input.apply(t1, rec[0])
            CLIP(t1, INT16_MIN, INT16_MAX, out=t1)
            cell += t1
            CLIP(cell, INT16_MIN, INT16_MAX, out=cell)
            if clip_q is not None:
                CLIP(cell, -clip_q, clip_q, out=cell)
            np.copyto(c_state, cell, casting="unsafe")
            # hidden state: tanh(c) * o, requantized to the hidden state's scale and zero point
            self.tanh_cell.apply(cell)
            cell *= o
            self.mul_output.apply(cell, t1)
            cell += self.h_zp
            CLIP(cell, self.h_min, self.h_max, out=cell)
            np.copyto(h_state, cell, casting="unsafe")
            np.copyto(out_t, h_state)

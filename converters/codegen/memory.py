"""The arena plan of the generated C: the project's planner with the C kernels' own memory traits.

- RESHAPE/SQUEEZE/EXPAND_DIMS alias their input (no copy); ADD/SUB/MUL, MAXIMUM/MINIMUM and
  PRELU on same-shaped inputs, SOFTMAX and the table-driven elementwise ops read each element
  before writing it, so they may overwrite an input that dies there, with no scratch. The
  data-movement ops (``gather.c``) and MEAN/SUM write their own output buffer; resource-variable
  ops need nothing in the arena (variables are static buffers of their own, ``variables.py``).
- CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (batch 1) may overwrite their dying input through
  a ring (``er_in``/``er_out`` in ``er_fixedpoint.h``): output bytes are produced forward or
  backward; just before output byte ``o`` is written the input byte at ``o`` is saved at
  ``ring[o % R]``, and input bytes already overwritten are read back from there. Going forward
  that is exact when ``R >= o - b`` for every input byte ``b < o`` that output ``o`` reads
  (backward: ``R >= b - o`` for ``b > o``); :func:`ring_plan` computes that maximum from the op's
  geometry, for both directions. The op is offered in place only when the ring is smaller than
  half its input.
"""
from __future__ import annotations

import numpy as np

from converters.codegen.ops import ALIAS_OPS, BINARY, BINARY_LIKE, LOOKUP
from converters.codegen.variables import VARIABLE_OPS
from edge_runtime.arena.plan import ArenaPlan, plan_arena
from edge_runtime.arena.traits import OpMemory
from edge_runtime.backends.micro.kernels import REGISTRY, OpContext
from edge_runtime.formats.tflite import Operator, SubGraph, TFLiteModel

_ALIAS = ALIAS_OPS


def _window_ends(out_size: int, stride: int, pad: int, k: int, dil: int, in_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per output position, the first and last input positions its window reads (inside the input)."""
    pos = np.arange(out_size)[:, None] * stride - pad + np.arange(k)[None, :] * dil
    ok = (pos >= 0) & (pos < in_size)
    return np.where(ok, pos, in_size + 1).min(axis=1), np.where(ok, pos, -1).max(axis=1)


def ring_plan(model: TFLiteModel, op: Operator) -> tuple[int, int]:
    """``(ring bytes, direction)`` for running the op in place: the cheaper of forward (max ``o - b``
    over reads ``b < o``) and backward (max ``b - o`` over reads ``b > o``); ``(-1, 0)`` when it cannot."""
    k = REGISTRY[op.name](OpContext(model, model.main, op))
    if op.name == "FULLY_CONNECTED":
        r = np.arange(k.rows_total)
        fwd = (r * k.units + (k.units - 1) - r * k.k).max()
        bwd = (r * k.k + (k.k - 1) - r * k.units).max()
    else:
        if k.n != 1:
            return -1, 0
        fy, ly = _window_ends(k.ho, k.sh, k.pt, k.kh, k.dh, k.h)
        fx, lx = _window_ends(k.wo, k.sw, k.pl, k.kw, k.dw, k.w_in)
        first = (fy[:, None] * k.w_in + fx[None, :]).reshape(-1)
        last = (ly[:, None] * k.w_in + lx[None, :]).reshape(-1)
        o = np.arange(k.ho * k.wo)[:, None] * k.cout + np.arange(k.cout)[None, :]
        if op.name == "DEPTHWISE_CONV_2D":
            ic = np.arange(k.cout) // k.mult
            lo_b = first[:, None] * k.cin + ic[None, :]
            hi_b = last[:, None] * k.cin + ic[None, :]
        else:
            lo_b = np.broadcast_to(first[:, None] * k.cin, o.shape)
            hi_b = np.broadcast_to(last[:, None] * k.cin + k.cin - 1, o.shape)
        fwd, bwd = (o - lo_b).max(), (hi_b - o).max()
    fwd, bwd = max(0, int(fwd)), max(0, int(bwd))
    return (fwd, 1) if fwd <= bwd else (bwd, -1)


def c_op_memory(model: TFLiteModel, subgraph: SubGraph, op: Operator) -> OpMemory:
    """Arena needs of ``op`` as the generated C runs it."""
    if op.name in _ALIAS:
        return OpMemory(alias_input=0)
    if op.name == "SOFTMAX" or op.name in LOOKUP:
        return OpMemory(inplace_input=0)
    if op.name in VARIABLE_OPS:
        return OpMemory()
    out = subgraph.tensors[op.outputs[0]]
    if op.name in BINARY or op.name in BINARY_LIKE:
        for pos in (0, 1):
            t = subgraph.tensors[op.inputs[pos]]
            if tuple(t.shape) == tuple(out.shape) and not t.is_constant:
                return OpMemory(inplace_input=pos)
        return OpMemory()
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        ring, _ = ring_plan(model, op)
        x = subgraph.tensors[op.inputs[0]]
        if 0 <= ring < x.nbytes // 2:
            return OpMemory(inplace_input=0, inplace_scratch_bytes=ring)
    return OpMemory()


c_op_memory.__qualname__ = "codegen.c_op_memory"


def plan_c_arena(model: TFLiteModel, planner: str = "best") -> ArenaPlan:
    """The in-place arena plan the generated C uses."""
    return plan_arena(model, 0, in_place=True, planner=planner, op_memory=c_op_memory)

"""Masked softmax: ``SOFTMAX(scores + M)`` with a constant attention mask ``M``, found in the IR.

Transformer exports add a constant mask to the attention scores before the softmax: 0 where a position is
kept, and ``-inf`` or a huge negative (torch's ``finfo(float32).min``, -1e9, -1e4) where it is masked (a causal
mask folded from Trilu/Where, a padding mask, ONNX Attention's ``is_causal`` / boolean mask). In int8 the sum
``scores + M`` would need a range down to the mask value, which leaves no code for the scores themselves, so
the quantizer (:func:`converters.quantize.plan_quantization`) writes the ADD (or SUB), any RESHAPE/TRANSPOSE
between it and the SOFTMAX, and the SOFTMAX as a float island: DEQUANTIZE of the int8 scores (their own
range), float ADD with the mask as a float constant, float SOFTMAX, QUANTIZE to the SOFTMAX's fixed int8
output parameters. Calibration (:mod:`converters.calibrate`) accepts ``-inf`` in the masked sums (never NaN).

A row whose every position is masked with ``-inf`` is NaN in float (as in onnxruntime). With a constant mask
calibration meets it on every sample and refuses the model in one line naming the SOFTMAX. Written anyway
(a mask changed after calibration), the island's float SOFTMAX gives NaN there and its QUANTIZE casts NaN to
int32, which C leaves undefined: x86 gives INT32_MIN, so tflite-micro and micro (which copies x86) write the
top code 127 (every weight ~1.0); an Arm core's VCVT gives 0, i.e. code -128 (every weight 0). No crash either
way. Masks of finite values (finfo.min, -1e9) give such a row a uniform softmax instead, as in float.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from converters.ir import Graph, Op

#: An entry at or below this value is a masked position (with every kept entry below :data:`KEPT_LIMIT`).
MASKED_AT = -1e4
#: Largest magnitude a kept (unmasked) entry of a mask may have: a real bias that large is not a mask.
KEPT_LIMIT = 1e3
#: Ops that may stand between the masked ADD/SUB and the SOFTMAX (they move values only).
BETWEEN = ("RESHAPE", "TRANSPOSE")


def is_mask(data: Optional[np.ndarray]) -> bool:
    """True when ``data`` is an additive attention mask: float, no NaN or +inf, at least one masked entry
    (``-inf`` or <= :data:`MASKED_AT`), and every other entry smaller than :data:`KEPT_LIMIT` in magnitude."""
    if data is None:
        return False
    a = np.asarray(data)
    if a.dtype.kind != "f" or a.size == 0 or np.isnan(a).any() or np.isposinf(a).any():
        return False
    masked = a <= MASKED_AT
    if not masked.any():
        return False
    kept = a[~masked]
    return kept.size == 0 or float(np.abs(kept).max()) < KEPT_LIMIT


def _mask_input(graph: Graph, op: Op) -> Optional[int]:
    """Index of the mask operand of ADD/SUB ``op`` (the other operand an activation), or None."""
    if len(op.inputs) != 2:
        return None
    consts = [graph.tensors[t].is_constant for t in op.inputs]
    if consts.count(True) != 1:
        return None
    k = consts.index(True)
    data = graph.tensors[op.inputs[k]].data
    if op.kind == "ADD":
        return k if is_mask(data) else None
    if op.kind == "SUB" and k == 1:  # x - M masks where M is +big
        return k if is_mask(-np.asarray(data)) else None
    return None


def masked_softmax_chains(graph: Graph, skip: Optional[Callable[[Op], bool]] = None) -> list[list[Op]]:
    """Each masked softmax of ``graph`` as its ops in graph order: the ADD/SUB of a constant mask, the
    RESHAPE/TRANSPOSE ops between it and the SOFTMAX (each read by the next op only), and the SOFTMAX.

    A chain holding an op for which ``skip(op)`` is true (an op whose precision is already chosen) is left
    out, and so is a chain whose mask another op reads too: that reader would need the mask in int8.
    """
    producers = graph.producers()
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    chains = []
    for op in graph.ops:
        if op.kind != "SOFTMAX" or graph.tensors[op.inputs[0]].is_constant:
            continue
        chain = [op]
        t = op.inputs[0]
        while True:
            p = producers.get(t)
            if p is None or len(consumers.get(t, [])) != 1 or t in outputs:
                break
            if p.kind in BETWEEN:
                chain.insert(0, p)
                t = p.inputs[0]
                continue
            if p.kind in ("ADD", "SUB") and _mask_input(graph, p) is not None:
                chains.append([p] + chain)
            break
    if skip is not None:
        chains = [c for c in chains if not any(skip(op) for op in c)]
    heads = {id(c[0]) for c in chains}
    return [c for c in chains if all(id(r) in heads for r in consumers.get(_mask(graph, c), []))]


def _mask(graph: Graph, chain: list[Op]) -> str:
    return chain[0].inputs[_mask_input(graph, chain[0])]  # type: ignore[index]


def mask_constants(graph: Graph, chains: Optional[list[list[Op]]] = None) -> set[str]:
    """Names of the constant masks read by the masked softmaxes of ``graph`` (or of ``chains``): they stay float."""
    return {_mask(graph, c) for c in (masked_softmax_chains(graph) if chains is None else chains)}


def masked_sums(graph: Graph, chains: Optional[list[list[Op]]] = None) -> set[str]:
    """Names of the tensors inside the masked softmax islands of ``graph`` (or of ``chains``): the masked sums
    and their reshapes, float in the written model, where ``-inf`` is expected."""
    return {o for c in (masked_softmax_chains(graph) if chains is None else chains) for op in c[:-1]
            for o in op.outputs}

"""Semantic checks on a parsed .tflite model before native code sees it.

:class:`~edge_runtime.formats.tflite.TFLiteModel` already guarantees that every
offset, vector and index is inside the file. This module checks what the
FlatBuffer layout cannot: tensors reference existing buffers and known types,
shapes are plausible, operators read tensors that something has written, names
are valid UTF-8, and the quantization parameters of integer kernels are usable
(LiteRT aborts the process on some of these rather than returning an error;
found by tests/test_fuzz_load.py).
"""
from __future__ import annotations

import numpy as np

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.flatbuffer import FlatBufferError
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel

KNOWN_TENSOR_TYPES = frozenset(range(0, 19))
#: Limits far above any model meant for an edge device; beyond them a shape is corrupt.
MAX_TENSOR_BYTES = 1 << 30
MAX_ACTIVATION_BYTES = 4 << 30
MAX_RANK = 8
#: Integer tensor types whose kernels use scale and zero point: UINT8, INT16, INT8.
QUANT_TYPES = {3: (0, 255), 7: (0, 0), 9: (-128, 127)}
#: Builtin ops whose integer kernels derive fixed-point multipliers from the scales
#: (ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED,
#: LOGISTIC, MAX_POOL_2D, MUL, SOFTMAX, TANH, MEAN, SUB, TRANSPOSE_CONV, LEAKY_RELU, QUANTIZE, HARD_SWISH).
QUANTIZED_MATH_OPS = frozenset({0, 1, 2, 3, 4, 6, 9, 14, 17, 18, 25, 28, 40, 41, 67, 98, 114, 117})
#: Ops whose multiplier is input_scale * weight_scale / output_scale (CONV_2D, DEPTHWISE_CONV_2D,
#: FULLY_CONNECTED, MUL, TRANSPOSE_CONV).
PRODUCT_OPS = frozenset({3, 4, 9, 18, 67})
#: Largest multiplier accepted. Real models stay below 1 (product ops) or a few hundred (rescaling
#: ops); TFLite's fixed-point helpers abort when a multiplier needs a left shift beyond 31 bits.
MAX_PRODUCT_MULTIPLIER = float(1 << 15)
MAX_RESCALE_RATIO = float(1 << 18)
#: Builtin ops that have no outputs by design.
NO_OUTPUT_OPS = frozenset({"CALL_ONCE", "ASSIGN_VARIABLE"})
#: Builtin ops that invoke other subgraphs -> number of subgraph-index fields in their options table.
SUBGRAPH_OPS = {"CALL_ONCE": 1, "IF": 2, "WHILE": 2}


def check_tflite_model(model: TFLiteModel) -> None:
    """Raise :class:`ModelFormatError` naming the first defect found; return quietly when the model is sound."""
    p = model.path
    if model.version != 3:
        raise ModelFormatError(f"{p}: TFLite schema version {model.version}; only version 3 is supported")
    n_buffers = len(model._buffer_tables)
    for sg in model.subgraphs:
        _check_tensors(p, sg, n_buffers)
        _check_graph(p, sg)
        try:
            _check_subgraph_calls(model, sg)
        except FlatBufferError as exc:
            raise ModelFormatError(f"{p}: {_where(sg)} has a corrupt control-flow options table: {exc}") from None
    try:
        _check_call_cycles(model)
    except FlatBufferError as exc:
        raise ModelFormatError(f"{p}: a corrupt control-flow options table: {exc}") from None


def _where(sg: SubGraph) -> str:
    return f"subgraph {sg.index}"


def _check_tensors(p: str, sg: SubGraph, n_buffers: int) -> None:
    where = _where(sg)
    activation_bytes = 0
    for t in sg.tensors:
        label = f"{p}: {where} tensor {t.index} ('{t.name}')"
        if "\ufffd" in t.name:
            raise ModelFormatError(f"{p}: {where} tensor {t.index} has a name that is not valid UTF-8")
        if t.buffer >= n_buffers:
            raise ModelFormatError(f"{label} uses buffer {t.buffer}; the model has {n_buffers}")
        if t.type_code not in KNOWN_TENSOR_TYPES:
            raise ModelFormatError(f"{label} has unknown type {t.type_code}")
        if len(t.shape) > MAX_RANK:
            raise ModelFormatError(f"{label} has {len(t.shape)} dimensions")
        if t.num_elements > (1 << 31) or t.nbytes > MAX_TENSOR_BYTES:
            raise ModelFormatError(f"{label} has an implausible shape {t.shape}")
        if t.shape_signature is not None and len(t.shape_signature) not in (0, len(t.shape)):
            raise ModelFormatError(f"{label} has shape {t.shape} but signature {t.shape_signature} of another rank")
        if not t.is_constant:
            activation_bytes += t.nbytes
        _check_quantization(label, t)
    if activation_bytes > MAX_ACTIVATION_BYTES:
        raise ModelFormatError(
            f"{p}: {where} needs {activation_bytes / 2**30:.1f} GiB of activations, which is implausible (corrupt shapes?)"
        )
    n = len(sg.tensors)
    if not sg.outputs and sg.index == 0:
        raise ModelFormatError(f"{p}: {where} has no outputs")
    for idx in sg.inputs + sg.outputs:
        if not 0 <= idx < n:
            raise ModelFormatError(f"{p}: {where} input/output tensor {idx} out of range ({n} tensors)")


def _check_quantization(label: str, t: TensorInfo) -> None:
    q = t.quantization
    if q is None:
        return
    if q.zero_point.size not in (0, q.scale.size):
        raise ModelFormatError(f"{label} has {q.scale.size} scales but {q.zero_point.size} zero points")
    if not np.all(np.isfinite(q.scale)):
        raise ModelFormatError(f"{label} has a non-finite quantization scale")
    if q.per_channel and len(t.shape) == 1 and q.scale.size == t.shape[0]:
        pass  # rank 1 (a bias): one scale per element whatever quantized_dimension says, as TFLM reads it
    elif q.per_channel:
        if not 0 <= q.quantized_dimension < max(len(t.shape), 1):
            raise ModelFormatError(
                f"{label} quantizes along dimension {q.quantized_dimension} of a rank-{len(t.shape)} tensor"
            )
        if t.shape and q.scale.size != t.shape[q.quantized_dimension]:
            raise ModelFormatError(
                f"{label} has {q.scale.size} scales for {t.shape[q.quantized_dimension]} channels"
            )
    bounds = QUANT_TYPES.get(t.type_code)
    if bounds is not None and q.zero_point.size:
        lo, hi = bounds
        if int(q.zero_point.min()) < lo or int(q.zero_point.max()) > hi:
            raise ModelFormatError(
                f"{label} has zero point(s) outside [{lo}, {hi}] for type {t.type_name}"
            )


def _scales(sg: SubGraph, i: int) -> np.ndarray | None:
    """The scales of tensor ``i`` when it is an integer tensor used by quantized kernels."""
    if i < 0:
        return None
    t = sg.tensors[i]
    if t.type_code not in QUANT_TYPES:
        return None
    return None if t.quantization is None else t.quantization.scale


def _check_op_quantization(p: str, sg: SubGraph, op: Operator) -> None:
    code = op.opcode.builtin_code
    if code not in QUANTIZED_MATH_OPS:
        return
    where = f"{p}: {_where(sg)} operator {op.index} ({op.name})"
    for i in op.inputs + op.outputs:
        t = sg.tensors[i] if i >= 0 else None
        if t is None or t.type_code not in QUANT_TYPES:
            continue
        if t.quantization is None:
            raise ModelFormatError(f"{where} uses {t.type_name} tensor {i} ('{t.name}') without quantization parameters")
        if not np.all(t.quantization.scale > 0):
            raise ModelFormatError(f"{where} uses tensor {i} ('{t.name}') with a zero or negative scale")
    ins = [_scales(sg, i) for i in op.inputs]
    out = _scales(sg, op.outputs[0]) if op.outputs else None
    if out is None or not ins or ins[0] is None:
        return
    s_out = float(out.min())
    if code in PRODUCT_OPS and len(ins) > 1 and ins[1] is not None:
        m = float(ins[0].max()) * float(ins[1].max()) / s_out
        if not m < MAX_PRODUCT_MULTIPLIER:
            raise ModelFormatError(
                f"{where}: input scale x weight scale / output scale = {m:.3g}, far outside what integer "
                "kernels can represent (corrupt quantization parameters?)"
            )
        return
    in_scales = [float(s.max()) for s in ins if s is not None] + [float(s.min()) for s in ins if s is not None]
    ratios = [max(in_scales) / s_out, s_out / min(in_scales)]
    if not max(ratios) < MAX_RESCALE_RATIO:
        raise ModelFormatError(
            f"{where}: input and output scales differ by a factor of {max(ratios):.3g} (corrupt quantization parameters?)"
        )


def _check_graph(p: str, sg: SubGraph) -> None:
    """Every op has its outputs, reads only tensors something provides, and writes no constant.

    A tensor counts as provided when it is a subgraph input, a constant, a variable,
    or the output of any op of the subgraph (also a later one: LiteRT and TFLM run
    such feedback graphs, whose tensors have arena space from their first use).
    """
    where = f"{p}: {_where(sg)}"
    produced = set(sg.inputs)
    produced.update(t.index for t in sg.tensors if t.is_constant or t.is_variable)
    written = {o for op in sg.operators for o in op.outputs if o >= 0}
    for op in sg.operators:
        if op.opcode.builtin_code < 0:
            raise ModelFormatError(f"{where} operator {op.index} has a negative op code")
        if (not op.outputs and op.name not in NO_OUTPUT_OPS) or any(o < 0 for o in op.outputs):
            raise ModelFormatError(f"{where} operator {op.index} ({op.name}) has a missing output")
        for i in op.inputs:
            if i >= 0 and i not in produced and i not in written:
                raise ModelFormatError(
                    f"{where} operator {op.index} ({op.name}) reads tensor {i} ('{sg.tensors[i].name}') "
                    "before anything writes it"
                )
        for o in op.outputs:
            if sg.tensors[o].is_constant and not sg.tensors[o].is_variable:
                raise ModelFormatError(f"{where} operator {op.index} ({op.name}) writes into constant tensor {o}")
        _check_op_quantization(p, sg, op)
        produced.update(op.outputs)
    for o in sg.outputs:
        if o not in produced:
            raise ModelFormatError(f"{where} output tensor {o} is never computed")


def _check_subgraph_calls(model: TFLiteModel, sg: SubGraph) -> None:
    """Control-flow ops name existing subgraphs other than the entry one (no recursion into subgraph 0)."""
    n = len(model.subgraphs)
    for op in sg.operators:
        fields = SUBGRAPH_OPS.get(op.name)
        if fields is None:
            continue
        for f in range(fields):
            target = int(op.options.scalar(f, "i", 0)) if op.options is not None else 0
            if not 0 < target < n or target == sg.index:
                raise ModelFormatError(
                    f"{model.path}: {_where(sg)} operator {op.index} ({op.name}) invokes subgraph {target}; "
                    f"the model has {n} subgraphs and an op may not invoke subgraph 0 or its own subgraph")


def _calls(model: TFLiteModel, sg: SubGraph) -> set[int]:
    out: set[int] = set()
    for op in sg.operators:
        for f in range(SUBGRAPH_OPS.get(op.name, 0)):
            out.add(int(op.options.scalar(f, "i", 0)) if op.options is not None else 0)
    return out


def _check_call_cycles(model: TFLiteModel) -> None:
    """No subgraph invokes itself through others (runtimes would recurse without end at prepare or invoke)."""
    calls = {sg.index: _calls(model, sg) for sg in model.subgraphs}
    state: dict[int, int] = {}  # 1: on the current path, 2: done

    def visit(i: int, path: list[int]) -> None:
        state[i] = 1
        for j in sorted(calls.get(i, ())):
            if state.get(j) == 1:
                cycle = " -> ".join(map(str, path[path.index(j):] + [j]))
                raise ModelFormatError(f"{model.path}: subgraphs invoke each other in a cycle ({cycle})")
            if state.get(j) is None and j in calls:
                visit(j, path + [j])
        state[i] = 2

    for i in calls:
        if state.get(i) is None:
            visit(i, [i])

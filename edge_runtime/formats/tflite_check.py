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

from edge_runtime.errors import ModelFormatError, UnsupportedModelError
from edge_runtime.formats.flatbuffer import FlatBufferError
from edge_runtime.formats.tflite import Operator, SubGraph, TensorInfo, TFLiteModel
from edge_runtime.formats.tflite_sparsity import (
    DENSE,
    SPARSE_CSR,
    SparsityError,
    check_sparse_tensor,
    sparsity_table,
)

KNOWN_TENSOR_TYPES = frozenset(range(19))
#: Limits far above any model meant for an edge device; beyond them a shape is corrupt.
MAX_TENSOR_BYTES = 1 << 30
MAX_ACTIVATION_BYTES = 4 << 30
MAX_RANK = 8
#: Integer tensor types whose kernels use scale and zero point: UINT8, INT16, INT8.
QUANT_TYPES = {3: (0, 255), 7: (0, 0), 9: (-128, 127)}
#: The one asymmetric INT16 tensor TFLite has: SOFTMAX's int16 output from an int8 input, zero point -32768
#: (TFLM's kernel requires that value; micro's too).
INT8_TO_INT16_SOFTMAX_ZERO_POINT = -32768
SOFTMAX_CODE = 25
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
#: int16 ADD/SUB rescale with a 15-bit left shift (8-bit ones: 20): LiteRT and tflite-micro abort the process
#: when the largest input scale reaches 2^14 times the output's.
MAX_INT16_ADD_RATIO = float(1 << 14)
INT16_ADD_OPS = frozenset({0, 41})  # ADD, SUB
INT16 = 7  # TensorType INT16
#: Builtin DIV: LiteRT's uint8/int8/int16 kernels fail the invoke (div.cc, ``data[i] != zero_point``; measured with
#: ai-edge-litert 2.3.0: an error, not an abort) when a divisor value equals its zero point, so an integer DIV by an
#: activation fails on some inputs (:func:`integer_div_hazard`). tflite-micro and micro return a value.
DIV_CODE = 42
#: Builtin ops that have no outputs by design.
NO_OUTPUT_OPS = frozenset({"CALL_ONCE", "ASSIGN_VARIABLE"})
#: Builtin ops that invoke other subgraphs -> number of subgraph-index fields in their options table.
SUBGRAPH_OPS = {"CALL_ONCE": 1, "IF": 2, "WHILE": 2}
#: Ops that read a sparse tensor as it is stored -> at which input: DENSIFY decodes it; FULLY_CONNECTED
#: (LiteRT, micro) and CONV_2D (micro) read sparse weights themselves. Any other reader would take the
#: compressed buffer for the dense tensor (LiteRT reads past it).
SPARSE_READERS = {"DENSIFY": 0, "FULLY_CONNECTED": 1, "CONV_2D": 1}
#: Largest stride of MediaPipe's Convolution2DTransposeBias accepted (its models use 2).
MAX_TRANSPOSE_STRIDE = 1 << 12


class SparsityParametersError(ModelFormatError, UnsupportedModelError):
    """Sparsity parameters that do not describe their tensor: a corrupt file (ModelFormatError), and
    weights no backend can run (UnsupportedModelError, as micro's sparse kernels report them)."""


def check_tflite_model(model: TFLiteModel) -> None:
    """Raise :class:`ModelFormatError` naming the first defect found; return quietly when the model is sound.

    A model that passed is marked and not checked again (it also passes :func:`check_structure`)."""
    if getattr(model, "_fully_checked", False):
        return
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
    check_decoder_paths(model)
    try:
        _check_call_cycles(model)
    except FlatBufferError as exc:
        raise ModelFormatError(f"{p}: a corrupt control-flow options table: {exc}") from None
    model._fully_checked = model._structure_checked = True  # type: ignore[attr-defined]


def check_structure(model: TFLiteModel) -> None:
    """The part of :func:`check_tflite_model` every runtime needs, for library entry points handed a parsed
    model (``plan_arena``, the micro ``Interpreter``) before any kernel reads it: tensors name existing
    buffers and known types, shapes are plausible (no allocation is attempted for a hostile one), scales are
    finite, match their channels and are positive where integer kernels divide by them, every op has its
    outputs and writes no constant, and the weight decoders' tables describe their tensors. Raises
    :class:`ModelFormatError` naming the tensor or op.

    Left to the backends: what one runtime accepts and another does not (integer zero-point ranges,
    multiplier bounds, control-flow targets), which the micro kernels refuse themselves with their own
    messages. A model that passed is marked and not checked again."""
    if getattr(model, "_structure_checked", False):
        return
    p = model.path
    n_buffers = len(model._buffer_tables)
    for sg in model.subgraphs:
        _check_tensors(p, sg, n_buffers, zero_point_ranges=False)
        where = f"{p}: {_where(sg)}"
        for op in sg.operators:
            _check_op_tensors(where, sg, op)
            if op.opcode.builtin_code in QUANTIZED_MATH_OPS:
                _check_op_scales(f"{where} operator {op.index} ({op.name})", sg, op, require_params=False)
    check_decoder_paths(model)
    model._structure_checked = True  # type: ignore[attr-defined]


def _where(sg: SubGraph) -> str:
    return f"subgraph {sg.index}"


def _check_tensors(p: str, sg: SubGraph, n_buffers: int, zero_point_ranges: bool = True) -> None:
    where = _where(sg)
    activation_bytes = 0
    wide_int16 = _int8_to_int16_softmax_outputs(sg)
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
        _check_quantization(label, t, zero_point_ranges, t.index in wide_int16)
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


def _int8_to_int16_softmax_outputs(sg: SubGraph) -> set[int]:
    """Tensors written by a SOFTMAX that reads int8 and writes int16 (zero point -32768 allowed there)."""
    found = set()
    for op in sg.operators:
        if op.opcode.builtin_code != SOFTMAX_CODE or not op.inputs or not op.outputs:
            continue
        i, o = op.inputs[0], op.outputs[0]
        if 0 <= i < len(sg.tensors) and 0 <= o < len(sg.tensors) and sg.tensors[i].type_code == 9 \
                and sg.tensors[o].type_code == 7:
            found.add(o)
    return found


def _check_quantization(label: str, t: TensorInfo, zero_point_ranges: bool = True,
                        int8_to_int16_softmax: bool = False) -> None:
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
    bounds = QUANT_TYPES.get(t.type_code) if zero_point_ranges else None
    if bounds is not None and int8_to_int16_softmax:
        bounds = (INT8_TO_INT16_SOFTMAX_ZERO_POINT, INT8_TO_INT16_SOFTMAX_ZERO_POINT)
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
    _check_op_scales(where, sg, op, require_params=True)
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
    if code in INT16_ADD_OPS and sg.tensors[op.outputs[0]].type_code == INT16 \
            and not max(in_scales) / s_out < MAX_INT16_ADD_RATIO:
        raise ModelFormatError(
            f"{where}: int16 input scale is {max(in_scales) / s_out:.3g} times the output's; int16 ADD/SUB kernels "
            f"need less than {MAX_INT16_ADD_RATIO:.0f} (corrupt quantization parameters?)"
        )
    ratios = [max(in_scales) / s_out, s_out / min(in_scales)]
    if not max(ratios) < MAX_RESCALE_RATIO:
        raise ModelFormatError(
            f"{where}: input and output scales differ by a factor of {max(ratios):.3g} (corrupt quantization parameters?)"
        )


def _check_op_scales(where: str, sg: SubGraph, op: Operator, require_params: bool) -> None:
    """The integer tensors of a quantized-math op have quantization parameters (``require_params``) and
    positive scales (the kernels divide by them)."""
    for i in op.inputs + op.outputs:
        t = sg.tensors[i] if i >= 0 else None
        if t is None or t.type_code not in QUANT_TYPES:
            continue
        if t.quantization is None:
            if require_params:
                raise ModelFormatError(f"{where} uses {t.type_name} tensor {i} ('{t.name}') without quantization "
                                       "parameters")
            continue
        if not np.all(t.quantization.scale > 0):
            raise ModelFormatError(f"{where} uses tensor {i} ('{t.name}') with a zero or negative scale")


def _check_graph(p: str, sg: SubGraph) -> None:
    """Every op has its outputs, reads only tensors something provides, and writes no constant.

    A tensor counts as provided when it is a subgraph input, a constant, a variable,
    or the output of any op of the subgraph (also a later one: LiteRT and TFLM run
    such feedback graphs, whose tensors have arena space from their first use).
    """
    where = f"{p}: {_where(sg)}"
    provided = set(sg.inputs)
    # constants (a sparse one may store no values: an all-zero pruned weight that DENSIFY decodes to zeros)
    provided.update(t.index for t in sg.tensors if t.is_constant or t.is_variable or (t.sparse and t.buffer > 0))
    # a tensor of no elements holds nothing to read (converters write RESHAPE's unused shape input so, with an
    # empty buffer; LiteRT and tflite-micro run such files)
    provided.update(t.index for t in sg.tensors if t.num_elements == 0)
    provided.update(o for op in sg.operators for o in op.outputs if o >= 0)
    for op in sg.operators:
        if op.opcode.builtin_code < 0:
            raise ModelFormatError(f"{where} operator {op.index} has a negative op code")
        _check_op_tensors(where, sg, op, provided)
        _check_op_quantization(p, sg, op)
    for o in sg.outputs:
        if o not in provided:
            raise ModelFormatError(f"{where} output tensor {o} is never computed")


def _check_op_tensors(where: str, sg: SubGraph, op: Operator, provided: set[int] | None = None) -> None:
    """The op has its outputs (none negative; none at all only for :data:`NO_OUTPUT_OPS`), reads only
    ``provided`` tensors (when given; absent optional inputs are -1) and writes no constant (a variable
    may be written). ``where`` names the file and subgraph; raises :class:`ModelFormatError`."""
    if (not op.outputs and op.name not in NO_OUTPUT_OPS) or any(o < 0 for o in op.outputs):
        raise ModelFormatError(f"{where} operator {op.index} ({op.name}) has a missing output")
    for i in op.inputs if provided is not None else ():
        if i >= 0 and i not in provided:
            raise ModelFormatError(
                f"{where} operator {op.index} ({op.name}) reads tensor {i} ('{sg.tensors[i].name}') "
                "before anything writes it"
            )
    for o in op.outputs:
        if sg.tensors[o].is_constant and not sg.tensors[o].is_variable:
            raise ModelFormatError(f"{where} operator {op.index} ({op.name}) writes into constant tensor {o}")


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


def check_decoder_paths(model: TFLiteModel) -> None:
    """The checks of the weight-decoding paths: sparse tensors, DENSIFY, float16 DEQUANTIZE and MediaPipe's
    Convolution2DTransposeBias. Part of :func:`check_tflite_model`; the weight folding (tflite_fold.py) runs
    them too, for callers that load a model without the full check (the converter's importer).
    Raises :class:`ModelFormatError` (:class:`UnsupportedModelError` for the custom op) naming the tensor or op;
    a model that passed is marked and not re-checked."""
    if getattr(model, "_decoder_paths_checked", False):
        return
    for sg in model.subgraphs:
        try:
            _check_sparse_tensors(model, sg)
            _check_densify(model.path, sg)
            _check_decoded_writers(model.path, sg)
            _check_float16_dequantize(model.path, sg)
            _check_transpose_conv_bias(model.path, sg)
        except FlatBufferError as exc:
            raise ModelFormatError(f"{model.path}: {_where(sg)} has a corrupt sparsity table: {exc}") from None
    model._decoder_paths_checked = True  # type: ignore[attr-defined]


def _check_float16_dequantize(p: str, sg: SubGraph) -> None:
    """A DEQUANTIZE of a float16 tensor gives float32 of the same shape (the only float16 form LiteRT has)."""
    for op in sg.operators:
        if op.name != "DEQUANTIZE" or len(op.inputs) != 1 or op.inputs[0] < 0 or len(op.outputs) != 1:
            continue
        src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
        if src.type_name == "FLOAT16" and (dst.type_name != "FLOAT32" or tuple(src.shape) != tuple(dst.shape)):
            raise ModelFormatError(f"{p}: {_where(sg)} op {op.index} (DEQUANTIZE) of float16 '{src.name}' "
                                   f"{list(src.shape)} gives {dst.type_name}{list(dst.shape)} '{dst.name}'; it must "
                                   "give FLOAT32 of the same shape")


def _check_sparse_tensors(model: TFLiteModel, sg: SubGraph) -> None:
    """Sparse tensors are constants whose sparsity parameters describe their shape and stored values, read only
    by DENSIFY or as the weights of FULLY_CONNECTED / CONV_2D in the block-CSR layout those kernels index.

    LiteRT trusts these fields: out-of-range indices or a block map naming a missing dimension make it read
    and write outside its buffers (heap corruption, found by tests/test_harden_decode.py).
    """
    p = model.path
    for t in sg.tensors:
        if not t.sparse:
            continue
        label = f"{p}: {_where(sg)} tensor {t.index} ('{t.name}')"
        if t.dtype is None:
            raise SparsityParametersError(f"{label} is stored sparse with type {t.type_name}, which cannot be decoded")
        if t.data is None and t.buffer == 0:
            raise SparsityParametersError(f"{label} has sparsity parameters but no data; only constant weights "
                                          "can be stored sparse")
        readers = [(op, k) for op in sg.operators for k, i in enumerate(op.inputs) if i == t.index]
        for op, k in readers:
            if SPARSE_READERS.get(op.name) != k:
                raise SparsityParametersError(
                    f"{p}: {_where(sg)} op {op.index} ({op.name}) reads sparse tensor {t.index} ('{t.name}') as input "
                    f"{k}; only DENSIFY's input and the weights of FULLY_CONNECTED and CONV_2D may be stored sparse")
        weights_of = next((op for op, _ in readers if op.name != "DENSIFY"), None)
        reader = weights_of if weights_of is not None else (readers[0][0] if readers else None)
        if reader is not None:
            label = (f"{p}: {_where(sg)} op {reader.index} ({reader.name} v{reader.opcode.version}) reads "
                     f"sparse {'weights' if weights_of is not None else 'tensor'} {t.index} ('{t.name}')")
        if weights_of is not None and t.data is None:
            raise SparsityParametersError(f"{label} that store no values")
        nbytes = 0 if t.data is None else int(t.data.size)
        itemsize = t.dtype.itemsize
        if nbytes % itemsize:
            raise SparsityParametersError(f"{label}: {nbytes} bytes are not a whole number of {t.type_name} values")
        table = sparsity_table(model, sg.index, t.index)
        try:
            check_sparse_tensor(table, tuple(t.shape), nbytes // itemsize, itemsize)
        except SparsityError as exc:
            raise SparsityParametersError(f"{label}: inconsistent sparsity parameters: {exc}") from None
        if weights_of is not None:
            _check_weights_layout(label, table, len(t.shape))


def _check_weights_layout(label: str, table: object, nd: int) -> None:
    """The block-CSR layout of sparse weights that kernels index directly (not through DENSIFY): dimensions in
    order, all DENSE but the innermost (SPARSE_CSR), then 1xB block dimensions (block map [] / [n-1] / [0, n-1])."""
    order = table.vector(0, np.int32)  # type: ignore[attr-defined]
    bmap_v = table.vector(1, np.int32)  # type: ignore[attr-defined]
    bmap = [] if bmap_v is None else [int(v) for v in bmap_v]
    metas = table.tables(2, "dimension metadata")  # type: ignore[attr-defined]
    levels = nd + len(bmap)
    want = [DENSE] * (nd - 1) + [SPARSE_CSR] + [DENSE] * len(bmap)
    ok_order = order is None or [int(v) for v in order] == list(range(levels))
    if (nd < 1 or bmap not in ([], [nd - 1], [0, nd - 1]) or not ok_order
            or [int(m.scalar(0, "b", 0)) for m in metas] != want):
        raise SparsityParametersError(
            f"{label} in a layout its kernel cannot index (inconsistent with block-CSR: traversal order "
            f"{None if order is None else [int(v) for v in order]}, block map {bmap}); expected the dimensions in "
            "order, DENSE except the innermost SPARSE_CSR, then 1xB blocks")


def _check_densify(p: str, sg: SubGraph) -> None:
    """DENSIFY decodes one constant into an output of the same shape and type (LiteRT asserts the former)."""
    for op in sg.operators:
        if op.name != "DENSIFY":
            continue
        where = f"{p}: {_where(sg)} op {op.index} (DENSIFY)"
        if len(op.inputs) != 1 or op.inputs[0] < 0 or len(op.outputs) != 1:
            raise ModelFormatError(f"{where} has {len(op.inputs)} inputs and {len(op.outputs)} outputs; it takes 1 and 1")
        src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
        if src.data is None and not (src.sparse and src.buffer > 0):
            raise ModelFormatError(f"{where} reads tensor {src.index} ('{src.name}'), which is not a constant: "
                                   "DENSIFY decodes stored (sparse) weights only")
        if tuple(src.shape) != tuple(dst.shape) or src.type_code != dst.type_code:
            raise ModelFormatError(f"{where}: input '{src.name}' is {src.type_name}{list(src.shape)} but output "
                                   f"'{dst.name}' is {dst.type_name}{list(dst.shape)}")


def _check_decoded_writers(p: str, sg: SubGraph) -> None:
    """A weight decoded from a constant (by DENSIFY / DEQUANTIZE) has no other writer: once folded into a
    constant, a second op writing it would write into the model's read-only weights."""
    decoded = _decoded_constants(sg)
    writers: dict[int, list[Operator]] = {}
    for op in sg.operators:
        for o in op.outputs:
            if o in decoded:
                writers.setdefault(o, []).append(op)
    for t, ops in writers.items():
        if len(ops) > 1:
            names = ", ".join(f"op {op.index} ({op.name})" for op in ops)
            raise ModelFormatError(f"{p}: {_where(sg)} tensor {t} ('{sg.tensors[t].name}') holds weights decoded "
                                   f"from a constant, but {len(ops)} ops write it: {names}")


def _decoded_constants(sg: SubGraph) -> set[int]:
    """Tensors that DENSIFY / DEQUANTIZE ops compute from constants (also chained): weights decoded at load."""
    out: set[int] = set()
    for op in sg.operators:  # decoders come before their readers; a chain is in order
        if op.name in ("DENSIFY", "DEQUANTIZE") and len(op.inputs) == 1 and op.inputs[0] >= 0 and op.outputs:
            src = sg.tensors[op.inputs[0]]
            if src.data is not None or src.index in out or (src.sparse and src.buffer > 0):
                out.update(o for o in op.outputs if o >= 0)
    return out


def _transpose_conv_bias_problem(sg: SubGraph, op: Operator) -> str | None:
    """What is wrong with a MediaPipe Convolution2DTransposeBias op (None when nothing is)."""
    if len(op.inputs) != 3 or min(op.inputs, default=-1) < 0 or len(op.outputs) != 1:
        return "it takes 3 inputs (input, weights, bias), all present, and gives 1 output"
    x, w, b = (sg.tensors[i] for i in op.inputs)
    y = sg.tensors[op.outputs[0]]
    for t, what in ((x, "input"), (w, "weights"), (b, "bias"), (y, "output")):
        if t.type_name != "FLOAT32":
            return f"the {what} '{t.name}' is {t.type_name}; it must be FLOAT32"
    decoded = _decoded_constants(sg)
    for t, what in ((w, "weights"), (b, "bias")):
        if t.data is None and t.index not in decoded:
            return f"the {what} '{t.name}' must be a constant (or decoded from one by DEQUANTIZE / DENSIFY)"
    if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
        return f"input {list(x.shape)}, weights {list(w.shape)} and output {list(y.shape)} must be 4-D"
    if w.shape[3] != x.shape[3] or y.shape[3] != w.shape[0] or b.num_elements != w.shape[0] or y.shape[0] != x.shape[0]:
        return (f"input {list(x.shape)}, weights {list(w.shape)}, bias {list(b.shape)} and output {list(y.shape)} "
                "do not fit together")
    raw = op.custom_options
    if raw is None or raw.size < 12:
        return "the custom options (padding, stride_width, stride_height) are missing"
    padding, sw, sh = (int(v) for v in np.asarray(raw[:12]).view("<i4"))
    if padding not in (1, 2):
        return f"padding code {padding} is neither SAME (1) nor VALID (2)"
    if not (0 < sw <= MAX_TRANSPOSE_STRIDE and 0 < sh <= MAX_TRANSPOSE_STRIDE):
        return f"strides {sh}x{sw} (HxW) are not between 1 and {MAX_TRANSPOSE_STRIDE}"
    h, wd, kh, kw = x.shape[1], x.shape[2], w.shape[1], w.shape[2]
    want = (h * sh, wd * sw) if padding == 1 else ((h - 1) * sh + kh, (wd - 1) * sw + kw)
    if tuple(y.shape[1:3]) != want:
        return f"output {y.shape[1]}x{y.shape[2]} (HxW) is not the {want[0]}x{want[1]} its padding and strides give"
    return None


def _check_transpose_conv_bias(p: str, sg: SubGraph) -> None:
    """MediaPipe's custom Convolution2DTransposeBias: inputs, types, shapes and raw options LiteRT's kernel reads."""
    for op in sg.operators:
        if op.name != "Convolution2DTransposeBias":
            continue
        why = _transpose_conv_bias_problem(sg, op)
        if why is not None:
            # an op the model cannot run, as LiteRT's and micro's kernels have always refused it
            raise UnsupportedModelError(f"{p}: {_where(sg)} op {op.index} (Convolution2DTransposeBias): {why}")


def integer_div_hazard(model: TFLiteModel) -> str | None:
    """One line naming the first integer DIV LiteRT can fail to run, and what to run instead; None when none can.

    LiteRT's integer DIV kernels fail the invoke when a divisor value equals the divisor's zero point
    (:data:`DIV_CODE`). A constant divisor is safe when none of its values is that zero point; a divisor computed
    at run time (an input or another op's output) can hold it on some input. The micro backend runs these models
    and returns a value (tflite-micro too, not always the same one).
    """
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcode.builtin_code != DIV_CODE or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            d = sg.tensors[op.inputs[1]]
            if d.type_code not in QUANT_TYPES:
                continue
            zp = int(d.quantization.zero_point.reshape(-1)[0]) if d.quantization is not None and \
                d.quantization.zero_point.size else 0
            if d.data is None:
                why = (f"its divisor is the {d.type_name} activation {d.index} ('{d.name}'), which holds its zero point "
                       f"({zp}) whenever its value rounds to 0")
            elif np.any(np.asarray(d.data).reshape(-1) == zp):
                why = f"its constant {d.type_name} divisor {d.index} ('{d.name}') holds its zero point ({zp})"
            else:
                continue
            return (f"{model.path}: {_where(sg)} operator {op.index} (DIV): {why}; LiteRT's integer DIV fails on such "
                    "a division by zero, where the micro backend (backend='micro') returns a value")
    return None

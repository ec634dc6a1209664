"""The converter's one graph form: an NHWC float graph of ops with float weights.

Both importers (ONNX, TFLite) produce a :class:`Graph`; quantization and both
writers consume it. Conventions, chosen to match TFLite so the TFLite writer is
a direct mapping:

- 4-D activations are NHWC; other ranks keep the source model's layout (importers insert
  TRANSPOSE/RESHAPE where the source layout matters, and :func:`simplify` cancels what it can);
- ``CONV_2D`` weights are ``[out, kh, kw, in]``; ``DEPTHWISE_CONV_2D`` weights are
  ``[1, kh, kw, in * multiplier]``; ``FULLY_CONNECTED`` weights are ``[out, in]``;
  biases are float ``[out]`` (always present: importers add zeros);
- spatial ops carry explicit padding ``pads = (top, left, bottom, right)``;
  :func:`padding_mode` tells whether those are TFLite's SAME or VALID;
- ``act`` is the fused activation: ``NONE``, ``RELU``, ``RELU6`` or ``RELU_N1_TO_1``.

Op kinds and their attributes (names and semantics are TFLite's builtins):

================================  ==============================================================
``CONV_2D``                       inputs (x, w, b); stride, dilation, pads, act
``DEPTHWISE_CONV_2D``             inputs (x, w, b); stride, dilation, pads, act, multiplier
``FULLY_CONNECTED``               inputs (x, w, b); act
``TRANSPOSE_CONV``                inputs (x, w [out, kh, kw, in], b); stride; VALID, output = (in-1)*s+k
``AVERAGE_POOL_2D``               inputs (x,); kernel, stride, pads, act
``MAX_POOL_2D``                   inputs (x,); kernel, stride, pads, act
``ADD``, ``SUB``, ``MUL``         inputs (a, b), numpy broadcasting, either may be constant; act
``DIV``                           inputs (a, b); act
``MAXIMUM``, ``MINIMUM``          inputs (a, b), broadcasting; shared quantization
``SQUARED_DIFFERENCE``            inputs (a, b)
``RELU``, ``RELU6``,              inputs (x,)
``RELU_N1_TO_1``, ``HARD_SWISH``
``LOGISTIC``, ``TANH``
``EXP``, ``LOG``, ``SQRT``,       inputs (x,)
``RSQRT``, ``ABS``, ``ELU``,
``FLOOR``, ``CEIL``, ``ROUND``,
``SIN``, ``COS``
``GELU``                          inputs (x,); approximate (bool)
``LEAKY_RELU``                    inputs (x,); alpha
``PRELU``                         inputs (x, alpha) with alpha constant, broadcast to x
``RESHAPE``                       inputs (x,); the output tensor's shape is the new shape
``TRANSPOSE``                     inputs (x,); perm
``PAD``                           inputs (x,); pads as ((before, after), ...) per dimension
``PADV2``                         inputs (x,); pads, value (a float; ``-inf`` pads with the lowest value)
``MIRROR_PAD``                    inputs (x,); pads, mode (``REFLECT`` or ``SYMMETRIC``)
``CONCATENATION``                 inputs (x1, x2, ...) (constants allowed); axis, act
``STRIDED_SLICE``                 inputs (x,); begin, end, strides (one per dimension, normalised),
                                  end_mask (bit d: slice a negative-stride axis d through index 0)
``GATHER``                        inputs (x, indices) with integer constant indices; axis; or inputs
                                  (table, indices) with a constant float table and int32 index
                                  activations (an embedding lookup); the output shares the table's
                                  quantization
``MEAN``, ``SUM``, ``REDUCE_MAX``  inputs (x,); axes, keep_dims
``SOFTMAX``                       inputs (x,); beta (over the last axis)
``LOG_SOFTMAX``                   inputs (x,) (over the last axis)
``RESIZE_BILINEAR``,              inputs (x,); align_corners, half_pixel_centers; the output
``RESIZE_NEAREST_NEIGHBOR``       tensor's shape gives the new size
``BATCH_MATMUL``                  inputs (a, b); numpy ``matmul`` semantics
``DEPTH_TO_SPACE``,               inputs (x,); block_size (TensorFlow's channel order, ONNX's DCR)
``SPACE_TO_DEPTH``
``ARG_MAX``, ``ARG_MIN``          inputs (x,); axis; the output is an int32 index tensor (see
                                  :func:`integer_tensors`), never quantized
``EQUAL``, ``NOT_EQUAL``,         inputs (a, b), broadcasting, either may be constant; the output is
``GREATER``, ``GREATER_EQUAL``,   a bool tensor (see :func:`unquantized_tensors`)
``LESS``, ``LESS_EQUAL``
``LOGICAL_AND``, ``LOGICAL_OR``,  bool inputs (a, b) or (a,); bool output
``LOGICAL_NOT``
``SELECT_V2``                     inputs (condition (bool), a, b), broadcasting; a, b and the output
                                  share quantization parameters
``CUMSUM``                        inputs (x,); axis, exclusive, reverse
``TOPK_V2``                        inputs (x,); k; outputs (values, indices): the k largest along the last
                                  axis, descending, ties by the lower index; values share x's
                                  quantization, indices are int32 (see :func:`unquantized_tensors`)
``GATHER_ND``                     inputs (x, indices) with integer constant indices (TensorFlow's
                                  semantics, no batch dimensions); shares x's quantization; or inputs
                                  (table, indices) with a constant float table and int32 index tuples
``FLOOR_DIV``, ``FLOOR_MOD``      inputs (a, b), broadcasting: int32 index activations and integer constants only
                                  (TFLite's floor division and the remainder with the divisor's sign); ``ADD``,
                                  ``SUB`` and ``MUL`` of int32 activations and integer constants are int32 too
                                  (see :func:`computes_integers`)
``CAST``                          inputs (x,) int32 indices; a float activation of the same values (TFLite's
                                  CAST int32 -> float32), quantized like any other
``DETECTION_POSTPROCESS``         inputs (box encodings, class scores, anchors constant); four float
                                  outputs (boxes, classes, scores, count); options (dict),
                                  custom_options (the FlexBuffers bytes): TFLite_Detection_PostProcess,
                                  run in float (see :func:`float_output_tensors`)
================================  ==============================================================

Integer graph inputs (token ids) stay int32: RESHAPE, STRIDED_SLICE and CONCATENATION (with integer
constants) select from them into int32 tensors (:func:`selects_integers`), which only index tables.

Constant tensors other than the weights and biases of ``CONV_2D``, ``DEPTHWISE_CONV_2D``,
``FULLY_CONNECTED`` and ``TRANSPOSE_CONV`` are *operands*: float operands are quantized like
activations (per tensor), integer ones (``GATHER`` indices) are written as int32.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from converters.layout_constants import channel_vector, inverse_perm, permuted_operand

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH", "EXP", "LOG", "SQRT", "RSQRT",
         "ABS", "GELU", "LEAKY_RELU", "ELU",
         "FLOOR", "CEIL", "ROUND", "SIN", "COS")
BINARY = ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE")
#: Ops whose output is an int32 index tensor (not a quantized activation).
INDEX_KINDS = ("ARG_MAX", "ARG_MIN")
#: Ops LiteRT runs but TFLite Micro has no kernel for: the converter refuses them on profiles that run TFLM
#: (FLOOR_DIV and FLOOR_MOD are written on int32 indices only, and TFLM's kernels are float32 only).
LITERT_ONLY_KINDS = ("TOPK_V2", "FLOOR_DIV", "FLOOR_MOD")
#: Arithmetic the importers write on int32 index activations (with integer constants): int32 in and out, never
#: quantized (:func:`computes_integers`); ADD, SUB and MUL also exist on quantized activations.
INT_ARITH_KINDS = ("ADD", "SUB", "MUL", "FLOOR_DIV", "FLOOR_MOD")
#: Ops whose output is a bool tensor (not a quantized activation).
COMPARE_KINDS = ("EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL")
LOGICAL_KINDS = ("LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT")
OP_KINDS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "PRELU", "RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD", "CONCATENATION", "STRIDED_SLICE", "GATHER",
    "MEAN", "SUM", "REDUCE_MAX", "SOFTMAX", "LOG_SOFTMAX", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "BATCH_MATMUL",
    "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "ARG_MAX", "ARG_MIN", "DETECTION_POSTPROCESS", "SELECT_V2",
    "CUMSUM", "GATHER_ND", "TOPK_V2", "FLOOR_DIV", "FLOOR_MOD", "CAST",
) + UNARY + BINARY + COMPARE_KINDS + LOGICAL_KINDS
#: Ops whose outputs are stored as they are (int32 or bool), never quantized.
RAW_OUTPUT_KINDS = INDEX_KINDS + COMPARE_KINDS + LOGICAL_KINDS
#: Ops that run in float and whose outputs stay float32 in the int8 model (TFLite Micro's kernel is float only).
FLOAT_OUTPUT_KINDS = ("DETECTION_POSTPROCESS",)
#: Ops whose first input is the activation and whose inputs 1.. are constant weights/bias.
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


@dataclass
class Tensor:
    """A tensor: name, static shape, and float data for constants (``None`` for activations)."""

    name: str
    shape: tuple[int, ...]
    data: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def is_constant(self) -> bool:
        """True for weights and biases."""
        return self.data is not None


@dataclass
class Op:
    """One operation. ``name`` is the source node's name, kept for messages and reports."""

    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def act(self) -> str:
        """The fused activation (``NONE`` when there is none)."""
        return self.attrs.get("act", "NONE")


@dataclass
class Graph:
    """A float model in NHWC form.

    ``input_layouts`` records, per graph input, the layout the source model took
    (``NCHW`` for ONNX image inputs), so writers and data loaders can accept data
    the way the user's model did.
    """

    name: str
    tensors: dict[str, Tensor]
    ops: list[Op]
    inputs: list[str]
    outputs: list[str]
    input_layouts: dict[str, str] = field(default_factory=dict)
    source_format: str = ""
    #: integer graph inputs (token ids, bytes, indices) -> the source model's dtype (``int64``, ``int32``, ...);
    #: they are int32 in the IR and never quantized (see :func:`unquantized_tensors`)
    input_dtypes: dict[str, str] = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor:
        """The tensor called ``name``."""
        return self.tensors[name]

    def producers(self) -> dict[str, Op]:
        """Map tensor name -> op that writes it."""
        return {o: op for op in self.ops for o in op.outputs}

    def consumers(self) -> dict[str, list[Op]]:
        """Map tensor name -> ops that read it."""
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                out.setdefault(i, []).append(op)
        return out

    def activations(self) -> list[str]:
        """Non-constant tensors in execution order: graph inputs first, then op outputs."""
        seen: list[str] = list(self.inputs)
        for op in self.ops:
            seen.extend(o for o in op.outputs if o not in seen)
        return seen

    def op_counts(self) -> dict[str, int]:
        """How many ops of each kind."""
        c: dict[str, int] = {}
        for op in self.ops:
            c[op.kind] = c.get(op.kind, 0) + 1
        return c

    def source_shape(self, name: str) -> tuple[int, ...]:
        """Shape of graph input ``name`` in the source model's layout."""
        shape = self.tensors[name].shape
        if self.input_layouts.get(name) == "NCHW" and len(shape) == 4:
            n, h, w, c = shape
            return (n, c, h, w)
        return shape

    def to_ir_layout(self, name: str, x: np.ndarray) -> np.ndarray:
        """Convert a batch of data for input ``name`` from the source layout to NHWC."""
        if self.input_layouts.get(name) == "NCHW" and x.ndim == 4:
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return x


#: Ops that only select elements of their inputs: an integer input gives an integer output (CONCATENATION: of
#: integer activations and integer constants). TFLite Micro runs these on int32; its GATHER and TRANSPOSE do not
#: (the ONNX importer selects integers at constant positions with STRIDED_SLICEs and a CONCATENATION instead).
INDEX_SELECT_KINDS = ("RESHAPE", "STRIDED_SLICE", "CONCATENATION")


def selects_integers(graph: Any, op: Op, ints: "set[str] | dict[str, str]") -> Optional[str]:
    """The integer activation (one of ``ints``) whose values ``op`` selects into its output, or None: a RESHAPE
    or STRIDED_SLICE of one, or a CONCATENATION of integer activations (at least one) and integer constants (BOS
    tokens, padding ids). ``graph``: a :class:`Graph`, or anything with its ``tensors``."""
    if op.kind not in INDEX_SELECT_KINDS or not op.inputs:
        return None
    if op.kind == "CONCATENATION":
        acts = [i for i in op.inputs if not graph.tensors[i].is_constant]
        consts_int = all(graph.tensors[i].data.dtype.kind in "iu" for i in op.inputs if graph.tensors[i].is_constant)
        if acts and consts_int and all(i in ints for i in acts):
            return acts[0]
        return None
    return op.inputs[0] if op.inputs[0] in ints else None


#: Ops that gather int32 values (input 0) by int32 indices (input 1) into an int32 output
#: (:func:`gathers_integers`). LiteRT runs them on int32; TFLite Micro does not (its GATHER and GATHER_ND take
#: float32 and int8 data only), so profiles that run it refuse them (:func:`converters.pipeline`).
INT_GATHER_KINDS = ("GATHER", "GATHER_ND")


def gathers_integers(graph: Any, op: Op, ints: "set[str] | dict[str, str]") -> bool:
    """True when ``op`` is a GATHER/GATHER_ND of int32 activation data (input 0 in ``ints``) by int32 indices (an
    activation in ``ints``, or integer constants): its output holds int32 values (TopK/ArgMax positions picked by
    other positions). ``graph``: a :class:`Graph`, or anything with its ``tensors``."""
    if op.kind not in INT_GATHER_KINDS or len(op.inputs) < 2 or op.inputs[0] not in ints:
        return False
    ind = graph.tensors[op.inputs[1]]
    return op.inputs[1] in ints if not ind.is_constant else ind.data.dtype.kind in "iu"


def computes_integers(graph: Any, op: Op, ints: "set[str] | dict[str, str]") -> bool:
    """True when ``op`` is integer arithmetic (:data:`INT_ARITH_KINDS`) whose activations are all int32 (in
    ``ints``) and whose constants are all integer arrays: its output is int32. ``graph``: a :class:`Graph`, or
    anything with its ``tensors``."""
    if op.kind not in INT_ARITH_KINDS:
        return False
    acts = [i for i in op.inputs if not graph.tensors[i].is_constant]
    consts = [graph.tensors[i].data for i in op.inputs if graph.tensors[i].is_constant]
    return bool(acts) and all(i in ints for i in acts) and all(c.dtype.kind in "iu" for c in consts)


def produces_integers(graph: Any, op: Op, ints: "set[str] | dict[str, str]") -> bool:
    """True when ``op`` writes int32 values from the int32 activations in ``ints``: it selects them
    (:func:`selects_integers`), computes on them (:func:`computes_integers`) or gathers them
    (:func:`gathers_integers`). ``graph``: a :class:`Graph`, or anything with its ``tensors``."""
    return selects_integers(graph, op, ints) is not None or computes_integers(graph, op, ints) \
        or gathers_integers(graph, op, ints)


def unquantized_tensors(graph: "Graph") -> dict[str, str]:
    """Activations stored as they are, by type: ``int32`` indices (integer graph inputs,
    :data:`INDEX_KINDS`, what :func:`selects_integers` selects from them, what :func:`computes_integers`
    computes from them and what :func:`gathers_integers` gathers from them), ``bool`` masks
    (:data:`COMPARE_KINDS`, :data:`LOGICAL_KINDS`), and RESHAPEs of them."""
    found: dict[str, str] = {name: "int32" for name in graph.input_dtypes}
    ints = set(found)
    for op in graph.ops:
        if op.kind in RAW_OUTPUT_KINDS:
            found.update({o: "int32" if op.kind in INDEX_KINDS else "bool" for o in op.outputs})
        elif op.kind == "TOPK_V2":  # values keep the input's parameters; the indices are int32
            found[op.outputs[1]] = "int32"
        elif op.kind == "RESHAPE" and op.inputs and op.inputs[0] in found:
            found.update({o: found[op.inputs[0]] for o in op.outputs})
        elif produces_integers(graph, op, ints):
            found.update({o: "int32" for o in op.outputs})
        ints.update(o for o in op.outputs if found.get(o) == "int32")
    return found


def integer_tensors(graph: "Graph") -> set[str]:
    """Activations holding int32 indices: integer graph inputs, outputs of :data:`INDEX_KINDS` ops and TopK's
    indices, and what :func:`produces_integers` writes from them."""
    return {t for t, d in unquantized_tensors(graph).items() if d == "int32"}


def integer_input_roots(graph: "Graph") -> dict[str, str]:
    """Each integer graph input, and each tensor selected from one (RESHAPEs, slices, CONCATENATIONs with
    integer constants: :func:`selects_integers`, through any chain), mapped to the name of
    the graph input its values come from (the first integer input of a CONCATENATION)."""
    roots = {name: name for name in graph.input_dtypes}
    for op in graph.ops:  # graph order is topological
        src = selects_integers(graph, op, roots)
        if src is not None:
            roots.update({o: roots[src] for o in op.outputs})
    return roots


#: Ops that read int32 index activations at run time: (kind, input position of the indices)
INDEX_LOOKUPS = (("GATHER", 1), ("GATHER_ND", 1))


def index_limits(graph: "Graph") -> dict[str, int]:
    """For each integer graph input: the number of rows of the smallest table it indexes (valid indices are
    ``0 .. limit - 1``), following :func:`integer_input_roots` to the GATHERs (and GATHER_NDs: the smallest of
    the indexed dimensions) that read it."""
    roots = integer_input_roots(graph)
    limits: dict[str, int] = {}
    for op in graph.ops:
        if len(op.inputs) < 2 or op.inputs[1] not in roots or (op.kind, 1) not in INDEX_LOOKUPS:
            continue
        table = graph.tensors[op.inputs[0]]
        if op.kind == "GATHER":
            rows = int(table.shape[int(op.attrs.get("axis", 0))])
        else:
            rows = _tuple_limit(graph, op, roots)
        root = roots[op.inputs[1]]
        limits[root] = min(limits.get(root, rows), rows)
    return limits


def _tuple_limit(graph: "Graph", op: Op, roots: dict[str, str]) -> int:
    """The size of the smallest table dimension a GATHER_ND's integer-input values index: the dimensions of
    the tuple positions they fill when the tuples are a CONCATENATION along the last axis (integer values next
    to constant coordinates), else every indexed dimension."""
    table, ind = graph.tensors[op.inputs[0]], op.inputs[1]
    depth = int(graph.tensors[ind].shape[-1])
    cat = graph.producers().get(ind)
    if cat is None or cat.kind != "CONCATENATION" or int(cat.attrs.get("axis", -1)) % len(graph.tensors[ind].shape) \
            != len(graph.tensors[ind].shape) - 1:
        return int(min(table.shape[:depth]))
    dims, start = [], 0
    for part in cat.inputs:
        width = int(graph.tensors[part].shape[-1])
        if part in roots:
            dims.extend(table.shape[start:start + width])
        start += width
    return int(min(dims)) if dims else int(min(table.shape[:depth]))


def float_output_tensors(graph: "Graph") -> set[str]:
    """Activations that stay float32 in the int8 model: the outputs of :data:`FLOAT_OUTPUT_KINDS` ops."""
    return {o for op in graph.ops if op.kind in FLOAT_OUTPUT_KINDS for o in op.outputs}


def same_pads(in_hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """TFLite's SAME padding ``(top, left, bottom, right)`` for an input of size ``in_hw``."""
    pads = []
    for i in range(2):
        out = -(-in_hw[i] // stride[i])
        eff_k = (kernel[i] - 1) * dilation[i] + 1
        total = max((out - 1) * stride[i] + eff_k - in_hw[i], 0)
        pads.append((total // 2, total - total // 2))
    return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])


def padding_mode(pads: tuple[int, int, int, int], in_hw: tuple[int, int], kernel: tuple[int, int],
                 stride: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> Optional[str]:
    """``'VALID'`` or ``'SAME'`` when ``pads`` equals one of them, else ``None``."""
    if all(p == 0 for p in pads):
        return "VALID"
    if tuple(pads) == same_pads(in_hw, kernel, stride, dilation):
        return "SAME"
    return None


def conv_out(size: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + p0 + p1 - ((k - 1) * d + 1)) // s + 1


#: TFLite Micro's CONCATENATION takes at most this many inputs
MAX_CONCAT_INPUTS = 10


def _split_concat(graph: Graph, op: Op) -> list[Op]:
    """A CONCATENATION of more than :data:`MAX_CONCAT_INPUTS` inputs as a tree of smaller ones."""
    axis = op.attrs["axis"]
    ins = list(op.inputs)
    out: list[Op] = []
    level = 0
    while len(ins) > MAX_CONCAT_INPUTS:
        grouped = []
        for k in range(0, len(ins), MAX_CONCAT_INPUTS):
            chunk = ins[k:k + MAX_CONCAT_INPUTS]
            if len(chunk) == 1:
                grouped.append(chunk[0])
                continue
            shape = list(graph.tensors[chunk[0]].shape)
            shape[axis] = sum(graph.tensors[c].shape[axis] for c in chunk)
            name = f"{op.outputs[0]}/concat{level}_{k}"
            graph.tensors[name] = Tensor(name, tuple(shape))
            out.append(Op("CONCATENATION", chunk, [name], {"axis": axis, "act": "NONE"}, name=f"{op.name}/part"))
            grouped.append(name)
        ins = grouped
        level += 1
    op.inputs = ins
    return out + [op]


#: TFLite Micro's STRIDED_SLICE handles at most this many dimensions
MAX_SLICE_RANK = 4


def _collapse_slice(graph: Graph, op: Op) -> list[Op]:
    """A STRIDED_SLICE of a tensor of rank > 4 as RESHAPE, a slice of rank <= 4, RESHAPE, by merging
    each sliced (stride 1) dimension with the untouched dimensions after it."""
    shape = graph.tensors[op.inputs[0]].shape
    a = op.attrs
    groups: list[list[int]] = []
    for d, size in enumerate(shape):
        full = a["begin"][d] == 0 and a["end"][d] == size and a["strides"][d] == 1 and not (a.get("end_mask", 0) >> d) & 1
        if groups and full and a["strides"][groups[-1][0]] == 1:
            groups[-1].append(d)
        else:
            groups.append([d])
    if len(groups) > MAX_SLICE_RANK or any(a["strides"][g[0]] != 1 for g in groups if len(g) > 1):
        return [op]
    merged, begin, end, strides = [], [], [], []
    for g in groups:
        inner = int(np.prod([shape[d] for d in g[1:]])) if len(g) > 1 else 1
        merged.append(int(np.prod([shape[d] for d in g])))
        begin.append(a["begin"][g[0]] * inner)
        end.append(a["end"][g[0]] * inner)
        strides.append(a["strides"][g[0]])
    end_mask = sum(1 << k for k, g in enumerate(groups) if (a.get("end_mask", 0) >> g[0]) & 1)
    out_shape = graph.tensors[op.outputs[0]].shape
    sliced = tuple(len(range(b, e if not (end_mask >> k) & 1 else -1, s_))
                   for k, (b, e, s_) in enumerate(zip(begin, end, strides)))
    flat_in, flat_out = f"{op.outputs[0]}/collapsed_in", f"{op.outputs[0]}/collapsed_out"
    graph.tensors[flat_in] = Tensor(flat_in, tuple(merged))
    graph.tensors[flat_out] = Tensor(flat_out, sliced)
    if int(np.prod(sliced)) != int(np.prod(out_shape)):
        return [op]
    return [Op("RESHAPE", [op.inputs[0]], [flat_in], {}, name=f"{op.name}/collapse"),
            Op("STRIDED_SLICE", [flat_in], [flat_out], {"begin": tuple(begin), "end": tuple(end),
                                                         "strides": tuple(strides), "end_mask": end_mask},
               name=op.name),
            Op("RESHAPE", [flat_out], [op.outputs[0]], {}, name=f"{op.name}/expand")]


#: TFLite Micro's TRANSPOSE handles at most this many dimensions
MAX_TRANSPOSE_RANK = 5


def _collapse_transpose(graph: Graph, op: Op) -> list[Op]:
    """A TRANSPOSE of rank > 5 as RESHAPE, a lower-rank TRANSPOSE, RESHAPE: size-1 axes are dropped
    and input axes that stay adjacent and in order in the output are merged (a Swin window
    partition's 6-D permute becomes 4-D)."""
    shape = graph.tensors[op.inputs[0]].shape
    perm = tuple(op.attrs["perm"])
    keep = [d for d in range(len(shape)) if shape[d] != 1]
    rank_of = {d: k for k, d in enumerate(keep)}
    p = [rank_of[d] for d in perm if d in rank_of]
    runs: list[list[int]] = []
    for d in p:
        if runs and d == runs[-1][-1] + 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    if len(runs) <= 1:  # only size-1 axes move: a reshape
        return [Op("RESHAPE", list(op.inputs), list(op.outputs), {}, name=op.name)]
    if len(runs) > MAX_TRANSPOSE_RANK:
        return [op]
    by_input = sorted(runs, key=lambda r: r[0])
    merged_in = tuple(int(np.prod([shape[keep[d]] for d in r])) for r in by_input)
    new_perm = tuple(by_input.index(r) for r in runs)
    merged_out = tuple(merged_in[i] for i in new_perm)
    flat_in, flat_out = f"{op.outputs[0]}/collapsed_in", f"{op.outputs[0]}/collapsed_out"
    graph.tensors[flat_in] = Tensor(flat_in, merged_in)
    graph.tensors[flat_out] = Tensor(flat_out, merged_out)
    return [Op("RESHAPE", [op.inputs[0]], [flat_in], {}, name=f"{op.name}/collapse"),
            Op("TRANSPOSE", [flat_in], [flat_out], {"perm": new_perm}, name=op.name),
            Op("RESHAPE", [flat_out], [op.outputs[0]], {}, name=f"{op.name}/expand")]


def legalize(graph: Graph) -> Graph:
    """Rewrite what TFLite (or TFLite Micro) cannot express directly.

    Padding that is neither SAME nor VALID becomes an explicit ``PAD`` (``PADV2`` with the lowest
    value before max pooling); this also covers average pooling that counts padding (ONNX's
    ``count_include_pad=1``, which equals zero padding followed by a VALID pool). Concatenations of
    more than :data:`MAX_CONCAT_INPUTS` tensors become a tree; slices and transposes of more
    dimensions than TFLite Micro handles are rewritten on merged axes. Both writers run the
    legalized graph, so they stay identical.
    """
    new_ops: list[Op] = []
    for op in graph.ops:
        if op.kind == "CONCATENATION" and len(op.inputs) > MAX_CONCAT_INPUTS:
            new_ops.extend(_split_concat(graph, op))
            continue
        if op.kind == "STRIDED_SLICE" and len(graph.tensors[op.inputs[0]].shape) > MAX_SLICE_RANK:
            new_ops.extend(_collapse_slice(graph, op))
            continue
        if op.kind == "TRANSPOSE" and len(graph.tensors[op.inputs[0]].shape) > MAX_TRANSPOSE_RANK:
            new_ops.extend(_collapse_transpose(graph, op))
            continue
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D"):
            x = graph.tensors[op.inputs[0]]
            if op.kind in WEIGHTED:
                w = graph.tensors[op.inputs[1]].data
                kernel = (w.shape[1], w.shape[2])
            else:
                kernel = tuple(op.attrs["kernel"])
            mode = padding_mode(op.attrs["pads"], x.shape[1:3], kernel, op.attrs["stride"],
                                op.attrs.get("dilation", (1, 1)))
            needs_pad = mode is None or (op.kind == "AVERAGE_POOL_2D" and mode == "SAME"
                                         and op.attrs.get("count_include_pad", False))
            if needs_pad:
                t, l, b, r = op.attrs["pads"]
                padded = f"{op.inputs[0]}/pad_for/{op.name or len(new_ops)}"
                n, h, w_, c = x.shape
                graph.tensors[padded] = Tensor(padded, (n, h + t + b, w_ + l + r, c))
                pads = ((0, 0), (t, b), (l, r), (0, 0))
                if op.kind == "MAX_POOL_2D":  # max pooling ignores padding: pad with the lowest value
                    new_ops.append(Op("PADV2", [op.inputs[0]], [padded], {"pads": pads, "value": float("-inf")},
                                      name=f"{op.name}/pad"))
                else:
                    new_ops.append(Op("PAD", [op.inputs[0]], [padded], {"pads": pads}, name=f"{op.name}/pad"))
                op.inputs = [padded] + op.inputs[1:]
                op.attrs = dict(op.attrs, pads=(0, 0, 0, 0))
        new_ops.append(op)
    graph.ops = new_ops
    return graph


def fuse_activations(graph: Graph) -> Graph:
    """Fold standalone RELU/RELU6 ops into the op before them when that op can carry a fused activation."""
    fusable = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "AVERAGE_POOL_2D",
               "MAX_POOL_2D")  # LiteRT's int8 CONCATENATION refuses a fused activation
    changed = True
    while changed:
        changed = False
        producers = graph.producers()
        consumers = graph.consumers()
        for op in list(graph.ops):
            if op.kind not in ("RELU", "RELU6"):
                continue
            src = op.inputs[0]
            prev = producers.get(src)
            if (prev is not None and prev.kind == "CONCATENATION" and len(consumers.get(src, [])) == 1
                    and src not in graph.outputs and _fuse_into_concat_inputs(graph, prev, op.kind)):
                prev.outputs = [op.outputs[0]]
                graph.ops.remove(op)
                graph.tensors.pop(src, None)
                changed = True
                break
            if (prev is None or prev.kind not in fusable or prev.act != "NONE"
                    or len(consumers.get(src, [])) != 1 or src in graph.outputs):
                continue
            prev.attrs["act"] = op.kind
            prev.outputs = [op.outputs[0]]
            graph.ops.remove(op)
            graph.tensors.pop(src, None)
            changed = True
            break
    return graph


def _fuse_into_concat_inputs(graph: Graph, concat: Op, act: str) -> bool:
    """Move an activation after a CONCATENATION into the ops producing its inputs (e.g. a grouped
    convolution split per group), when every input comes from an op that can carry it."""
    fusable = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL")
    producers = graph.producers()
    consumers = graph.consumers()
    prods = [producers.get(i) for i in concat.inputs]
    if any(p is None or p.kind not in fusable or p.act != "NONE" or len(consumers.get(i, [])) != 1
           or i in graph.outputs for p, i in zip(prods, concat.inputs)):
        return False
    for p in prods:
        p.attrs["act"] = act
    return True


#: IR (NHWC) axes -> source (NCHW) axes and back, for 4-D tensors.
TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


def perm_keeps_order(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when transposing ``shape`` by ``perm`` only moves size-1 axes (a reshape would do)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def simplify(graph: Graph) -> Graph:
    """Clean up what importers emit: compose back-to-back TRANSPOSEs, turn order-keeping
    TRANSPOSEs into RESHAPEs, merge RESHAPE chains, drop identity ops and dead ops.

    TRANSPOSEs move down past elementwise ops (unary ones, binary ones with constant operands of any
    broadcastable shape, which are permuted to match, and binary ones whose two inputs are transposed
    alike: :func:`_sink_transpose`) until they meet the next TRANSPOSE and cancel (tf2onnx's
    NHWC<->NCHW pairs around batch norms written as Sub/Mul/Add); a per-channel ADD/SUB/MUL/DIV
    constant right after a convolution or fully-connected op is then folded into its weights and bias
    (:func:`_fold_channel_affine`)."""
    changed = True
    while changed:
        changed = False
        producers = graph.producers()
        consumers = graph.consumers()
        for op in graph.ops:
            src = op.inputs[0] if op.inputs else None
            prev = producers.get(src) if src else None
            single = src is not None and len(consumers.get(src, [])) == 1 and src not in graph.outputs
            if _sink_transpose(graph, op, producers, consumers):
                changed = True
                break
            if (prev is not None and prev.kind == "TRANSPOSE" and op.outputs[0] not in graph.outputs
                    and op.kind == "STRIDED_SLICE" and consumers.get(op.outputs[0])
                    and all(c.kind == "TRANSPOSE" for c in consumers[op.outputs[0]])):
                _move_transpose_below(graph, prev, op)  # it then meets (and cancels) the next TRANSPOSE
                changed = True
                break
            if _fold_channel_affine(graph, op, producers, consumers):
                changed = True
                break
            if op.kind == "TRANSPOSE":
                if prev is not None and prev.kind == "TRANSPOSE":  # the first stays for its other readers
                    op.attrs = dict(op.attrs, perm=tuple(prev.attrs["perm"][p] for p in op.attrs["perm"]))
                    op.inputs = [prev.inputs[0]]
                    changed = True
                    break
                if perm_keeps_order(graph.tensors[op.inputs[0]].shape, tuple(op.attrs["perm"])):
                    op.kind, op.attrs = "RESHAPE", {}
                    changed = True
                    break
            if op.kind == "MUL" and _scalar_mul(graph, op) is not None:
                src, value = _scalar_mul(graph, op)
                before = producers.get(src)
                inner = _scalar_mul(graph, before) if before is not None else None
                if (inner is not None and before.act == "NONE" and len(consumers.get(src, [])) == 1
                        and src not in graph.outputs):
                    name = f"{op.outputs[0]}/folded_scale"
                    graph.tensors[name] = Tensor(name, (1,), np.array([value * inner[1]], np.float32))
                    op.inputs = [inner[0], name]
                    changed = True
                    break
                if value == 1.0 and op.act == "NONE" and _replace_uses(graph, op):
                    changed = True
                    break
            if op.kind == "RESHAPE":
                if prev is not None and prev.kind == "RESHAPE" and single:
                    op.inputs = [prev.inputs[0]]
                    changed = True
                    break
                if (graph.tensors[op.inputs[0]].shape == graph.tensors[op.outputs[0]].shape
                        and _replace_uses(graph, op)):
                    changed = True
                    break
        if _drop_dead(graph):
            changed = True
    return graph


#: Ops that act on each element alone (with numpy broadcasting of a binary op's two inputs).
ELEMENTWISE = UNARY + BINARY


def _transposed_inputs(graph: Graph, op: Op, producers: dict[str, Op]) -> Optional[tuple[tuple[int, ...], list[Op]]]:
    """For an elementwise op: (perm, the TRANSPOSE ops writing its activation inputs) when every activation
    input is written by a TRANSPOSE by one and the same ``perm`` and every constant operand can be permuted
    to match (:func:`converters.layout_constants.permuted_operand`); else None."""
    if op.kind not in ELEMENTWISE or not op.outputs or len(op.inputs) != (1 if op.kind in UNARY else 2):
        return None
    perm: Optional[tuple[int, ...]] = None
    found: list[Op] = []
    for name in op.inputs:
        t = graph.tensors[name]
        if t.is_constant:
            continue
        p = producers.get(name)
        if p is None or p.kind != "TRANSPOSE":
            return None
        if perm is not None and tuple(p.attrs["perm"]) != perm:
            return None
        perm = tuple(p.attrs["perm"])
        if p not in found:
            found.append(p)
    if perm is None:
        return None
    out_rank = len(graph.tensors[op.outputs[0]].shape)
    for name in op.inputs:
        t = graph.tensors[name]
        if t.is_constant and (t.data.dtype.kind != "f" or permuted_operand(t.data, perm) is None
                              or len(perm) != out_rank):
            return None
    return perm, found


def _sink_transpose(graph: Graph, op: Op, producers: dict[str, Op], consumers: dict[str, list[Op]]) -> bool:
    """``op(TRANSPOSE_p(x), c)`` -> ``TRANSPOSE_p(op(x, c'))`` (and ``op(T_p(a), T_p(b))`` ->
    ``T_p(op(a, b))``) for an elementwise ``op``, so the TRANSPOSE moves down toward the next one.

    Done when it cannot add a TRANSPOSE: an input TRANSPOSE is read by ``op`` alone (it goes), or every
    reader of ``op``'s output is a TRANSPOSE (the moved one composes with them at once). Constant operands
    of any broadcastable shape are permuted (``c'``); True when the graph changed.
    """
    if not op.outputs or op.outputs[0] in graph.outputs:
        return False
    if op.kind in REDUCE_KINDS:
        return _sink_transpose_below_reduce(graph, op, producers, consumers)
    found = _transposed_inputs(graph, op, producers)
    if found is None:
        return False
    perm, transposes = found
    sole = [t for t in transposes if t.outputs[0] not in graph.outputs
            and all(c is op for c in consumers.get(t.outputs[0], []))]
    readers = consumers.get(op.outputs[0], [])
    if not sole and not (readers and all(c.kind == "TRANSPOSE" for c in readers)) and not all(
            _region_ends_in_transposes(graph, t.outputs[0], perm, producers, consumers) for t in transposes):
        return False
    acts = [i for i in op.inputs if not graph.tensors[i].is_constant]
    if len(transposes) == 1 and sole and len(set(acts)) == 1:
        _swap_with_transpose(graph, transposes[0], op)
    else:
        _move_transpose_below(graph, transposes[0], op, [t.outputs[0] for t in transposes])
    return True


#: Reductions over ``axes`` (with ``keep_dims``) a TRANSPOSE can move below.
REDUCE_KINDS = ("MEAN", "SUM", "REDUCE_MAX")


def _sink_transpose_below_reduce(graph: Graph, op: Op, producers: dict[str, Op],
                                 consumers: dict[str, list[Op]]) -> bool:
    """``REDUCE(TRANSPOSE_p(x), axes)`` -> ``TRANSPOSE_q(REDUCE(x, p[axes]))`` when the TRANSPOSE is read by
    this op alone: ``q`` is ``p`` with keep_dims, else the order ``p`` gives the kept axes (no TRANSPOSE when
    that is the identity; one that moves only size-1 axes becomes a RESHAPE). True when the graph changed."""
    t = producers.get(op.inputs[0])
    if (t is None or t.kind != "TRANSPOSE" or t.outputs[0] in graph.outputs
            or any(c is not op for c in consumers.get(t.outputs[0], []))):
        return False
    perm = tuple(t.attrs["perm"])
    rank = len(perm)
    axes = sorted({int(a) % rank for a in op.attrs.get("axes", ())})
    if not axes:
        return False
    keep = bool(op.attrs.get("keep_dims", False))
    kept = [perm[i] for i in range(rank) if keep or i not in axes]
    q = tuple(perm) if keep else tuple(sorted(kept).index(v) for v in kept)
    out = op.outputs[0]
    out_shape = graph.tensors[out].shape
    op.inputs = [t.inputs[0]] + op.inputs[1:]
    op.attrs = dict(op.attrs, axes=tuple(sorted(perm[a] for a in axes)))
    if q == tuple(range(len(q))):
        return True
    mid = f"{out}/before_transpose"
    while mid in graph.tensors:
        mid += "_"
    graph.tensors[mid] = Tensor(mid, tuple(out_shape[i] for i in inverse_perm(q)))
    op.outputs = [mid]
    graph.ops.insert(graph.ops.index(op) + 1, Op("TRANSPOSE", [mid], [out], {"perm": q}, name=f"{op.name}/transpose"))
    return True


#: Most tensors :func:`_region_ends_in_transposes` looks at from one TRANSPOSE.
REGION_LIMIT = 256


def _region_ends_in_transposes(graph: Graph, start: str, perm: tuple[int, ...], producers: dict[str, Op],
                               consumers: dict[str, list[Op]]) -> bool:
    """True when every path down from TRANSPOSE output ``start`` runs through elementwise ops (their other
    operands: constants, tensors of the same region, or outputs of TRANSPOSEs by ``perm``) into
    TRANSPOSEs, never into a graph output: moving the TRANSPOSE into each reader (one copy per reader) then
    ends with every copy composed into those TRANSPOSEs, fewer than before."""
    todo, seen, needed = [start], set(), set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        readers = consumers.get(t, [])
        if t in graph.outputs or not readers or len(seen) > REGION_LIMIT:
            return False
        for r in readers:
            if r.kind == "TRANSPOSE":
                continue
            if r.kind not in ELEMENTWISE or len(r.inputs) != (1 if r.kind in UNARY else 2):
                return False
            for i in r.inputs:
                c = graph.tensors[i]
                if c.is_constant:
                    if c.data.dtype.kind != "f" or permuted_operand(c.data, perm) is None:
                        return False
                elif i != t and not (producers.get(i) is not None and producers[i].kind == "TRANSPOSE"
                                     and tuple(producers[i].attrs["perm"]) == perm):
                    needed.add(i)
            if len(graph.tensors[r.outputs[0]].shape) != len(perm):
                return False
            todo.append(r.outputs[0])
    return needed <= seen


def _permute_constants(graph: Graph, op: Op, perm: tuple[int, ...]) -> None:
    """Replace ``op``'s constant operands by their permuted copies (one-element ones stay as they are)."""
    rank = len(perm)
    for k, name in enumerate(op.inputs):
        t = graph.tensors[name]
        if not t.is_constant or (t.data.size == 1 and t.data.ndim <= rank):
            continue
        data = permuted_operand(t.data, perm)
        new = f"{op.outputs[0]}/operand{k}_permuted"
        while new in graph.tensors:
            new += "_"
        graph.tensors[new] = Tensor(new, tuple(data.shape), data.astype(t.data.dtype))
        op.inputs[k] = new


def _swap_with_transpose(graph: Graph, transpose: Op, op: Op) -> None:
    """``op(TRANSPOSE(x))`` -> ``TRANSPOSE(op(x))`` so the TRANSPOSE can meet (and cancel) the next one."""
    src = transpose.inputs[0]
    mid = transpose.outputs[0]
    out = op.outputs[0]
    perm = tuple(transpose.attrs["perm"])
    inv = inverse_perm(perm)
    out_shape = graph.tensors[out].shape
    graph.tensors[mid].shape = tuple(out_shape[i] for i in inv)
    op.inputs = [src if i == mid else i for i in op.inputs]
    op.outputs = [mid]
    _permute_constants(graph, op, perm)
    transpose.inputs, transpose.outputs = [mid], [out]
    i, j = graph.ops.index(transpose), graph.ops.index(op)
    graph.ops[i], graph.ops[j] = op, transpose


def _move_transpose_below(graph: Graph, transpose: Op, op: Op, moved: Optional[list[str]] = None) -> None:
    """``op(TRANSPOSE_p(x))`` -> ``TRANSPOSE_p(op'(x))`` for a slice or elementwise ``op``, leaving the
    original TRANSPOSE to its other readers (dead-op removal drops it when there are none). ``moved``:
    the outputs of every TRANSPOSE_p ``op`` reads (an elementwise op's two inputs), each replaced by its
    source; constant operands are permuted."""
    perm = tuple(transpose.attrs["perm"])
    out = op.outputs[0]
    out_shape = graph.tensors[out].shape
    inv = inverse_perm(perm)
    mid = f"{out}/before_transpose"
    while mid in graph.tensors:
        mid += "_"
    graph.tensors[mid] = Tensor(mid, tuple(out_shape[i] for i in inv))
    if op.kind == "STRIDED_SLICE":
        a = op.attrs
        mask = a.get("end_mask", 0)
        op.attrs = dict(a, begin=tuple(a["begin"][i] for i in inv), end=tuple(a["end"][i] for i in inv),
                        strides=tuple(a["strides"][i] for i in inv),
                        end_mask=sum(1 << d for d in range(len(perm)) if (mask >> inv[d]) & 1))
    sources = {t: graph.producers()[t].inputs[0] for t in (moved or [transpose.outputs[0]])}
    op.inputs = [sources.get(i, i) for i in op.inputs]
    op.outputs = [mid]
    if op.kind != "STRIDED_SLICE":
        _permute_constants(graph, op, perm)
    graph.ops.insert(graph.ops.index(op) + 1, Op("TRANSPOSE", [mid], [out], {"perm": perm},
                                                 name=f"{op.name}/transpose"))


def _fold_channel_affine(graph: Graph, op: Op, producers: dict[str, Op], consumers: dict[str, list[Op]]) -> bool:
    """``ADD``/``SUB``/``MUL``/``DIV`` of a per-channel (or one-element) constant right after a ``CONV_2D``,
    ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED`` or ``TRANSPOSE_CONV`` without fused activation whose output
    only this op reads: folded into that op's bias (ADD/SUB) or output-channel weights and bias (MUL, DIV by
    a constant without zeros; into FULLY_CONNECTED only one factor for all channels, as its weights may be
    quantized per tensor), which takes over the op's output and fused activation. New weight and bias
    tensors are made (weights may be shared). True when the graph changed."""
    if op.kind not in ("ADD", "SUB", "MUL", "DIV") or len(op.inputs) != 2:
        return False
    a, b = (graph.tensors[i] for i in op.inputs)
    if a.is_constant == b.is_constant or (a.is_constant and op.kind in ("SUB", "DIV")):
        return False
    x, c = (b, a) if a.is_constant else (a, b)
    w_op = producers.get(x.name)
    if (w_op is None or w_op.kind not in WEIGHTED or w_op.act != "NONE" or x.name in graph.outputs
            or len(consumers.get(x.name, [])) != 1 or len(w_op.inputs) != 3
            or (w_op.kind == "TRANSPOSE_CONV" and op.act != "NONE")
            or graph.tensors[op.outputs[0]].shape != x.shape or c.data.dtype.kind != "f"):
        return False
    w, bias = graph.tensors[w_op.inputs[1]], graph.tensors[w_op.inputs[2]]
    vec = channel_vector(c.data, x.shape)
    if vec is None or not w.is_constant or not bias.is_constant or bias.data.shape != vec.shape:
        return False
    vec = vec.astype(np.float64)
    new_w = w.data
    if op.kind in ("MUL", "DIV"):
        if op.kind == "DIV":
            if np.any(vec == 0):
                return False
            vec = 1.0 / vec
        axis = 3 if w_op.kind == "DEPTHWISE_CONV_2D" else 0
        if w.data.shape[axis] != vec.size or (w_op.kind == "FULLY_CONNECTED" and np.ptp(vec) != 0):
            return False  # (FULLY_CONNECTED weights may be quantized per tensor: a scale per row would cost bits)
        shape = [1] * w.data.ndim
        shape[axis] = vec.size
        new_w = (w.data.astype(np.float64) * vec.reshape(shape)).astype(np.float32)
        new_b = (bias.data.astype(np.float64) * vec).astype(np.float32)
    else:
        new_b = (bias.data.astype(np.float64) + (-vec if op.kind == "SUB" else vec)).astype(np.float32)
    out = op.outputs[0]
    if new_w is not w.data:
        graph.tensors[f"{out}/folded_weights"] = Tensor(f"{out}/folded_weights", tuple(new_w.shape), new_w)
        w_op.inputs[1] = f"{out}/folded_weights"
    graph.tensors[f"{out}/folded_bias"] = Tensor(f"{out}/folded_bias", tuple(new_b.shape), new_b)
    w_op.inputs[2] = f"{out}/folded_bias"
    w_op.outputs = [out]
    w_op.attrs = dict(w_op.attrs, act=op.act)
    graph.ops.remove(op)
    graph.tensors.pop(x.name, None)
    return True


def _scalar_mul(graph: Graph, op: Op) -> Optional[tuple[str, float]]:
    """(activation input, factor) when ``op`` multiplies an activation by a one-element constant."""
    if op.kind != "MUL" or len(op.inputs) != 2:
        return None
    a, b = (graph.tensors[i] for i in op.inputs)
    if a.is_constant == b.is_constant:
        return None
    act, c = (b, a) if a.is_constant else (a, b)
    if c.data.size != 1 or graph.tensors[op.outputs[0]].shape != act.shape:
        return None
    return act.name, float(c.data.reshape(-1)[0])


def _replace_uses(graph: Graph, op: Op) -> bool:
    """Remove identity ``op`` (same shape in and out), wiring its consumers to its input."""
    src = next(i for i in op.inputs if not graph.tensors[i].is_constant)
    dst = op.outputs[0]
    if dst in graph.outputs:  # the op writing ``src`` can write the graph output itself
        prev = graph.producers().get(src)
        if (prev is None or src in graph.outputs or [c for c in graph.ops if src in c.inputs] != [op]
                or graph.tensors[src].shape != graph.tensors[dst].shape):
            return False
        prev.outputs = [dst if o == src else o for o in prev.outputs]
        graph.ops.remove(op)
        graph.tensors.pop(src, None)
        return True
    for other in graph.ops:
        other.inputs = [src if i == dst else i for i in other.inputs]
    graph.ops.remove(op)
    graph.tensors.pop(dst, None)
    return True


def _drop_dead(graph: Graph) -> bool:
    """Remove ops whose outputs nobody reads (and which are not graph outputs); True if any went."""
    needed = set(graph.outputs)
    keep: list[Op] = []
    for op in reversed(graph.ops):
        if any(o in needed for o in op.outputs):
            keep.append(op)
            needed.update(op.inputs)
    keep.reverse()
    dropped = len(keep) != len(graph.ops)
    graph.ops = keep
    used = needed | set(graph.inputs) | {o for op in keep for o in op.outputs}
    for name in list(graph.tensors):
        if name not in used:
            del graph.tensors[name]
    return dropped


#: GELU(x) ~= x * sigmoid(GELU_SIGMOID_K * x) (max abs error about 0.02)
GELU_SIGMOID_K = 1.702


def lower_for_micro(graph: Graph) -> Graph:
    """Rewrite ops TFLite Micro (and the micro backend) have no kernel for into ops they run.

    - ``GELU`` -> ``x * LOGISTIC(1.702 x)`` (an approximation: max abs error about 0.02, about one
      int8 step of a typical GELU output);
    - ``RELU_N1_TO_1`` (standalone) -> ``MINIMUM(MAXIMUM(x, -1), 1)``.

    Both importers run it last, so every converted model runs on LiteRT, TFLite Micro and micro;
    the float graph (the calibration reference) then computes the rewritten function.
    """
    new_ops: list[Op] = []
    for op in graph.ops:
        x, out = (op.inputs[0] if op.inputs else ""), (op.outputs[0] if op.outputs else "")
        if op.kind == "GELU":
            shape = graph.tensors[x].shape
            k = _const(graph, f"{out}/gelu_k", GELU_SIGMOID_K)
            scaled, gate = _act(graph, f"{out}/gelu_scaled", shape), _act(graph, f"{out}/gelu_gate", shape)
            new_ops += [Op("MUL", [x, k], [scaled], {"act": "NONE"}, name=f"{op.name}/scale"),
                        Op("LOGISTIC", [scaled], [gate], {}, name=f"{op.name}/sigmoid"),
                        Op("MUL", [x, gate], [out], {"act": "NONE"}, name=op.name)]
        elif op.kind == "RELU_N1_TO_1":
            shape = graph.tensors[x].shape
            low = _act(graph, f"{out}/at_least_minus_one", shape)
            new_ops += [Op("MAXIMUM", [x, _const(graph, f"{out}/minus_one", -1.0)], [low], {}, name=f"{op.name}/max"),
                        Op("MINIMUM", [low, _const(graph, f"{out}/one", 1.0)], [out], {}, name=op.name)]
        else:
            new_ops.append(op)
    graph.ops = new_ops
    return graph


def _const(graph: Graph, name: str, value: float) -> str:
    graph.tensors[name] = Tensor(name, (1,), np.array([value], np.float32))
    return name


def _act(graph: Graph, name: str, shape: tuple[int, ...]) -> str:
    graph.tensors[name] = Tensor(name, shape)
    return name


def sample_arrays(graph: Graph, sample: Any) -> list[np.ndarray]:
    """The arrays of one sample, one per graph input in :attr:`Graph.inputs` order (source layout).

    A one-input model's sample is a bare array; a sample of a model with several inputs is a tuple (or
    list) ordered as ``graph.inputs``.
    """
    arrays = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    if len(arrays) != len(graph.inputs):
        raise ValueError(f"a sample of this model holds {len(graph.inputs)} input array(s), got {len(arrays)}")
    return arrays


def ir_feed(graph: Graph, sample: Any) -> dict[str, np.ndarray]:
    """One sample (see :func:`sample_arrays`) as ``{input name: array in the IR layout}`` (NCHW image inputs
    become NHWC), in ``graph.inputs`` order: the feed of the float IR and, by value, of the int8 .tflite."""
    return {n: graph.to_ir_layout(n, np.asarray(a)) for n, a in zip(graph.inputs, sample_arrays(graph, sample))}

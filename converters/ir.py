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
``GATHER_ND``                     inputs (x, indices) with integer constant indices (TensorFlow's
                                  semantics, no batch dimensions); shares x's quantization; or inputs
                                  (table, indices) with a constant float table and int32 index tuples
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

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
UNARY = ("RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH", "EXP", "LOG", "SQRT", "RSQRT",
         "ABS", "GELU", "LEAKY_RELU", "ELU",
         "FLOOR", "CEIL", "ROUND", "SIN", "COS")
BINARY = ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE")
#: Ops whose output is an int32 index tensor (not a quantized activation).
INDEX_KINDS = ("ARG_MAX", "ARG_MIN")
#: Ops whose output is a bool tensor (not a quantized activation).
COMPARE_KINDS = ("EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL")
LOGICAL_KINDS = ("LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT")
OP_KINDS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "PRELU", "RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD", "CONCATENATION", "STRIDED_SLICE", "GATHER",
    "MEAN", "SUM", "REDUCE_MAX", "SOFTMAX", "LOG_SOFTMAX", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "BATCH_MATMUL",
    "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "ARG_MAX", "ARG_MIN", "DETECTION_POSTPROCESS", "SELECT_V2",
    "CUMSUM", "GATHER_ND",
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


def unquantized_tensors(graph: "Graph") -> dict[str, str]:
    """Activations stored as they are, by type: ``int32`` indices (integer graph inputs,
    :data:`INDEX_KINDS`, and what :func:`selects_integers` selects from them), ``bool`` masks
    (:data:`COMPARE_KINDS`, :data:`LOGICAL_KINDS`), and RESHAPEs of them."""
    found: dict[str, str] = {name: "int32" for name in graph.input_dtypes}
    ints = set(found)
    for op in graph.ops:
        if op.kind in RAW_OUTPUT_KINDS:
            found.update({o: "int32" if op.kind in INDEX_KINDS else "bool" for o in op.outputs})
        elif op.kind == "RESHAPE" and op.inputs and op.inputs[0] in found:
            found.update({o: found[op.inputs[0]] for o in op.outputs})
        elif selects_integers(graph, op, ints) is not None:
            found.update({o: "int32" for o in op.outputs})
        ints.update(o for o in op.outputs if found.get(o) == "int32")
    return found


def integer_tensors(graph: "Graph") -> set[str]:
    """Activations holding int32 indices: integer graph inputs, outputs of :data:`INDEX_KINDS` ops and
    what :func:`selects_integers` selects from them."""
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
    TRANSPOSEs into RESHAPEs, merge RESHAPE chains, drop identity ops and dead ops."""
    changed = True
    while changed:
        changed = False
        producers = graph.producers()
        consumers = graph.consumers()
        for op in graph.ops:
            src = op.inputs[0] if op.inputs else None
            prev = producers.get(src) if src else None
            single = src is not None and len(consumers.get(src, [])) == 1 and src not in graph.outputs
            if (prev is not None and prev.kind == "TRANSPOSE" and single and _layout_free(graph, op)
                    and op.outputs[0] not in graph.outputs):
                _swap_with_transpose(graph, prev, op)
                changed = True
                break
            if (prev is not None and prev.kind == "TRANSPOSE" and op.outputs[0] not in graph.outputs
                    and (op.kind == "STRIDED_SLICE" or _layout_free(graph, op))
                    and consumers.get(op.outputs[0])
                    and all(c.kind == "TRANSPOSE" for c in consumers[op.outputs[0]])):
                _move_transpose_below(graph, prev, op)  # it then meets (and cancels) the next TRANSPOSE
                changed = True
                break
            if op.kind == "TRANSPOSE":
                if prev is not None and prev.kind == "TRANSPOSE" and single:
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


def _layout_free(graph: Graph, op: Op) -> bool:
    """True for ops that act elementwise whatever the layout: unary ops, and binary ops whose other
    operand is a one-element constant."""
    if op.kind in UNARY and op.kind != "PRELU":
        return True
    if op.kind in BINARY and len(op.inputs) == 2:
        other = graph.tensors[op.inputs[1]]
        return other.is_constant and other.data.size == 1
    return False


def _swap_with_transpose(graph: Graph, transpose: Op, op: Op) -> None:
    """``op(TRANSPOSE(x))`` -> ``TRANSPOSE(op(x))`` so the TRANSPOSE can meet (and cancel) the next one."""
    src = transpose.inputs[0]
    mid = transpose.outputs[0]
    out = op.outputs[0]
    graph.tensors[mid].shape = graph.tensors[src].shape
    op.inputs = [src if i == mid else i for i in op.inputs]
    op.outputs = [mid]
    transpose.inputs, transpose.outputs = [mid], [out]
    i, j = graph.ops.index(transpose), graph.ops.index(op)
    graph.ops[i], graph.ops[j] = op, transpose


def _move_transpose_below(graph: Graph, transpose: Op, op: Op) -> None:
    """``op(TRANSPOSE_p(x))`` -> ``TRANSPOSE_p(op'(x))`` for a slice or layout-free ``op``, leaving the
    original TRANSPOSE to its other readers (dead-op removal drops it when there are none)."""
    perm = tuple(transpose.attrs["perm"])
    src = transpose.inputs[0]
    out = op.outputs[0]
    out_shape = graph.tensors[out].shape
    inv = tuple(perm.index(d) for d in range(len(perm)))
    mid = f"{out}/before_transpose"
    graph.tensors[mid] = Tensor(mid, tuple(out_shape[i] for i in inv))
    if op.kind == "STRIDED_SLICE":
        a = op.attrs
        mask = a.get("end_mask", 0)
        op.attrs = dict(a, begin=tuple(a["begin"][i] for i in inv), end=tuple(a["end"][i] for i in inv),
                        strides=tuple(a["strides"][i] for i in inv),
                        end_mask=sum(1 << d for d in range(len(perm)) if (mask >> inv[d]) & 1))
    op.inputs = [src if i == transpose.outputs[0] else i for i in op.inputs]
    op.outputs = [mid]
    graph.ops.insert(graph.ops.index(op) + 1, Op("TRANSPOSE", [mid], [out], {"perm": perm},
                                                 name=f"{op.name}/transpose"))


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
    if dst in graph.outputs:
        return False
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

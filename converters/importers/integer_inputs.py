"""Integer graph inputs in the IR: refuse any use other than selecting from them and an index lookup.

Shared by the ONNX and TFLite importers (:mod:`converters.importers.onnx`, :mod:`converters.importers.tflite`),
which call :func:`check_integer_uses` on the imported graph.
"""
from __future__ import annotations

from converters.ir import INDEX_KINDS, Graph, integer_input_roots, integer_tensors, selects_integers
from edge_runtime.errors import UnsupportedModelError

#: IR ops that read int32 index activations: (kind, input position)
INTEGER_READERS = {("GATHER", 1), ("RESHAPE", 0), ("GATHER_ND", 1)}


def check_integer_uses(graph: Graph, source: str) -> None:
    """Refuse (one line) an integer input whose values reach an op other than a selection or an index lookup.

    Integer inputs stay int32 in the converted model: they may be reshaped, sliced, gathered at constant
    positions and concatenated with integer constants (:func:`converters.ir.selects_integers`), and used as the
    indices of a GATHER (or GATHER_ND) from a constant table (an embedding, or a one-hot encoding followed by
    MatMul/Gemm, which the importer rewrites into one); any other use would need arithmetic on indices, which
    int8 cannot hold.
    """
    roots = integer_input_roots(graph)
    for op in graph.ops:
        selected = selects_integers(graph, op, roots) is not None
        for k, name in enumerate(op.inputs):
            if name in roots and not selected and (op.kind, k) not in INTEGER_READERS:
                root = roots[name]
                raise UnsupportedModelError(
                    f"{source}: input '{root}' ({graph.input_dtypes[root]} token ids/indices) reaches op "
                    f"'{op.name or op.outputs[0]}' ({op.kind}); integer inputs can only index a constant table "
                    f"(Gather/embedding, or OneHot followed by MatMul/Gemm); if '{root}' is a setting, freeze it "
                    f"with --input-value {root}=VALUE")
    _check_constant_indices(graph, source, roots)
    reshaped = _reshape_roots(graph)
    for name in graph.outputs:
        if name in reshaped:
            raise UnsupportedModelError(f"{source}: output '{name}' is the integer input '{reshaped[name]}' itself; "
                                        "nothing to convert")
        if name in roots:
            raise UnsupportedModelError(f"{source}: output '{name}' holds integer values selected from input "
                                        f"'{roots[name]}' (no float computation); only float outputs can be "
                                        "converted")


def _check_constant_indices(graph: Graph, source: str, roots: dict[str, str]) -> None:
    """Refuse (one line) GATHER indices that certainly fall outside the table: an integer constant joined with
    the ids (a BOS token), or an ARG_MAX/ARG_MIN result (or TOPK_V2's indices) over more positions than the table
    has rows. Every runtime would fail on them (calibration checks only the data fed)."""
    consts: dict[str, list[str]] = {}  # integer tensor -> the integer constants concatenated into it
    spans: dict[str, int] = {}  # integer tensor -> the size of the ARG_MAX (TOPK_V2) axis its values come from
    kinds: dict[str, str] = {}  # integer tensor -> the op kinds its span comes from, for the message
    ints = integer_tensors(graph)
    for op in graph.ops:
        if op.kind in INDEX_KINDS or op.kind == "TOPK_V2":
            x = graph.tensors[op.inputs[0]]
            outs = op.outputs if op.kind in INDEX_KINDS else op.outputs[1:]
            spans.update({o: int(x.shape[int(op.attrs.get("axis", -1))]) for o in outs})
            kinds.update({o: "an ARG_MAX/ARG_MIN" if op.kind in INDEX_KINDS else "a TOPK_V2" for o in outs})
            continue
        if op.kind == "GATHER" and len(op.inputs) > 1 and op.inputs[1] in ints:
            rows = int(graph.tensors[op.inputs[0]].shape[int(op.attrs.get("axis", 0))])
            idx = op.inputs[1]
            for c in consts.get(idx, []):
                data = graph.tensors[c].data
                bad = data[(data < 0) | (data >= rows)]
                if bad.size:
                    what = f"joined with input '{roots[idx]}'" if idx in roots else "joined with the indices"
                    raise UnsupportedModelError(
                        f"{source}: the constant index {int(bad.reshape(-1)[0])} {what} is outside the {rows} "
                        f"rows of the table read by op '{op.name or op.outputs[0]}' (GATHER)")
            if spans.get(idx, 0) > rows:
                raise UnsupportedModelError(
                    f"{source}: op '{op.name or op.outputs[0]}' (GATHER) looks up "
                    f"{kinds.get(idx, 'an ARG_MAX/ARG_MIN')} position among "
                    f"{spans[idx]} in a table of {rows} rows; positions {rows}..{spans[idx] - 1} have no row")
            continue
        src = selects_integers(graph, op, ints)
        if src is None:
            continue
        found = [c for i in op.inputs for c in (consts.get(i, []) + ([i] if graph.tensors[i].is_constant else []))]
        if found:
            consts.update({o: found for o in op.outputs})
        span = max((spans.get(i, 0) for i in op.inputs), default=0)
        if span:
            spans.update({o: span for o in op.outputs})
            kind = next(kinds[i] for i in op.inputs if spans.get(i, 0) == span)
            kinds.update({o: kind for o in op.outputs})


def _reshape_roots(graph: Graph) -> dict[str, str]:
    """Integer inputs and RESHAPEs of them (through any chain) -> the input."""
    roots = {name: name for name in graph.input_dtypes}
    for op in graph.ops:
        if op.kind == "RESHAPE" and op.inputs[0] in roots:
            roots.update({o: roots[op.inputs[0]] for o in op.outputs})
    return roots


__all__ = ["INTEGER_READERS", "check_integer_uses"]

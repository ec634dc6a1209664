"""Unroll ONNX Loop and Scan nodes whose iteration count is known when converting (an ONNX-to-ONNX pre-pass).

TFLite has no loop a converter can target for int8, but many real loops run a fixed number of times: a
``tf.map_fn`` over a batch of 1, a torch.jit-scripted ``for`` over a constant range, a fixed number of
refinement steps, a Scan over a static sequence axis. :func:`unroll_loops` replaces each such node of the
top-level graph by copies of its body, one per iteration, with every body tensor renamed per iteration:

* Loop: the trip count ``M`` must be a constant (or absent) and the condition constant true, or a value
  the body computes from constants, the iteration number and constant loop-carried values (it is
  evaluated step by step, so ``while i < n`` with a constant ``n`` unrolls ``n`` times); loop-carried
  values flow from one copy to the next, each scan output becomes the concatenation of the per-iteration
  values along a new axis 0, the iteration number is a constant per copy, outer-scope values are read as
  they are, and Loops/Scans nested in the body are unrolled in turn.
* Scan (opset 9 and later): the sequence length is the static size of the scan axis; each iteration reads
  a Gather of its slice (either direction) and scan outputs are stacked along their axis.

Anything else (a run-time trip count or condition, loop-carried sequences, more than
:data:`MAX_ITERATIONS` iterations or :data:`MAX_UNROLLED_NODES` copied nodes) is one
``UnsupportedModelError`` line naming the node.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from converters.importers.fresh_names import FreshNames
from converters.importers.onnx_eval import constant_value, evaluate_node
from edge_runtime.errors import UnsupportedModelError

#: most iterations one Loop/Scan may be unrolled into
MAX_ITERATIONS = 256
#: most body nodes one Loop/Scan may be copied into (iterations x body nodes)
MAX_UNROLLED_NODES = 16384
LOOP_OPS = ("Loop", "Scan")
_DEFAULT_DOMAINS = ("", "ai.onnx")


def has_loops(model: Any) -> bool:
    """True when the top-level graph of ``model`` holds a Loop or Scan node."""
    return any(n.op_type in LOOP_OPS and n.domain in _DEFAULT_DOMAINS for n in model.graph.node)


def unroll_loops(model: Any, source: str = "model") -> int:
    """Unroll every top-level Loop/Scan of ``model`` in place; returns how many were unrolled.

    Run after constant folding (trip counts computed from static shapes are constants by then) and
    before shape inference. Raises :class:`UnsupportedModelError` (one line naming the node) for a
    Loop or Scan that cannot be unrolled.
    """
    if not has_loops(model):
        return 0
    g = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), default=13)
    state = _State(source, opset, _constants(g), _shapes(model))
    state.unique.taken.update(vi.name for vi in g.input)
    state.unique.taken.update(o for n in g.node for o in n.output)
    work: deque = deque(g.node)
    kept = state.kept
    count = 0
    while work:
        node = work.popleft()
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.output[0] not in state.consts:
            value = constant_value(node)
            if value is not None:
                state.consts[node.output[0]] = value
        if node.op_type not in LOOP_OPS or node.domain not in _DEFAULT_DOMAINS:
            kept.append(node)
            continue
        nodes = _unroll_loop(state, node) if node.op_type == "Loop" else _unroll_scan(state, node)
        work.extendleft(reversed(nodes))  # nested loops in the copies are unrolled in turn
        count += 1
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(state.initializers)
    return count


class _State:
    """What unrolling knows about the top-level graph: constants, static shapes, new initializers."""

    def __init__(self, source: str, opset: int, consts: dict[str, np.ndarray],
                 shapes: dict[str, tuple[int, ...]]) -> None:
        self.source = source
        self.opset = opset
        self.consts = consts
        self.shapes = shapes
        self.initializers: list[Any] = []
        #: top-level nodes kept so far (a nested loop's trip count may be computed by them from constants)
        self.kept: list[Any] = []
        #: ``unique(name)``: ``name``, suffixed if needed so that no two new tensors share a name
        self.unique = FreshNames(set(consts))

    def err(self, node: Any, msg: str) -> UnsupportedModelError:
        """One refusal line naming ``node``."""
        return UnsupportedModelError(f"{self.source}: ONNX node '{_label(node)}' ({node.op_type}): {msg}")

    def add_const(self, name: str, value: np.ndarray) -> str:
        """A new initializer ``name`` holding ``value`` (also known as a constant from now on)."""
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        self.consts[name] = np.asarray(value)
        return name



def _label(node: Any) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _constants(g: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    consts = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            value = constant_value(node)
            if value is not None:
                consts[node.output[0]] = value
    return consts


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Static shapes of top-level tensors (non-strict shape inference; only Scan needs them)."""
    if not any(n.op_type == "Scan" for n in model.graph.node):
        return {}
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the strict inference after this pass reports real problems
        inferred = model
    g = inferred.graph
    out: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape") and all(d.HasField("dim_value")
                                                                            for d in tt.shape.dim):
            out[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    return out


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _refuse_non_tensors(state: _State, node: Any, body: Any) -> None:
    for vi in list(body.input) + list(body.output):
        if vi.type.HasField("sequence_type") or vi.type.HasField("optional_type") or vi.type.HasField("map_type"):
            raise state.err(node, f"body value '{vi.name}' is a sequence/optional, not a tensor; loops over "
                                  f"sequences are not supported (TFLite has no sequence type)")


def _check_size(state: _State, node: Any, count: Any, iterations: int, body: Any) -> None:
    if iterations > MAX_ITERATIONS or iterations * max(len(body.node), 1) > MAX_UNROLLED_NODES:
        raise state.err(node, f"the iteration count M={count} is too large to unroll ({len(body.node)} body nodes; "
                              f"at most {MAX_ITERATIONS} iterations and {MAX_UNROLLED_NODES} copied nodes); "
                              f"export a model with fewer iterations")


# ---------------------------------------------------------------- copying a body
def _local_names(graph: Any) -> set[str]:
    names = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    for n in graph.node:
        names.update(o for o in n.output if o)
    return names


def _rename_refs(graph: Any, mapping: dict[str, str]) -> None:
    """Rename, in a nested subgraph, the references to outer names in ``mapping`` (its own names shadow them)."""
    local = _local_names(graph)
    outer = {k: v for k, v in mapping.items() if k not in local}
    if not outer:
        return
    for n in graph.node:
        _rename_node(n, outer, outputs=False)
    for vi in graph.output:
        if vi.name in outer:
            vi.name = outer[vi.name]


def _rename_node(n: Any, mapping: dict[str, str], outputs: bool = True) -> None:
    from onnx import AttributeProto

    ins = [mapping.get(i, i) if i else i for i in n.input]
    del n.input[:]
    n.input.extend(ins)
    if outputs:
        outs = [mapping.get(o, o) if o else o for o in n.output]
        del n.output[:]
        n.output.extend(outs)
    for a in n.attribute:
        if a.type == AttributeProto.GRAPH:
            _rename_refs(a.g, mapping)
        elif a.type == AttributeProto.GRAPHS:
            for sub in a.graphs:
                _rename_refs(sub, mapping)


def _copy_body(state: _State, node: Any, body: Any, k: int, bound: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    """Iteration ``k`` of ``body``: its nodes with every local name renamed (body inputs to ``bound``)."""
    from onnx import NodeProto, numpy_helper

    prefix = f"{_label(node)}/iter{k}/"
    mapping = dict(bound)
    for name in _local_names(body):
        if name not in mapping:
            mapping[name] = state.unique(prefix + name)
    for init in body.initializer:
        state.add_const(mapping[init.name], numpy_helper.to_array(init))
    nodes = []
    for n in body.node:
        copy = NodeProto()
        copy.CopyFrom(n)
        _rename_node(copy, mapping)
        copy.name = state.unique(prefix + (n.name or n.output[0]))
        nodes.append(copy)
    return nodes, mapping


def _evaluate(state: _State, nodes: list[Any], wanted: set[str]) -> None:
    """Evaluate, in order, the copied nodes whose inputs are all known constants and whose outputs lead to
    ``wanted`` (condition and loop-carried values); record their values in ``state.consts``."""
    needed = set(wanted)
    slice_ = []
    for n in reversed(nodes):
        if needed.intersection(n.output):
            slice_.append(n)
            needed.update(i for i in n.input if i)
    for n in reversed(slice_):
        if all(o in state.consts for o in n.output if o) or any(a.HasField("g") or len(a.graphs) for a in n.attribute):
            continue  # known already, or holds a subgraph
        if n.op_type == "Constant":
            value = constant_value(n)
            if value is not None:
                state.consts[n.output[0]] = value
            continue
        real = [i for i in n.input if i]
        if all(i in state.consts for i in real) and (real or n.op_type not in ("RandomNormal", "RandomUniform")):
            for name, value in zip(n.output, _run_node(state, n)):
                if name and value is not None:
                    state.consts[name] = value


def _run_node(state: _State, n: Any) -> list[np.ndarray | None]:
    try:
        return list(evaluate_node(n, state.consts, state.opset))
    except Exception:  # noqa: BLE001 - not evaluable here: the value stays unknown
        return [None] * len(n.output)


def _stack(state: _State, node: Any, items: list[str], out: str, axis: int, what: str) -> list[Any]:
    """Nodes writing ``out`` = the per-iteration values ``items`` stacked along a new ``axis``."""
    from onnx import helper

    if not items:
        raise state.err(node, f"it runs zero iterations, so {what} '{out}' would be empty; zero-size tensors are "
                              f"not supported")
    nodes, parts = [], []
    axes = state.add_const(state.unique(f"{out}/axes"), np.array([axis], np.int64)) if state.opset >= 13 else ""
    for k, item in enumerate(items):
        dst = out if len(items) == 1 else state.unique(f"{out}/iter{k}")
        if axes:
            nodes.append(helper.make_node("Unsqueeze", [item, axes], [dst], name=state.unique(f"{dst}/unsqueeze")))
        else:
            nodes.append(helper.make_node("Unsqueeze", [item], [dst], axes=[axis],
                                          name=state.unique(f"{dst}/unsqueeze")))
        parts.append(dst)
    if len(parts) > 1:
        nodes.append(helper.make_node("Concat", parts, [out], axis=axis, name=state.unique(f"{out}/concat")))
    return nodes


def _identity(state: _State, src: str, dst: str) -> Any:
    from onnx import helper

    return helper.make_node("Identity", [src], [dst], name=state.unique(f"{dst}/unrolled"))


# ---------------------------------------------------------------- Loop
def _unroll_loop(state: _State, node: Any) -> list[Any]:
    """The nodes replacing ``node`` (a Loop): one body copy per iteration."""
    body = _attr(node, "body")
    _refuse_non_tensors(state, node, body)
    m_name = node.input[0] if len(node.input) > 0 else ""
    c_name = node.input[1] if len(node.input) > 1 else ""
    unknown = {n for n in (m_name, c_name) if n and n not in state.consts}
    if unknown:  # computed from constants by nodes already seen (a nested loop's count from the outer iteration)?
        _evaluate(state, state.kept, unknown)
    if m_name and m_name not in state.consts:
        raise state.err(node, f"the trip count '{m_name}' is computed at run time; only a Loop whose iteration "
                              f"count is known when converting (a constant, or one that follows from static "
                              f"shapes) can be unrolled")
    if c_name and c_name not in state.consts:
        raise state.err(node, f"the loop condition '{c_name}' is computed at run time; only a Loop whose "
                              f"iteration count is known when converting can be unrolled")
    trip = int(np.asarray(state.consts[m_name]).reshape(-1)[0]) if m_name else None
    cond = bool(np.asarray(state.consts[c_name]).reshape(-1)[0]) if c_name else True
    carried = list(node.input[2:])
    n_state = len(carried)
    if len(body.input) != n_state + 2 or len(body.output) < n_state + 1:
        raise state.err(node, f"its body takes {len(body.input)} inputs and gives {len(body.output)} outputs for "
                              f"{n_state} loop-carried values; check the model with onnx.checker")
    iter_in, cond_in = body.input[0].name, body.input[1].name
    cond_out = body.output[0].name
    state_outs = [vi.name for vi in body.output[1:1 + n_state]]
    scan_outs = [vi.name for vi in body.output[1 + n_state:]]
    count_text = trip if trip is not None else "unbounded"
    if trip is not None and cond_out == cond_in:  # nothing can end it early
        _check_size(state, node, count_text, max(trip, 0), body)
    nodes: list[Any] = []
    scans: list[list[str]] = [[] for _ in scan_outs]
    k = 0
    while cond and (trip is None or k < trip):
        _check_size(state, node, count_text, k + 1, body)
        bound = {vi.name: c for vi, c in zip(body.input[2:], carried)}
        iter_const = state.unique(f"{_label(node)}/iter{k}/{iter_in}")
        cond_const = state.unique(f"{_label(node)}/iter{k}/{cond_in}")
        bound[iter_in] = state.add_const(iter_const, np.array(k, np.int64))
        bound[cond_in] = state.add_const(cond_const, np.array(True))
        copies, mapping = _copy_body(state, node, body, k, bound)
        nodes.extend(copies)
        carried = [mapping.get(o, o) for o in state_outs]
        for j, o in enumerate(scan_outs):
            scans[j].append(mapping.get(o, o))
        k += 1
        if trip is not None and k >= trip:
            break
        cond_name = mapping.get(cond_out, cond_out)
        _evaluate(state, copies, {cond_name, *carried})
        if cond_name not in state.consts:
            raise state.err(node, f"the loop condition (body output '{cond_out}') depends on run-time values; "
                                  f"only a Loop whose iteration count is known when converting can be unrolled")
        cond = bool(np.asarray(state.consts[cond_name]).reshape(-1)[0])
    for src, out in zip(carried, node.output[:n_state]):
        if out:
            nodes.append(_identity(state, src, out))
    for items, out in zip(scans, node.output[n_state:]):
        if out:
            nodes.extend(_stack(state, node, items, out, 0, "scan output"))
    return nodes


# ---------------------------------------------------------------- Scan
def _unroll_scan(state: _State, node: Any) -> list[Any]:
    """The nodes replacing ``node`` (a Scan of opset 9 or later): one body copy per step of the scan axis."""
    from onnx import helper

    body = _attr(node, "body")
    _refuse_non_tensors(state, node, body)
    if state.opset < 9 or _attr(node, "directions") is not None:
        raise state.err(node, "Scan of opset 8 (batch axis and sequence_lens) is not supported; re-export with "
                              "opset 9 or later")
    n_in = int(_attr(node, "num_scan_inputs"))
    inputs = list(node.input)
    n_state = len(inputs) - n_in
    scan_inputs = inputs[n_state:]
    in_axes = list(_attr(node, "scan_input_axes", [0] * n_in))
    in_dirs = list(_attr(node, "scan_input_directions", [0] * n_in))
    n_out = len(body.output) - n_state
    out_axes = list(_attr(node, "scan_output_axes", [0] * n_out))
    out_dirs = list(_attr(node, "scan_output_directions", [0] * n_out))
    dims = []
    for x, axis in zip(scan_inputs, in_axes):
        shape = tuple(np.asarray(state.consts[x]).shape) if x in state.consts else state.shapes.get(x)
        if shape is None:
            raise state.err(node, f"the shape of scan input '{x}' is not static, so its sequence length is "
                                  f"unknown; give static input shapes with --input-shape")
        dims.append((shape, int(axis) % len(shape)))
    lengths = {shape[axis] for shape, axis in dims}
    if len(lengths) != 1:
        raise state.err(node, f"its scan inputs have different sequence lengths {sorted(lengths)}")
    steps = lengths.pop()
    _check_size(state, node, steps, steps, body)
    carried = inputs[:n_state]
    nodes: list[Any] = []
    scans: list[list[str]] = [[] for _ in range(n_out)]
    for k in range(steps):
        bound = {vi.name: c for vi, c in zip(body.input[:n_state], carried)}
        for j, (x, (shape, axis), rev) in enumerate(zip(scan_inputs, dims, in_dirs)):
            idx = state.add_const(state.unique(f"{_label(node)}/iter{k}/index{j}"),
                                  np.array(steps - 1 - k if rev else k, np.int64))
            part = state.unique(f"{_label(node)}/iter{k}/{body.input[n_state + j].name}")
            nodes.append(helper.make_node("Gather", [x, idx], [part], axis=axis, name=state.unique(f"{part}/gather")))
            bound[body.input[n_state + j].name] = part
        copies, mapping = _copy_body(state, node, body, k, bound)
        nodes.extend(copies)
        carried = [mapping.get(vi.name, vi.name) for vi in body.output[:n_state]]
        for j, vi in enumerate(body.output[n_state:]):
            scans[j].append(mapping.get(vi.name, vi.name))
    for src, out in zip(carried, node.output[:n_state]):
        if out:
            nodes.append(_identity(state, src, out))
    for j, out in enumerate(node.output[n_state:]):
        if not out:
            continue
        items = scans[j][::-1] if out_dirs[j] else scans[j]
        rank = _output_rank(body.output[n_state + j])
        axis = int(out_axes[j])
        if axis < 0:
            if rank is None:
                raise state.err(node, f"scan output '{out}' has a negative axis and a body output of unknown rank")
            axis += rank + 1
        nodes.extend(_stack(state, node, items, out, axis, "scan output"))
    return nodes


def _output_rank(vi: Any) -> int | None:
    tt = vi.type.tensor_type
    return len(tt.shape.dim) if vi.type.HasField("tensor_type") and tt.HasField("shape") else None

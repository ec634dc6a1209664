"""Replace ONNX ops the importer has no handler for by the function body of their ONNX schema.

Many ONNX ops are *defined* by a function body in onnx's own schema (Attention, RMSNormalization,
RotaryEmbedding, the training losses, MeanVarianceNormalization, the window functions...): plain
``FunctionProto`` bodies (``OpSchema.get_function_with_opset_version``) and context-dependent ones built
for one node and its input types (``get_context_dependent_function_with_opset_version``).
:func:`expand_function_ops` replaces each top-level node of such an op with no importer handler
(:data:`converters.importers.onnx_ops.REGISTRY`) by the nodes of its body at the model's opset:

* the body's inputs become the node's inputs (an absent optional input is ``""``), its outputs the node's
  outputs; every other tensor of the body gets a fresh name ``<node>/<function>/<name>`` unique in the graph;
* attribute references (``ref_attr_name``) take the node's attribute, else the function's or the schema's
  default, else the attribute is left out;
* the types a context-dependent body needs come from (non-strict) shape inference, graph inputs and
  initializers; an input whose type stays unknown is refused in one line;
* a body node that is itself a function op without a handler is expanded in the next round, at most
  :data:`MAX_DEPTH` rounds deep; body nodes whose outputs nothing reads (outputs the node leaves out) go.

A body written for an older opset than the model's is used only when each of its ops means the same at
the model's opset (``same_meaning``). Ops with a handler are never expanded, nor :data:`NOT_EXPANDED`
ones, nor a node whose inputs are all constants (constant folding evaluates it as it is).
:func:`refuse_unsupported_bodies` runs after folding and names the original op when a body op is left that
the importer cannot take. :func:`inline_local_functions` inlines a model's own functions (``model.functions``,
as PyTorch's dynamo exporter writes them) with ``onnx.inliner``.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from converters.importers.fresh_names import FreshNames
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

#: how many rounds of nested expansion (a body op that is a function op itself) are allowed
MAX_DEPTH = 6
#: ops never expanded: Range is evaluated by constant folding (its body is a Loop); sequences, random ops and
#: already-quantized models are refused by name elsewhere
NOT_EXPANDED = frozenset({"Range", "SequenceMap", "DynamicQuantizeLinear", "Bernoulli"})
DEFAULT_DOMAINS = ("", "ai.onnx")
#: {expanded node's name: (original op type, original node's name)}
Origins = dict[str, tuple[str, str]]
SameMeaning = Callable[[str, int, int], bool]


def inline_local_functions(model: Any, source: str) -> Any:
    """``model`` with the calls of its own functions (``model.functions``) replaced by their bodies; the model
    itself when it has none. A failure is one ``ModelFormatError`` line."""
    if not len(model.functions):
        return model
    from onnx import inliner

    try:
        return inliner.inline_local_functions(model)
    except Exception as exc:  # noqa: BLE001 - onnx's inliner raises several types on a malformed function
        msg = " ".join(str(exc).split())[:200]
        raise ModelFormatError(f"{source}: cannot inline the model's local functions "
                               f"({', '.join(f.name for f in model.functions)}): {type(exc).__name__}: {msg}") from None


def _label(node: Any) -> str:
    return node.name or (node.output[0] if len(node.output) else node.op_type)


def _schema(op: str, opset: int) -> Any:
    """The ai.onnx schema of ``op`` at ``opset``; None when there is none."""
    import onnx.defs

    try:
        return onnx.defs.get_schema(op, opset, "")
    except Exception:  # noqa: BLE001 - onnx raises SchemaError (not exported) for an unknown op
        return None


def _has_body(schema: Any, opset: int) -> bool:
    """Whether ``schema`` has a (plain or context-dependent) function body usable at ``opset``."""
    versions = list(schema.function_opset_versions) + list(schema.context_dependent_function_opset_versions)
    return any(v <= opset for v in versions)


def _constants(graph: Any) -> set[str]:
    """Names of the initializers and Constant-node outputs of ``graph``."""
    names = {t.name for t in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS for o in n.output)
    return names


def _expandable(node: Any, opset: int, handled: Collection[str], consts: set[str]) -> bool:
    if node.domain not in DEFAULT_DOMAINS or node.op_type in handled or node.op_type in NOT_EXPANDED:
        return False
    real = [i for i in node.input if i]
    if real and all(i in consts for i in real):
        return False  # constant folding evaluates it as it is
    schema = _schema(node.op_type, opset)
    return schema is not None and _has_body(schema, opset)


def _known_types(model: Any) -> dict[str, Any]:
    """``{tensor name: TypeProto}`` from non-strict shape inference, the graph inputs and the initializers."""
    from onnx import helper, shape_inference

    try:
        g = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - an inconsistent model: the strict inference later names the problem
        g = model.graph
    types = {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)
             if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
    for t in model.graph.initializer:
        types[t.name] = helper.make_tensor_type_proto(t.data_type, list(t.dims))
    return types


def _body(node: Any, opset: int, types: dict[str, Any], source: str) -> Any:
    """The ``FunctionProto`` of ``node``'s op at ``opset`` (context-dependent ones built for this node)."""
    from onnx import FunctionProto, NodeProto, TypeProto

    schema = _schema(node.op_type, opset)
    fp = FunctionProto()
    plain = [v for v in schema.function_opset_versions if v <= opset]
    if plain:
        fp.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        return fp
    call = NodeProto()
    call.CopyFrom(node)
    present = {a.name for a in call.attribute}
    for name, attr in schema.attributes.items():  # the builders read defaults from the node
        if name not in present and attr.default_value.name:
            call.attribute.append(attr.default_value)
    in_types = []
    for i in node.input:
        if i and i not in types:
            raise UnsupportedModelError(
                f"{source}: ONNX node '{_label(node)}' ({node.op_type}): the element type of input '{i}' is unknown, "
                f"and the expansion of {node.op_type} into standard ONNX ops needs it; give the model's inputs "
                f"typed shapes (value_info)")
        in_types.append(types[i].SerializeToString() if i else TypeProto().SerializeToString())
    version = max(v for v in schema.context_dependent_function_opset_versions if v <= opset)
    try:
        fp.ParseFromString(schema.get_context_dependent_function_with_opset_version(
            version, call.SerializeToString(), in_types))
    except Exception as exc:  # noqa: BLE001 - the builder rejects this node (an attribute value, a type)
        msg = " ".join(str(exc).split())[:200]
        raise UnsupportedModelError(f"{source}: ONNX node '{_label(node)}' ({node.op_type}): cannot expand it into "
                                    f"its ONNX function body: {type(exc).__name__}: {msg}") from None
    return fp


def _check_body_opset(node: Any, fp: Any, opset: int, same_meaning: SameMeaning, source: str) -> None:
    """Refuse a body written for another opset when one of its ops means something else at ``opset``."""
    body_opset = next((o.version for o in fp.opset_import if o.domain in DEFAULT_DOMAINS), opset)
    if body_opset == opset:
        return
    for n in _all_nodes(fp.node):
        if n.domain in DEFAULT_DOMAINS and (body_opset > opset or not same_meaning(n.op_type, body_opset, opset)):
            raise UnsupportedModelError(
                f"{source}: ONNX node '{_label(node)}' ({node.op_type}): its ONNX function body is written for opset "
                f"{body_opset} and its op {n.op_type} means something else at the model's opset {opset}; re-export "
                f"the model with another opset")


def _all_nodes(nodes: Any) -> Any:
    """``nodes`` and, depth first, the nodes of their subgraphs."""
    for n in nodes:
        yield n
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_nodes(a.g.node)
            for sub in a.graphs:
                yield from _all_nodes(sub.node)


def _resolve_attrs(node: Any, values: dict[str, Any]) -> None:
    """Replace each attribute reference of ``node`` (and of its subgraphs' nodes) by its value, in place;
    a reference without a value is removed."""
    keep = []
    for a in node.attribute:
        if a.ref_attr_name:
            src = values.get(a.ref_attr_name)
            if src is None:
                continue
            new = type(a)()
            new.CopyFrom(src)
            new.name = a.name
            keep.append(new)
            continue
        for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            for n in sub.node:
                _resolve_attrs(n, values)
        keep.append(a)
    del node.attribute[:]
    node.attribute.extend(keep)


def _rename(node: Any, names: dict[str, str], fresh: FreshNames, prefix: str) -> None:
    """Rename ``node``'s inputs and outputs through ``names`` (new outputs get fresh names), in place; names
    defined inside its subgraphs are made fresh too, and outer names they read are renamed."""
    for k, i in enumerate(node.input):
        if i:
            node.input[k] = names.get(i, i)
    for k, o in enumerate(node.output):
        if o:
            if o not in names:
                names[o] = fresh(prefix + o)
            node.output[k] = names[o]
    for a in node.attribute:
        for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            inner = dict(names)
            for item in list(sub.input) + list(sub.initializer):
                inner[item.name] = fresh(prefix + item.name)
                item.name = inner[item.name]
            for n in sub.node:
                _rename(n, inner, fresh, prefix)
            for vi in list(sub.value_info) + list(sub.output):
                vi.name = inner.get(vi.name, vi.name)


def _expand_node(node: Any, fp: Any, schema: Any, fresh: FreshNames) -> list[Any]:
    """The nodes of body ``fp`` standing for ``node``, renamed and with attribute references resolved."""
    from onnx import NodeProto

    values: dict[str, Any] = {}
    for name, attr in schema.attributes.items():
        if attr.default_value.name:
            values[name] = attr.default_value
    for a in fp.attribute_proto:
        values[a.name] = a
    for a in node.attribute:
        values[a.name] = a
    label = _label(node)
    prefix = f"{label}/{fp.name or node.op_type}/"
    names = {name: (node.input[k] if k < len(node.input) else "") for k, name in enumerate(fp.input)}
    for k, name in enumerate(fp.output):
        names[name] = node.output[k] if k < len(node.output) and node.output[k] else fresh(prefix + name)
    out = []
    for body_node in fp.node:
        n = NodeProto()
        n.CopyFrom(body_node)
        _resolve_attrs(n, values)
        _rename(n, names, fresh, prefix)
        n.name = fresh(prefix + (body_node.name or body_node.op_type))
        out.append(n)
    return out


def _read_names(nodes: Any) -> set[str]:
    """Every tensor name read by ``nodes`` or by the nodes of their subgraphs."""
    return {i for n in _all_nodes(nodes) for i in n.input if i}


def expand_function_ops(model: Any, opset: int, source: str, handled: Collection[str],
                        same_meaning: SameMeaning) -> Origins:
    """Expand, in place, every top-level node of a function op without a handler (see the module docstring).

    ``opset`` is the model's default-domain opset, ``handled`` the op types the importer has a handler for and
    ``same_meaning(op, old, new)`` whether ``op`` means the same at opsets ``old`` and ``new``. Returns the
    expanded nodes' origins (for :func:`refuse_unsupported_bodies`); empty when nothing was expanded.
    """
    g = model.graph
    origins: Origins = {}
    fresh: FreshNames | None = None
    for depth in range(MAX_DEPTH + 1):
        consts = _constants(g)
        chosen = {k for k, n in enumerate(g.node) if _expandable(n, opset, handled, consts)}
        todo = [g.node[k] for k in sorted(chosen)]
        if not todo:
            break
        if depth == MAX_DEPTH:
            n = todo[0]
            op, name = origins.get(n.name, (n.op_type, _label(n)))
            raise UnsupportedModelError(
                f"{source}: ONNX node '{name}' ({op}): its ONNX function body still holds function op {n.op_type} "
                f"after {MAX_DEPTH} nested expansions; export it with plain ONNX ops")
        if fresh is None:
            taken = {o for n in _all_nodes(g.node) for o in n.output} | {n.name for n in g.node}
            taken |= {t.name for t in g.initializer} | {vi.name for vi in list(g.input) + list(g.output)}
            taken |= _read_names(g.node)
            fresh = FreshNames(taken)
        types = _known_types(model) if any(
            not any(v <= opset for v in _schema(n.op_type, opset).function_opset_versions) for n in todo) else {}
        nodes = []
        for k, n in enumerate(g.node):
            if k not in chosen:
                nodes.append(n)
                continue
            schema = _schema(n.op_type, opset)
            fp = _body(n, opset, types, source)
            _check_body_opset(n, fp, opset, same_meaning, source)
            origin = origins.get(n.name, (n.op_type, _label(n)))
            for new in _expand_node(n, fp, schema, fresh):
                origins[new.name] = origin
                nodes.append(new)
        del g.node[:]
        g.node.extend(nodes)
    if origins:
        _drop_dead(g, origins)
    return origins


def _drop_dead(g: Any, origins: Origins) -> None:
    """Remove expanded nodes none of whose outputs is read (outputs the original node left out), in place."""
    while True:
        used = _read_names(g.node) | {vi.name for vi in g.output}
        keep = [n for n in g.node if n.name not in origins or any(o in used for o in n.output if o)]
        if len(keep) == len(g.node):
            return
        del g.node[:]
        g.node.extend(keep)


#: ops whose output the importer computes as a constant from static shapes
_SHAPE_OPS = ("Shape", "Size")


def drop_empty_parts(model: Any, origins: Origins) -> None:
    """Remove the zero-size pieces bodies make for a degenerate case, in place (after shape inference).

    RotaryEmbedding rotating the whole head splits off an empty "not rotated" part and concatenates it back:
    an expanded Concat loses its zero-size inputs, and an expanded Split its zero-size outputs nothing reads
    any more (an Identity when one output is left). Other zero-size tensors stay (the importer refuses them).
    """
    from onnx import helper, numpy_helper

    g = model.graph
    empty = {vi.name for vi in list(g.value_info) + list(g.output) + list(g.input)
             if vi.type.tensor_type.HasField("shape") and any(
                 d.HasField("dim_value") and d.dim_value == 0 for d in vi.type.tensor_type.shape.dim)}
    if not empty:
        return
    for n in g.node:
        if n.name in origins and n.op_type == "Concat" and n.domain in DEFAULT_DOMAINS:
            keep = [i for i in n.input if i not in empty]
            if keep and len(keep) < len(n.input):
                del n.input[:]
                n.input.extend(keep)
    used = _read_names(g.node) | {vi.name for vi in g.output}
    inits = {t.name: t for t in g.initializer}
    fresh = FreshNames({t.name for t in g.initializer} | {o for n in g.node for o in n.output} | used)
    for k, n in enumerate(g.node):
        if n.name not in origins or n.op_type != "Split" or n.domain not in DEFAULT_DOMAINS:
            continue
        gone = [j for j, o in enumerate(n.output) if o in empty and o not in used]
        if not gone or len(n.input) < 2 or n.input[1] not in inits:
            continue
        sizes = numpy_helper.to_array(inits[n.input[1]])
        if any(int(sizes[j]) != 0 for j in gone):
            continue
        left = [j for j in range(len(n.output)) if j not in gone]
        if len(left) == 1:
            g.node[k].CopyFrom(helper.make_node("Identity", [n.input[0]], [n.output[left[0]]], name=n.name))
            continue
        name = fresh(n.input[1] + "/non_empty")
        g.initializer.append(numpy_helper.from_array(sizes[left], name))
        outputs = [n.output[j] for j in left]
        n.input[1] = name
        del n.output[:]
        n.output.extend(outputs)


def refuse_unsupported_bodies(model: Any, origins: Origins, handled: Collection[str], source: str) -> None:
    """After folding: refuse, naming the original op, an expanded node the importer has no handler for and
    cannot evaluate as a constant (one of its inputs is computed from the model's inputs)."""
    if not origins:
        return
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = set(inits)
    readers: dict[str, list[Any]] = {o.name: [None] for o in g.output}  # a graph output has an outside reader
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    for n in g.node:
        real = [i for i in n.input if i]
        if n.op_type in _SHAPE_OPS or n.op_type == "Constant" or all(i in consts for i in real):
            consts.update(o for o in n.output if o)
            continue
        if n.name in origins and n.op_type in _MASK_OPS and n.domain in DEFAULT_DOMAINS \
                and not _feeds_softmax(n, readers):  # a masked softmax is a float island (converters.masked_softmax)
            _refuse_infinite_mask(n, origins[n.name], inits, source)
        if n.name not in origins or (n.domain in DEFAULT_DOMAINS and n.op_type in handled):
            continue
        op, name = origins[n.name]
        body_op = n.op_type if n.domain in DEFAULT_DOMAINS else f"{n.domain}.{n.op_type}"
        raise UnsupportedModelError(
            f"{source}: ONNX node '{name}' ({op}) expands to ONNX ops including {body_op} (node '{n.name}'), "
            f"which is not supported; export {op} as ops the converter supports")


#: ops that add a mask to activations (Attention's causal or boolean mask is an Add of 0 / -inf)
_MASK_OPS = ("Add", "Sub")


def _feeds_softmax(node: Any, readers: dict[str, list[Any]]) -> bool:
    """True when ``node``'s output is read only by a Softmax, directly or through Reshape/Transpose/Identity
    (none of them a graph output): a masked softmax, which the quantizer makes a float island."""
    t = node.output[0]
    while True:
        r = readers.get(t, [])
        if len(r) != 1 or r[0] is None or r[0].domain not in DEFAULT_DOMAINS:
            return False
        if r[0].op_type == "Softmax":
            return True
        if r[0].op_type not in ("Reshape", "Transpose", "Identity"):
            return False
        t = r[0].output[0]


def _refuse_infinite_mask(node: Any, origin: tuple[str, str], inits: dict[str, Any], source: str) -> None:
    """Refuse an expanded Add/Sub of an activation and a constant holding infinities (a mask of -inf, as
    Attention builds for ``is_causal=1`` or a boolean ``attn_mask``), naming the original op: no int8 scale
    covers it."""
    import numpy as np
    from onnx import numpy_helper

    for i in node.input:
        t = inits.get(i)
        if t is None:
            continue
        value = numpy_helper.to_array(t)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            op, name = origin
            raise UnsupportedModelError(
                f"{source}: ONNX node '{name}' ({op}) expands to an {node.op_type} of a mask holding infinities "
                f"(node '{node.name}'; a causal or boolean attention mask), which int8 cannot represent; export "
                f"the model without the mask (is_causal=0, no boolean attn_mask) or with a finite additive mask")


# ---------------------------------------------------------------- ONNX-ML (classical ML) ops
#: the ONNX-ML domain: what scikit-learn, LightGBM and XGBoost converters write (skl2onnx, onnxmltools)
ML_DOMAIN = "ai.onnx.ml"
#: the ONNX-ML ops that are plain tensor arithmetic and are rewritten into standard ops
ML_REWRITTEN = ("Scaler", "LinearRegressor")


def _attr(node: Any, name: str) -> Any:
    return next((a for a in node.attribute if a.name == name), None)


def _ml_scaler(node: Any, fresh: FreshNames, consts: list[Any], label: str, source: str) -> list[Any]:
    """``Scaler``: ``Y = (float(X) - offset) * scale``, ``offset`` and ``scale`` one value or one per feature
    (the last axis) -> Cast, Sub, Mul."""
    from onnx import TensorProto, helper, numpy_helper

    offset, scale = (list(_attr(node, k).floats) if _attr(node, k) is not None else [] for k in ("offset", "scale"))
    if not offset or not scale:
        raise ModelFormatError(f"{source}: ONNX node '{label}' ({ML_DOMAIN}.Scaler): needs both 'offset' and 'scale' "
                               f"(got {len(offset)} and {len(scale)} values)")
    x = fresh(f"{label}/Scaler/x")
    off, sc, mid = fresh(f"{label}/Scaler/offset"), fresh(f"{label}/Scaler/scale"), fresh(f"{label}/Scaler/centred")
    consts += [numpy_helper.from_array(np.asarray(offset, np.float32), off),
               numpy_helper.from_array(np.asarray(scale, np.float32), sc)]
    return [helper.make_node("Cast", [node.input[0]], [x], name=fresh(f"{label}/Scaler/cast"), to=TensorProto.FLOAT),
            helper.make_node("Sub", [x, off], [mid], name=fresh(f"{label}/Scaler/sub")),
            helper.make_node("Mul", [mid, sc], [node.output[0]], name=fresh(f"{label}/Scaler/mul"))]


def _ml_linear_regressor(node: Any, fresh: FreshNames, consts: list[Any], label: str, source: str) -> list[Any]:
    """``LinearRegressor`` without a post transform: ``Y = float(X) @ coefficients^T + intercepts``,
    ``coefficients`` row-major ``[targets, features]`` -> Cast, MatMul, Add."""
    from onnx import TensorProto, helper, numpy_helper

    post = _attr(node, "post_transform")
    if post is not None and post.s not in (b"", b"NONE"):
        raise UnsupportedModelError(f"{source}: ONNX node '{label}' ({ML_DOMAIN}.LinearRegressor): post_transform "
                                    f"{post.s.decode()} is not supported (only NONE)")
    coef = np.asarray(_attr(node, "coefficients").floats if _attr(node, "coefficients") is not None else [], np.float32)
    targets = int(_attr(node, "targets").i) if _attr(node, "targets") is not None else 1
    intercepts = np.asarray(_attr(node, "intercepts").floats if _attr(node, "intercepts") is not None else [],
                            np.float32)
    if targets < 1 or coef.size == 0 or coef.size % targets or intercepts.size not in (0, targets):
        raise ModelFormatError(f"{source}: ONNX node '{label}' ({ML_DOMAIN}.LinearRegressor): {coef.size} "
                               f"coefficients and {intercepts.size} intercepts do not fit {targets} target(s)")
    x, w, prod = fresh(f"{label}/LinearRegressor/x"), fresh(f"{label}/LinearRegressor/weights"), node.output[0]
    consts.append(numpy_helper.from_array(np.ascontiguousarray(coef.reshape(targets, -1).T), w))
    nodes = [helper.make_node("Cast", [node.input[0]], [x], name=fresh(f"{label}/LinearRegressor/cast"),
                              to=TensorProto.FLOAT)]
    if intercepts.size:
        prod, b = fresh(f"{label}/LinearRegressor/product"), fresh(f"{label}/LinearRegressor/intercepts")
        consts.append(numpy_helper.from_array(intercepts, b))
        nodes.append(helper.make_node("MatMul", [x, w], [prod], name=fresh(f"{label}/LinearRegressor/matmul")))
        nodes.append(helper.make_node("Add", [prod, b], [node.output[0]], name=fresh(f"{label}/LinearRegressor/add")))
    else:
        nodes.append(helper.make_node("MatMul", [x, w], [prod], name=fresh(f"{label}/LinearRegressor/matmul")))
    return nodes


def expand_onnx_ml(model: Any, source: str, opset: int) -> None:
    """Rewrite, in place, the top-level ONNX-ML (``ai.onnx.ml``) nodes that are plain arithmetic into standard
    ops (:data:`ML_REWRITTEN`: ``Scaler`` -> Cast, Sub, Mul; ``LinearRegressor`` -> Cast, MatMul, Add), so the
    network behind a scikit-learn scaler converts. Any other ONNX-ML op (tree ensembles, SVMs, linear
    classifiers, ZipMap, label encoders...) is refused in one line naming it. A model that declares no
    default-domain opset (all its nodes were ONNX-ML) gets ``opset``."""
    from onnx import helper

    g = model.graph
    if not any(n.domain == ML_DOMAIN for n in g.node):
        return
    for n in g.node:
        if n.domain == ML_DOMAIN and n.op_type not in ML_REWRITTEN:
            raise UnsupportedModelError(
                f"{source}: ONNX node '{_label(n)}' ({ML_DOMAIN}.{n.op_type}): classical-ML (ONNX-ML) ops such as "
                f"tree ensembles, SVMs, linear classifiers and ZipMap have no TFLite form (only "
                f"{' and '.join(ML_REWRITTEN)} are rewritten into standard ops); convert the neural-network part "
                f"of the pipeline on its own")
    taken = {o for n in _all_nodes(g.node) for o in n.output} | {n.name for n in g.node}
    taken |= {t.name for t in g.initializer} | {vi.name for vi in list(g.input) + list(g.output)} | _read_names(g.node)
    fresh = FreshNames(taken)
    consts: list[Any] = []
    nodes = []
    for n in g.node:
        if n.domain != ML_DOMAIN:
            nodes.append(n)
            continue
        rewrite = _ml_scaler if n.op_type == "Scaler" else _ml_linear_regressor
        nodes.extend(rewrite(n, fresh, consts, _label(n), source))
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(consts)
    if not any(o.domain in DEFAULT_DOMAINS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", opset))
        model.ir_version = max(model.ir_version, 7)

"""Make any float ONNX model importable: one opset (>= 13), static shapes, folded constants.

:func:`prepare_onnx` (for a file) and :func:`prepare_onnx_model` (for a ``ModelProto``) run, in order:

1. load, reading external-data files only from the model's own folder (no absolute paths, no
   ``..``, no symlinks that leave it);
2. check the IR version (>= 3); rewrite the ONNX-ML ops that are plain arithmetic (a scikit-learn ``Scaler``,
   ``LinearRegressor``) into standard ops and refuse every other ONNX-ML op by name
   (:func:`converters.importers.expand_functions.expand_onnx_ml`); check the default-domain opset (6 to 22;
   newer ones are read as 22 where every node means the same, :func:`read_as_opset`), after inlining the
   model's own functions and replacing each op the importer has no handler for but ONNX defines by a
   function body (Attention, RMSNormalization, the losses...) by that body (:mod:`converters.importers.expand_functions`; a body op
   left unsupported after folding is refused naming the original op); an already-quantized QDQ model is
   first read back as float (:mod:`converters.importers.qdq`; so is onnxruntime's dynamic quantization,
   the rest of the QOperator format is refused);
3. fix the inputs' shapes: ``input_shapes`` (``--input-shape NAME=1x3x224x224``) first, then a
   dynamic batch (axis 0 of an input of rank >= 2) becomes 1 (a fixed axis 0 too, except on an input
   frozen by ``--input-value`` or beside an input whose batch is already a fixed 1: a recurrent state
   ``[2, 1, 128]``); any other dynamic dimension is an error that lists every dynamic input and shows
   the flag; then ``input_values`` (``--input-value NAME=VALUE``) turns inputs that are settings (a
   sample rate) or a streaming state started from a known value into initializers;
4. upgrade opsets below 13 with ``onnx.version_converter`` (restoring the pre-opset-11 coordinate
   rule of Upsample/Resize, which the converter drops, and first giving B of an opset-6 Add/Sub/Mul/Div/Pow
   with ``broadcast``/``axis`` and an opset-6 PRelu's per-channel slope the trailing axes of size 1 that
   keep their meaning under numpy broadcasting), naming the op whose adapter fails;
5. fold constant subgraphs with onnxslim (shape arithmetic, ConstantOfShape/Range/Expand, If on a
   constant condition, Conv+BatchNorm), falling back to ONNX Runtime's basic optimizer when it fails;
   a graph onnxslim provably leaves as it is (:func:`nothing_to_fold`) skips it, and its sympy import;
   then inline any If whose condition is still a constant and turn Constant nodes into initializers;
6. strict shape inference; every tensor must have a static shape (ops outside the standard
   domain are refused by name).

Every failure is one ``ModelFormatError``/``UnsupportedModelError`` line naming the construct and
what to do.
"""
from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

import numpy as np

from edge_runtime.errors import ConfigError, ModelFormatError, UnsupportedModelError

if TYPE_CHECKING:  # expand_functions, loop_unroll, qdq and onnx_eval are imported when a model needs them
    from converters.importers.expand_functions import Origins

MIN_OPSET, MAX_OPSET, TARGET_OPSET = 6, 22, 13
MIN_IR = 3
DEFAULT_DOMAINS = ("", "ai.onnx")
InputShapes = Optional[dict[str, tuple[int, ...]]]
_V = TypeVar("_V")  # what one --input-shape / --input-value item gives for its input


# ---------------------------------------------------------------- --input-shape
def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` (also ``NAME=1,3,224,224``) into ``(name, dims)``."""
    name, sep, dims = text.rpartition("=")
    parts = re.split(r"[x,]", dims.strip()) if dims.strip() else []
    if not sep or not name or not parts or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--input-shape {text!r}: expected NAME=DIMS with positive integer dims, "
                          f"e.g. --input-shape input=1x3x224x224")
    return name, tuple(int(p) for p in parts)


def parse_input_shapes(items: Optional[list[str]]) -> InputShapes:
    """Parse repeated ``--input-shape`` values into a dict (None when none were given)."""
    return _parse_per_input(items, parse_input_shape, "--input-shape")


def _parse_per_input(items: Optional[list[str]], parse: Callable[[str], tuple[str, _V]],
                     option: str) -> Optional[dict[str, _V]]:
    """``{input name: value}`` of the repeated ``option`` values ``items``, each read by ``parse``; None when
    none were given; an input named twice is refused in one line."""
    if not items:
        return None
    out: dict[str, _V] = {}
    for item in items:
        name, value = parse(item)
        if name in out:
            raise ConfigError(f"{option} given twice for input '{name}'")
        out[name] = value
    return out


# ---------------------------------------------------------------- --input-value
InputValues = Optional[dict[str, np.ndarray]]


def parse_input_value(text: str) -> tuple[str, np.ndarray]:
    """Parse ``NAME=VALUE`` into ``(name, array)``: VALUE is a number (``sr=16000``, filling the input's
    whole shape, e.g. ``state=0``), comma-separated numbers (a 1-D value) or a ``.npy`` file."""
    name, sep, value = text.partition("=")
    value = value.strip()
    example = "e.g. --input-value sr=16000 or --input-value state=0"
    if not sep or not name or not value:
        raise ConfigError(f"--input-value {text!r}: expected NAME=VALUE ({example})")
    if value.lower().endswith(".npy"):
        try:
            return name, np.load(value, allow_pickle=False)
        except Exception as exc:  # missing file, not an .npy, object array
            raise ConfigError(f"--input-value {text!r}: cannot read {value}: {type(exc).__name__}: {exc}") from None
    try:
        nums = [float(v) for v in value.split(",")]
    except ValueError:
        raise ConfigError(f"--input-value {text!r}: VALUE must be a number, numbers separated by commas or a "
                          f".npy file ({example})") from None
    arr = np.array(nums if len(nums) > 1 else nums[0])
    return name, arr


def parse_input_values(items: Optional[list[str]]) -> InputValues:
    """Parse repeated ``--input-value`` options into a dict (None when none were given)."""
    return _parse_per_input(items, parse_input_value, "--input-value")


def freeze_inputs(model: Any, input_values: InputValues, source: str) -> None:
    """Turn each input named in ``input_values`` into an initializer of its ONNX type, in place.

    For inputs that are settings rather than data (a sample rate, a mode flag) or a streaming state
    started from zeros: control flow and shape arithmetic on them then fold. A scalar value fills the
    input's static shape (after ``--input-shape``); any other value must have that shape.
    """
    from onnx import helper, numpy_helper

    if not input_values:
        return
    g = model.graph
    inits = {i.name for i in g.initializer}
    real = {vi.name: vi for vi in g.input if vi.name not in inits}
    unknown = sorted(set(input_values) - set(real))
    if unknown:
        raise ConfigError(f"{source}: --input-value names unknown input(s) {', '.join(unknown)}; "
                          f"the model's inputs are: {', '.join(real)}")
    if len(input_values) >= len(real):
        raise ConfigError(f"{source}: --input-value would freeze every input ({', '.join(real)}); "
                          f"at least one must stay a model input")
    for name, value in input_values.items():
        tt = real[name].type.tensor_type
        dims = tt.shape.dim if tt.HasField("shape") else []
        if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims) or not tt.HasField("shape"):
            raise ConfigError(f"{source}: --input-value {name}: input '{name}' has a dynamic shape "
                              f"({_dims_text(dims)}); give it with --input-shape {name}=DIMS too")
        shape = tuple(int(d.dim_value) for d in dims)
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        except Exception:
            raise ConfigError(f"{source}: --input-value {name}: input '{name}' has a type "
                              f"({tt.elem_type}) that cannot hold a number") from None
        value = np.asarray(value)
        if value.size == 1:
            value = np.full(shape, value.reshape(-1)[0])
        elif value.shape != shape:
            raise ConfigError(f"{source}: --input-value {name}: the value has shape {value.shape} but input "
                              f"'{name}' has shape {shape}")
        if dtype.kind in "iub" and not np.all(np.round(value) == value):
            raise ConfigError(f"{source}: --input-value {name}: input '{name}' is {dtype.name}, the value "
                              f"is not a whole number")
        g.initializer.append(numpy_helper.from_array(value.astype(dtype), name))
    keep = [vi for vi in g.input if vi.name not in input_values]
    del g.input[:]
    g.input.extend(keep)


# ---------------------------------------------------------------- entry points
def prepare_onnx(path: "str | os.PathLike[str]", input_shapes: InputShapes = None,
                 input_values: InputValues = None) -> Any:
    """Load the .onnx at ``path`` and return it prepared (see the module docstring) as a ``ModelProto``."""
    import onnx

    p = os.fspath(path)
    if os.path.isdir(p):
        raise ModelFormatError(f"{p}: is a directory, not an ONNX model")
    if not os.path.isfile(p):
        raise ModelFormatError(f"{p}: no such file")
    try:
        model = onnx.load(p, load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and several undocumented types on garbage
        raise ModelFormatError(f"{p}: not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    load_external_data(model, p)
    return prepare_onnx_model(model, input_shapes, source=p, input_values=input_values)


def prepare_onnx_model(model: Any, input_shapes: InputShapes = None, source: str = "model",
                       input_values: InputValues = None) -> Any:
    """Prepare an in-memory ``ModelProto`` (external data already loaded); ``source`` names it in errors.

    ``input_values`` (``--input-value NAME=VALUE``) freezes those inputs as constants (:func:`freeze_inputs`).
    """
    g = model.graph
    if not g.node and not g.output:
        raise ModelFormatError(f"{source}: not a valid ONNX model (the graph has no nodes and no outputs)")
    if model.ir_version < MIN_IR:
        raise UnsupportedModelError(f"{source}: ONNX IR version {model.ir_version} is too old (need >= {MIN_IR}); "
                                    f"re-export the model with a current exporter")
    if any(n.domain == "ai.onnx.ml" for n in g.node):  # scikit-learn pipelines: Scaler and friends
        from converters.importers.expand_functions import expand_onnx_ml

        expand_onnx_ml(model, source, TARGET_OPSET)
    opset = default_opset(model)
    if len(model.functions):
        from converters.importers.expand_functions import inline_local_functions

        model = inline_local_functions(model, source)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or _quantized_op(n.op_type) for n in model.graph.node):
        from converters.importers.qdq import dequantize_qdq_model

        dequantize_qdq_model(model, source)  # a QDQ model becomes its float form before ops are expanded or folded
    origins: Origins = {}
    if MIN_OPSET <= opset <= _newest_known_opset() and _has_unhandled_ops(model):
        from converters.importers.expand_functions import expand_function_ops

        origins = expand_function_ops(model, opset, source, _handled_ops(), _same_meaning)
    if opset > MAX_OPSET and opset <= _newest_known_opset():
        read_as_opset(model, MAX_OPSET, source)
        opset = MAX_OPSET
    if opset < MIN_OPSET or opset > MAX_OPSET:
        raise UnsupportedModelError(f"{source}: ONNX opset {opset} is outside the supported range "
                                    f"{MIN_OPSET}-{MAX_OPSET}; re-export with an opset in that range (e.g. 17)")
    rebatched = fix_input_shapes(model, input_shapes, source, frozen=set(input_values or ()))
    freeze_inputs(model, input_values, source)
    if model.ir_version < 4:  # IR 3 lists initializers as inputs; many old files forget, which IR 4 allows
        model.ir_version = 4
    if opset < 7:
        keep_old_broadcasts(model, source)
    if opset < TARGET_OPSET:
        model = upgrade_opset(model, TARGET_OPSET, source)
    constants_to_initializers(model)  # before folding: list-valued Constants keep their ONNX dtype
    model = fold_constants(model)
    inline_constant_ifs(model)
    constants_to_initializers(model)
    if any(n.op_type in ("Loop", "Scan") for n in model.graph.node):
        from converters.importers.loop_unroll import has_loops, unroll_loops

        if has_loops(model):  # Loop/Scan with a trip count known now: one copy of the body per iteration
            unroll_loops(model, source)
            model = fold_constants(model)
            inline_constant_ifs(model)
            constants_to_initializers(model)
    spell_out_gemm_of_activations(model)
    hint = (f"; the fixed batch of {', '.join(rebatched)} was set to 1 (give --input-shape to keep it)"
            if rebatched else "")
    model = infer_static_shapes(model, source, hint)
    if origins:
        from converters.importers.expand_functions import drop_empty_parts, refuse_unsupported_bodies

        drop_empty_parts(model, origins)
        refuse_unsupported_bodies(model, origins, _handled_ops(), source)
    return model


def _handled_ops() -> frozenset[str]:
    """The ONNX op types the importer has a handler for."""
    from converters.importers.onnx_ops import REGISTRY

    return frozenset(REGISTRY)


def _has_unhandled_ops(model: Any) -> bool:
    """Whether a top-level default-domain node of ``model`` has no handler (only such an op can be expanded)."""
    handled = _handled_ops()
    return any(n.domain in DEFAULT_DOMAINS and n.op_type not in handled for n in model.graph.node)


def _same_meaning(op: str, old: int, new: int) -> bool:
    """Whether a node of ``op`` written for opset ``old`` (a function body's) means the same at opset ``new``:
    the same inputs and outputs, every old attribute kept with its type and default (a required one may
    have become optional: the node sets it), and no new required attribute (see :func:`_schema_change`)."""
    import onnx.defs

    change = _schema_change(op, old, new)
    if change is None or change[0] == "":
        return True
    try:
        s_old, s_new = onnx.defs.get_schema(op, old, ""), onnx.defs.get_schema(op, new, "")
    except Exception:  # noqa: BLE001 - an op missing at one of the opsets
        return False
    a_old, a_new = s_old.attributes, s_new.attributes

    def params(s: Any) -> tuple:
        return ([(p.name, int(p.option)) for p in s.inputs], [(p.name, int(p.option)) for p in s.outputs])

    return (params(s_old) == params(s_new)
            and all(n in a_new and int(a.type) == int(a_new[n].type) and (a.required or not a_new[n].required)
                    and a.default_value == a_new[n].default_value for n, a in a_old.items())
            and not any(a.required for n, a in a_new.items() if n not in a_old))


def default_opset(model: Any) -> int:
    """The model's opset of the default (ai.onnx) domain; 0 when it declares none."""
    return max((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), default=0)


# ---------------------------------------------------------------- external data
def _all_tensors(graph: Any) -> Iterator[Any]:
    """Initializers and Constant-node tensors of ``graph`` and every nested subgraph."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def load_external_data(model: Any, path: str) -> None:
    """Read the tensors stored in external files beside ``path``; refuse locations outside its folder."""
    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_tensor

    base = os.path.dirname(os.path.abspath(path))
    real_base = os.path.realpath(base)
    for t in _all_tensors(model.graph):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        parts = re.split(r"[\\/]", loc)
        if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", loc) \
                or ".." in parts:
            raise ModelFormatError(f"{path}: tensor '{t.name}' keeps its data at {loc!r}, outside the model's "
                                   f"folder; external data must be a relative path beside the model")
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([full, real_base]) != real_base:
            raise ModelFormatError(f"{path}: tensor '{t.name}' keeps its data at {loc!r}, which links outside "
                                   f"the model's folder; copy the data file beside the model")
        if not os.path.isfile(full):
            raise ModelFormatError(f"{path}: tensor '{t.name}' keeps its data in {loc!r}, which is missing; "
                                   f"put the data file beside the model")
        try:
            load_external_data_for_tensor(t, base)
        except Exception as exc:
            raise ModelFormatError(f"{path}: cannot read external data of tensor '{t.name}' from {loc!r}: "
                                   f"{type(exc).__name__}: {exc}") from None
        t.data_location = TensorProto.DEFAULT
        del t.external_data[:]


# ---------------------------------------------------------------- shapes of inputs
def _dims_text(dims: Any) -> str:
    return "x".join(str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0
                    else (d.dim_param or "?") for d in dims)


def fix_input_shapes(model: Any, input_shapes: InputShapes, source: str, frozen: "set[str] | None" = None) -> list[str]:
    """Give every graph input a static shape, in place (see the module docstring); clear stale shapes.

    Returns the inputs whose fixed batch (> 1) was set to 1, as ``name (N)``. A fixed leading dimension
    is not a batch, and is kept, on an input ``frozen`` by ``--input-value`` and when another input
    already has a fixed batch of 1 (a recurrent state ``[2, 1, 128]`` beside an input ``[1, 576]``).
    """
    g = model.graph
    inits = {i.name for i in g.initializer}
    real = [vi for vi in g.input if vi.name not in inits]
    given = dict(input_shapes or {})
    unknown = sorted(set(given) - {vi.name for vi in real})
    if unknown:
        raise ConfigError(f"{source}: --input-shape names unknown input(s) {', '.join(unknown)}; "
                          f"the model's inputs are: {', '.join(vi.name for vi in real)}")
    dynamic: list[str] = []
    example = ""
    rebatched: list[str] = []
    frozen = frozen or set()
    batch_one = {vi.name for vi in real if len(vi.type.tensor_type.shape.dim) >= 2
                 and vi.type.tensor_type.shape.dim[0].dim_value == 1}
    for vi in real:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedModelError(f"{source}: input '{vi.name}' is not a tensor (sequence/map inputs are "
                                        f"not supported); export the model with tensor inputs")
        dims = tt.shape.dim
        if vi.name in given:
            want = given[vi.name]
            if tt.HasField("shape") and len(dims) and len(dims) != len(want):
                raise ConfigError(f"{source}: --input-shape {vi.name}={'x'.join(map(str, want))} has rank "
                                  f"{len(want)} but input '{vi.name}' has rank {len(dims)} ({_dims_text(dims)})")
            for k, (d, w) in enumerate(zip(dims, want)):
                if k > 0 and d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != w:
                    raise ConfigError(f"{source}: --input-shape {vi.name}={'x'.join(map(str, want))} contradicts "
                                      f"the model's fixed shape {_dims_text(dims)}")
            del tt.shape.dim[:]
            for w in want:
                tt.shape.dim.add().dim_value = int(w)
            continue
        if not tt.HasField("shape"):
            dynamic.append(f"{vi.name}[unknown rank]")
            continue
        missing = False
        for k, d in enumerate(dims):
            static = d.HasField("dim_value") and d.dim_value > 0
            if k == 0 and len(dims) >= 2 and static and (vi.name in frozen or batch_one - {vi.name}):
                continue  # a fixed leading dimension that is not a batch
            if k == 0 and len(dims) >= 2:  # the batch: one sample at a time
                if not static or d.dim_value != 1:
                    if static:
                        rebatched.append(f"{vi.name} ({d.dim_value})")
                    d.ClearField("dim_param")
                    d.dim_value = 1
            elif not static:
                missing = True
        if missing:
            dynamic.append(f"{vi.name}[{_dims_text(dims)}]")
            example = example or f"{vi.name}=" + "x".join(
                str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else f"<{d.dim_param or 'size'}>"
                for d in dims)
    if dynamic:
        example = example or f"{real[0].name}=<dims>"  # an input of unknown rank
        raise UnsupportedModelError(
            f"{source}: dynamic input dimension(s) other than the batch: {', '.join(dynamic)}; give each such "
            f"input a fixed shape with --input-shape NAME=DIMS (repeatable, one per input), e.g. "
            f"--input-shape {example} with each <...> replaced by a size")
    for vi in list(g.value_info) + list(g.output):  # stale or symbolic shapes; inference recomputes them
        vi.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    return rebatched


# ---------------------------------------------------------------- newer opsets
def _newest_known_opset() -> int:
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _schema_change(op: str, old: int, new: int) -> "tuple[str, set[str]] | None":
    """How ``op`` at opset ``new`` differs from its form at opset ``old``, as far as a model can tell.

    ``None``: the same op there (the versions in between only added element types, or optional
    attributes with defaults). Otherwise ``(reason, added)``: a reason that is not ``""`` refuses the op
    (new at ``new``, or inputs, outputs or attributes changed); ``added`` names attributes new since
    ``old``, which keep the old meaning only while a node leaves them at their default.
    """
    import onnx.defs

    try:
        s_new = onnx.defs.get_schema(op, new, "")
    except Exception:  # not an ai.onnx op at all: the importer names it
        return None
    if s_new.since_version <= old:
        return None
    try:
        s_old = onnx.defs.get_schema(op, old, "")
    except Exception:
        from converters.importers.onnx_ops.newer_ops import NEWER_OPS

        if op in NEWER_OPS:  # new since ``old``, and converted as it is
            return None
        return f"op {op} exists only from ONNX opset {s_new.since_version}", set()

    def params(s: Any) -> tuple:
        return ([(p.name, int(p.option)) for p in s.inputs], [(p.name, int(p.option)) for p in s.outputs])

    attrs_old, attrs_new = s_old.attributes, s_new.attributes
    same_attrs = all(n in attrs_new and int(a.type) == int(attrs_new[n].type) and a.required == attrs_new[n].required
                     and a.default_value == attrs_new[n].default_value for n, a in attrs_old.items())
    added = {n for n, a in attrs_new.items() if n not in attrs_old}
    if params(s_old) != params(s_new) or not same_attrs or any(attrs_new[n].required for n in added):
        return f"op {op} changed its inputs, outputs or attributes in ONNX opset {s_new.since_version}", set()
    return "", added


def _is_default(op: str, opset: int, attr: Any) -> bool:
    """Whether node attribute ``attr`` holds the default value of ``op``'s schema at ``opset``."""
    import onnx.defs
    from onnx import helper

    default = onnx.defs.get_schema(op, opset, "").attributes[attr.name].default_value
    if not default.name:  # no default
        return False
    return bool(helper.get_attribute_value(default) == helper.get_attribute_value(attr))


def read_as_opset(model: Any, target: int, source: str) -> None:
    """Relabel a model of a newer default-domain opset as ``target`` when every node means the same there.

    An op whose later versions only widened its element types (most ops of opsets 23-28: float4, float8
    and int4 types) or added optional attributes that the node leaves unset reads as its opset-``target``
    form. A node of an op that is new since ``target`` (BitCast, ...; Attention, RMSNormalization and the other
    ops ONNX defines by a function body were expanded before, :mod:`converters.importers.expand_functions`;
    CumProd and TensorScatter are kept, :mod:`converters.importers.onnx_ops.newer_ops`),
    changed its inputs or attributes, or sets an attribute its opset-``target`` form does not have, is
    refused in one line naming it; except SpaceToDepth's ``mode="CRD"`` (opset 28), which
    :func:`_spell_out_crd_space_to_depth` writes in opset-``target`` ops first. An added attribute a node sets
    to its default is dropped (the opset-``target`` form has no such attribute).
    """
    opset = default_opset(model)
    verdicts: dict[str, "tuple[str, set[str]] | None"] = {}
    _spell_out_crd_space_to_depth(model.graph, target)
    for node in _nodes(model.graph):
        if node.domain not in DEFAULT_DOMAINS:
            continue
        if node.op_type not in verdicts:
            verdicts[node.op_type] = _schema_change(node.op_type, target, opset)
        change = verdicts[node.op_type]
        if change is None:
            continue
        reason, added = change
        used = sorted(a.name for a in node.attribute if a.name in added and not _is_default(node.op_type, opset, a))
        if reason or used:
            why = reason or f"node sets attribute '{used[0]}', which op {node.op_type} gained after opset {target}"
            raise UnsupportedModelError(f"{source}: ONNX opset {opset}: {why} (node '{node.name or node.output[0]}'); "
                                        f"the converter reads opsets {MIN_OPSET}-{MAX_OPSET} and newer ones only "
                                        f"where they mean the same; re-export with opset {MAX_OPSET} or lower")
        keep = [a for a in node.attribute if a.name not in added]
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)
    for o in model.opset_import:
        if o.domain in DEFAULT_DOMAINS:
            o.version = target


def _spell_out_crd_space_to_depth(graph: Any, target: int) -> None:
    """Replace each SpaceToDepth with ``mode="CRD"`` (new in opset 28) of ``graph`` and its subgraphs by ops of
    opset ``target``, in place: each channel alone is a one-channel SpaceToDepth, whose DCR and CRD orders agree.
    ``[N, C, H, W] -> Reshape [N*C, 1, H, W] -> SpaceToDepth -> [N*C, b*b, H/b, W/b] -> Reshape [N, C*b*b, H/b, W/b]``
    (N read by Shape; folded once the shapes are static)."""
    import onnx.defs
    from onnx import helper

    if "mode" in onnx.defs.get_schema("SpaceToDepth", target, "").attributes:
        return
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _spell_out_crd_space_to_depth(sub, target)
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "SpaceToDepth" or node.domain not in DEFAULT_DOMAINS or attrs.get("mode") != b"CRD":
            nodes.append(node)
            continue
        stem = node.name or node.output[0]
        parts = {f"{stem}/crd_{k}": v for k, v in (("one_channel", [-1, 1, 0, 0]), ("tail", [-1, 0, 0]))}
        for name, value in parts.items():
            nodes.append(helper.make_node("Constant", [], [name], name=name,
                                          value=helper.make_tensor(name, 7, [len(value)], value)))
        one, tail = parts
        nodes += [helper.make_node("Reshape", [node.input[0], one], [f"{stem}/crd_x"], name=f"{stem}/crd_x"),
                  helper.make_node("SpaceToDepth", [f"{stem}/crd_x"], [f"{stem}/crd_s2d"], name=f"{stem}/crd_s2d",
                                   blocksize=int(attrs["blocksize"])),
                  helper.make_node("Shape", [node.input[0]], [f"{stem}/crd_n"], name=f"{stem}/crd_n", start=0, end=1),
                  helper.make_node("Concat", [f"{stem}/crd_n", tail], [f"{stem}/crd_shape"], name=f"{stem}/crd_shape",
                                   axis=0),
                  helper.make_node("Reshape", [f"{stem}/crd_s2d", f"{stem}/crd_shape"], [node.output[0]], name=stem)]
    if len(nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)


# ---------------------------------------------------------------- opset upgrade
def upgrade_opset(model: Any, target: int, source: str) -> Any:
    """Convert the default-domain opset to ``target`` with ``onnx.version_converter``; one-line error if it fails.

    On failure the conversion is retried one opset at a time to name the op whose adapter stopped it.
    """
    from onnx import version_converter

    resizes = _pre_opset11_resizes(model) if default_opset(model) < 11 else []
    if default_opset(model) < 13:
        _flatten_old_hardmax(model)
    try:
        return _fix_resize_semantics(version_converter.convert_version(model, target), resizes)
    except Exception:
        pass
    current = model
    for step in range(default_opset(model) + 1, target + 1):
        try:
            current = version_converter.convert_version(current, step)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:160]
            culprits = _ops_changed_at(current, step) or sorted({n.op_type for n in current.graph.node})
            node = next((n for n in current.graph.node if n.op_type == culprits[0]), None)
            where = f" at op '{culprits[0]}'" + (f" (node '{node.name or node.output[0]}')" if node is not None else "")
            raise UnsupportedModelError(
                f"{source}: upgrading ONNX opset {step - 1} to {step} stopped{where}: {msg}; re-export the model "
                f"with opset_version >= {target} (or replace that op)") from None
    return _fix_resize_semantics(current, resizes)


def _flatten_old_hardmax(model: Any) -> None:
    """Write each Hardmax of an opset below 13 in the form its old meaning has at every opset.

    Before opset 13 Hardmax takes one maximum over all axes from ``axis`` on (the input coerced to 2-D);
    onnx's version converter relabels the node without that coercion. ``Flatten(axis)``, Hardmax over the
    last axis of the 2-D result, and a Reshape back to the input's shape mean the same at any opset.
    """
    from onnx import helper

    nodes = []
    for n in model.graph.node:
        if n.op_type != "Hardmax" or n.domain not in DEFAULT_DOMAINS:
            nodes.append(n)
            continue
        axis = next((int(a.i) for a in n.attribute if a.name == "axis"), 1)
        stem = n.name or n.output[0]
        flat, hard, shape = (f"{stem}/flat", f"{stem}/hardmax2d", f"{stem}/shape")
        nodes += [helper.make_node("Flatten", [n.input[0]], [flat], name=flat, axis=axis),
                  helper.make_node("Hardmax", [flat], [hard], name=n.name, axis=1),
                  helper.make_node("Shape", [n.input[0]], [shape], name=shape),
                  helper.make_node("Reshape", [hard, shape], [n.output[0]], name=f"{stem}/reshape")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _pre_opset11_resizes(model: Any) -> list[bool]:
    """For each Upsample/Resize node of a model before opset 11, in order: whether it only enlarges."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    found: list[bool] = []
    for n in model.graph.node:
        if n.op_type not in ("Upsample", "Resize") or n.domain not in DEFAULT_DOMAINS:
            continue
        scales: Optional[np.ndarray] = None
        attr = next((a for a in n.attribute if a.name == "scales"), None)
        if attr is not None:
            scales = np.array(list(attr.floats), np.float32)
        elif len(n.input) > 1 and n.input[1] in inits:
            scales = numpy_helper.to_array(inits[n.input[1]])
        elif len(n.input) > 1 and n.input[1] in consts:
            from converters.importers.onnx_eval import constant_value

            scales = constant_value(consts[n.input[1]])
        found.append(scales is None or bool(np.all(np.asarray(scales) >= 1)))
    return found


def _fix_resize_semantics(model: Any, resizes: list[bool]) -> Any:
    """Give Resize nodes that came from Upsample/Resize before opset 11 their original coordinate rule.

    Before opset 11, Upsample and Resize map output to input coordinates as ``x / scale``
    ("asymmetric") and pick the nearest pixel by truncation; ``onnx.version_converter`` leaves
    Resize-11's defaults (half_pixel, round_prefer_floor), which shifts bilinear outputs. Every
    Resize of the upgraded model came from one of those nodes, in the same order (``resizes``).
    """
    from onnx import helper

    if not resizes:
        return model
    for k, n in enumerate(x for x in model.graph.node if x.op_type == "Resize" and x.domain in DEFAULT_DOMAINS):
        enlarges = resizes[k] if k < len(resizes) else True
        keep = [a for a in n.attribute if a.name not in ("coordinate_transformation_mode", "nearest_mode")]
        mode = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "mode"), b"nearest")
        del n.attribute[:]
        n.attribute.extend(keep)
        n.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        if mode in (b"nearest", "nearest"):
            n.attribute.append(helper.make_attribute("nearest_mode", "floor" if enlarges else "ceil"))
    return model


def _ops_changed_at(model: Any, opset: int) -> list[str]:
    """Op types of ``model`` whose ONNX schema changes at ``opset`` (their adapters run in that step)."""
    from onnx import defs

    changed = []
    for op in dict.fromkeys(n.op_type for n in model.graph.node if n.domain in DEFAULT_DOMAINS):
        try:
            if defs.get_schema(op, opset).since_version == opset:
                changed.append(op)
        except Exception:  # an op removed from (or never in) the standard at this opset
            changed.append(op)
    return changed


#: Ops that, before opset 7, align B with A from ``axis`` when ``broadcast=1`` (numpy-style from opset 7 on).
AXIS_BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow"})


def keep_old_broadcasts(model: Any, source: str) -> None:
    """Keep the pre-opset-7 meaning of B's axes through the upgrade to numpy broadcasting, in place.

    * Add/Sub/Mul/Div/Pow with ``broadcast=1`` and an ``axis`` align B with A from that axis: B ``[3]`` on A
      ``[1, 3, 4, 5]`` at axis 1 is B ``[3, 1, 1]``. ``onnx.version_converter``'s 6->7 adapter appends
      ``rank(A) - rank(B)`` ones instead of ``rank(A) - axis - rank(B)`` (``[3, 1, 1, 1]``, which lines up
      with axis 0 and broadcasts the output to ``[3, 3, 4, 5]``), so B gets its trailing ones here and loses
      ``axis``.
    * PRelu applies a 1-D slope of size C > 1 along axis 1; from opset 7 on it broadcasts against the last
      axis, and the version converter's adapter leaves the node as it is: on an input of rank >= 3 the slope
      becomes ``[C, 1, ..., 1]``.

    A constant B is reshaped (a new initializer; the old one goes when nothing else reads it); any other is
    given an Unsqueeze. Ranks come from shape inference after the input shapes are fixed; a node whose
    ranks stay unknown is refused in one line.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    if not any(_old_broadcast(n) for n in g.node):
        return
    dims = _known_dims(model)
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    inits = {t.name: t for t in g.initializer}
    taken = {o for n in g.node for o in n.output} | set(inits) | {vi.name for vi in g.input}
    reshaped: set[str] = set()
    nodes = []
    for n in g.node:
        ones = _trailing_ones(n, dims, source, default_opset(model)) if _old_broadcast(n) else 0
        if ones <= 0:
            nodes.append(n)
            continue
        b = n.input[1]
        new = b + "/aligned"
        while new in taken:
            new += "_"
        taken.add(new)
        rank_b = len(dims[b])
        if b in inits:
            value = numpy_helper.to_array(inits[b])
            g.initializer.append(numpy_helper.from_array(value.reshape(value.shape + (1,) * ones), new))
            reshaped.add(b)
        else:
            nodes.append(helper.make_node("Unsqueeze", [b], [new], name=new, axes=list(range(rank_b, rank_b + ones))))
        n.input[1] = new
        readers[b] -= 1
        keep = [a for a in n.attribute if a.name != "axis"]  # B is aligned with A's trailing axes now
        del n.attribute[:]
        n.attribute.extend(keep)
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    gone = {name for name in reshaped if not readers[name]} - {vi.name for vi in g.output}
    if gone:  # a reshaped B nobody reads any more (IR 3 lists it among the inputs too)
        keep_inits = [t for t in g.initializer if t.name not in gone]
        del g.initializer[:]
        g.initializer.extend(keep_inits)
        keep_inputs = [vi for vi in g.input if vi.name not in gone]
        del g.input[:]
        g.input.extend(keep_inputs)


def _old_broadcast(node: Any) -> bool:
    """Whether ``node`` broadcasts B in a way that changed at opset 7 (PRelu; a binary op with ``broadcast=1``)."""
    return node.domain in DEFAULT_DOMAINS and len(node.input) > 1 and bool(node.input[1]) and (
        node.op_type == "PRelu" or node.op_type in AXIS_BROADCAST_OPS and _int_attr(node, "broadcast") == 1)


def _int_attr(node: Any, name: str) -> Optional[int]:
    """The integer attribute ``name`` of ``node``; None when it is absent.

    Read from the proto's ``i`` field, not with ``onnx.helper.get_attribute_value``: this runs before any
    checker, so a wrongly typed attribute reads 0 and an untyped one its ``i``, where ``get_attribute_value``
    gives a float, bytes, list or None that ``int()`` turns into another broadcast or a traceback
    (tests/test_import_prepare_shapes.py).
    """
    return next((int(a.i) for a in node.attribute if a.name == name), None)


def _known_dims(model: Any) -> dict[str, tuple[int, ...]]:
    """``{name: dims}`` of every tensor whose rank shape inference (not strict) knows; -1 for an unknown size."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # an inconsistent model: the strict inference after the upgrade names the problem
        inferred = model.graph
    dims = static_shapes(inferred, unknown=-1)
    for t in model.graph.initializer:
        dims[t.name] = tuple(int(d) for d in t.dims)
    return dims


def _trailing_ones(node: Any, dims: dict[str, tuple[int, ...]], source: str, opset: int) -> int:
    """How many trailing axes of size 1 B (``node.input[1]``) needs to keep its pre-opset-7 alignment."""
    a, b = (dims.get(i) for i in node.input[:2])
    if node.op_type == "PRelu":
        if b is None or len(b) != 1 or b[0] <= 1:
            return 0  # one slope, or not a per-channel vector: the same from opset 7 on
    elif _int_attr(node, "axis") is None:
        return 0  # B aligned with A's trailing axes: numpy broadcasting does the same
    if a is None or b is None:
        missing = node.input[0] if a is None else node.input[1]
        raise UnsupportedModelError(
            f"{source}: ONNX node '{node.name or node.output[0]}' ({node.op_type}): the rank of '{missing}' is "
            f"unknown, so its opset-{opset} broadcast cannot be kept through the upgrade to opset 7+; give the "
            f"inputs fixed shapes with --input-shape or re-export with opset_version >= 7")
    if node.op_type == "PRelu":
        return len(a) - 2 if len(a) >= 3 else 0
    axis = int(_int_attr(node, "axis") or 0)
    return len(a) - (axis + len(a) if axis < 0 else axis) - len(b)


# ---------------------------------------------------------------- folding
#: Ops onnxslim has no rewrite for on their own (no folding, fusion or elimination rule starts or ends at
#: them unless another op or a constant input is involved, which :func:`nothing_to_fold` checks separately).
_SLIM_INERT_OPS = frozenset({"Conv", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
                             "Softmax", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten",
                             "Gemm", "Add", "Mul"})
#: onnxslim ties (merges) equal constants below this many elements (its ``ONNXSLIM_THRESHOLD`` default).
_TIE_LIMIT = 1000


def nothing_to_fold(model: Any) -> bool:
    """True when onnxslim provably leaves ``model``'s graph as it is, so :func:`fold_constants` can skip it.

    Conservative: every op is in :data:`_SLIM_INERT_OPS` (default domain, no subgraphs), no node has only
    constant inputs (nothing to fold), Add/Mul have no constant operand (Conv+Add/Mul and MatMul+Add
    fusions, x+0 and x*1 removal), the nodes are in the order onnxslim's topological sort gives (by depth
    from the inputs, stable), every node, input and initializer is used, no two nodes compute the same
    thing, and no two small constants are equal (onnxslim would merge them) unless each is read only as
    a Clip bound, whose value alone reaches the converter. Checked against onnxslim 0.1.98 on the torch
    zoo of ``tests/fixtures/zoo``: where this says True, onnxslim's graph differs at most in which of
    two equal Clip bounds a Clip reads.
    """
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    if len(inits) != len(g.initializer) or any(vi.name in inits for vi in g.input):
        return False
    known = set(inits) | {vi.name for vi in g.input}
    users: dict[str, list[tuple[str, int]]] = {}
    seen: set[tuple] = set()
    level: dict[str, int] = {}  # onnxslim's topological sort orders nodes by depth, stably
    last_level = 0
    for node in g.node:
        if node.op_type not in _SLIM_INERT_OPS or node.domain not in DEFAULT_DOMAINS:
            return False
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return False
        real = [i for i in node.input if i]
        if not real or all(i in inits for i in real) or any(i not in known for i in real):
            return False  # foldable, or not in topological order
        if node.op_type in ("Add", "Mul") and any(i in inits for i in real):
            return False
        key = (node.op_type, tuple(node.input), tuple(a.SerializeToString() for a in node.attribute))
        if key in seen:
            return False
        seen.add(key)
        depth = 1 + max((level.get(i, -1) for i in real), default=-1)
        if depth < last_level:
            return False  # onnxslim would reorder the nodes
        last_level = depth
        for k, i in enumerate(node.input):
            if i:
                users.setdefault(i, []).append((node.op_type, k))
        for o in node.output:
            if o:
                known.add(o)
                level[o] = depth
    needed = {vi.name for vi in g.output}
    for node in reversed(g.node):
        if not needed.intersection(node.output):
            return False  # a dead node
        needed.update(i for i in node.input if i)
    if not all(name in needed for name in list(inits) + [vi.name for vi in g.input]):
        return False  # an unused initializer or input
    return not _tieable_constants(inits, users)


def _tieable_constants(inits: dict[str, Any], users: dict[str, list[tuple[str, int]]]) -> bool:
    """Whether onnxslim would merge two equal small constants that are not just Clip bounds."""
    from onnx import numpy_helper

    groups: dict[tuple, list[str]] = {}
    for name, t in inits.items():
        if int(np.prod(list(t.dims), dtype=np.int64)) < _TIE_LIMIT:
            value = numpy_helper.to_array(t)
            groups.setdefault((t.data_type, tuple(t.dims), value.tobytes()), []).append(name)
    for names in groups.values():
        if len(names) > 1 and not all(op == "Clip" and k > 0 for n in names for op, k in users.get(n, [])):
            return True
    return False


def fold_constants(model: Any) -> Any:
    """Fold constant subgraphs with onnxslim; ONNX Runtime's basic optimizer if onnxslim fails or is missing.

    A graph with nothing to fold or rewrite (:func:`nothing_to_fold`) is returned as it is, without
    importing onnxslim (which loads sympy: about half a second and 40 MB).
    """
    import logging

    if nothing_to_fold(model):
        return model
    try:
        import onnxslim

        logging.getLogger("onnxslim").setLevel(logging.ERROR)
        folded = onnxslim.slim(model)
        if folded is not None and len(folded.graph.output) == len(model.graph.output):
            return folded
    except Exception:  # onnxslim refuses some graphs; the fallback below is more conservative
        pass
    return _ort_basic_optimize(model)


def _ort_basic_optimize(model: Any) -> Any:
    """ONNX Runtime's basic (constant-folding) optimizer; the model unchanged if ORT cannot load it."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "folded.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = out
        so.log_severity_level = 3
        try:
            ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            return onnx.load(out)
        except Exception:
            return model


def spell_out_gemm_of_activations(model: Any) -> None:
    """Write each top-level Gemm whose B or C is computed at run time (``torch.mm``/``addmm`` of two
    activations) as Transpose/MatMul/Mul/Add, which import as BATCH_MATMUL and elementwise ops; a Gemm of
    constant B and C keeps its FULLY_CONNECTED form."""
    from onnx import helper, numpy_helper

    consts = {i.name for i in model.graph.initializer}
    nodes, extra = [], []
    for n in model.graph.node:
        operands = [i for i in list(n.input)[1:] if i]
        if n.op_type != "Gemm" or n.domain not in DEFAULT_DOMAINS or all(i in consts for i in operands):
            nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        stem = n.name or n.output[0]
        a, b = n.input[0], n.input[1]
        if attrs.get("transA", 0):
            nodes.append(helper.make_node("Transpose", [a], [f"{stem}/a_t"], name=f"{stem}/a_t", perm=[1, 0]))
            a = f"{stem}/a_t"
        if attrs.get("transB", 0):
            nodes.append(helper.make_node("Transpose", [b], [f"{stem}/b_t"], name=f"{stem}/b_t", perm=[1, 0]))
            b = f"{stem}/b_t"
        has_c = len(n.input) > 2 and bool(n.input[2])
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        y = n.output[0] if (alpha == 1.0 and not has_c) else f"{stem}/ab"
        nodes.append(helper.make_node("MatMul", [a, b], [y], name=f"{stem}/matmul"))
        if alpha != 1.0:
            extra.append(numpy_helper.from_array(np.array(alpha, np.float32), f"{stem}/alpha"))
            scaled = n.output[0] if not has_c else f"{stem}/alpha_ab"
            nodes.append(helper.make_node("Mul", [y, f"{stem}/alpha"], [scaled], name=f"{stem}/alpha_mul"))
            y = scaled
        if has_c:
            c = n.input[2]
            if beta != 1.0:
                extra.append(numpy_helper.from_array(np.array(beta, np.float32), f"{stem}/beta"))
                nodes.append(helper.make_node("Mul", [c, f"{stem}/beta"], [f"{stem}/beta_c"], name=f"{stem}/beta_mul"))
                c = f"{stem}/beta_c"
            nodes.append(helper.make_node("Add", [y, c], [n.output[0]], name=f"{stem}/add_c"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(extra)


def constants_to_initializers(model: Any) -> None:
    """Replace top-level Constant nodes by initializers of the same name, in place."""
    from onnx import numpy_helper

    g = model.graph
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            from converters.importers.onnx_eval import constant_value

            value = constant_value(node)
            if value is not None:
                g.initializer.append(numpy_helper.from_array(value, node.output[0]))
                continue
        keep.append(node)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)


def inline_constant_ifs(model: Any) -> None:
    """Replace each top-level If whose condition is a constant by the nodes of the branch it takes."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {i.name: i for i in g.initializer}
    const_nodes = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    if not any(n.op_type == "If" and (n.input[0] in consts or n.input[0] in const_nodes) for n in g.node):
        return
    from converters.importers.onnx_eval import constant_value

    new_nodes = []
    for node in g.node:
        cond = node.input[0] if node.op_type == "If" else None
        if cond is None or (cond not in consts and cond not in const_nodes):
            new_nodes.append(node)
            continue
        value = numpy_helper.to_array(consts[cond]) if cond in consts else constant_value(const_nodes[cond])
        if value is None or value.size != 1:
            new_nodes.append(node)
            continue
        branch_name = "then_branch" if bool(value.reshape(-1)[0]) else "else_branch"
        branch = next(helper.get_attribute_value(a) for a in node.attribute if a.name == branch_name)
        g.initializer.extend(branch.initializer)
        new_nodes.extend(branch.node)
        for src, dst in zip(branch.output, node.output):
            new_nodes.append(helper.make_node("Identity", [src.name], [dst], name=f"{node.name or dst}/{branch_name}"))
    del g.node[:]
    g.node.extend(new_nodes)


# ---------------------------------------------------------------- static shapes
def _quantized_op(op_type: str) -> bool:
    """True for onnxruntime's quantized-model ops (DynamicQuantizeLSTM, MatMulInteger, QLinearConv, QGemm...)."""
    return "Quantize" in op_type or op_type.endswith("Integer") or re.match(r"^Q[A-Z]", op_type) is not None


#: ONNX ops that make, read or take apart a tensor sequence (TFLite has no sequence type).
SEQUENCE_OPS = frozenset({"SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceErase", "SequenceAt",
                          "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence"})


def infer_static_shapes(model: Any, source: str, hint: str = "") -> Any:
    """Strict ONNX shape inference; refuse the first node output whose shape is not fully static.

    ``hint`` is appended to a shape-inference failure (what was changed about the inputs). A top-level
    sequence op (:data:`SEQUENCE_OPS`) left after folding is refused first, by name.
    """
    from converters.importers.onnx_ops.newer_ops import infer_shapes

    g = model.graph
    for node in g.node:
        if node.op_type in SEQUENCE_OPS and node.domain in DEFAULT_DOMAINS:
            raise UnsupportedModelError(
                f"{source}: ONNX node '{node.name or node.output[0]}' ({node.op_type}): ONNX sequence ops are not "
                f"supported (TFLite has no sequence type); export the model with plain tensors (for example a "
                f"fixed number of Split outputs and a Concat instead of a list of tensors)")
    for vi in g.output:
        vi.type.tensor_type.ClearField("shape")
    del g.value_info[:]
    try:
        model = infer_shapes(model)  # onnx's strict inference, plus the newer ops the importer takes
        if any(n.op_type == "MaxUnpool" for n in model.graph.node):
            from converters.importers.onnx_ops.max_unpool import constant_output_shapes

            if constant_output_shapes(model):  # onnx leaves a constant output_shape's output unknown
                model = infer_shapes(model)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise ModelFormatError(f"{source}: ONNX shape inference failed: {msg[:300]}; "
                               f"check --input-shape values against what the model expects{hint}") from None
    g = model.graph
    known = {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
    for node in g.node:
        for out in node.output:
            if not out:
                continue
            vi = known.get(out)
            tt = vi.type.tensor_type if vi is not None else None
            static = (tt is not None and tt.HasField("shape")
                      and all(d.HasField("dim_value") and d.dim_value >= 0 for d in tt.shape.dim))
            if not static and node.domain not in DEFAULT_DOMAINS and _quantized_op(node.op_type):
                raise UnsupportedModelError(
                    f"{source}: ONNX node '{node.name or out}' ({node.domain}.{node.op_type}): this model is already "
                    f"quantized (onnxruntime's quantization ops); give the converter the float model")
            if not static and node.domain not in DEFAULT_DOMAINS:
                raise UnsupportedModelError(
                    f"{source}: ONNX node '{node.name or out}' ({node.domain}.{node.op_type}): ops outside the "
                    f"standard ONNX domain are not supported; export with standard ONNX ops only (for example "
                    f"without onnxruntime's transformer optimizer)")
            if not static:
                label = node.op_type
                dims = _dims_text(tt.shape.dim) if tt is not None and tt.HasField("shape") else "unknown"
                raise UnsupportedModelError(
                    f"{source}: ONNX node '{node.name or out}' ({label}): output '{out}' has no static shape "
                    f"({dims}) after constant folding; data-dependent shapes are not supported "
                    f"(fix the inputs with --input-shape, or export without this op)")
    return model


def static_shapes(graph: Any, unknown: Optional[int] = None) -> dict[str, tuple[int, ...]]:
    """``{name: dims}`` of every input, value_info and output of an ONNX ``GraphProto`` whose dimensions are
    all known (read by the importer and the one-hot rewrite after :func:`infer_static_shapes`).

    With ``unknown`` given: of every tensor whose rank is known instead, ``unknown`` standing for each unknown
    size (:func:`_known_dims`).
    """
    out: dict[str, tuple[int, ...]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if unknown is not None and not (vi.type.HasField("tensor_type") and tt.HasField("shape")):
            continue
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") else unknown for d in tt.shape.dim)
        if unknown is not None or None not in dims:
            out[vi.name] = dims
    return out

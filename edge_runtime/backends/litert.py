"""The LiteRT backend: ``ai_edge_litert.interpreter``, or ``tflite_runtime`` where LiteRT is missing.

The model file is memory-mapped: the interpreter is built from ``model_path``,
and LiteRT maps the file instead of copying it. Accelerators (external TFLite
delegates) come from the device profile through
:mod:`edge_runtime.backends.accelerators`.

Options: ``threads``, ``op_resolver`` (``"default"``, ``"reference"`` or
``"no_default_delegates"``; LiteRT's AUTO, BUILTIN_REF and
BUILTIN_WITHOUT_DEFAULT_DELEGATES), ``accelerator``, ``accelerator_options``,
``require_accelerator``, ``library`` (``"litert"``, ``"tflite"`` or ``"auto"``).

Sparse weights (TFLite ``SparsityParameters`` read by the op itself, not through DENSIFY): LiteRT reads
only some FULLY_CONNECTED layouts right (:data:`LITERT_SPARSE_FC_BLOCKS`) and ignores sparsity on
CONV_2D weights; a model with any other sparse weight is refused with one line naming the op and the
tensor. The default resolver is replaced by the reference kernels for sparse models (XNNPACK mis-runs them).
"""
from __future__ import annotations

import importlib
import time
from collections import Counter
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_runtime.backends.delegate_placement import (
    BUILTIN,
    litert_placement,
    node_count,
)
from edge_runtime.backends.native_guard import InvokeFailed, first_run_survives
from edge_runtime.errors import (
    BackendUnavailableError,
    ConfigError,
    OutOfMemoryError,
    UnsupportedModelError,
    is_out_of_memory,
    out_of_memory_message,
)
from edge_runtime.formats.tflite_check import integer_div_hazard
from edge_runtime.log import getLogger
from edge_runtime.model import Model, TensorSpec
from edge_runtime.native_stderr import quiet_native_info

log = getLogger(__name__)  # imports logging only when a message is emitted (start-up cost)


class _OnFirstUse:
    """A module imported on first attribute access. :mod:`~edge_runtime.backends.accelerators` (two
    dataclasses to build, and logging) is not needed by a model run without a profile or a named accelerator."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


acc: Any = _OnFirstUse("edge_runtime.backends.accelerators")


class _CpuOnly:
    """The accelerator selection when there is nothing to try (no profile; ``accelerator`` auto or none):
    the CPU, with the reason :func:`accelerators.select` gives for an empty list, decided without it."""

    spec = None
    handle = None

    def __init__(self, backend: str) -> None:
        self.tried: list[str] = []
        self.reason = f"no accelerator configured for the {backend} backend (no device profile given)"

    def info(self) -> dict[str, Any]:
        """As ``Selection.info`` for the CPU."""
        return {"accelerator": None, "fallback_reason": self.reason}


def _nothing_to_try(profile: Any, accelerator: Optional[str], require: bool) -> bool:
    """True when no accelerator can be selected and none is required (the CPU, with no delegate to load)."""
    return profile is None and not require and str(accelerator or "auto").lower() in ("auto", "none")


OP_RESOLVERS = {
    "default": "AUTO",
    "reference": "BUILTIN_REF",
    "no_default_delegates": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
}
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


def import_interpreter(library: str = "auto") -> tuple[ModuleType, str, str]:
    """The interpreter module, its distribution name and version.

    ``library="auto"`` prefers ai-edge-litert and falls back to tflite-runtime.
    """
    order = {"auto": ["litert", "tflite"], "litert": ["litert"], "tflite": ["tflite"]}.get(library)
    if order is None:
        raise ConfigError(f"unknown TFLite interpreter library '{library}'; use 'litert', 'tflite' or 'auto'")
    errors = []
    for name in order:
        modname = "ai_edge_litert.interpreter" if name == "litert" else "tflite_runtime.interpreter"
        dist = "ai-edge-litert" if name == "litert" else "tflite-runtime"
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:
            if is_out_of_memory(exc):
                raise OutOfMemoryError(out_of_memory_message(exc)) from None
            errors.append(f"{dist}: {exc}")
            continue
        return mod, dist, _dist_version(dist, modname.split(".")[0])
    extra = "litert" if library != "tflite" else "tflite"
    raise BackendUnavailableError(
        f"no TFLite interpreter is installed ({'; '.join(errors)}); install it with: pip install 'edge-runtime[{extra}]'"
    )


def _dist_version(dist: str, package: str) -> str:
    # The package's own __version__ is cheap; importlib.metadata scans site-packages (~50 ms at start-up).
    v = getattr(importlib.import_module(package), "__version__", None)
    if isinstance(v, str):
        return v
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - version is informational only
        return "unknown"


class LiteRTModel(Model):
    """A model running in a LiteRT (or tflite-runtime) interpreter."""

    def __init__(self, path: str, backend: str, interpreter: Any, delegates: list[Any], info: dict[str, Any],
                 rebuild: Optional[Callable[[], Any]] = None) -> None:
        self._interp = interpreter
        #: makes a fresh interpreter; set when the model keeps state that ``reset_all_variables`` misses
        self._rebuild = rebuild
        self._delegates = delegates  # kept alive as long as the interpreter
        #: whether no tensor of the model has a dynamic shape (found on the first ``_invoke_rows``)
        self._all_static: Optional[bool] = None
        ins = interpreter.get_input_details()
        outs = interpreter.get_output_details()
        self._in_idx = [d["index"] for d in ins]
        self._out_idx = [d["index"] for d in outs]
        super().__init__(path=path, backend=backend, inputs=[_spec(d) for d in ins],
                         outputs=[_spec(d) for d in outs], info=info)

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        interp = self._interp
        if interp is None:
            raise ConfigError(f"{self.path}: the model has been closed")
        try:
            for idx, arr in zip(self._in_idx, arrays):
                interp.set_tensor(idx, arr)
            interp.invoke()
        except (ValueError, RuntimeError) as exc:
            raise UnsupportedModelError(f"{self.path}: {self.info.get('library', 'LiteRT')} failed to run the "
                                        f"model: {_explain(exc)}") from None
        return [interp.get_tensor(i) for i in self._out_idx]

    def _invoke_rows(self, inputs: Sequence[Any], seconds: list[float]) -> Optional[list[np.ndarray]]:
        """Run each entry of ``inputs`` as one invocation; each output stacked over the entries.

        An entry is a list of one request's input arrays or, for a model of one input, the input's
        bytes (a bytes-like object, native byte order, C order: what ``np.frombuffer(entry, dtype)`` reads).

        The daemon's per-request path, equal to ``_invoke`` per entry: the inputs are copied straight
        into the interpreter's input buffers and each output straight into row ``i`` of one array per
        output allocated for the call (``(len(inputs), *output shape)``), so nothing is allocated
        per request. The worker time of each entry is appended to ``seconds``. Returns None when the
        interpreter does not allow it (an accelerator delegate, no raw buffer access): use ``_invoke``.
        Raises :class:`RowsFailed` at the first entry LiteRT refuses, with the outputs of those before it.
        """
        interp = self._interp
        if interp is None:
            raise ConfigError(f"{self.path}: the model has been closed")
        if self._delegates or not hasattr(interp, "_interpreter") or not hasattr(interp, "tensor"):
            return None
        if self._all_static is None:
            self._all_static = _all_static(interp)
        if not self._all_static:  # a dynamic tensor may move the arena during Invoke, and the views with it
            return None
        # no local here refers to the interpreter's wrapper: LiteRT counts references to it, and this frame
        # stays alive in the traceback of RowsFailed
        ran = _run_rows(interp, self._in_idx, self._out_idx, inputs, seconds)
        interp = None
        if ran is None:
            return None
        outs, done, why = ran
        if why is not None:
            raise RowsFailed(done, [o[:done] for o in outs], f"{self.path}: {self.info.get('library', 'LiteRT')} "
                             f"failed to run the model: {why}")
        return outs

    def reset(self) -> None:
        """Restore the state of a freshly loaded model.

        LiteRT's ``reset_all_variables`` resets variable tensors only; models with
        resource variables or CALL_ONCE get a fresh interpreter instead.
        """
        if self._interp is None:
            raise ConfigError(f"{self.path}: the model has been closed")
        try:
            if self._rebuild is not None:
                self._interp = self._rebuild()
            else:
                self._interp.reset_all_variables()
        except (ValueError, RuntimeError) as exc:
            raise UnsupportedModelError(f"{self.path}: {self.info.get('library', 'LiteRT')} failed to reset the "
                                        f"model: {_explain(exc)}") from None

    def close(self) -> None:
        """Drop the interpreter, then the delegates it used."""
        self._interp = None
        self._delegates = []


class RowsFailed(UnsupportedModelError):
    """:meth:`LiteRTModel._invoke_rows` stopped at entry ``done``: ``outputs`` holds the rows before it."""

    def __init__(self, done: int, outputs: list[np.ndarray], message: str) -> None:
        super().__init__(message)
        self.done = done
        self.outputs = outputs


def _run_rows(interp: Any, in_idx: list[int], out_idx: list[int], inputs: Sequence[Any],
              seconds: list[float]) -> Optional[tuple[list[np.ndarray], int, Optional[str]]]:
    """The loop of :meth:`LiteRTModel._invoke_rows`: ``(outputs, entries run, why it stopped or None)``.

    It works on numpy views of the interpreter's own buffers, valid until tensors are reallocated,
    which nothing does during the call. LiteRT's ``invoke()`` refuses to run while such a view is
    alive, so the wrapper's ``Invoke`` runs here, and the views live only in this frame: it returns
    normally on a refused entry (an exception's traceback would keep the frame, and the views, alive).
    """
    tins: Any = [interp.tensor(i)() for i in in_idx]
    touts: Any = [interp.tensor(i)() for i in out_idx]
    t = tin = tout = tin_bytes = tout_bytes = invoke = None
    try:
        if any(v.dtype.hasobject or v.dtype.kind in "SU" for v in tins + touts):
            return None  # string tensors have no raw view
        n = len(inputs)
        outs = [np.empty((n, *v.shape), v.dtype) for v in touts]
        if not n:
            return outs, 0, None
        specs = [(v.shape, v.dtype) for v in tins]
        invoke, perf = interp._interpreter.Invoke, time.perf_counter
        single = len(tins) == 1 and len(touts) == 1
        if single:
            try:  # byte views: a copy through them skips numpy's indexing (~0.3 us a request)
                tin_bytes, tout_bytes = memoryview(tins[0]).cast("B"), memoryview(touts[0]).cast("B")
                out_bytes = memoryview(outs[0]).cast("B")
            except (TypeError, ValueError):  # no flat byte view of these tensors (0-d): the caller's path
                return None
        i = 0
        try:
            t0 = perf()
            if single:
                tin, tout, (shape, dtype) = tins[0], touts[0], specs[0]
                size, k = tin.nbytes, tout.nbytes
                at = 0
                for i, entry in enumerate(inputs):
                    if type(entry) is not list:  # the input's bytes
                        if len(entry) != size:
                            return outs, i, f"{len(entry)} input bytes, the tensor takes {size}"
                        tin_bytes[:] = entry
                    else:
                        if len(entry) != 1:
                            return outs, i, f"{len(entry)} input arrays, the model takes 1"
                        a = entry[0]
                        if a.shape != shape or a.dtype != dtype:
                            return outs, i, _mismatch(a, shape, dtype)
                        tin[...] = a
                    invoke()
                    out_bytes[at:at + k] = tout_bytes
                    at += k
                    now = perf()
                    seconds.append(now - t0)
                    t0 = now
            else:
                for i, arrays in enumerate(inputs):
                    if type(arrays) is not list or len(arrays) != len(tins):
                        return outs, i, (f"{len(arrays)} input arrays, the model takes {len(tins)}"
                                         if type(arrays) is list else "input bytes for a model of several inputs")
                    for t, a, (shape, dtype) in zip(tins, arrays, specs):
                        if a.shape != shape or a.dtype != dtype:
                            return outs, i, _mismatch(a, shape, dtype)
                        t[...] = a
                    invoke()
                    for o, t in zip(outs, touts):
                        o[i] = t
                    now = perf()
                    seconds.append(now - t0)
                    t0 = now
        except (ValueError, RuntimeError, TypeError, AttributeError) as exc:  # LiteRT's errors, or not an array
            return outs, i, _explain(exc)
        return outs, len(inputs), None
    finally:
        if tin_bytes is not None:
            tin_bytes.release()
            tout_bytes.release()  # type: ignore[union-attr]
        # no view (nor the wrapper's method) outlives the call
        tins = touts = t = tin = tout = tin_bytes = tout_bytes = invoke = None


#: ops whose output shapes can depend on input values: LiteRT allocates such outputs during Invoke and may
#: move the arena with them, so no buffer view may live across an Invoke of a model that has one
_DATA_SHAPED_OPS = frozenset({"WHERE", "UNIQUE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "RANGE",
                              "WHILE", "IF", "CALL_ONCE", "BROADCAST_ARGS", "SHAPE", "DYNAMIC_UPDATE_SLICE"})


def _all_static(interp: Any) -> bool:
    """Whether the interpreter's arena cannot move during Invoke: one subgraph, no op whose output shape
    depends on values, and every tensor's shape fixed (a -1 only as a batch dimension allocated as 1)."""
    try:
        if interp._interpreter.NumSubgraphs() != 1:
            return False
        if any(op["op_name"] in _DATA_SHAPED_OPS for op in interp._get_ops_details()):
            return False
        details = interp.get_tensor_details()
    except (AttributeError, ValueError, RuntimeError):
        return False
    for d in details:
        sig, shape = np.asarray(d.get("shape_signature", d["shape"])).tolist(), np.asarray(d["shape"]).tolist()
        if any(s == -1 and not (k == 0 and shape[0] == 1 and len(shape) > 1) for k, s in enumerate(sig)):
            return False
    return True


def _mismatch(a: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> str:
    """Why a request's input does not fit the interpreter's input tensor (what ``set_tensor`` refuses)."""
    return f"input {a.dtype.name}{list(a.shape)} does not fit the tensor {np.dtype(dtype).name}{list(shape)}"


def _spec(d: dict[str, Any]) -> TensorSpec:
    scale, zp = d.get("quantization", (0.0, 0))
    quantized = bool(scale) and np.dtype(d["dtype"]).kind in "iu"
    return TensorSpec(
        name=str(d["name"]), shape=tuple(int(x) for x in d["shape"]), dtype=np.dtype(d["dtype"]),
        scale=float(scale) if quantized else None, zero_point=int(zp) if quantized else None,
    )


def _has_sparse_weights(tflite_model: Any) -> bool:
    """True when a parsed model stores any constant tensor in sparse form."""
    if tflite_model is None:
        return False
    return any(t.sparse for sg in tflite_model.subgraphs for t in sg.tensors)


#: Sparse FULLY_CONNECTED weights LiteRT reads right (probed with ai-edge-litert 2.3.0 against the dense model,
#: tests/test_sparse_litert.py), as (weight type, resolver) -> block sizes (1: random sparsity, no block map).
#: int8 (int8 input) only in 1x16 blocks, with the reference or the builtin optimized kernels (outputs equal the
#: micro backend's); float32 random or in 1x4/1x8/1x16 blocks with the reference kernels, random or 1x4 with the
#: optimized ones.
#: Everything else is mis-run or fails: sparse CONV_2D weights on every resolver (LiteRT reads the stored values
#: as the dense weights), any sparse weight through XNNPACK (so the default resolver is replaced for sparse
#: models), other FULLY_CONNECTED blocks (the kernels fail at invoke). DENSIFY decodes its input right.
LITERT_SPARSE_FC_BLOCKS: dict[tuple[str, str], frozenset[int]] = {
    ("INT8", "reference"): frozenset({16}), ("INT8", "no_default_delegates"): frozenset({16}),
    ("FLOAT32", "reference"): frozenset({1, 4, 8, 16}), ("FLOAT32", "no_default_delegates"): frozenset({1, 4}),
}


def litert_sparse_fc_block(tflite_model: Any, sg: Any, op: Any, t: Any) -> Optional[int]:
    """The block size B of FULLY_CONNECTED ``op``'s sparse weights ``t`` when they are in the 1xB block-sparse
    layout LiteRT's kernels index (DENSE rows, SPARSE_CSR columns, then a DENSE block of B; 1 for random
    sparsity, without a block dimension) and of the input's type; None for any other layout or types."""
    from edge_runtime.formats.tflite_sparsity import DENSE, SPARSE_CSR, sparsity_table

    x = sg.tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
    if x is None or x.type_name != t.type_name or len(t.shape) != 2:
        return None
    table = sparsity_table(tflite_model, sg.index, t.index)
    if table is None:
        return None
    order_v, bmap_v = table.vector(0, np.int32), table.vector(1, np.int32)
    metas = table.tables(2, "dimension metadata")
    bmap = [] if bmap_v is None else [int(v) for v in bmap_v]
    levels = 2 + len(bmap)
    formats = [int(m.scalar(0, "b", 0)) for m in metas]
    if ((order_v is not None and [int(v) for v in order_v] != list(range(levels))) or bmap not in ([], [1])
            or formats != [DENSE, SPARSE_CSR] + [DENSE] * len(bmap)):
        return None
    return int(metas[2].scalar(1, "i", 0)) if bmap else 1


def _litert_reads_fc(block: Optional[int], type_name: str, op_resolver: str) -> bool:
    return block is not None and block in LITERT_SPARSE_FC_BLOCKS.get((type_name, op_resolver), frozenset())


def sparse_weights_refusal(path: str, tflite_model: Any, op_resolver: str = "reference") -> Optional[str]:
    """One line naming the first op and sparse weight tensor LiteRT would mis-run with ``op_resolver`` (after
    the default one has been replaced for sparse models), and what to run instead; None when LiteRT reads every
    sparse tensor right (see :data:`LITERT_SPARSE_FC_BLOCKS`)."""
    if tflite_model is None:
        return None
    for sg in tflite_model.subgraphs:
        sparse = {t.index for t in sg.tensors if t.sparse}
        if not sparse:
            continue
        for op in sg.operators:
            for k, i in enumerate(op.inputs):
                if i not in sparse or (op.name == "DENSIFY" and k == 0):
                    continue
                t = sg.tensors[i]
                if op.name == "FULLY_CONNECTED" and k == 1:
                    block = litert_sparse_fc_block(tflite_model, sg, op, t)
                    if _litert_reads_fc(block, t.type_name, op_resolver):
                        continue
                    how = f"as {t.type_name}" + (f" in 1x{block} blocks" if block is not None else
                                                 " in another layout or with another input type")
                    why = ("LiteRT's FULLY_CONNECTED kernels read sparse weights right only as int8 in 1x16 "
                           "blocks (int8 input) or as float32 (random or 1x4 blocks; also 1x8 and 1x16 with "
                           "op_resolver='reference')")
                elif op.name == "CONV_2D":
                    how, why = "", ("LiteRT ignores sparsity on CONV_2D weights (it reads the stored values as the "
                                    "dense weights: wrong outputs)")
                else:
                    how, why = "", f"LiteRT's {op.name} kernel reads them as dense values"
                return (f"{path}: op {op.index} ({op.name}) reads weights {i} ('{t.name}') stored sparse"
                        f"{' ' + how if how else ''}, but {why}; run the dense pruned model written beside it"
                        f"{_dense_beside(path)} on this backend, or this file on the micro backend (backend='micro')")
    return None


def _dense_beside(path: str) -> str:
    """`` (NAME)`` when the dense pruned file that `edge-convert prune` writes beside ``path`` exists."""
    import os

    if path.endswith("_sparse.tflite"):
        dense = path[: -len("_sparse.tflite")] + ".tflite"
        if os.path.isfile(dense):
            return f" ({os.path.basename(dense)})"
    return ""


def _refuse_if_it_crashes(path: str, mod: Any, dist: str, version: str, kwargs: dict[str, Any],
                          resolver_name: str, tflite_model: Any = None) -> None:
    """Run the first load and invoke in a child process (backends/native_guard.py); refuse on a crash."""
    def run() -> None:
        it = mod.Interpreter(**{**kwargs, "num_threads": 1})
        it.allocate_tensors()
        try:
            for d in it.get_input_details():
                it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            it.invoke()
        except Exception as exc:  # noqa: BLE001 - running on zeros may fail for a sound model
            raise InvokeFailed(str(exc)) from None

    data = tflite_model.buf.data if tflite_model is not None else None  # the mapped file: hashed, not re-read
    why = first_run_survives(path, f"{dist}-{version}", mod.__name__, resolver_name, run, data)
    if why is not None:
        raise UnsupportedModelError(f"{path}: refused by {dist}: {why}")


def open_model(path: str, profile: Any = None, *, threads: Optional[int] = None, op_resolver: str = "default",
               accelerator: Optional[str] = "auto", accelerator_options: Optional[dict[str, str]] = None,
               require_accelerator: bool = False, library: str = "auto", tflite_model: Any = None,
               backend_name: str = "litert", **unknown: Any) -> Model:
    """Open ``path`` in a LiteRT interpreter (see the module docstring for the options)."""
    if unknown:
        raise ConfigError(f"unknown option(s) for the {backend_name} backend: {', '.join(sorted(unknown))}")
    mod, dist, version = import_interpreter(library)
    if tflite_model is None:
        tflite_model = _parse_or_none(path)
    if op_resolver == "default" and _has_sparse_weights(tflite_model):
        # LiteRT's default XNNPACK delegate gives wrong outputs on sparse weights (seen with ai-edge-litert
        # 2.3.0); its reference kernels read the FULLY_CONNECTED layouts of LITERT_SPARSE_FC_BLOCKS right.
        log.info("%s: the model stores sparse weights; using LiteRT's reference kernels, because its "
                 "default XNNPACK delegate mis-runs sparse weights", path)
        op_resolver = "reference"
    resolver_name = OP_RESOLVERS.get(op_resolver)
    if resolver_name is None:
        raise ConfigError(f"unknown op_resolver '{op_resolver}'; use one of {', '.join(OP_RESOLVERS)}")
    refusal = sparse_weights_refusal(path, tflite_model, op_resolver)
    if refusal is not None:
        raise UnsupportedModelError(refusal)
    div_hazard = integer_div_hazard(tflite_model) if tflite_model is not None else None
    if div_hazard is not None:  # an error on some inputs, not a crash (measured): warn once at load
        log.warning("%s", div_hazard)
    n_threads = int(threads) if threads is not None else (profile.default_threads if profile is not None else None)
    if n_threads is not None and n_threads < 1:
        raise ConfigError(f"threads must be at least 1, got {n_threads}")

    def open_delegate(spec: acc.AcceleratorSpec) -> Any:
        return load_delegate(mod, spec.library or "", dict(spec.options))

    if _nothing_to_try(profile, accelerator, require_accelerator):
        sel = _CpuOnly(backend_name)
        log.debug("running on the CPU: %s", sel.reason)  # as accelerators.select does
    else:
        specs = acc.candidates(profile, acc.TFLITE_DELEGATE, accelerator, accelerator_options)
        sel = acc.select(specs, open_delegate, require=require_accelerator, backend=backend_name,
                         profile_name=profile.name if profile is not None else None)
    _refuse_edgetpu_without_delegate(path, tflite_model, sel)

    kwargs: dict[str, Any] = {"model_path": path, "num_threads": n_threads}
    resolver_type = getattr(getattr(mod, "OpResolverType", None), resolver_name, None)
    if resolver_type is not None:
        kwargs["experimental_op_resolver_type"] = resolver_type
    elif op_resolver != "default":
        raise BackendUnavailableError(f"{dist} {version} does not support op_resolver '{op_resolver}'")
    _refuse_if_it_crashes(path, mod, dist, version, kwargs, resolver_name, tflite_model)

    interp = None
    explicit_until: Optional[int] = None
    if sel.handle is not None:
        try:
            with quiet_native_info():
                interp = mod.Interpreter(experimental_delegates=[sel.handle], **kwargs)
                explicit_until = node_count(interp)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            interp = None
            sel = acc.fail_after_open(sel, f"the delegate could not be applied to the model: {_first_line(exc)}",
                                      require=require_accelerator)
            _refuse_edgetpu_without_delegate(path, tflite_model, sel)
    if interp is None:
        try:
            with quiet_native_info():
                interp = mod.Interpreter(**kwargs)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UnsupportedModelError(f"{path}: {dist} cannot prepare the model: {_explain(exc)}") from None
    info = {
        "library": dist, "library_version": version, "threads": n_threads,
        "op_resolver": op_resolver, "memory_mapped": True, **sel.info(),
    }
    if sel.spec is not None:
        info["delegate_options"] = dict(sel.spec.options)
    info.update(_placement(path, interp, sel, op_resolver, explicit_until))
    rebuild = None
    if _keeps_resource_state(tflite_model, path):
        delegates = [sel.handle] if sel.handle is not None and interp is not None else []

        def rebuild() -> Any:
            fresh = mod.Interpreter(experimental_delegates=delegates, **kwargs) if delegates else \
                mod.Interpreter(**kwargs)
            fresh.allocate_tensors()
            return fresh
    try:
        return LiteRTModel(path, backend_name, interp, [sel.handle] if sel.handle is not None else [], info,
                           rebuild)
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        raise UnsupportedModelError(f"{path}: {dist} cannot describe the model's inputs and outputs: {exc}") from None


def _placement(path: str, interp: Any, sel: acc.Selection, op_resolver: str,
               explicit_until: Optional[int]) -> dict[str, Any]:
    """Nodes per delegate (read from the interpreter), with a warning when an accelerator took at most half."""
    explicit = sel.spec.name if sel.spec is not None and sel.handle is not None else None
    default = "XNNPACK (LiteRT's default delegate)" if op_resolver == "default" else None
    place = litert_placement(interp, explicit, explicit_until, default)
    counts = place["node_placement"]
    if counts and explicit is not None:
        elsewhere: Counter = Counter()
        for where, ops in place["ops_by_placement"].items():
            if where != explicit:
                elsewhere.update(ops)
        warning = acc.placement_warning(path, explicit, counts[explicit], sum(counts.values()), dict(elsewhere))
        if warning:
            log.warning("%s", warning)
    place["delegated_nodes"] = None if counts is None else sum(n for k, n in counts.items() if k != BUILTIN)
    return place


def _parse_or_none(path: str) -> Any:
    """The parsed model, for a caller that gave none; None when it does not parse (LiteRT then reports it)."""
    try:
        from edge_runtime.formats.tflite import TFLiteModel

        return TFLiteModel.open(path)
    except Exception:  # noqa: BLE001 - LiteRT gives its own error for a file we cannot parse
        return None


_RESOURCE_STATE_OPS = frozenset({"CALL_ONCE", "VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE"})


def _keeps_resource_state(tflite_model: Any, path: str) -> bool:
    """True when the model has resource variables or CALL_ONCE (state ``reset_all_variables`` does not reset)."""
    if tflite_model is None:
        try:
            from edge_runtime.formats.tflite import TFLiteModel

            tflite_model = TFLiteModel.open(path)
        except Exception:  # noqa: BLE001 - a model LiteRT opened but we cannot parse: assume stateful
            return True
    return bool(_RESOURCE_STATE_OPS & set(tflite_model.op_counts()))


def load_delegate(mod: ModuleType, library: str, options: dict[str, str]) -> Any:
    """Load a TFLite external delegate, with a one-line reason when it cannot be used.

    The library is opened with ctypes first, so a missing file or a library that is
    not an external delegate gives a clear message (and no noise from the
    interpreter's half-built ``Delegate`` object).
    """
    import ctypes

    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        raise RuntimeError(f"cannot load the library: {exc}") from None
    for sym in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(lib, sym):
            raise RuntimeError(f"the library is not a TFLite external delegate (no '{sym}' symbol)")
    try:
        return mod.load_delegate(library, options)
    except ValueError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise RuntimeError("the delegate refused to start" + (f": {' '.join(lines)}" if lines else "")) from None


def _refuse_edgetpu_without_delegate(path: str, tflite_model: Any, sel: acc.Selection) -> None:
    if tflite_model is None:
        return
    n = sum(1 for sg in tflite_model.subgraphs for op in sg.operators if op.opcode.custom_code == EDGETPU_CUSTOM_OP)
    if not n or (sel.spec is not None and sel.spec.is_edgetpu):
        return
    why = sel.reason or "no Edge TPU delegate was selected"
    raise UnsupportedModelError(
        f"{path}: the model was compiled for the Coral Edge TPU ({n} '{EDGETPU_CUSTOM_OP}' op(s)) and needs the "
        f"Edge TPU delegate (libedgetpu.so.1), which is not in use: {why}. Run it with a Coral device profile "
        "on a machine with the Edge TPU runtime, or run the CPU model "
        "from before edgetpu_compiler."
    )


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _explain(exc: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    if "unresolved custom op" in text.lower() or "custom op" in text.lower():
        return f"it uses a custom op this interpreter does not have ({text})"
    if "div.cc" in text and "zero_point" in text:
        return (f"an integer DIV's divisor held its zero point on this input, a division by zero LiteRT refuses "
                f"({text}); the micro backend (backend='micro') returns a value there")
    return text or type(exc).__name__

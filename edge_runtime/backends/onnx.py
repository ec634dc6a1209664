"""The ONNX Runtime backend, with session options chosen from the device profile.

ONNX Runtime parses the protobuf into its own graph, so the model file is read,
not memory-mapped (only external-data initializers can be mapped by ORT); the
structural check before it runs over a memory map.

Session options from the profile:

- threads: ``profile.default_threads`` (or the ``threads`` option), one inter-op thread;
- memory arena and memory pattern: on, except on boards whose inference RAM
  budget is under 512 MiB, where the arena's growth chunks cost more than they save;
- graph optimisation: ``all``, or ``extended`` on those small boards (fewer
  layout-changing rewrites that add buffers).

Quantized kernels: on x86-64 CPUs without VNNI, ORT's U8S8 integer GEMM (used
for QDQ int8 models, whose signed activations ORT turns into unsigned ones)
computes pairwise products in saturating 16-bit adds, so large int8 weights
overflow and results go wrong. There ``session.x64quantprecision=1`` is set,
which makes ORT use its exact U8U8 kernels. ``quant_precision="exact"`` forces
it, ``"fast"`` leaves ORT's default.

Execution providers (the profile's ``onnx_ep`` accelerators, e.g. OpenVINO): each is
tried with its ``provider_options``; an EP that onnxruntime cannot create (its own
error line is read from the native log) or that takes none of the model's nodes is a
fallback, logged once (``require_accelerator`` makes it an error).

Node placement (``Model.info``): with an accelerator in use, a second session with
graph optimisations off runs once with profiling on, and the profile's JSON is read:
each CPU kernel there is one model node, the accelerator holds the rest of the model's
nodes (``node_placement``), ``kernels_run`` counts what each provider executed (an EP
runs each claimed subgraph as one fused kernel) and ``cpu_ops`` names the op types left
on the CPU. When the CPU keeps more than half the nodes, one warning names those ops.
"""
from __future__ import annotations

import json
from edge_runtime import log as logging  # a logging.getLogger stand-in: imports logging on the first message
import os
import platform
import re
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from edge_runtime.backends import accelerators as acc
from edge_runtime.errors import BackendUnavailableError, ConfigError, InputError, UnsupportedModelError
from edge_runtime.model import ArrayInputs, Model, TensorSpec

log = logging.getLogger("edge_runtime")
CPU_EP = "CPUExecutionProvider"
PLACEMENT_SOURCE = "onnxruntime profile of one run, graph optimizations off"
#: Nodes onnxruntime adds or folds itself; never counted as model nodes.
_NOT_MODEL_NODES = frozenset({"MemcpyToHost", "MemcpyFromHost", "Constant"})

SMALL_BOARD_BUDGET = 512 * 1024 * 1024
_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32, "tensor(uint32)": np.uint32, "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def needs_exact_quant(machine: Optional[str] = None, flags: Optional[set[str]] = None) -> bool:
    """True when ORT's fast U8S8 int8 GEMM can saturate here: x86-64 without VNNI.

    When the flags cannot be read on x86-64, answer True (correctness first).
    """
    m = (machine or platform.machine()).lower()
    if m not in ("x86_64", "amd64", "i686", "i386", "x86"):
        return False
    f = cpu_flags() if flags is None else flags
    if not f:
        return True
    return not ({"avx512_vnni", "avx_vnni", "avx_vnni_int8"} & f)


def session_settings(profile: Any, *, threads: Optional[int] = None, memory_arena: Optional[bool] = None,
                     memory_pattern: Optional[bool] = None, graph_optimization: Optional[str] = None,
                     quant_precision: str = "auto") -> dict[str, Any]:
    """The session settings this backend will use, as a plain dict (also recorded in ``Model.info``)."""
    small = profile is not None and profile.inference_ram_budget_bytes < SMALL_BOARD_BUDGET
    n = int(threads) if threads is not None else (profile.default_threads if profile is not None else None)
    if n is not None and n < 1:
        raise ConfigError(f"threads must be at least 1, got {n}")
    level = graph_optimization or ("extended" if small else "all")
    if level not in _OPT_LEVELS:
        raise ConfigError(f"unknown graph_optimization '{level}'; use one of {', '.join(_OPT_LEVELS)}")
    if quant_precision not in ("auto", "exact", "fast"):
        raise ConfigError(f"unknown quant_precision '{quant_precision}'; use 'auto', 'exact' or 'fast'")
    exact = quant_precision == "exact" or (quant_precision == "auto" and needs_exact_quant())
    return {
        "threads": n,
        "memory_arena": (not small) if memory_arena is None else bool(memory_arena),
        "memory_pattern": (not small) if memory_pattern is None else bool(memory_pattern),
        "graph_optimization": level,
        "x64quantprecision": exact,
    }


def _session_options(ort: Any, s: dict[str, Any]) -> Any:
    so = ort.SessionOptions()
    if s["threads"] is not None:
        so.intra_op_num_threads = s["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = s["memory_arena"]
    so.enable_mem_pattern = s["memory_pattern"]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[s["graph_optimization"]])
    if s["x64quantprecision"]:
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.log_severity_level = 3
    return so


#: An input or output larger than this is a corrupt shape, not a real edge model (as in formats/tflite_check.py).
MAX_IO_TENSOR_BYTES = 1 << 30


class OnnxModel(Model):
    """A model running in an ONNX Runtime session. Dynamic dimensions have ``-1`` in the spec shape."""

    def __init__(self, path: str, session: Any, info: dict[str, Any]) -> None:
        self._sess = session
        ins = session.get_inputs()
        outs = session.get_outputs()
        self._in_names = [i.name for i in ins]
        self._out_names = [o.name for o in outs]
        self._feed: dict[str, np.ndarray] = {}
        specs_in, specs_out = [_spec(i) for i in ins], [_spec(o) for o in outs]
        specs_in, specs_out = _with_io_quantization(session, specs_in, specs_out)
        for spec in specs_in + specs_out:
            n = int(np.prod([max(d, 1) for d in spec.shape], dtype=np.float64)) * spec.dtype.itemsize
            if n > MAX_IO_TENSOR_BYTES:
                raise UnsupportedModelError(f"{path}: tensor '{spec.name}' declares shape {list(spec.shape)} "
                                            f"({n:,} bytes); more than any edge model's input or output")
        super().__init__(path=path, backend="onnx", inputs=specs_in, outputs=specs_out, info=info)

    def check_inputs(self, inputs: ArrayInputs) -> list[np.ndarray]:
        """Validate like :meth:`Model.check_inputs`, letting ``-1`` dimensions take any size."""
        if not any(-1 in s.shape for s in self.inputs):
            return super().check_inputs(inputs)
        if isinstance(inputs, Mapping):
            names = [s.name for s in self.inputs]
            missing = [n for n in names if n not in inputs]
            extra = [n for n in inputs if n not in names]
            if missing or extra:
                raise InputError(f"input names do not match the model: missing {missing}, unexpected {extra}; "
                                 f"the model's inputs are {names}")
            seq = [inputs[n] for n in names]
        elif isinstance(inputs, np.ndarray):
            seq = [inputs]
        else:
            seq = list(inputs)
        if len(seq) != len(self.inputs):
            raise InputError(f"the model takes {len(self.inputs)} input(s), got {len(seq)}")
        seq = [np.asarray(a) if isinstance(a, np.generic) else a for a in seq]  # a numpy scalar for a 0-d input
        for spec, arr in zip(self.inputs, seq):
            if not isinstance(arr, np.ndarray):
                raise InputError(f"input '{spec.name}' must be a numpy array, got {type(arr).__name__}")
            if arr.dtype != spec.dtype:
                raise InputError(f"input '{spec.name}' has dtype {arr.dtype}, the model expects {spec.dtype.name}")
            ok = arr.ndim == len(spec.shape) and all(d == -1 or d == a for d, a in zip(spec.shape, arr.shape))
            if not ok:
                want = tuple("?" if d == -1 else d for d in spec.shape)
                raise InputError(f"input '{spec.name}' has shape {arr.shape}, the model expects {want}")
        return seq

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._sess is None:
            raise ConfigError(f"{self.path}: the model has been closed")
        feed = self._feed
        for name, arr in zip(self._in_names, arrays):
            feed[name] = arr
        try:
            return list(self._sess.run(self._out_names, feed))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
            raise UnsupportedModelError(f"{self.path}: onnxruntime failed to run the model: {text}") from None

    def close(self) -> None:
        """Release the session."""
        self._sess = None
        self._feed = {}


#: Written by edge-convert's QDQ ONNX writer: the integer inputs' and outputs' {name: [scale, zero_point]}.
IO_QUANTIZATION_KEY = "edge_runtime.io_quantization"


def _with_io_quantization(session: Any, ins: list[TensorSpec], outs: list[TensorSpec]
                          ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Integer I/O specs get the scale and zero point the model's metadata states (else they stay None)."""
    import dataclasses
    import json

    try:
        raw = session.get_modelmeta().custom_metadata_map.get(IO_QUANTIZATION_KEY)
        table = json.loads(raw) if raw else {}
    except (AttributeError, ValueError, TypeError):
        return ins, outs

    def apply(specs: list[TensorSpec], known: Any) -> list[TensorSpec]:
        out = []
        for s in specs:
            q = known.get(s.name) if isinstance(known, dict) else None
            if (s.dtype.kind in "iu" and isinstance(q, list) and len(q) == 2
                    and isinstance(q[0], (int, float)) and q[0] > 0 and isinstance(q[1], int)):
                s = dataclasses.replace(s, scale=float(q[0]), zero_point=int(q[1]))
            out.append(s)
        return out

    return apply(ins, table.get("inputs", {})), apply(outs, table.get("outputs", {}))


def _spec(node: Any) -> TensorSpec:
    dt = _ORT_TYPES.get(node.type)
    if dt is None:
        raise UnsupportedModelError(f"tensor '{node.name}' has type {node.type}, which edge-runtime cannot pass")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or []))
    return TensorSpec(name=node.name, shape=shape, dtype=np.dtype(dt))


def open_model(path: str, profile: Any = None, *, threads: Optional[int] = None, accelerator: Optional[str] = "auto",
               accelerator_options: Optional[dict[str, str]] = None, require_accelerator: bool = False,
               memory_arena: Optional[bool] = None, memory_pattern: Optional[bool] = None,
               graph_optimization: Optional[str] = None, quant_precision: str = "auto",
               op_resolver: str = "default", **unknown: Any) -> Model:
    """Open ``path`` in an ONNX Runtime session (see the module docstring)."""
    if op_resolver != "default":
        raise ConfigError(f"op_resolver '{op_resolver}' applies to the TFLite backends, not onnx")
    if unknown:
        raise ConfigError(f"unknown option(s) for the onnx backend: {', '.join(sorted(unknown))}")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            f"onnxruntime is not installed ({exc}); install it with: pip install 'edge-runtime[onnx]'"
        ) from None
    settings = session_settings(profile, threads=threads, memory_arena=memory_arena, memory_pattern=memory_pattern,
                                graph_optimization=graph_optimization, quant_precision=quant_precision)
    so = _session_options(ort, settings)
    available = ort.get_available_providers()
    specs = acc.candidates(profile, acc.ONNX_EP, accelerator, accelerator_options)
    sessions: dict[str, Any] = {}
    placements: dict[str, dict[str, Any]] = {}
    nodes = model_node_counts(path)

    def open_ep(spec: acc.AcceleratorSpec) -> Any:
        if spec.provider not in available:
            raise RuntimeError(f"not in this onnxruntime build (available: {', '.join(available)})")
        providers = [(spec.provider, dict(spec.provider_options)), CPU_EP]
        with _native_log() as lines:
            sess = _new_session(ort, path, so, providers)
        if sess.get_providers()[0] != spec.provider:
            raise RuntimeError(_native_error(lines) or "onnxruntime did not enable it for this model")
        place = probe_placement(ort, path, settings, providers, spec.provider or "", nodes)
        if (place["node_placement"] or {}).get(spec.provider, 1) == 0:
            ops = ", ".join(f"{op} x{n}" for op, n in sorted(place["cpu_ops"].items()))
            raise RuntimeError(f"it took none of the model's {sum(nodes.values())} nodes ({ops})")
        sessions[spec.provider or ""] = sess
        placements[spec.provider or ""] = place
        return spec.provider

    sel = acc.select(specs, open_ep, require=require_accelerator, backend="onnx",
                     profile_name=profile.name if profile is not None else None)
    sess = sessions.get(sel.handle or "") if sel.handle else None
    if sess is None:
        sess = _new_session(ort, path, so, [CPU_EP])
        place = {"node_placement": {CPU_EP: sum(nodes.values())}, "kernels_run": None, "cpu_ops": dict(nodes),
                 "placement_source": "the model file (every node runs on the CPU execution provider)"}
    else:
        place = placements[sel.handle]
        placed = (place["node_placement"] or {}).get(sel.handle)
        warning = placed is not None and acc.placement_warning(os.fspath(path), sel.handle, placed,
                                                               sum(nodes.values()), place["cpu_ops"])
        if warning:
            log.warning("%s", warning)
    info = {"library": "onnxruntime", "library_version": ort.__version__, "providers": sess.get_providers(),
            "memory_mapped": False, **settings, **sel.info(), **place}
    if sel.spec is not None:
        info["provider_options"] = dict(sel.spec.provider_options)
    return OnnxModel(path, sess, info)


def model_node_counts(path: str) -> dict[str, int]:
    """The model file's node count per op type (read without onnx), less the nodes ORT folds itself."""
    from edge_runtime.formats.onnx_check import check_onnx_file

    counts = check_onnx_file(os.fspath(path)).op_counts
    return {op.split("::")[-1]: n for op, n in counts.items() if op.split("::")[-1] not in _NOT_MODEL_NODES}


def parse_profile(events: Any) -> list[tuple[str, str]]:
    """``(provider, op type)`` of every kernel run in an onnxruntime profiling JSON (a list of trace events)."""
    if not isinstance(events, list):
        raise ValueError("an onnxruntime profile is a JSON list of trace events")
    out = []
    for e in events:
        if not isinstance(e, dict) or e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        args = e.get("args") or {}
        if "provider" not in args or "op_name" not in args:
            raise ValueError(f"profile event '{e.get('name')}' names no provider or op")
        out.append((str(args["provider"]), str(args["op_name"])))
    return out


def placement_from_kernels(kernels: list[tuple[str, str]], accelerator: str, nodes: dict[str, int]) -> dict[str, Any]:
    """Model nodes per provider from one unoptimised run: CPU kernels are model nodes, the accelerator has the rest."""
    cpu_ops = Counter(op for prov, op in kernels if prov == CPU_EP and op not in _NOT_MODEL_NODES)
    ran = Counter(prov for prov, op in kernels if op not in _NOT_MODEL_NODES)
    total = sum(nodes.values())
    on_cpu = min(sum(cpu_ops.values()), total)
    placed = total - on_cpu if ran.get(accelerator) else 0
    return {"node_placement": {accelerator: placed, CPU_EP: total - placed}, "kernels_run": dict(ran),
            "cpu_ops": dict(cpu_ops) if placed else dict(nodes), "placement_source": PLACEMENT_SOURCE}


def probe_placement(ort: Any, path: str, settings: dict[str, Any], providers: list[Any], accelerator: str,
                    nodes: dict[str, int]) -> dict[str, Any]:
    """Run the model once, unoptimised, with profiling on, and count its nodes per provider (see the docstring)."""
    so = _session_options(ort, {**settings, "graph_optimization": "disable"})
    with tempfile.TemporaryDirectory(prefix="edge-runtime-ort-profile-") as tmp:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "placement")
        try:
            with _native_log():
                probe = ort.InferenceSession(os.fspath(path), sess_options=so, providers=providers)
                feed = {i.name: _zeros(i) for i in probe.get_inputs()}
                probe.run(None, feed)
                prof = probe.end_profiling()
            with open(prof, encoding="utf-8") as f:
                kernels = parse_profile(json.load(f))
        except Exception as exc:  # noqa: BLE001 - placement is a report; the model itself loaded
            text = " ".join(str(exc).split())[:300] or type(exc).__name__
            return {"node_placement": None, "kernels_run": None, "cpu_ops": {},
                    "placement_source": f"unknown: the profiling run failed ({text})"}
    return placement_from_kernels(kernels, accelerator, nodes)


def _zeros(node: Any) -> np.ndarray:
    spec = _spec(node)
    return np.zeros(tuple(1 if d < 0 else d for d in spec.shape), dtype=spec.dtype)


@contextmanager
def _native_log() -> Iterator[list[str]]:
    """Capture descriptor 2 (onnxruntime's native log) during the block; its lines fill the yielded list."""
    lines: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield lines
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read(1 << 20).decode("utf-8", "replace")
            lines.extend(re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in text.splitlines() if ln.strip())


def _native_error(lines: list[str]) -> Optional[str]:
    """The first error in onnxruntime's native log lines, without the source location."""
    for ln in lines:
        if "[E:" not in ln:
            continue
        m = re.search(r"\[ERROR\]\s*(.+)", ln) or re.search(r"\[E:[^\]]*\]\s*(.+)", ln)
        if m:
            return m.group(1).strip()
    return None


def _new_session(ort: Any, path: str, so: Any, providers: list[Any]) -> Any:
    try:
        return ort.InferenceSession(path, sess_options=so, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
        raise UnsupportedModelError(f"{os.fspath(path)}: onnxruntime cannot load the model: {text}") from None

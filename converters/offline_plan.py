"""Embed an arena plan into a .tflite as TFLite Micro's ``OfflineMemoryAllocation`` metadata.

Format (TFLM ``micro_allocation_info``): an int32 buffer
``[version=1, subgraphs, num_tensors, offset_0, ..., offset_{n-1}]`` where
``num_tensors`` is the model's total tensor count (all subgraphs) and ``-1`` means
"plan this tensor online". Rules this module enforces, because TFLM checks none of them:

- TFLM reads every subgraph's offsets from the start of the list (tensor ``i`` of
  any subgraph gets ``offset_i``), so multi-subgraph plans are made with tensors of
  the same index co-located across subgraphs (where their lifetimes allow; other
  indices get -1 and TFLM places those tensors itself); every subgraph must be run
  from subgraph 0 (TFLM gives an unreachable subgraph's tensors no lifetime);
- never an in-place plan (TFLM kernels assume outputs do not overlap inputs);
- constants, variables and empty tensors get -1 (and so does any index that is a
  variable in some subgraph: TFLM only allocates a variable whose offset is -1);
- offsets count from the 16-aligned arena start and are multiples of 16;
- the plan is validated for live overlaps before it is written.

The embedded plan holds tensors only: TFLM's own kernels request their scratch,
which TFLM places online around the fixed tensors. The model is repacked with the
object API of LiteRT's generated schema module, with every buffer's data 16-byte
aligned (the stock packer aligns byte vectors to 4 only).

:func:`run_tflm` runs a model in the ``tflite-micro`` Python package in a
subprocess (it may segfault on a too-small arena) and reads the arena head that
``print_allocations()`` writes to C-level stderr.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import flatbuffers
import numpy as np

from edge_runtime.arena.align import ALIGNMENT
from edge_runtime.arena.op_memory import ArenaPlanError, no_scratch_op_memory
from edge_runtime.arena.plan import ArenaPlan, plan_arena
from edge_runtime.arena.validate import validate_plan
from edge_runtime.errors import BackendUnavailableError, ModelFormatError, UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel

METADATA_NAME = "OfflineMemoryAllocation"
FORMAT_VERSION = 1
ONLINE = -1


def offline_plan_array(model: TFLiteModel, plan: ArenaPlan) -> np.ndarray:
    """The int32 metadata array for ``plan`` (checked: reachable subgraphs, not in place, valid)."""
    n_sg = len(model.subgraphs)
    covered = set(getattr(plan, "subgraphs", (0,)))
    if n_sg != 1 and covered != set(range(n_sg)):
        missing = sorted(set(range(n_sg)) - covered)
        raise UnsupportedModelError(
            f"{model.path}: has {n_sg} subgraphs and subgraph(s) {missing} are never invoked from subgraph 0; "
            "TFLite Micro still plans their tensors (with no lifetime) at the offsets of subgraph 0's, so "
            "no offline plan can be embedded")
    if plan.in_place:
        raise ArenaPlanError("refusing to embed an in-place plan: TFLite Micro kernels do not support "
                             "outputs that overwrite inputs; plan with in_place=False (--no-in-place)")
    validate_plan(plan)
    n = len(model.subgraphs[plan.subgraph].tensors)
    if plan.num_tensors != n:
        raise ArenaPlanError(f"the plan covers {plan.num_tensors} tensors, the subgraph has {n}")
    total = sum(len(g.tensors) for g in model.subgraphs)
    offsets = np.full(total, ONLINE, dtype=np.int32)
    by_index: dict[int, set[int]] = {}
    entries = plan.all_tensor_entries() if hasattr(plan, "all_tensor_entries") else plan.tensor_entries()
    for e in entries:
        if e.alias_of is not None:
            raise ArenaPlanError(f"tensor '{e.name}' aliases tensor {e.alias_of}; such plans cannot be embedded")
        if e.offset % ALIGNMENT:
            raise ArenaPlanError(f"tensor '{e.name}' offset {e.offset} is not a multiple of {ALIGNMENT}")
        by_index.setdefault(e.tensor, set()).add(e.offset)
    variable_indices = {t.index for g in model.subgraphs for t in g.tensors if t.is_variable}
    for i, offs in by_index.items():
        if len(offs) == 1 and i not in variable_indices:
            offsets[i] = next(iter(offs))
    return np.concatenate([np.array([FORMAT_VERSION, n_sg, total], dtype=np.int32), offsets]).astype("<i4")


def read_offline_plan(model: TFLiteModel) -> Optional[np.ndarray]:
    """The offsets stored in ``model``'s OfflineMemoryAllocation metadata (int32, one per tensor), or None."""
    raw = model.metadata_bytes(METADATA_NAME)
    if raw is None:
        return None
    if raw.size % 4 or raw.size < 12:
        raise ModelFormatError(f"{model.path}: {METADATA_NAME} holds {raw.size} bytes, not a whole int32 header")
    arr = np.frombuffer(raw.tobytes(), dtype="<i4")
    version, subgraphs, n = (int(v) for v in arr[:3])
    if version != FORMAT_VERSION or arr.size != 3 + n:
        raise ModelFormatError(f"{model.path}: {METADATA_NAME} has version {version}, {n} tensors "
                               f"and {arr.size - 3} offsets; expected version 1 and one offset per tensor")
    return arr[3:].copy()


class AlignedBuilder(flatbuffers.Builder):
    """A flatbuffers Builder that starts every byte vector (buffer data) on a 16-byte boundary and
    writes equal int64 vectors (quantization zero points: all zeros per channel) once."""

    def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
        if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 1:
            self.StartVector(1, x.size, ALIGNMENT)
            self.head = self.head - x.size
            self.Bytes[self.head:self.head + x.size] = x.tobytes()
            self.vectorNumElems = x.size
            return self.EndVector()
        if isinstance(x, np.ndarray) and x.dtype == np.int64 and x.ndim == 1:
            shared = self.__dict__.setdefault("_int64_vectors", {})
            key = x.tobytes()
            if key not in shared:
                shared[key] = super().CreateNumpyVector(x)
            return shared[key]
        return super().CreateNumpyVector(x)


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise BackendUnavailableError("embedding an offline plan needs the TFLite schema object API from "
                                      "ai-edge-litert (pip install ai-edge-litert)") from None
    return schema


def with_metadata(model_bytes: bytes, name: str, payload: bytes) -> bytes:
    """``model_bytes`` repacked with metadata ``name`` set to ``payload`` (replacing any previous one)."""
    schema = _schema()
    m = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(payload, dtype=np.uint8).copy()
    m.buffers = list(m.buffers or [])
    used = {t.buffer for sg in (m.subgraphs or []) for t in (sg.tensors or [])}
    for md in m.metadata or []:
        if _name(md.name) == name and md.buffer not in used and 0 < md.buffer < len(m.buffers):
            m.buffers[md.buffer].data = None  # the replaced payload; the index stays valid
    m.metadata = [md for md in (m.metadata or []) if _name(md.name) != name]
    m.buffers.append(buf)
    md = schema.MetadataT()
    md.name = name
    md.buffer = len(m.buffers) - 1
    m.metadata.append(md)
    builder = AlignedBuilder(len(model_bytes) + len(payload) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(n: object) -> str:
    return n.decode() if isinstance(n, (bytes, bytearray)) else str(n)


def embed_offline_plan(model_path: "str | os.PathLike[str]", out_path: "str | os.PathLike[str]",
                       *, planner: str = "best") -> ArenaPlan:
    """Plan ``model_path`` without in-place aliasing, embed it, write ``out_path``; return the plan.

    The written model is re-read and checked: same tensors, plan readable, every
    constant buffer 16-byte aligned in the file.
    """
    model = TFLiteModel.open(model_path)
    if len(model.subgraphs) > 1:
        from edge_runtime.arena.subgraphs import reachable_subgraphs

        reached = reachable_subgraphs(model, 0)
        if len(reached) != len(model.subgraphs):
            missing = sorted(set(range(len(model.subgraphs))) - set(reached))
            raise UnsupportedModelError(
                f"{model.path}: has {len(model.subgraphs)} subgraphs and subgraph(s) {missing} are never invoked "
                "from subgraph 0; TFLite Micro still plans their tensors (with no lifetime) at the offsets of "
                "subgraph 0's, so no offline plan can be embedded")
    plan = plan_arena(model, 0, in_place=False, planner=planner, op_memory=no_scratch_op_memory,
                      colocate_by_index=len(model.subgraphs) > 1)
    arr = offline_plan_array(model, plan)
    data = with_metadata(bytes(model.buf.data), METADATA_NAME, arr.tobytes())
    check = TFLiteModel(data, str(out_path))
    got = read_offline_plan(check)
    if got is None or not np.array_equal(got, arr[3:]) or \
            [len(g.tensors) for g in check.subgraphs] != [len(g.tensors) for g in model.subgraphs]:
        raise ArenaPlanError(f"{out_path}: the repacked model does not carry the plan that was written")
    misaligned = unaligned_buffers(check)
    if misaligned:
        raise ArenaPlanError(f"{out_path}: buffers {misaligned[:5]} are not {ALIGNMENT}-byte aligned after repacking")
    Path(out_path).write_bytes(data)
    return plan


def unaligned_buffers(model: TFLiteModel) -> list[int]:
    """Indices of constant buffers whose data does not start on a 16-byte boundary of the file."""
    start = np.frombuffer(model.buf.data, dtype=np.uint8).__array_interface__["data"][0]
    bad: set[int] = set()
    for g in model.subgraphs:
        for t in g.tensors:
            if t.data is not None and (t.data.__array_interface__["data"][0] - start) % ALIGNMENT:
                bad.add(t.buffer)
    return sorted(bad)


# ---------------------------------------------------------------------------------------------
# tflite-micro harness (x86_64 test/benchmark dependency, never imported by the device side)

_RUNNER = r"""
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
model, inputs, outputs, arena = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.load(inputs)
it = runtime.Interpreter.from_file(model, arena_size=arena or None)
res = []
for row in x:
    it.set_input(row, 0)
    it.invoke()
    res.append(np.array(it.get_output(0)))
np.save(outputs, np.stack(res) if res else np.zeros(0))
sys.stdout.flush()
it.print_allocations()
"""
_HEAD = re.compile(rb"Arena allocation head (\d+) bytes")
_TOTAL = re.compile(rb"Arena allocation total (\d+) bytes")


@dataclass(frozen=True)
class TFLMRun:
    """Outputs of a tflite-micro run (one row per input) and its recorded arena head and total."""

    outputs: np.ndarray
    head_bytes: int
    total_bytes: int


def tflm_available() -> bool:
    """True when the tflite-micro Python package can be imported (x86_64 only)."""
    try:
        import tflite_micro.python.tflite_micro.runtime  # noqa: F401
    except Exception:
        return False
    return True


def run_tflm(model_path: "str | os.PathLike[str]", inputs: np.ndarray, *, arena_size: int = 0,
             timeout: float = 600.0) -> TFLMRun:
    """Run ``inputs`` (batch of model inputs) through tflite-micro in a subprocess; read its arena head.

    A crash (e.g. a segfault on a too-small arena) raises :class:`ArenaPlanError`
    with the exit status and the end of stderr.
    """
    with tempfile.TemporaryDirectory() as d:
        xin, yout = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        np.save(xin, np.ascontiguousarray(inputs))
        proc = subprocess.run([sys.executable, "-c", _RUNNER, os.fspath(model_path), xin, yout, str(arena_size)],
                              capture_output=True, timeout=timeout)
        if proc.returncode != 0:
            tail = proc.stderr[-600:].decode(errors="replace")
            raise ArenaPlanError(f"tflite-micro failed on {model_path} (exit status {proc.returncode}): {tail}")
        head, total = _HEAD.search(proc.stderr), _TOTAL.search(proc.stderr)
        if head is None or total is None:
            raise ArenaPlanError(f"tflite-micro printed no arena allocation report for {model_path}")
        return TFLMRun(np.load(yout), int(head.group(1)), int(total.group(1)))

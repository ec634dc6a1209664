"""Persistent buffers: variable tensors and resource variables, as TFLite Micro allocates them.

TFLM keeps both outside the reused activation plan, in the persistent tail of its
arena (16-byte aligned each), and they keep their values across invocations:

- every tensor flagged ``is_variable`` in every subgraph gets its own buffer; on
  reset (and at allocation) it is filled with its zero point (INT8 tensors) or zeros
  (any constant data in the file is not used);
- a resource variable is created by VAR_HANDLE (keyed by container and shared
  name; a VAR_HANDLE without a container matches any) and gets its buffer at the first
  ASSIGN_VARIABLE TFLM prepares (subgraphs in index order, ops in order) whose
  handle comes from a VAR_HANDLE of the same subgraph: the assigned tensor's size,
  filled with the low byte of its zero point (0 without quantization).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from edge_runtime.arena.align import align_up
from edge_runtime.arena.subgraphs import var_handle_options
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import SubGraph, TensorInfo, TFLiteModel


@dataclass(frozen=True)
class VariableTensor:
    """A variable tensor: its subgraph, index, bytes and reset byte value."""

    subgraph: int
    tensor: int
    name: str
    size: int
    fill: int


@dataclass
class ResourceVariable:
    """A resource variable: its id, key, and (once an ASSIGN_VARIABLE sizes it) bytes, dtype, shape, fill."""

    id: int
    container: Optional[str]
    shared_name: str
    size: Optional[int] = None
    fill: int = 0
    tensor: Optional[TensorInfo] = field(default=None, repr=False)


@dataclass
class PersistentLayout:
    """Every persistent buffer of a model and the ids its VAR_HANDLE ops resolve to."""

    variables: list[VariableTensor]
    resources: list[ResourceVariable]
    #: (subgraph, op index) of each VAR_HANDLE -> resource id
    handle_ids: dict[tuple[int, int], int]

    @property
    def persistent_bytes(self) -> int:
        """Bytes of the persistent buffers, each rounded up to 16 as TFLM's tail does."""
        return (sum(align_up(v.size) for v in self.variables)
                + sum(align_up(r.size) for r in self.resources if r.size))

    def resource_of(self, model: TFLiteModel, sg: SubGraph, tensor: int) -> ResourceVariable:
        """The resource variable a handle tensor of ``sg`` refers to (its VAR_HANDLE must be in ``sg``)."""
        for op in sg.operators:
            if op.name == "VAR_HANDLE" and tensor in op.outputs:
                return self.resources[self.handle_ids[(sg.index, op.index)]]
        raise UnsupportedModelError(
            f"{model.path}: subgraph {sg.index} uses resource handle tensor {tensor} "
            f"('{sg.tensors[tensor].name}') that no VAR_HANDLE of the same subgraph produces; TFLite Micro "
            "resolves resource variables only through a VAR_HANDLE in the subgraph that uses them")


def zero_point_byte(t: TensorInfo, int8_only: bool) -> int:
    """The byte TFLM memsets a buffer with: the low byte of the first zero point, or 0."""
    q = t.quantization
    if q is None or q.zero_point.size == 0 or (int8_only and t.type_name != "INT8"):
        return 0
    return int(q.zero_point[0]) & 0xFF


def _find(resources: list[ResourceVariable], container: Optional[str], shared_name: str) -> Optional[ResourceVariable]:
    for r in resources:
        if (container is None or container == r.container) and shared_name == r.shared_name:
            return r
    return None


def persistent_layout(model: TFLiteModel) -> PersistentLayout:
    """Variable tensors and resource variables of every subgraph, sized as TFLM sizes them."""
    variables = [VariableTensor(sg.index, t.index, t.name, t.nbytes, zero_point_byte(t, True))
                 for sg in model.subgraphs for t in sg.tensors if t.is_variable and t.nbytes > 0]
    resources: list[ResourceVariable] = []
    handle_ids: dict[tuple[int, int], int] = {}
    for sg in model.subgraphs:
        producers: dict[int, int] = {}
        for op in sg.operators:
            if op.name == "VAR_HANDLE":
                container, shared_name = var_handle_options(op)
                r = _find(resources, container, shared_name)
                if r is None:
                    r = ResourceVariable(len(resources), container, shared_name)
                    resources.append(r)
                handle_ids[(sg.index, op.index)] = r.id
                for o in op.outputs:
                    if o >= 0:
                        producers[o] = r.id
            elif op.name == "ASSIGN_VARIABLE" and len(op.inputs) >= 2 and op.inputs[0] in producers:
                r = resources[producers[op.inputs[0]]]
                if r.size is None and op.inputs[1] >= 0:
                    value = sg.tensors[op.inputs[1]]
                    r.size, r.tensor = value.nbytes, value
                    r.fill = zero_point_byte(value, False)
    return PersistentLayout(variables, resources, handle_ids)

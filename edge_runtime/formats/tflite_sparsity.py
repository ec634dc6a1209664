"""Decode a sparse constant tensor (TFLite ``SparsityParameters``) into its dense values.

The general format of the TFLite schema, as the ``DENSIFY`` op reads it: the tensor's ``n``
dimensions, some of them split into blocks (``block_map`` names the original dimensions that are
blocked; each adds one inner "block" dimension), are traversed in ``traversal_order`` (the
``n`` original or outer dimensions first, then the block dimensions). ``dim_metadata[l]``
describes traversal level ``l``: ``DENSE`` (every index ``0..dense_size-1``) or ``SPARSE_CSR``
(for each position of the previous level, the stored indices ``array_indices[seg[p]:seg[p+1]]``).
The stored values follow in traversal order, one per leaf.

Schema fields: SparsityParameters{traversal_order 0, block_map 1, dim_metadata 2};
DimensionMetadata{format 0, dense_size 1, array_segments_type 2, array_segments 3,
array_indices_type 4, array_indices 5}; the SparseIndexVector union is Int32Vector (1),
Uint16Vector (2) or Uint8Vector (3), each a table with ``values`` at field 0.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.formats.flatbuffer import Table

DENSE, SPARSE_CSR = 0, 1
_INDEX_TYPES = {1: np.int32, 2: np.uint16, 3: np.uint8}


class SparsityError(ValueError):
    """The sparsity parameters are inconsistent with the tensor or its data."""


def sparsity_table(model: "object", subgraph: int, tensor: int) -> Optional[Table]:
    """The raw ``SparsityParameters`` table of tensor ``tensor`` of ``subgraph``, or None."""
    sg_table = model.buf.root().tables(2, "subgraph")[subgraph]  # type: ignore[attr-defined]
    return sg_table.tables(0, "tensor")[tensor].table(6, "sparsity")


def _index_vector(dm: Table, type_field: int, field: int, what: str, level: int) -> np.ndarray:
    kind = int(dm.scalar(type_field, "B", 0))
    if kind not in _INDEX_TYPES:
        raise SparsityError(f"level {level} {what} has index vector type {kind} (expected 1, 2 or 3)")
    vt = dm.table(field, what)
    vec = vt.vector(0, _INDEX_TYPES[kind]) if vt is not None else None
    if vec is None:
        raise SparsityError(f"level {level} {what} is missing")
    return np.asarray(vec, dtype=np.int64)


def densify(sp: Table, shape: tuple[int, ...], values: np.ndarray) -> np.ndarray:
    """The dense array of ``shape`` that the sparse ``values`` (1-D, stored order) and ``sp`` describe.

    Positions that are not stored are zero. Raises :class:`SparsityError` on inconsistent parameters.
    """
    nd = len(shape)
    order_v = sp.vector(0, np.int32)
    bmap_v = sp.vector(1, np.int32)
    metas = sp.tables(2, "dimension metadata")
    bmap = [] if bmap_v is None else [int(v) for v in bmap_v]
    levels = nd + len(bmap)
    order = list(range(levels)) if order_v is None else [int(v) for v in order_v]
    if sorted(order) != list(range(levels)) or len(metas) != levels:
        raise SparsityError(f"traversal order {order} / {len(metas)} dimension metadata do not fit {nd} dimensions "
                            f"and {len(bmap)} blocks")
    if len(set(bmap)) != len(bmap) or any(not 0 <= d < nd for d in bmap):
        raise SparsityError(f"block map {bmap} does not name distinct dimensions of a {nd}-D tensor")
    formats = [int(m.scalar(0, "b", 0)) for m in metas]
    level_of = {dim: lvl for lvl, dim in enumerate(order)}
    block = {d: 1 for d in range(nd)}
    for k, d in enumerate(bmap):
        m = metas[level_of[nd + k]]
        if formats[level_of[nd + k]] != DENSE:
            raise SparsityError(f"block dimension {nd + k} must be DENSE")
        block[d] = int(m.scalar(1, "i", 0))
        if block[d] < 1 or shape[d] % block[d]:
            raise SparsityError(f"block size {block[d]} does not divide dimension {d} of size {shape[d]}")
    sizes = [shape[d] // block[d] for d in range(nd)] + [block[d] for d in bmap]
    pos = np.zeros(1, np.int64)  # storage position of each path at the current level
    coords = np.zeros((1, levels), np.int64)
    for lvl, dim in enumerate(order):
        m = metas[lvl]
        if formats[lvl] == DENSE:
            size = int(m.scalar(1, "i", 0))
            if size != sizes[dim]:
                raise SparsityError(f"level {lvl} is DENSE of size {size}, dimension {dim} has {sizes[dim]}")
            pos = (pos[:, None] * size + np.arange(size)).reshape(-1)
            coords = np.repeat(coords, size, axis=0)
            coords[:, dim] = np.tile(np.arange(size), coords.shape[0] // max(size, 1))
        elif formats[lvl] == SPARSE_CSR:
            seg = _index_vector(m, 2, 3, "array_segments", lvl)
            ind = _index_vector(m, 4, 5, "array_indices", lvl)
            if seg.size < 1 or seg[0] != 0 or np.any(np.diff(seg) < 0) or seg[-1] != ind.size:
                raise SparsityError(f"level {lvl} array_segments are not a valid CSR row-pointer vector")
            if ind.size and (ind.min() < 0 or ind.max() >= sizes[dim]):
                raise SparsityError(f"level {lvl} array_indices fall outside dimension {dim} of size {sizes[dim]}")
            if pos.size and pos.max() + 1 >= seg.size:
                raise SparsityError(f"level {lvl} has {seg.size - 1} segments; {int(pos.max()) + 1} are needed")
            starts, counts = seg[pos], seg[pos + 1] - seg[pos]
            total = int(counts.sum())
            parent = np.repeat(np.arange(pos.size), counts)
            offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = np.repeat(starts, counts) + offset
            coords = coords[parent]
            coords[:, dim] = ind[pos]
        else:
            raise SparsityError(f"level {lvl} has unknown dimension format {formats[lvl]}")
    flat = np.asarray(values).reshape(-1)
    if flat.size != pos.size:
        raise SparsityError(f"the buffer holds {flat.size} values; the sparsity parameters describe {pos.size}")
    dense = np.zeros(shape, flat.dtype)
    index = []
    for d in range(nd):
        c = coords[:, d]
        if d in bmap:
            c = c * block[d] + coords[:, nd + bmap.index(d)]
        index.append(c)
    dense[tuple(index)] = flat
    return dense

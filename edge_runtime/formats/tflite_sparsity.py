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

Every field comes from the file, so everything is checked before it is used: the traversal order is a
permutation, the block map names distinct dimensions in ascending order, blocks divide their dimension,
DENSE sizes equal the dimension's, CSR segments are a row-pointer vector over the indices, indices lie
inside their dimension and rise within a segment, the stored values are as many as the leaves. Work is
bounded before any allocation: the dense tensor by :data:`MAX_DENSE_BYTES`, the traversal by what the
stored values and segments can address (:func:`check_sparse_tensor` runs the same checks without the
dense array; the structural check uses it before native code sees a sparse tensor).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edge_runtime.formats.flatbuffer import Table

DENSE, SPARSE_CSR = 0, 1
_INDEX_TYPES = {1: np.int32, 2: np.uint16, 3: np.uint8}


#: Largest dense tensor a sparse one may decode to (as the structural check's largest tensor): a shape
#: beyond it is refused before anything is allocated.
MAX_DENSE_BYTES = 1 << 30


class SparsityError(ValueError):
    """The sparsity parameters are inconsistent with the tensor or its data."""


def sparsity_table(model: object, subgraph: int, tensor: int) -> Optional[Table]:
    """The raw ``SparsityParameters`` table of tensor ``tensor`` of ``subgraph``, or None.

    The subgraph's tensor tables are read once per model and kept on it (a model with many sparse
    tensors would otherwise re-read them all for each one)."""
    cache = getattr(model, "_tensor_tables", None)
    if cache is None:
        cache = {}
        model._tensor_tables = cache  # type: ignore[attr-defined]
    tables = cache.get(subgraph)
    if tables is None:
        sg_table = model.buf.root().tables(2, "subgraph")[subgraph]  # type: ignore[attr-defined]
        tables = cache[subgraph] = sg_table.tables(0, "tensor")
    return tables[tensor].table(6, "sparsity")


def _index_vector(dm: Table, type_field: int, field: int, what: str, level: int) -> np.ndarray:
    kind = int(dm.scalar(type_field, "B", 0))
    if kind not in _INDEX_TYPES:
        raise SparsityError(f"level {level} {what} has index vector type {kind} (expected 1, 2 or 3)")
    vt = dm.table(field, what)
    vec = vt.vector(0, _INDEX_TYPES[kind]) if vt is not None else None
    if vec is None:
        raise SparsityError(f"level {level} {what} is missing")
    return np.asarray(vec, dtype=np.int64)


@dataclass
class Layout:
    """The validated traversal of a sparse tensor: per level its dimension, format, size and CSR vectors."""

    shape: tuple[int, ...]
    order: list[int]
    block_map: list[int]
    block: dict[int, int]
    formats: list[int]
    sizes: list[int]  #: size of each expanded dimension (the n outer ones, then one per block)
    vectors: dict[int, tuple[np.ndarray, np.ndarray]]  #: CSR level -> (segments, indices)


def read_layout(sp: Table, shape: tuple[int, ...]) -> Layout:
    """Read and check the traversal order, block map, level formats and sizes and the CSR index vectors.

    Raises :class:`SparsityError` naming the first field that does not describe a tensor of ``shape``.
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
    if bmap != sorted(bmap):
        raise SparsityError(f"block map {bmap} is not in ascending order (LiteRT misreads such maps)")
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
    vectors = {}
    for lvl, dim in enumerate(order):
        m = metas[lvl]
        if formats[lvl] == DENSE:
            size = int(m.scalar(1, "i", 0))
            if size != sizes[dim]:
                raise SparsityError(f"level {lvl} is DENSE of size {size}, dimension {dim} has {sizes[dim]}")
        elif formats[lvl] == SPARSE_CSR:
            seg = _index_vector(m, 2, 3, "array_segments", lvl)
            ind = _index_vector(m, 4, 5, "array_indices", lvl)
            if seg.size < 1 or seg[0] != 0 or np.any(np.diff(seg) < 0) or seg[-1] != ind.size:
                raise SparsityError(f"level {lvl} array_segments are not a valid CSR row-pointer vector")
            if ind.size and (ind.min() < 0 or ind.max() >= sizes[dim]):
                raise SparsityError(f"level {lvl} array_indices fall outside dimension {dim} of size {sizes[dim]}")
            rising = np.diff(ind) > 0
            starts = seg[1:-1]
            rising[starts[(starts > 0) & (starts < ind.size)] - 1] = True  # a new segment may start lower
            if not np.all(rising):
                raise SparsityError(f"level {lvl} array_indices are not increasing within a segment")
            vectors[lvl] = (seg, ind)
        else:
            raise SparsityError(f"level {lvl} has unknown dimension format {formats[lvl]}")
    return Layout(tuple(shape), order, bmap, block, formats, sizes, vectors)


def _check_work(layout: Layout, n_values: int, itemsize: int) -> None:
    """Refuse, before allocating, a dense tensor beyond :data:`MAX_DENSE_BYTES` or a traversal through more
    storage positions than the stored values and segments can address (what valid encodings never need)."""
    dense = 1
    for s in layout.shape:
        dense *= s
    if dense * itemsize > MAX_DENSE_BYTES:
        raise SparsityError(f"the dense tensor {layout.shape} would take {dense * itemsize:,} bytes, beyond the "
                            f"{MAX_DENSE_BYTES >> 20} MiB decode limit")
    bound = max([n_values] + [seg.size for seg, _ in layout.vectors.values()]) + 1
    positions = 1
    for lvl, dim in enumerate(layout.order):
        positions = positions * layout.sizes[dim] if layout.formats[lvl] == DENSE else layout.vectors[lvl][1].size
        if positions > bound:
            raise SparsityError(f"level {lvl} describes {positions:,} storage positions, but the buffer holds "
                                f"{n_values} values and the segments address at most {bound - 1:,} (too few "
                                "stored values, or corrupt dimension sizes)")


def _leaves(layout: Layout) -> np.ndarray:
    """The flat (C order) dense index of each stored value, in storage order."""
    nd = len(layout.shape)
    strides = [1] * nd
    for d in range(nd - 2, -1, -1):
        strides[d] = strides[d + 1] * layout.shape[d + 1]
    pos = np.zeros(1, np.int64)  # storage position of each path at the current level
    lin = np.zeros(1, np.int64)  # its flat dense index so far
    for lvl, dim in enumerate(layout.order):
        if dim < nd:
            mult = strides[dim] * layout.block[dim]
        else:
            mult = strides[layout.block_map[dim - nd]]
        if layout.formats[lvl] == DENSE:
            size = layout.sizes[dim]
            pos = (pos[:, None] * size + np.arange(size)).reshape(-1)
            lin = (lin[:, None] + np.arange(size, dtype=np.int64) * mult).reshape(-1)
            continue
        seg, ind = layout.vectors[lvl]
        if pos.size and pos.max() + 1 >= seg.size:
            raise SparsityError(f"level {lvl} has {seg.size - 1} segments; {int(pos.max()) + 1} are needed")
        starts, counts = seg[pos], seg[pos + 1] - seg[pos]
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        pos = np.repeat(starts, counts) + offset
        lin = np.repeat(lin, counts) + ind[pos] * mult
    return lin


def check_sparse_tensor(sp: Table, shape: tuple[int, ...], n_values: int, itemsize: int) -> None:
    """Everything :func:`densify` checks, without building the dense array: raise :class:`SparsityError`
    unless ``sp`` describes a tensor of ``shape`` holding ``n_values`` stored values of ``itemsize`` bytes."""
    layout = read_layout(sp, shape)
    _check_work(layout, n_values, itemsize)
    leaves = _leaves(layout)
    if leaves.size != n_values:
        raise SparsityError(f"the buffer holds {n_values} values; the sparsity parameters describe {leaves.size}")


def densify(sp: Table, shape: tuple[int, ...], values: np.ndarray) -> np.ndarray:
    """The dense array of ``shape`` that the sparse ``values`` (1-D, stored order) and ``sp`` describe.

    Positions that are not stored are zero. Raises :class:`SparsityError` on inconsistent parameters,
    and on a dense shape beyond :data:`MAX_DENSE_BYTES` before allocating it.
    """
    flat = np.asarray(values).reshape(-1)
    layout = read_layout(sp, shape)
    _check_work(layout, flat.size, flat.dtype.itemsize)
    leaves = _leaves(layout)
    if flat.size != leaves.size:
        raise SparsityError(f"the buffer holds {flat.size} values; the sparsity parameters describe {leaves.size}")
    dense = np.zeros(shape, flat.dtype)
    dense.reshape(-1)[leaves] = flat
    return dense

"""Store pruned int8 weights compressed, in the TFLite schema's ``SparsityParameters``.

Which weights: the constant int8 weights of ``FULLY_CONNECTED`` ops (``[units, depth]``) and of
1x1 ``CONV_2D`` ops (``[cout, 1, 1, cin]``), when storing them sparse saves at least
``min_saving`` of their bytes.

Layout (standard TFLite block-CSR, the one LiteRT's sparse fully connected kernels read): the
weight matrix is cut into 1xB blocks along its innermost (input) dimension; only blocks with a
non-zero value are stored.

- ``traversal_order`` = the tensor's dimensions in order, then the block dimension
  (``[0, 1, 2]`` for FC with B > 1, ``[0, 1]`` for B = 1; 1x1 conv: ``[0, 1, 2, 3, 4]``);
- ``block_map`` = ``[last dim]`` when B > 1 (three dimension metadata for FC, as TFLite's
  block-sparse fully connected reads them);
- ``dim_metadata``: ``DENSE`` (size = units) for every outer dimension, then ``SPARSE_CSR`` on
  the input dimension, with ``array_segments`` (units + 1 row pointers into the block list) and
  ``array_indices`` (the block-column index of each stored block), then ``DENSE`` size B for
  the block's elements. Index vectors use the smallest of uint8/uint16/int32 that holds them;
- the buffer holds the stored blocks' int8 values, row after row, B values per block.

B is chosen per layer among 16, 8, 4 and 1 (dividing the depth) to make the stored bytes
smallest; with unstructured 50 % sparsity no block is all-zero, so prune in blocks
(:func:`converters.compress.prune.magnitude_prune`, ``block=16``) to save flash.

Runtimes (probed with ai-edge-litert 2.3.0, tests/test_sparse_litert.py): edge-runtime's micro backend
(with its sparse kernels) computes exactly the dense model's outputs, for every layout written here.
LiteRT reads only int8 FULLY_CONNECTED weights in 1x16 blocks right, and only with its builtin kernels
(reference, or optimized without XNNPACK): outputs equal the micro backend's, within one quantization
step of the dense model on LiteRT (its dense FC requantizes differently). LiteRT ignores sparsity on
CONV_2D weights (it reads the stored values as the dense weights: wrong outputs, on every resolver),
fails at invoke on FULLY_CONNECTED weights in other blocks, and its default XNNPACK delegate mis-runs
every sparse weight; the ``litert`` backend refuses such files with the op and tensor. With
``litert=True``, :func:`sparsify_tflite` stores only the layout LiteRT reads, so the file runs on both.
TFLite Micro has no sparse kernels.

Quantization parameters are untouched, so the model's arithmetic is the same as the dense one's;
the micro backend's sparse kernel (``edge_runtime/backends/micro/kernels/sparse.py``) computes
exactly the same accumulators.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.tflite import TFLiteModel

BLOCKS = (16, 8, 4, 1)
#: the one layout LiteRT's kernels read right: FULLY_CONNECTED int8 weights in 1x16 blocks
LITERT_OPS, LITERT_BLOCK = ("FULLY_CONNECTED",), 16
#: the runtimes a sparse file runs on (names of edge-runtime backends)
MICRO_ONLY, MICRO_AND_LITERT = ("micro",), ("micro", "litert")


@dataclass
class SparseLayer:
    """One weight tensor stored sparse."""

    tensor: str
    op: str
    shape: tuple[int, ...]
    block: int
    dense_bytes: int
    sparse_bytes: int
    sparsity: float


@dataclass
class SparseReport:
    """What sparse storage saved."""

    source: str
    output: str
    flash_before: int
    flash_after: int
    layers: list[SparseLayer] = field(default_factory=list)
    ram: dict[str, Any] = field(default_factory=dict)
    #: the edge-runtime backends that run the sparse file correctly (see the module docs)
    runs_on: list[str] = field(default_factory=lambda: list(MICRO_AND_LITERT))

    @property
    def flash_saved(self) -> int:
        """Bytes of file saved."""
        return self.flash_before - self.flash_after

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["flash_saved"] = self.flash_saved
        return d

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"sparse storage: {len(self.layers)} weight tensor(s); flash {self.flash_before:,} B -> "
                 f"{self.flash_after:,} B (saved {self.flash_saved:,} B, "
                 f"{100.0 * self.flash_saved / max(self.flash_before, 1):.1f} %)"]
        for la in self.layers:
            lines.append(f"  {la.op} '{la.tensor[:50]}' {la.shape}: {la.sparsity:.0%} zeros, 1x{la.block} blocks, "
                         f"{la.dense_bytes:,} -> {la.sparse_bytes:,} B")
        for k, v in self.ram.items():
            lines.append(f"  RAM {k}: {v}")
        lines.append(f"  {runs_on_text(self.runs_on)}")
        return "\n".join(lines)


def litert_reads(op: str, block: int) -> bool:
    """True when LiteRT's kernels read ``op``'s int8 weights stored sparse in 1x``block`` blocks right."""
    return op in LITERT_OPS and block == LITERT_BLOCK


def runs_on(layers: list[SparseLayer]) -> list[str]:
    """The edge-runtime backends that run a file with these sparse layers correctly."""
    return list(MICRO_AND_LITERT if all(litert_reads(la.op, la.block) for la in layers) else MICRO_ONLY)


def runs_on_text(backends: list[str]) -> str:
    """One line for people: which backends run the sparse file."""
    if "litert" in backends:
        return "sparse file runs on: the micro and litert backends (not TFLite Micro, which has no sparse kernels)"
    return ("sparse file runs on: the micro backend only (LiteRT mis-runs its sparse CONV_2D or non-1x16 weights "
            "and the litert backend refuses it; TFLite Micro has no sparse kernels)")


def _index_vector(values: np.ndarray):  # type: ignore[no-untyped-def]
    """(SparseIndexVector type, vector object, bytes) for the smallest integer type that holds ``values``."""
    from ai_edge_litert import schema_py_generated as schema

    top = int(values.max()) if values.size else 0
    if top < 256:
        return schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT(values.astype(np.uint8).tolist()), 1
    if top < 65536:
        return schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT(values.astype(np.uint16).tolist()), 2
    return schema.SparseIndexVector.Int32Vector, schema.Int32VectorT(values.astype(np.int32).tolist()), 4


def encode_blocks(w2d: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-CSR of a 2-D int8 matrix: (row pointers [units+1], block columns [nnzb], values [nnzb*B])."""
    units, depth = w2d.shape
    blocks = w2d.reshape(units, depth // block, block)
    nz = np.any(blocks != 0, axis=2)
    row_ptr = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int64)
    cols = np.nonzero(nz)[1].astype(np.int64)
    values = blocks[nz].reshape(-1)
    return row_ptr, cols, np.ascontiguousarray(values, dtype=np.int8)


def _encoded_bytes(w2d: np.ndarray, block: int) -> int:
    units, depth = w2d.shape
    nz = np.any(w2d.reshape(units, depth // block, block) != 0, axis=2)
    nnzb = int(nz.sum())
    seg = 1 if nnzb < 256 else 2 if nnzb < 65536 else 4
    idx = 1 if depth // block <= 256 else 2 if depth // block <= 65536 else 4
    # values + index vectors + ~24 B of tables per dimension
    return nnzb * block + (units + 1) * seg + nnzb * idx + 24 * (5 if block > 1 else 3)


def best_block(w2d: np.ndarray) -> tuple[int, int]:
    """(B, encoded bytes) of the cheapest block size for this matrix."""
    best = (1, _encoded_bytes(w2d, 1))
    for b in BLOCKS:
        if b > 1 and w2d.shape[1] % b == 0:
            n = _encoded_bytes(w2d, b)
            if n < best[1]:
                best = (b, n)
    return best


def sparsify_tflite(src: "str | os.PathLike[str]", dst: "str | os.PathLike[str]", min_saving: float = 0.1,
                    block: Optional[int] = None, litert: bool = False) -> SparseReport:
    """Write ``dst``: ``src`` with its eligible int8 weights stored sparse. Returns what was saved.

    A layer is stored sparse when that saves at least ``min_saving`` of its bytes (a negative value
    stores every eligible layer, e.g. to exercise kernels). ``block`` forces one block size.
    ``litert``: store only what LiteRT's kernels read right (FULLY_CONNECTED weights in 1x16 blocks), so
    the file runs on LiteRT as well as on the micro backend (which reads every layout).
    """
    from ai_edge_litert import schema_py_generated as schema

    from converters.offline_plan import AlignedBuilder

    src_p, dst_p = os.fspath(src), os.fspath(dst)
    model = TFLiteModel.open(src_p)
    if len(model.subgraphs) != 1:
        raise ModelFormatError(f"{src_p}: sparse storage handles single-subgraph models only")
    sg = model.main
    uses: dict[int, int] = {}
    for op in sg.operators:
        for i in op.inputs:
            if i >= 0:
                uses[i] = uses.get(i, 0) + 1
    buffer_users: dict[int, int] = {}
    for t in sg.tensors:
        if t.buffer:
            buffer_users[t.buffer] = buffer_users.get(t.buffer, 0) + 1
    mt = schema.ModelT.InitFromPackedBuf(bytearray(bytes(model.buf.data)), 0)
    tensors = mt.subgraphs[0].tensors
    report = SparseReport(src_p, dst_p, os.path.getsize(src_p), 0)
    for op in sg.operators:
        if op.name not in ("FULLY_CONNECTED", "CONV_2D") or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        w = sg.tensors[op.inputs[1]]
        x = sg.tensors[op.inputs[0]]
        if (w.type_name != "INT8" or x.type_name != "INT8" or w.data is None or w.sparse
                or uses.get(w.index, 0) != 1 or buffer_users.get(w.buffer, 0) != 1):
            continue
        if op.name == "CONV_2D" and (len(w.shape) != 4 or w.shape[1:3] != (1, 1)):
            continue
        if op.name == "FULLY_CONNECTED" and len(w.shape) != 2:
            continue
        if litert and (op.name not in LITERT_OPS or block not in (None, LITERT_BLOCK)):
            continue
        arr = w.array()
        w2d = arr.reshape(arr.shape[0], -1)
        forced = LITERT_BLOCK if litert else block
        if forced is not None:
            if w2d.shape[1] % forced:
                continue
            b, nbytes = forced, _encoded_bytes(w2d, forced)
        else:
            b, nbytes = best_block(w2d)
        if nbytes > w2d.size * (1.0 - min_saving):
            continue
        row_ptr, cols, values = encode_blocks(w2d, b)
        ndim = len(arr.shape)
        dims = []
        for d in range(ndim - 1):
            dm = schema.DimensionMetadataT()
            dm.format, dm.denseSize = schema.DimensionType.DENSE, int(arr.shape[d])
            dims.append(dm)
        csr = schema.DimensionMetadataT()
        csr.format = schema.DimensionType.SPARSE_CSR
        csr.arraySegmentsType, csr.arraySegments, _ = _index_vector(row_ptr)
        csr.arrayIndicesType, csr.arrayIndices, _ = _index_vector(cols)
        dims.append(csr)
        sp = schema.SparsityParametersT()
        sp.traversalOrder = list(range(ndim + (1 if b > 1 else 0)))
        if b > 1:  # TFLite's block-sparse form: one block dimension, on the input axis
            sp.blockMap = [ndim - 1]
            inner = schema.DimensionMetadataT()
            inner.format, inner.denseSize = schema.DimensionType.DENSE, b
            dims.append(inner)
        sp.dimMetadata = dims
        tensors[w.index].sparsity = sp
        mt.buffers[w.buffer].data = values.view(np.uint8)
        report.layers.append(SparseLayer(w.name, op.name, tuple(arr.shape), b, int(arr.size),
                                         int(nbytes),
                                         float(np.mean(arr == 0))))
    builder = AlignedBuilder(len(model.buf.data) + 4096)
    builder.Finish(mt.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    TFLiteModel(data, dst_p)  # re-read: the written model must parse
    with open(dst_p, "wb") as f:
        f.write(data)
    report.flash_after = len(data)
    report.runs_on = runs_on(report.layers)
    return report


def ram_comparison(dense_path: "str | os.PathLike[str]", sparse_path: "str | os.PathLike[str]") -> dict[str, Any]:
    """RAM of the dense and the sparse model loaded on the micro backend, measured with tracemalloc.

    ``*_loaded_bytes`` is everything the loaded model holds in Python-allocated memory: the arena,
    the host workspace, and each kernel's prepared data (the dense kernels' widened weight
    matrices; the sparse kernels' widened stored values and block indices). The weights
    themselves stay memory-mapped (flash) and are not counted. Needs the sparse kernels registered.
    """
    import gc
    import tracemalloc

    import edge_runtime

    out: dict[str, Any] = {}
    for tag, p in (("dense", dense_path), ("sparse", sparse_path)):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        m = edge_runtime.load(os.fspath(p), backend="micro")
        loaded = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        out[f"{tag}_arena_bytes"] = int(m.info.get("arena_bytes", 0))
        out[f"{tag}_workspace_bytes"] = int(m.info.get("workspace_bytes", 0))
        out[f"{tag}_loaded_bytes"] = int(loaded)
        m.close()
        del m
    out["saved_bytes"] = out["dense_loaded_bytes"] - out["sparse_loaded_bytes"]
    return out


__all__ = ["SparseLayer", "SparseReport", "encode_blocks", "best_block", "sparsify_tflite", "ram_comparison",
           "litert_reads", "runs_on", "runs_on_text"]

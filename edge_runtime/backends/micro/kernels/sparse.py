"""Sparse int8 FULLY_CONNECTED and 1x1 CONV_2D: weights stored in TFLite ``SparsityParameters``.

The weights are block-CSR (see ``converters/compress/sparse.py`` for the layout): outer
dimensions dense, the input dimension ``SPARSE_CSR`` over 1xB blocks, optionally a dense block
dimension. At prepare time the block columns are decoded into an index array and the stored
values are widened once (as the dense kernel widens its whole weight matrix): memory grows with
the stored blocks, not with units x depth.

Arithmetic is the dense kernels': integer accumulators (exact in float64), the bias with the
input zero point folded in (``bias - zp * sum(row weights)``; zeros add nothing), the same
per-channel multipliers and the same :class:`Requantizer`, so outputs equal the dense model's
bit for bit. Per run, row chunk and group of output units: the input is widened into the
workspace, the input blocks under the stored weight blocks are gathered (``np.take`` with
``out=``), multiplied by the widened values, summed per block and then per output unit
(``np.add.reduceat``), in float32 while every partial sum is an integer below 2**24 (as the dense
kernels do), else float64. Unit groups bound the gather buffer by the workspace limit. Nothing is
allocated in ``run`` (numpy's own bounded casting buffer aside, as in the dense kernels).

:mod:`~edge_runtime.backends.micro.kernels.dispatch` picks this kernel when the weight tensor is
sparse and the dense kernel otherwise; registering them under ``FULLY_CONNECTED`` and
``CONV_2D`` enables sparse models.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_runtime.backends.micro import options as opt
from edge_runtime.backends.micro.fixedpoint import Requantizer
from edge_runtime.backends.micro.kernels.base import (
    Chunking, Kernel, OpContext, compute_padding, qparams, quantized_activation_range, require_constant,
    require_type, scales32,
)
from edge_runtime.backends.micro.kernels.conv import Conv2D, exact_dtype, per_channel_multipliers
from edge_runtime.backends.micro.kernels.fully_connected import FullyConnected
from edge_runtime.formats.flatbuffer import Table

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)
DENSE, SPARSE_CSR = 0, 1
_INDEX_TYPES = {1: np.int32, 2: np.uint16, 3: np.uint8}


def _sparsity_table(ctx: OpContext, tensor_index: int) -> Optional[Table]:
    sg_table = ctx.model.buf.root().tables(2, "subgraph")[ctx.subgraph.index]
    return sg_table.tables(0, "tensor")[tensor_index].table(6, "sparsity")


def _index_vector(ctx: OpContext, dm: Table, type_field: int, field: int, what: str) -> np.ndarray:
    kind = int(dm.scalar(type_field, "B", 0))
    if kind not in _INDEX_TYPES:
        raise ctx.fail(f"sparse weights: {what} has index vector type {kind}")
    vt = dm.table(field, what)
    vec = vt.vector(0, _INDEX_TYPES[kind]) if vt is not None else None
    if vec is None:
        raise ctx.fail(f"sparse weights: {what} is missing")
    return np.asarray(vec, dtype=np.int64)


def decode_block_csr(ctx: OpContext, tensor_index: int) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """(units, depth, block, row pointers [units+1], block columns [nnzb]) of a sparse weight tensor.

    Accepts the layout the converter writes: identity traversal order, every dimension but the
    innermost DENSE, the innermost SPARSE_CSR, an optional 1xB block (block map ``[0, last]`` with
    sizes 1 and B, or ``[last]`` with size B).
    Anything else raises :class:`UnsupportedModelError` naming the op.
    """
    t = ctx.subgraph.tensors[tensor_index]
    sp = _sparsity_table(ctx, tensor_index)
    if sp is None:
        raise ctx.fail(f"tensor '{t.name}' has no sparsity parameters")
    shape = tuple(t.shape)
    nd = len(shape)
    order = sp.vector(0, np.int32)
    block_map = sp.vector(1, np.int32)
    dims = sp.tables(2, "dimension metadata")
    bmap = [] if block_map is None else [int(v) for v in block_map]
    if bmap not in ([], [nd - 1], [0, nd - 1]) or (nd == 1 and bmap):
        raise ctx.fail(f"sparse weights '{t.name}': only 1xB blocks along the innermost dimension are supported "
                       f"(block map {bmap})")
    n_dims = nd + len(bmap)
    if order is None or list(order) != list(range(n_dims)) or len(dims) != n_dims:
        raise ctx.fail(f"sparse weights '{t.name}': unsupported traversal order {None if order is None else list(order)}")
    for d in range(nd - 1):
        if int(dims[d].scalar(0, "b", 0)) != DENSE or int(dims[d].scalar(1, "i", 0)) != shape[d]:
            raise ctx.fail(f"sparse weights '{t.name}': dimension {d} must be dense of size {shape[d]}")
    csr = dims[nd - 1]
    if int(csr.scalar(0, "b", 0)) != SPARSE_CSR:
        raise ctx.fail(f"sparse weights '{t.name}': the innermost dimension must be SPARSE_CSR")
    block_sizes = [int(dims[nd + i].scalar(1, "i", 0)) for i in range(len(bmap))]
    if any(int(dims[nd + i].scalar(0, "b", 0)) != DENSE for i in range(len(bmap))):
        raise ctx.fail(f"sparse weights '{t.name}': block dimensions must be dense")
    if len(bmap) == 2 and block_sizes[0] != 1:
        raise ctx.fail(f"sparse weights '{t.name}': blocks of {block_sizes[0]} rows are not supported")
    block = block_sizes[-1] if bmap else 1
    depth = shape[-1]
    units = int(np.prod(shape[:-1]))
    if block < 1 or depth % block:
        raise ctx.fail(f"sparse weights '{t.name}': block {block} does not divide the depth {depth}")
    seg = _index_vector(ctx, csr, 2, 3, "array_segments")
    cols = _index_vector(ctx, csr, 4, 5, "array_indices")
    if (seg.size != units + 1 or seg[0] != 0 or np.any(np.diff(seg) < 0) or seg[-1] != cols.size
            or (cols.size and (cols.min() < 0 or cols.max() >= depth // block))):
        raise ctx.fail(f"sparse weights '{t.name}': inconsistent segments/indices")
    nbytes = 0 if t.data is None else int(t.data.size)
    if nbytes != cols.size * block:
        raise ctx.fail(f"sparse weights '{t.name}': the buffer holds {nbytes} values, the index describes "
                       f"{cols.size * block}")
    return units, depth, block, seg, cols


class SparseRows(Kernel):
    """``y[r] = requant(sum over stored blocks of x[r, block] . values + bias)`` for int8."""

    max_version = 9
    inplace_ok = True  # each input row chunk is widened into the workspace before its outputs are written

    def setup(self, ctx: OpContext, x, w, b, y, units: int, k: int, rows_total: int, activation: int) -> None:  # type: ignore[no-untyped-def]
        """Shared prepare of the FC and 1x1 conv forms."""
        require_type(ctx, x, ("INT8",), "input")
        require_type(ctx, w, ("INT8",), "weights")
        require_type(ctx, y, ("INT8",), "output")
        require_constant(ctx, w, "weights")
        if b is not None:
            require_constant(ctx, require_type(ctx, b, ("INT32",), "bias"), "bias")
        units_w, depth, block, seg, cols = decode_block_csr(ctx, ctx.op.inputs[1])
        if units_w != units or depth != k:
            raise ctx.fail(f"sparse weights {w.shape} do not fit {units} units x depth {k}")
        if w.quantization is None or np.any(w.quantization.zero_point != 0):
            raise ctx.fail("int8 weights must be symmetric (zero point 0)")
        self.units, self.k, self.rows_total, self.block = units, k, rows_total, block
        nnzb = int(cols.size)
        raw = w.data.view(np.int8).reshape(nnzb, block)
        cdt = exact_dtype(True, k)  # float32 while every partial sum stays exact, else float64
        # like the dense kernel, the stored values are widened once (nnz values, not units x depth)
        self.vals = raw.astype(cdt)
        self.cols = cols.astype(np.intp)
        in_scale, in_zp = qparams(x)
        out_scale, out_zp = qparams(y)
        m, s = per_channel_multipliers(ctx, in_scale, scales32(w), out_scale, units)
        lo, hi = quantized_activation_range(ctx, activation, out_scale, out_zp)
        bias = np.zeros(units, np.int64)
        if b is not None:
            bias += b.array().astype(np.int64).reshape(-1)
        if in_zp:
            block_sums = raw.astype(np.int64).sum(axis=1)
            row_sums = np.array([block_sums[seg[u]:seg[u + 1]].sum() for u in range(units)], np.int64)
            bias -= np.int64(in_zp) * row_sums
        self.requant = Requantizer(m, s, out_zp, lo, hi, bias=bias)
        # unit groups: consecutive output units whose stored blocks fit the gather buffer
        max_blocks = max(1, min(nnzb, ctx.workspace_limit // 4 // max(block * cdt.itemsize, 1)))
        self.groups: list[tuple[int, int, int, int, np.ndarray, np.ndarray, bool]] = []
        u = 0
        while u < units:
            u1 = u + 1
            while u1 < units and seg[u1 + 1] - seg[u] <= max_blocks:
                u1 += 1
            b0, b1 = int(seg[u]), int(seg[u1])
            counts = np.diff(seg[u:u1 + 1])
            nonempty = np.nonzero(counts > 0)[0].astype(np.intp)
            starts = (seg[u:u1][nonempty] - b0).astype(np.intp)
            self.groups.append((u, u1, b0, b1, starts, nonempty + u, bool(nonempty.size == u1 - u)))
            u = u1
        gmax = max(max(g[3] - g[2] for g in self.groups), 1)
        self.gmax = gmax

        def per_rows(r: int) -> int:
            return cdt.itemsize * (r * k + r * gmax * (block + 1) + 2 * r * units) + 16 * r * units

        ch = Chunking.fit(rows_total, 0, per_rows, ctx.workspace_limit)
        r = ch.rows
        self.rows = r
        self.workspace = {"lhs": ((r, k), cdt), "g": ((r, gmax, block), cdt), "bsum": ((r, gmax), cdt),
                          "acc": ((r, units), cdt), "red": ((r, units), cdt),
                          "acc_i": ((r, units), I64), "tmp": ((r, units), I64)}

    def bind(self, inputs, outputs, scratch, ws) -> None:  # type: ignore[no-untyped-def]
        """Row-chunk and unit-group views into the workspace and the arena."""
        x = inputs[0].reshape(self.rows_total, self.k)
        y = outputs[0].reshape(self.rows_total, self.units)
        src0, dst0 = inputs[0], outputs[0]
        same = src0.__array_interface__["data"][0] == dst0.__array_interface__["data"][0]
        if np.shares_memory(src0, dst0) and not (same and (self.units <= self.k or self.rows >= self.rows_total)):
            raise self.ctx.fail("the arena plan overlaps input and output in a way this kernel cannot run in place")
        nblk = self.k // self.block
        self.steps = []
        for r0 in range(0, self.rows_total, self.rows):
            r = min(self.rows, self.rows_total - r0)
            lhs = ws["lhs"][:r]
            lhs3 = lhs.reshape(r, nblk, self.block)
            acc = ws["acc"][:r]
            groups = []
            for u0, u1, b0, b1, starts, nonempty, full in self.groups:
                n = b1 - b0
                if n == 0:
                    groups.append((None, None, None, None, None, acc[:, u0:u1], None, None))
                    continue
                groups.append((self.cols[b0:b1], ws["g"][:r, :n], self.vals[b0:b1], ws["bsum"][:r, :n], starts,
                               acc[:, u0:u1], None if full else ws["red"][:r, :nonempty.size],
                               None if full else nonempty))
            self.steps.append((x[r0:r0 + r], lhs, lhs3, acc, groups, ws["acc_i"][:r], ws["tmp"][:r], y[r0:r0 + r]))

    def run(self) -> None:
        """Compute all row chunks."""
        for src, lhs, lhs3, acc, groups, acc_i, tmp, out in self.steps:
            np.copyto(lhs, src, casting="unsafe")
            for cols, g, vals, bsum, starts, acc_g, red, nonempty in groups:
                if cols is None:
                    acc_g.fill(0)
                    continue
                np.take(lhs3, cols, axis=1, out=g)  # the input blocks under the stored weight blocks
                np.multiply(g, vals, out=g)
                np.sum(g, axis=2, out=bsum)
                if red is None:
                    np.add.reduceat(bsum, starts, axis=1, out=acc_g)
                else:
                    np.add.reduceat(bsum, starts, axis=1, out=red)
                    acc_g.fill(0)
                    acc[:, nonempty] = red
            np.copyto(acc_i, acc, casting="unsafe")
            self.requant.apply(acc_i, tmp, out)


class SparseFullyConnected(SparseRows):
    """FULLY_CONNECTED with sparse int8 weights ``[units, depth]``."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.fully_connected(ctx.op)
        if o["weights_format"] != 0:
            raise ctx.fail("only the DEFAULT weights format is supported (not shuffled)")
        x, w, b, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        if w is None or len(w.shape) != 2:
            raise ctx.fail("sparse weights must be 2-D")
        units, k = w.shape
        if x is None or x.num_elements % k:
            raise ctx.fail(f"input is not a multiple of the weight depth {k}")
        rows = x.num_elements // k
        if y.num_elements != rows * units:
            raise ctx.fail(f"output shape {y.shape} does not hold {rows}x{units} values")
        self.setup(ctx, x, w, b, y, units, k, rows, o["activation"])


class SparseConv1x1(SparseRows):
    """1x1 CONV_2D, stride 1, with sparse int8 weights ``[cout, 1, 1, cin]`` (a per-pixel FC)."""

    def __init__(self, ctx: OpContext) -> None:
        super().__init__(ctx)
        o = opt.conv2d(ctx.op)
        x, w, b, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
        if w is None or len(w.shape) != 4 or tuple(w.shape[1:3]) != (1, 1):
            raise ctx.fail("sparse convolution weights must be 1x1")
        if x is None or len(x.shape) != 4 or len(y.shape) != 4:
            raise ctx.fail("input and output must be 4-D (NHWC)")
        n, h, wd, cin = x.shape
        if (o["stride_h"], o["stride_w"]) != (1, 1):
            raise ctx.fail("sparse 1x1 convolutions need stride 1")
        for size, out in ((h, y.shape[1]), (wd, y.shape[2])):
            if compute_padding(ctx, o["padding"], size, 1, 1, 1, out) != (0, 0):
                raise ctx.fail("a 1x1 stride-1 convolution cannot pad")
        cout = w.shape[0]
        if w.shape[3] != cin or y.shape[3] != cout:
            raise ctx.fail(f"filter shape {w.shape} does not fit input {x.shape} / output {y.shape}")
        self.n = n
        self.setup(ctx, x, w, b, y, cout, cin, n * h * wd, o["activation"])

    def inplace_scratch_bytes(self) -> int:
        """A per-pixel op: in place needs no line buffer when Cout <= Cin or all pixels fit one chunk."""
        return 0


def weights_sparse(ctx: OpContext) -> bool:
    """True when the op's weights (input 1) are stored sparse."""
    w = ctx.input(1)
    return w is not None and w.sparse


__all__ = ["decode_block_csr", "SparseFullyConnected", "SparseConv1x1", "weights_sparse"]

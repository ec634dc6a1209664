"""float32 BATCH_MATMUL, bit-exact with tflite-micro.

tflite-micro's reference kernel (``reference_ops::BatchMatMul``, reached from ``batch_matmul.cc`` with the
operands swapped and the right one transposed) computes every output as ``total = 0.0f`` then
``total += lhs[i][k] * rhs[k][j]`` for k in order, one float32 rounding per product and per sum (no fused
multiply-add in its x86-64 build), and stores ``total`` (no bias, no activation). A float64 or BLAS product
rounds elsewhere and differs from it in the last bits of almost every output.

The same operations run here in the same order, vectorized across outputs, in one of two forms per chunk of
lhs rows (the chunk sized to the workspace limit):

- many outputs: for each depth position ``k`` one product of the lhs column (broadcast along the output
  columns) with the rhs row (broadcast along the output rows) and one addition into the accumulators, batch
  dimensions broadcasting as numpy broadcasts them (as TFLM's ``extent`` 0 does for a dimension of 1);
- few outputs (at most :data:`FEW_OUTPUTS` per chunk), where ``2 K`` numpy calls would cost more than the
  arithmetic: all products at once, then ``np.add.accumulate`` along the depth (a sequential running sum),
  whose last column plus ``0.0`` (TFLM's total starts at +0, so a sum of -0 products is +0) is the output.

The rhs is laid out once per run (once at bind time when it is constant); the output never shares memory
with an operand (the op does not run in place). With numba available the compiled loop
(:func:`edge_runtime.backends.micro.fast.batch_matmul.batch_matmul_float`) runs instead: the same sums, four
output rows at a time.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Optional

import numpy as np

from edge_runtime.backends.micro.kernels.base import Chunking, Workspace, nbytes_of

F32 = np.dtype(np.float32)
#: at most this many outputs per chunk: the running-sum form
FEW_OUTPUTS = 256


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


class Float32BatchMatMul:
    """The float32 arithmetic of one BATCH_MATMUL op (shapes already checked by the op's kernel).

    ``a_shape``/``b_shape`` are the operands' shapes padded with leading 1s to the output's rank; the
    matrices are ``(m, k)`` and ``(k, n)`` after the adjoints are applied."""

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], adj_x: bool, adj_y: bool,
                 out_shape: tuple[int, ...], rhs_constant: bool, workspace_limit: int) -> None:
        self.a_shape, self.b_shape, self.adj_x, self.adj_y = a_shape, b_shape, adj_x, adj_y
        self.out_shape = out_shape
        self.rhs_constant = rhs_constant
        self.a_batch, self.b_batch, self.o_batch = a_shape[:-2], b_shape[:-2], out_shape[:-2]
        self.m, self.n = out_shape[-2], out_shape[-1]
        self.k = a_shape[-2] if adj_x else a_shape[-1]
        na, nb, no = _prod(self.a_batch), _prod(self.b_batch), _prod(self.o_batch)
        k, n = self.k, self.n
        fixed = 0 if rhs_constant else nb * n * k * 4  # the rhs laid out in the workspace (or cached)
        # running-sum form: products (o_batch, rows, n, k) and the rhs as (b_batch, n, k)
        running = Chunking.fit(self.m, fixed, lambda r: no * r * n * k * 4, workspace_limit)
        self.running = k > 1 and no * running.rows * n <= FEW_OUTPUTS and (
            fixed + no * running.rows * n * k * 4 <= workspace_limit)
        if self.running:
            self.chunk = running
            self.rhs_layout = self.b_batch + (n, k)
            rows = running.rows
            self.workspace = {"prod": ((no * rows * n * k,), F32)}
        else:
            # k-step form: the rhs as (k, b_batch, n), per chunk the lhs as (k, a_batch, rows) and two
            # (o_batch, rows, n) buffers
            self.chunk = Chunking.fit(self.m, fixed, lambda r: (na * r * k + 2 * no * r * n) * 4, workspace_limit)
            self.rhs_layout = (k,) + self.b_batch + (n,)
            rows = self.chunk.rows
            self.workspace = {"at": ((k * na * rows,), F32), "acc": ((no * rows * n,), F32),
                              "prod": ((no * rows * n,), F32)}
        if not rhs_constant:
            self.workspace["rhs"] = (self.rhs_layout, F32)
        self.rhs: Optional[np.ndarray] = None
        self.path = "numpy"

    @property
    def cache_bytes(self) -> int:
        """Bytes kept outside the workspace: the constant rhs laid out once (numpy path); the compiled loop's
        accumulator rows and rhs copy."""
        if self.path == "numba":
            return int(sum(t.nbytes for t in self.private))
        return nbytes_of(self.rhs_layout, F32) if self.rhs_constant else 0

    def _rhs_source(self, b: np.ndarray) -> np.ndarray:
        """The rhs as a view in :attr:`rhs_layout` (copied into the buffer at run or bind time)."""
        bm = b.swapaxes(-1, -2) if self.adj_y else b  # (.., k, n)
        return np.moveaxis(bm, -1, -2) if self.running else np.moveaxis(bm, -2, 0)

    def bind(self, a: np.ndarray, b: np.ndarray, y: np.ndarray, ws: Workspace) -> None:
        """Views of the operands (adjoints applied), the output and the workspace, per chunk of lhs rows."""
        from edge_runtime.backends.micro import fast

        a = a.reshape(self.a_shape)
        b = b.reshape(self.b_shape)
        y = y.reshape(self.out_shape)
        self.am = a.swapaxes(-1, -2) if self.adj_x else a  # (.., m, k)
        self.bm = b.swapaxes(-1, -2) if self.adj_y else b  # (.., k, n)
        self.y = y
        if fast.available() and y.flags.c_contiguous:
            self._bind_fast(fast)
            return
        self.b_src = self._rhs_source(b)
        if self.rhs_constant:
            self.rhs = np.empty(self.rhs_layout, F32)
            np.copyto(self.rhs, self.b_src)
        else:
            self.rhs = ws["rhs"]
        self.steps: list[Any] = []
        k, n = self.k, self.n
        for r0 in self.chunk.starts:
            r1 = min(self.m, r0 + self.chunk.rows)
            r = r1 - r0
            a_rows = self.am[..., r0:r1, :]
            y_rows = y[..., r0:r1, :]
            if self.running:
                prod = ws["prod"][:_prod(self.o_batch) * r * n * k].reshape(self.o_batch + (r, n, k))
                self.steps.append((a_rows[..., :, None, :], prod, y_rows))
            else:
                at = ws["at"][:k * _prod(self.a_batch) * r].reshape((k,) + self.a_batch + (r,))
                acc = ws["acc"][:_prod(self.o_batch) * r * n].reshape(self.o_batch + (r, n))
                prod = ws["prod"][:acc.size].reshape(acc.shape)
                pairs = [(at[d][..., :, None], self.rhs[d][..., None, :]) for d in range(k)]
                self.steps.append((np.moveaxis(a_rows, -1, 0), at, pairs, acc, prod, y_rows))

    def _bind_fast(self, fast: Any) -> None:
        """The compiled loop over rank-5 views of the operands (adjoints applied; batch dimensions of 1
        broadcast). An rhs whose rows are not contiguous (adj_y) is copied first into a private (.., k, n)
        array: at bind time when it is constant, else at every run."""
        from edge_runtime.backends.micro.fast.batch_matmul import batch_matmul_float

        def rank5(t: np.ndarray) -> np.ndarray:
            return t.reshape((1,) * (5 - t.ndim) + t.shape)

        self.acc_rows = np.empty((4, max(1, self.n)), F32)
        rhs, self.rhs_copy = self.bm, None
        if self.bm.strides[-1] != F32.itemsize and self.bm.size:
            rhs = np.empty(self.bm.shape, F32)
            np.copyto(rhs, self.bm)
            if not self.rhs_constant:
                self.rhs_copy = (rhs, self.bm)
        self.private = [self.acc_rows] + ([rhs] if rhs is not self.bm else [])
        args = (rank5(self.am), rank5(rhs), self.acc_rows, rank5(self.y))
        compiled = fast.jit_prepare(batch_matmul_float, *args)
        if self.rhs_copy is None:
            self.run = partial(compiled, *args)  # type: ignore[method-assign]
        else:
            dst, src = self.rhs_copy

            def run() -> None:
                np.copyto(dst, src)
                compiled(*args)

            self.run = run  # type: ignore[method-assign]
        self.path = "numba"

    def run(self) -> None:
        """Every output's sum in depth order, in float32."""
        mul, add = np.multiply, np.add
        if not self.rhs_constant:
            np.copyto(self.rhs, self.b_src)
        if self.running:
            rhs = self.rhs[..., None, :, :]
            for a_rows, prod, y_rows in self.steps:
                mul(a_rows, rhs, out=prod)
                add.accumulate(prod, axis=-1, out=prod)
                add(prod[..., -1], F32.type(0.0), out=y_rows)
            return
        for a_src, at, pairs, acc, prod, y_rows in self.steps:
            np.copyto(at, a_src)
            acc.fill(0.0)
            for a_col, b_row in pairs:
                mul(a_col, b_row, out=prod)
                add(acc, prod, out=acc)
            np.copyto(y_rows, acc)

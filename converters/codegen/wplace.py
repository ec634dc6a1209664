"""Which weights the generated C stores entropy-coded (``wcoder.py``), and where they are decoded.

Before a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED runs, its coded weights are decoded into RAM
that nothing else uses during that op: a gap of the arena plan (no tensor live at the op, not its
ring), else a static buffer of at most :data:`WBUF_BYTES` shared by all ops. A CONV_2D whose weights
fit neither is coded whole when the kernel can decode them itself, a few filters at a time into an
arena gap, output channels outer (``er_wchunk``: each filter decoded once per inference; the op runs
out of place, its input first copied into the static buffer when it was planned in place, so that
input must fit the buffer). A 1x1 CONV_2D run exactly in place (KWS's pointwise layers) is coded whole
when its filters fit no region (``er_wstream``): its first filters are decoded before the op and
stay, the others are decoded by the kernel once per block of pixels (at most
:data:`STREAM_MAX_PASSES` times per inference), coded adaptively like the rest: the decoder
saves its whole state before them in the op's decode region (:data:`MARK_BYTES`) and goes back to it
for each further pass (``er_rc_stream``); each block's outputs are
kept aside until its pixels are written over their inputs. Otherwise a CONV_2D or FULLY_CONNECTED
has its first rows coded and the rest stored as they are (``er_wsplit``); a DEPTHWISE_CONV_2D
(channels interleaved) is coded whole or not at all. The static buffer directly follows the arena,
so an op whose free gap (smaller than the buffer) ends the arena decodes into gap and buffer as one
region.

A part is coded only when that saves flash (its code length, priced with the adaptive model as it
stands at that point of the stream, plus its descriptor, is at least :data:`MIN_SAVING` bytes below
its size), and while the coded bytes stay within :data:`DECODE_PER_MAC` of the layers'
multiply-accumulates. Decoding costs about 160 Cortex-M4 instructions per weight (loop and stores
included), so a layer is coded freely only when each of its weights is used at least
:data:`MIN_USES` times per inference (the added instructions then stay within about 20 per MAC of the
layer, near the kernels' own cost per MAC). Layers used fewer times ("low-use": a fully connected
layer at batch 1, a convolution with one output pixel) share a budget of :data:`LOW_USE_PER_MAC`
coded bytes per MAC of the layers that do reuse their weights (about 1.6 decode instructions per
such MAC): a model made of low-use layers only (AD: every weight read once per inference) codes
nothing, where coding would add about half its instructions for 1% of its flash, while KWS's
classifier and SWW's one-pixel layers stay coded. Outputs are unchanged by construction: the stream
is decoded back at export and compared with the weights.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from converters.codegen.cop import COp, c_array
from converters.codegen.wcoder import Decoder, Encoder, Model
from edge_runtime.arena.plan import ArenaPlan
from edge_runtime.errors import UnsupportedModelError

#: the static decode buffer's largest size (it directly follows the arena, so an op whose free gap
#: ends the arena decodes into the gap and the buffer as one region): with the decoder's 524 bytes of state it keeps RAM
#: within the in-place arena + 4 KB (runner statics and stack take under 1 KB)
WBUF_BYTES = 2560
MIN_SAVING = 16
DECODE_PER_MAC = 1 / 25
#: a layer whose weights are each used fewer times per inference is a "low-use" layer ...
MIN_USES = 8
#: ... and low-use layers share a budget of this many coded bytes per multiply-accumulate of the
#: other layers (those that reuse their weights)
LOW_USE_PER_MAC = 1 / 100
SPLIT_BYTES = 12  # sizeof(er_wsplit) on a 32-bit MCU
CHUNK_BYTES = 16  # sizeof(er_wchunk)
STREAM_BYTES = 12  # sizeof(er_wstream)
#: er_wstream: each streamed filter is decoded at most this many times per inference
STREAM_MAX_PASSES = 4
#: er_wstream: the decoder's saved state in the op's decode region (er_kernels.h ER_RC_MARK_BYTES)
MARK_BYTES = 528
MODES = ("auto", "off")


@dataclass
class Coded:
    """One coded part: op ``index``'s first ``rows`` rows, decoded to ``dst`` (a C expression)."""

    index: int
    name: str
    rows: int
    row_len: int
    total_rows: int
    dst: str
    values: np.ndarray
    #: > 0: the kernel decodes the weights itself, this many rows at a time into ``dst`` (er_wchunk)
    chunk_rows: int = 0
    #: with chunk_rows: the op's input is first copied into the static buffer (it was planned in place)
    copy_input: bool = False
    #: > 0: er_wstream, pixels per block; ``resident`` rows are decoded before the op, the others by
    #: the kernel once per block, from the decoder state marked before them (er_rc_stream)
    block: int = 0
    resident: int = 0

    def code(self, enc: Encoder) -> None:
        """Append this part to the stream."""
        enc.weights(self.values.reshape(-1))

    def decodes_back(self, dec: Decoder) -> bool:
        """Whether ``dec`` gives this part's weights back, step for step as the C decodes them."""
        flat = self.values.reshape(-1)
        k = self.resident * self.row_len if self.block else flat.size
        ok = np.array_equal(dec.weights(k), flat[:k])
        if not self.block:
            return ok
        dec.mark()  # a first pass, and one from the mark (every later pass is the same)
        ok = ok and np.array_equal(dec.weights(flat.size - k), flat[k:])
        dec.rewind()
        return ok and np.array_equal(dec.weights(flat.size - k), flat[k:])


@dataclass
class CodingPlan:
    """The coded parts in op order, the stream, and the static buffer's size (0: none)."""

    parts: list[Coded] = field(default_factory=list)
    stream: bytes = b""
    wbuf_bytes: int = 0

    def saved_bytes(self) -> int:
        """Flash bytes saved (before the decoder's code): raw size minus stream and descriptors."""
        raw = sum(p.rows * p.row_len for p in self.parts)
        split = sum(SPLIT_BYTES for p in self.parts if p.rows < p.total_rows)
        split += sum(CHUNK_BYTES for p in self.parts if p.chunk_rows)
        split += sum(STREAM_BYTES for p in self.parts if p.block)
        return raw - len(self.stream) - split if self.parts else 0


def free_gap(plan: ArenaPlan, op_index: int) -> tuple[int, int]:
    """(offset, size) of the largest arena interval no tensor and no scratch uses during the op."""
    live = [(e.offset, e.offset + e.size) for e in plan.tensor_entries() if e.first_op <= op_index <= e.last_op]
    sc = plan.scratch(op_index)
    if sc:
        live.append((sc[0], sc[0] + sc[1]))
    best, pos = (0, 0), 0
    for a, b in sorted(live):
        if a - pos > best[1]:
            best = (pos, a - pos)
        pos = max(pos, b)
    if plan.arena_bytes - pos > best[1]:
        best = (pos, plan.arena_bytes - pos)
    start = (best[0] + 3) & ~3  # word-aligned
    return start, max(0, best[0] + best[1] - start)


def _int_field(params: str, name: str) -> "int | None":
    m = re.search(rf"\.{name} = (-?\d+)", params)
    return int(m.group(1)) if m else None


def chunk_plan(c: COp, gap: int) -> "tuple[int, int] | None":
    """(rows per chunk, input bytes to copy out or 0) when CONV_2D ``c`` can decode all its weights
    itself in chunks into an arena gap of ``gap`` bytes (er_wchunk), output channels outer: it has no
    row index, and its input fits the static buffer when it runs in place. None otherwise."""
    if c.name != "CONV_2D" or c.weights is None or ".rows = 0," not in c.shape:
        return None
    rows, row_len = c.weights[1].shape
    dims = [_int_field(c.shape, f) for f in ("batches", "in_h", "in_w", "in_c", "ring_n")]
    if any(d is None for d in dims) or gap < row_len:
        return None
    batches, in_h, in_w, in_c, ring_n = dims  # type: ignore[misc]
    copy = batches * in_h * in_w * in_c if ring_n else 0
    if copy > WBUF_BYTES:
        return None
    return min(rows, gap // row_len), copy


def stream_plan(c: COp, region: int, same_address: bool) -> "tuple[int, int, int, int] | None":
    """(resident rows, pixels per block, RAM bytes, weights decoded per inference) of the cheapest
    er_wstream layout of CONV_2D ``c`` in a decode region of ``region`` bytes, or None: the op must be
    a 1x1 convolution with unit stride, no padding and no row index, run in place forward with its
    input and output at one address (``same_address``) and as many input as output channels, and
    each streamed filter is decoded at most :data:`STREAM_MAX_PASSES` times."""
    if c.name != "CONV_2D" or c.weights is None or not same_address or ".rows = 0," not in c.shape:
        return None
    f = {k: _int_field(c.shape, k) for k in ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h",
                                             "k_w", "stride_h", "stride_w", "pad_t", "pad_l", "ring_n")}
    rows, row_len = c.weights[1].shape
    if (any(v is None for v in f.values()) or (f["k_h"], f["k_w"], f["stride_h"], f["stride_w"]) != (1, 1, 1, 1)
            or f["pad_t"] or f["pad_l"] or f["ring_n"] <= 0  # type: ignore[operator]
            or (f["in_h"], f["in_w"]) != (f["out_h"], f["out_w"]) or not rows == f["out_c"] == f["in_c"] == row_len):
        return None
    pixels = f["batches"] * f["out_h"] * f["out_w"]  # type: ignore[operator]
    best = None
    for res in range(rows):
        streamed = rows - res
        block = min(pixels, (region - res * row_len - rows - MARK_BYTES) // streamed)
        if block < 1:
            break
        passes = -(-pixels // block)
        if passes > STREAM_MAX_PASSES:
            continue
        decodes = res * row_len + streamed * row_len * passes
        if best is None or decodes < best[3]:
            best = (res, block, res * row_len + rows + block * streamed + MARK_BYTES, decodes)
    return best


def plan_coding(plan: ArenaPlan, cops: list[COp], mode: str = "auto",
                same_address: "set[int] | None" = None) -> CodingPlan:
    """Choose and encode the coded parts of ``cops`` (in op order). ``same_address``: the ops run in
    place with their input and output at one arena offset (candidates for er_wstream)."""
    if mode not in MODES:
        raise UnsupportedModelError(f"compress_weights must be one of {', '.join(MODES)}, not {mode!r}")
    out = CodingPlan()
    if mode == "off":
        return out
    model = Model()
    macs = sum(c.weights[1].size * c.weights[3] for c in cops if c.weights is not None)
    reused = sum(c.weights[1].size * c.weights[3] for c in cops if c.weights is not None
                 and c.weights[3] >= MIN_USES)
    budget, low_budget = DECODE_PER_MAC * macs, LOW_USE_PER_MAC * reused
    for c in cops:
        if c.weights is None:
            continue
        name, w, splittable, uses = c.weights
        low = uses < MIN_USES
        if low and low_budget < MIN_SAVING * 4:
            continue
        rows, row_len = w.shape
        off, gap = free_gap(plan, c.index)
        # a gap smaller than the static buffer that ends the arena: decode into both, as one region
        tail = 0 < gap < WBUF_BYTES and off + gap == plan.arena_bytes
        if gap >= w.size:
            n, dst = rows, f"(er_arena + {off})"
        elif tail:  # the gap and the static buffer after it, as one region (starting gap bytes before it)
            room = gap + WBUF_BYTES
            n = rows if w.size <= room else (min(rows, room // row_len) if splittable else 0)
            dst = f"er_wbuf - {gap}"
        else:
            room = max(gap, WBUF_BYTES)
            n = rows if w.size <= WBUF_BYTES else (min(rows, room // row_len) if splittable else 0)
            dst = f"(er_arena + {off})" if gap >= n * row_len and gap > 0 else "er_wbuf"
        cap = min(budget, low_budget) if low else budget
        chunk = chunk_plan(c, gap) if n < rows else None
        if chunk is not None and w.size <= cap:
            trial = model.copy()
            if w.size - trial.cost_bits(w) / 8 - CHUNK_BYTES >= MIN_SAVING:
                model = trial
                budget -= w.size
                if low:
                    low_budget -= w.size
                out.parts.append(Coded(c.index, name, rows, row_len, rows, f"(er_arena + {off})",
                                       np.ascontiguousarray(w), chunk[0], chunk[1] > 0))
                out.wbuf_bytes = max(out.wbuf_bytes, chunk[1])
                continue
        region = gap + WBUF_BYTES if tail else max(gap, WBUF_BYTES)
        stream = stream_plan(c, region, c.index in (same_address or set())) if n < rows else None
        if stream is not None and stream[3] <= cap:
            res, block, ram, decodes = stream
            trial = model.copy()
            cost = trial.cost_bits(w)
            split_n = min(n, int(cap) // row_len)
            split_cost = model.copy().cost_bits(w[:split_n]) / 8 + SPLIT_BYTES if split_n else split_n * row_len
            if w.size - cost / 8 - STREAM_BYTES >= max(MIN_SAVING, split_n * row_len - split_cost):
                model = trial
                budget -= decodes
                if low:
                    low_budget -= decodes
                base = f"er_wbuf - {gap}" if tail else f"(er_arena + {off})" if gap >= WBUF_BYTES else "er_wbuf"
                out.parts.append(Coded(c.index, name, rows, row_len, rows, base, np.ascontiguousarray(w),
                                       block=block, resident=res))
                if base == "er_wbuf" or tail:
                    out.wbuf_bytes = max(out.wbuf_bytes, ram - (gap if tail else 0))
                continue
        if splittable:
            n = min(n, int(cap) // row_len)
        elif n * row_len > cap:
            n = 0
        if n == 0:
            continue
        trial = model.copy()
        cost = trial.cost_bits(w[:n]) / 8 + (SPLIT_BYTES if n < rows else 0)
        if n * row_len - cost < MIN_SAVING:
            continue
        model = trial
        budget -= n * row_len
        if low:
            low_budget -= n * row_len
        out.parts.append(Coded(c.index, name, n, row_len, rows, dst, np.ascontiguousarray(w[:n])))
        if dst == "er_wbuf":
            out.wbuf_bytes = max(out.wbuf_bytes, n * row_len)
        elif tail:
            out.wbuf_bytes = max(out.wbuf_bytes, n * row_len - gap)
    if not out.parts:
        return out
    enc = Encoder()
    for p in out.parts:
        p.code(enc)
    out.stream = enc.finish()
    dec = Decoder(out.stream)
    for p in out.parts:  # the C decoder's steps: the stream must give the weights back
        if not p.decodes_back(dec):
            raise UnsupportedModelError(f"op {p.index}: entropy-coded weights do not decode back (internal error)")
    return out


def apply_coding(coding: CodingPlan, cops: list[COp], kinds: dict[str, str]) -> dict[int, str]:
    """Rewrite the coded ops' constants and parameter blocks in ``cops``; return, per op index, the C
    statement to run before it. ``kinds``: the manifest's C name -> kind, updated."""
    by_op = {c.index: c for c in cops}
    before: dict[int, str] = {}
    for p in coding.parts:
        c = by_op[p.index]
        w = c.weights[1]  # type: ignore[index]
        kind = c.consts[p.name][0]
        del c.consts[p.name]
        if p.block:
            desc = f"{p.name}t"
            c.consts[desc] = ("parameters", f"static const er_wstream {desc} = {{ (int8_t*){p.dst}, er_rc_stream, "
                                            f"{p.resident}, {p.block} }};\n")
            kinds.pop(p.name, None)
            old = f".weights = {p.name},"
            if old not in c.params:
                raise UnsupportedModelError(f"op {p.index}: no weights field to rewrite (internal error)")
            c.params = c.params.replace(old, f".weights = (const int8_t*)(const void*)&{desc}, .w_split = 3,")
            if p.resident:
                before[p.index] = f"er_rc_decode((int8_t*){p.dst}, {p.resident * p.row_len}); "
            continue
        if p.chunk_rows:
            desc = f"{p.name}c"
            copy = "er_wbuf" if p.copy_input else "0"
            c.consts[desc] = ("parameters", f"static const er_wchunk {desc} = {{ {copy}, (int8_t*){p.dst}, "
                                            f"er_rc_decode, {p.chunk_rows} }};\n")
            kinds.pop(p.name, None)
            old = f".weights = {p.name},"
            if old not in c.params:
                raise UnsupportedModelError(f"op {p.index}: no weights field to rewrite (internal error)")
            c.params = c.params.replace(old, f".weights = (const int8_t*)(const void*)&{desc}, .w_split = 2,")
            continue
        if p.rows < p.total_rows:
            c.consts[p.name] = (kind, c_array(p.name, "int8_t", w[p.rows:].reshape(-1), c))
            desc = f"{p.name}s"
            c.consts[desc] = ("parameters", f"static const er_wsplit {desc} = {{ (const int8_t*){p.dst}, {p.name}, "
                                            f"{p.rows} }};\n")
            pointer = f"(const int8_t*)(const void*)&{desc}, .w_split = 1"
        else:
            pointer = f"(const int8_t*){p.dst}"
            kinds.pop(p.name, None)
        old = f".weights = {p.name},"
        if old not in c.params:
            raise UnsupportedModelError(f"op {p.index}: no weights field to rewrite (internal error)")
        c.params = c.params.replace(old, f".weights = {pointer},")
        before[p.index] = f"er_rc_decode((int8_t*){p.dst}, {p.rows * p.row_len}); "
    return before


__all__ = ["CodingPlan", "Coded", "MIN_USES", "MODES", "STREAM_MAX_PASSES", "WBUF_BYTES", "apply_coding",
           "chunk_plan", "free_gap", "plan_coding", "stream_plan"]

"""Integer token ids of a float .tflite selected at constant positions before a table lookup convert to int8 TFLite.

Float .tflite models built with ``tflite_builder`` whose int32 ids are selected from before an embedding lookup:
the last token (STRIDED_SLICE with a shrink mask -> GATHER(table)), a SLICE then a GATHER at constant positions,
a CONCATENATION with a constant BOS token, an EXPAND_DIMS -> RESHAPE -> GATHER(axis 0) -> RESHAPE chain into
EMBEDDING_LOOKUP, int64 ids through CAST, SPLIT, UNPACK, PACK (with a pad id), REVERSE_V2 and CONCATENATION, ids
reshaped into GATHER_ND index pairs, and an ARG_MAX result's last position. Each converts through
:func:`converters.pipeline.convert_model`; the selected ids stay int32 in the written .tflite. References: LiteRT
running the float source .tflite (SQNR of LiteRT on the int8 model against it), tflite-micro (micro must equal it,
``np.array_equal``). Integer arithmetic on the selected ids (ADD) is refused in one line naming the operator.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
from tflite_builder import ModelBuilder, SubgraphBuilder, T, opts  # noqa: E402

from converters.importers.tflite import import_tflite  # noqa: E402
from converters.ir import index_limits, integer_tensors  # noqa: E402
from converters.pipeline import convert_model  # noqa: E402
from converters.quality.metrics import sqnr_db  # noqa: E402
from converters.report import litert_interpreter  # noqa: E402
from edge_runtime.errors import UnsupportedModelError  # noqa: E402

PROFILE = "rpi4-4gb"
ROWS = 30  # embedding rows
DIM = 16


def _i32(sg: SubgraphBuilder, v, name: str) -> int:  # type: ignore[no-untyped-def]
    a = np.asarray(v, np.int32)
    return sg.tensor(T(list(a.shape), "int32", data=a, name=name))


def _f32(sg: SubgraphBuilder, rng: np.random.Generator, shape: tuple[int, ...], std: float, name: str) -> int:
    return sg.tensor(T(list(shape), "float32", data=rng.normal(0, std, shape).astype(np.float32), name=name))


def _head(sg: SubgraphBuilder, rng: np.random.Generator, x: int, width: int) -> int:
    """FULLY_CONNECTED [1, width] -> [1, 5]: the float output."""
    w, b = _f32(sg, rng, (5, width), 0.3 if width <= 16 else 0.1, "W"), _f32(sg, rng, (5,), 0.1, "b")
    y = sg.tensor(T([1, 5], "float32", name="y"))
    sg.op("FULLY_CONNECTED", [x, w, b], [y], opts("FullyConnectedOptions"))
    return y


def _flat(sg: SubgraphBuilder, x: int, width: int) -> int:
    """RESHAPE to [1, width]."""
    f = sg.tensor(T([1, width], "float32", name="flat"))
    sg.op("RESHAPE", [x, _i32(sg, [1, width], "flat_shape")], [f], opts("ReshapeOptions", newShape=[1, width]))
    return f


def _model(path: Path, seq: int, body: Callable[[SubgraphBuilder, np.random.Generator, int], int], seed: int,
           dtype: str = "int32") -> Path:
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    ids = sg.tensor(T([1, seq], dtype, name="ids"))
    sg.io([ids], [body(sg, np.random.default_rng(seed), ids)])
    return mb.write(path)


def last_token(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """``emb[ids[:, -1]] @ W``: STRIDED_SLICE (begin -1, shrink axis 1) -> GATHER(table)."""
    last = sg.tensor(T([1], "int32", name="last"))
    sg.op("STRIDED_SLICE", [ids, _i32(sg, [0, -1], "begin"), _i32(sg, [1, 0], "end"), _i32(sg, [1, 1], "strides")],
          [last], opts("StridedSliceOptions", endMask=2, shrinkAxisMask=2))
    e = sg.tensor(T([1, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (ROWS, DIM), 1.0, "emb"), last], [e], opts("GatherOptions", axis=0))
    return _head(sg, rng, e, DIM)


def slice_gather(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """``emb[ids[:, 1:7][:, [5, 0, 1, 3]]]`` flattened: SLICE, GATHER at constant positions, GATHER(table)."""
    mid = sg.tensor(T([1, 6], "int32", name="mid"))
    sg.op("SLICE", [ids, _i32(sg, [0, 1], "begin"), _i32(sg, [1, 6], "size")], [mid])
    picked = sg.tensor(T([1, 4], "int32", name="picked"))
    sg.op("GATHER", [mid, _i32(sg, [5, 0, 1, 3], "positions")], [picked], opts("GatherOptions", axis=1))
    e = sg.tensor(T([1, 4, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (ROWS, DIM), 1.0, "emb"), picked], [e], opts("GatherOptions", axis=0))
    return _head(sg, rng, _flat(sg, e, 4 * DIM), 4 * DIM)


def bos_concat(sg: SubgraphBuilder, rng: np.random.Generator, ids: int, token: int = 1) -> int:
    """``emb[concat([BOS], ids)]`` flattened: CONCATENATION with a constant int32 token."""
    full = sg.tensor(T([1, 8], "int32", name="full"))
    sg.op("CONCATENATION", [_i32(sg, [[token]], "bos"), ids], [full], opts("ConcatenationOptions", axis=1))
    e = sg.tensor(T([1, 8, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (ROWS, DIM), 1.0, "emb"), full], [e], opts("GatherOptions", axis=0))
    return _head(sg, rng, _flat(sg, e, 8 * DIM), 8 * DIM)


def reshape_chain(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """EXPAND_DIMS -> RESHAPE [2, 4] -> GATHER rows [1, 0] -> RESHAPE [8] -> EMBEDDING_LOOKUP -> flatten."""
    x3 = sg.tensor(T([1, 8, 1], "int32", name="x3"))
    sg.op("EXPAND_DIMS", [ids, _i32(sg, [2], "axis")], [x3])
    r = sg.tensor(T([2, 4], "int32", name="r"))
    sg.op("RESHAPE", [x3, _i32(sg, [2, 4], "shape24")], [r], opts("ReshapeOptions", newShape=[2, 4]))
    sw = sg.tensor(T([2, 4], "int32", name="swapped"))
    sg.op("GATHER", [r, _i32(sg, [1, 0], "rows")], [sw], opts("GatherOptions", axis=0))
    v = sg.tensor(T([8], "int32", name="v"))
    sg.op("RESHAPE", [sw, _i32(sg, [8], "shape8")], [v], opts("ReshapeOptions", newShape=[8]))
    e = sg.tensor(T([8, DIM], "float32", name="e"))
    sg.op("EMBEDDING_LOOKUP", [v, _f32(sg, rng, (ROWS, DIM), 1.0, "emb")], [e])
    return _head(sg, rng, _flat(sg, e, 8 * DIM), 8 * DIM)


def split_pack(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """int64 ids: CAST to int32 -> SPLIT in halves; UNPACK the first, PACK its tokens 3 and 0 with the pad id 0,
    REVERSE_V2 the second half, CONCATENATION -> GATHER(table) -> flatten."""
    c = sg.tensor(T([1, 8], "int32", name="ids32"))
    sg.op("CAST", [ids], [c], opts("CastOptions", inDataType=4, outDataType=2))
    a, b = sg.tensor(T([1, 4], "int32", name="a")), sg.tensor(T([1, 4], "int32", name="b"))
    sg.op("SPLIT", [_i32(sg, [1], "split_axis"), c], [a, b], opts("SplitOptions", numSplits=2))
    toks = [sg.tensor(T([1], "int32", name=f"tok{k}")) for k in range(4)]
    sg.op("UNPACK", [a], toks, opts("UnpackOptions", num=4, axis=1))
    packed = sg.tensor(T([1, 3], "int32", name="packed"))
    sg.op("PACK", [toks[3], toks[0], _i32(sg, [0], "pad")], [packed], opts("PackOptions", valuesCount=3, axis=1))
    rb = sg.tensor(T([1, 4], "int32", name="b_reversed"))
    sg.op("REVERSE_V2", [b, _i32(sg, [1], "rev_axis")], [rb])
    full = sg.tensor(T([1, 7], "int32", name="full"))
    sg.op("CONCATENATION", [packed, rb], [full], opts("ConcatenationOptions", axis=1))
    e = sg.tensor(T([1, 7, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (ROWS, DIM), 1.0, "emb"), full], [e], opts("GatherOptions", axis=0))
    return _head(sg, rng, _flat(sg, e, 7 * DIM), 7 * DIM)


def gather_nd(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """The ids reshaped to four (row, column) pairs index a [10, 6, 4] table through GATHER_ND."""
    pairs = sg.tensor(T([1, 4, 2], "int32", name="pairs"))
    sg.op("RESHAPE", [ids, _i32(sg, [1, 4, 2], "shape")], [pairs], opts("ReshapeOptions", newShape=[1, 4, 2]))
    e = sg.tensor(T([1, 4, 4], "float32", name="e"))
    sg.op("GATHER_ND", [_f32(sg, rng, (10, 6, 4), 1.0, "table"), pairs], [e])
    return _head(sg, rng, _flat(sg, e, 16), 16)


#: model body, ids length, index bound (rows the ids index), IR op kinds expected
CASES: dict[str, tuple[Callable, int, int, set[str]]] = {
    "last_token": (last_token, 8, ROWS, {"STRIDED_SLICE", "GATHER"}),
    "slice_gather": (slice_gather, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
    "bos_concat": (bos_concat, 7, ROWS, {"CONCATENATION", "GATHER"}),
    "reshape_chain": (reshape_chain, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
    "gather_nd": (gather_nd, 8, 6, {"GATHER_ND"}),
    "split_pack_int64": (split_pack, 8, ROWS, {"STRIDED_SLICE", "CONCATENATION", "GATHER"}),
}


def _ids(rng: np.random.Generator, n: int, seq: int, bound: int) -> np.ndarray:
    return rng.integers(0, bound, (n, 1, seq)).astype(np.int32)


def _litert(path: Path, xs: np.ndarray) -> list[np.ndarray]:
    """LiteRT's output for each sample of ``xs`` (a one-input model), as stored."""
    it = litert_interpreter(str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for x in xs:
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))  # int64 ids: the int8 model takes them as int32
        it.invoke()
        got.append(it.get_tensor(out["index"]).copy())
    return got


@pytest.mark.parametrize("case", list(CASES))
def test_selected_ids_convert(tmp_path: Path, case: str) -> None:
    body, seq, bound, kinds = CASES[case]
    dtype = "int64" if case.endswith("int64") else "int32"
    src = _model(tmp_path / f"{case}.tflite", seq, body, seed=len(case), dtype=dtype)
    rng = np.random.default_rng(11)
    calib, test = _ids(rng, 160, seq, bound), _ids(rng, 24, seq, bound)
    res = convert_model(str(src), PROFILE, calib, str(tmp_path / "out"), plot=False, formats=("tflite",),
                        report_samples=4)
    graph = res.graph
    assert kinds <= {op.kind for op in graph.ops}
    selected = integer_tensors(graph) - set(graph.inputs)
    assert case == "gather_nd" or selected, "the selected ids are int32 tensors of the IR"
    assert all(res.plan.tensor_dtype(t) == "int32" for t in integer_tensors(graph))  # never quantized
    assert index_limits(graph) == {"ids": bound}
    it = litert_interpreter(res.tflite_path)
    types = {d["name"]: d["dtype"] for d in it.get_tensor_details()}
    assert it.get_input_details()[0]["dtype"] == np.int32
    assert all(types[t] == np.int32 for t in selected if t in types) and any(t in types for t in selected) \
        or case == "gather_nd"
    out = it.get_output_details()[0]
    scale, zp = out["quantization"]
    ref = np.stack(_litert(src, test)).astype(np.float64)  # reference: LiteRT on the float .tflite
    got = (np.stack(_litert(Path(res.tflite_path), test)).astype(np.float64) - zp) * scale
    sig, err = float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2))
    assert sqnr_db(sig, err) > 22, f"LiteRT int8 vs LiteRT float: {sqnr_db(sig, err):.1f} dB"
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    sets = [[x.astype(np.int32)] for x in test[:6]]
    want, have = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(len(w) == len(g) and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(w, g))
               for w, g in zip(want, have))


def test_integer_gather_has_no_int32_gather(tmp_path: Path) -> None:
    """A GATHER of ids at constant positions [5, 0, 1, 3] becomes slices of the runs [5], [0, 1], [3] and a
    CONCATENATION (tflite-micro's GATHER takes no int32 data); the float graph computes the same ids."""
    graph = import_tflite(_model(tmp_path / "sg.tflite", 8, slice_gather, seed=1))
    ints = integer_tensors(graph)
    assert not any(op.kind == "GATHER" and op.inputs[0] in ints for op in graph.ops)
    slices = [op for op in graph.ops if op.kind == "STRIDED_SLICE" and op.inputs[0] in ints]
    assert len(slices) == 4  # the SLICE, then one per run


def _added(sg: SubgraphBuilder, rng: np.random.Generator, ids: int) -> int:
    """``emb[ids[:, -1] + 2]``: integer arithmetic on the selected last token."""
    last = sg.tensor(T([1], "int32", name="last"))
    sg.op("STRIDED_SLICE", [ids, _i32(sg, [0, -1], "begin"), _i32(sg, [1, 0], "end"), _i32(sg, [1, 1], "strides")],
          [last], opts("StridedSliceOptions", endMask=2, shrinkAxisMask=2))
    shifted = sg.tensor(T([1], "int32", name="shifted"))
    sg.op("ADD", [last, _i32(sg, [2], "two")], [shifted], opts("AddOptions"))
    e = sg.tensor(T([1, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (ROWS, DIM), 1.0, "emb"), shifted], [e], opts("GatherOptions", axis=0))
    return _head(sg, rng, e, DIM)


def test_integer_arithmetic_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(_model(tmp_path / "add.tflite", 8, _added, seed=2))
    msg = str(e.value)
    assert "\n" not in msg
    assert "operator 1 (ADD): reads the integer values of 'ids' (through 'last', selected from it); integer " \
           "arithmetic on token ids/indices is not supported" in msg


def test_constant_token_outside_the_table_is_refused(tmp_path: Path) -> None:
    """A BOS token beyond the embedding rows would make every runtime fail: refused at import, in one line."""
    src = _model(tmp_path / "bos.tflite", 7, lambda sg, rng, ids: bos_concat(sg, rng, ids, token=ROWS), seed=3)
    with pytest.raises(UnsupportedModelError) as e:
        import_tflite(src)
    msg = str(e.value)
    assert "\n" not in msg and f"the constant index {ROWS} joined with input 'ids' is outside the {ROWS} rows" in msg


def _greedy(path: Path) -> Path:
    """A greedy decoding step: ``emb[argmax(logits, -1)[:, -1]] @ W`` (the integer tensor is computed in the graph)."""
    rng = np.random.default_rng(8)
    mb = ModelBuilder()
    sg = mb.subgraph("main")
    logits = sg.tensor(T([1, 4, 10], "float32", name="logits"))
    tok = sg.tensor(T([1, 4], "int32", name="tok"))
    sg.op("ARG_MAX", [logits, _i32(sg, [2], "axis")], [tok], opts("ArgMaxOptions", outputType=2))
    last = sg.tensor(T([1], "int32", name="last"))
    sg.op("STRIDED_SLICE", [tok, _i32(sg, [0, 3], "begin"), _i32(sg, [1, 4], "end"), _i32(sg, [1, 1], "strides")],
          [last], opts("StridedSliceOptions", shrinkAxisMask=2))
    e = sg.tensor(T([1, DIM], "float32", name="e"))
    sg.op("GATHER", [_f32(sg, rng, (10, DIM), 1.0, "emb"), last], [e], opts("GatherOptions", axis=0))
    sg.io([logits], [_head(sg, rng, e, DIM)])
    return mb.write(path)


def test_argmax_token_selected_then_embedded(tmp_path: Path) -> None:
    """ARG_MAX -> last position -> embedding: int32 all the way; LiteRT on the int8 model is close to LiteRT on the
    float one where the maximum is clear, and micro equals tflite-micro."""
    src = _greedy(tmp_path / "greedy.tflite")
    rng = np.random.default_rng(9)

    def logits(n: int) -> np.ndarray:  # one clear maximum per position (no near-ties for int8 to flip)
        x = rng.normal(0, 0.3, (n, 1, 4, 10)).astype(np.float32)
        x[np.arange(n)[:, None], 0, np.arange(4)[None, :], rng.integers(0, 10, (n, 4))] += 3.0
        return x

    res = convert_model(str(src), PROFILE, logits(48), str(tmp_path / "out"), plot=False, formats=("tflite",),
                        report_samples=4)
    assert [op.kind for op in res.graph.ops][:2] == ["ARG_MAX", "STRIDED_SLICE"]
    assert {"tok", "last"} <= integer_tensors(res.graph)
    assert all(res.plan.tensor_dtype(t) == "int32" for t in integer_tensors(res.graph))
    it = litert_interpreter(res.tflite_path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    test = logits(8)
    ref = np.stack(_litert(src, test)).astype(np.float64)  # reference: LiteRT on the float .tflite
    q = [np.clip(np.round(x / inp["quantization"][0]) + inp["quantization"][1], -128, 127).astype(np.int8)
         for x in test]
    got = (np.stack(_litert(Path(res.tflite_path), np.stack(q))).astype(np.float64) - out["quantization"][1]) \
        * out["quantization"][0]
    sig, err = float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2))
    assert sqnr_db(sig, err) > 22, f"LiteRT int8 vs LiteRT float: {sqnr_db(sig, err):.1f} dB"
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tflite_builder import run_micro, run_tflm

    sets = [[x] for x in q]
    want, have = run_tflm(Path(res.tflite_path), sets), run_micro(Path(res.tflite_path), sets)  # ref: tflite-micro
    assert all(np.array_equal(a, b) for w, g in zip(want, have) for a, b in zip(w, g))

"""Integer graph inputs in the IR: :func:`converters.ir.integer_input_roots`, :func:`converters.ir.index_limits` and
:func:`converters.importers.integer_inputs.check_integer_uses` (shared by the ONNX and TFLite importers).

Random IR graphs: integer inputs reshaped through chains of random length and read by GATHERs from tables of random
sizes, beside float inputs reshaped the same way. Reference: the expected maps built while generating each graph
(which RESHAPE output comes from which input, the smallest table each input indexes); a use other than a GATHER's
indices or a RESHAPE is refused in one line naming the input and the op; so is an output that is an input itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.importers.integer_inputs import INTEGER_READERS, check_integer_uses
from converters.ir import Graph, Op, Tensor, index_limits, integer_input_roots
from edge_runtime.errors import UnsupportedModelError


def _random_graph(seed: int) -> tuple[Graph, dict[str, str], dict[str, int], list[str]]:
    """A graph of integer and float inputs, RESHAPE chains and GATHERs; the expected roots, limits, and the
    integer-derived tensors (any of which may be given a forbidden reader)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, Tensor] = {}
    ops: list[Op] = []
    roots: dict[str, str] = {}
    limits: dict[str, int] = {}
    n_int, n_float = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    dtypes = {f"ids{k}": str(rng.choice(["int64", "int32", "uint8"])) for k in range(n_int)}
    inputs = list(dtypes) + [f"x{k}" for k in range(n_float)]
    ends = []
    for name in inputs:
        size = int(rng.integers(2, 7)) * 2
        tensors[name] = Tensor(name, (1, size))
        cur = name
        for depth in range(int(rng.integers(0, 4))):  # a RESHAPE chain
            out = f"{name}/r{depth}"
            tensors[out] = Tensor(out, (size,) if depth % 2 == 0 else (2, size // 2))
            ops.append(Op("RESHAPE", [cur], [out], {"shape": tensors[out].shape}))
            cur = out
            if name in dtypes:
                roots[out] = name
        if name in dtypes:
            roots[name] = name
            for g in range(int(rng.integers(1, 3))):  # GATHERs from tables of random sizes, at any chain link
                rows = int(rng.integers(3, 40))
                table, emb = f"{name}/table{g}", f"{name}/emb{g}"
                tensors[table] = Tensor(table, (rows, 4), rng.standard_normal((rows, 4)).astype(np.float32))
                idx = rng.choice([n for n, r in roots.items() if r == name])
                tensors[emb] = Tensor(emb, tensors[idx].shape + (4,))
                ops.append(Op("GATHER", [table, idx], [emb], {"axis": 0}))
                limits[name] = min(limits.get(name, rows), rows)
                ends.append(emb)
        else:
            ends.append(cur)
    outs = []
    for k, e in enumerate(ends):  # every branch ends in a float op
        out = f"out{k}"
        tensors[out] = Tensor(out, tensors[e].shape)
        ops.append(Op("RELU", [e], [out]))
        outs.append(out)
    graph = Graph("random", tensors, ops, inputs, outs, input_dtypes=dtypes)
    return graph, roots, limits, [n for n in roots]


@pytest.mark.parametrize("seed", range(12))
def test_roots_and_limits_follow_reshapes(seed: int) -> None:
    graph, roots, limits, _ = _random_graph(seed)
    assert integer_input_roots(graph) == roots
    assert index_limits(graph) == limits
    check_integer_uses(graph, "random.onnx")  # only index lookups and reshapes: accepted


@pytest.mark.parametrize("seed", range(12))
def test_other_readers_are_refused_in_one_line(seed: int) -> None:
    graph, roots, _, derived = _random_graph(seed)
    rng = np.random.default_rng(100 + seed)
    name = str(rng.choice(derived))
    kind = str(rng.choice(["ADD", "MUL", "CAST", "FULLY_CONNECTED"]))
    graph.tensors["bad"] = Tensor("bad", graph.tensors[name].shape)
    graph.ops.append(Op(kind, [name], ["bad"], name="reader"))
    graph.outputs.append("bad")
    with pytest.raises(UnsupportedModelError) as e:
        check_integer_uses(graph, "random.onnx")
    msg = str(e.value)
    root = roots[name]
    assert "\n" not in msg and msg.startswith("random.onnx: ")
    assert f"input '{root}' ({graph.input_dtypes[root]} token ids/indices) reaches op 'reader' ({kind})" in msg
    assert f"--input-value {root}=VALUE" in msg


def test_gather_table_position_is_not_an_index_reader() -> None:
    """Integer values used as a GATHER's table (position 0), not its indices, are refused."""
    assert ("GATHER", 0) not in INTEGER_READERS and ("GATHER", 1) in INTEGER_READERS
    graph, roots, _, derived = _random_graph(3)
    idx = np.zeros((2,), np.float32)
    graph.tensors["i"] = Tensor("i", (2,), idx)
    graph.tensors["g"] = Tensor("g", (2,))
    graph.ops.append(Op("GATHER", [derived[0], "i"], ["g"], {"axis": 0}, name="swapped"))
    with pytest.raises(UnsupportedModelError, match=r"reaches op 'swapped' \(GATHER\)"):
        check_integer_uses(graph, "m")


@pytest.mark.parametrize("seed", range(6))
def test_an_output_that_is_an_input_itself_is_refused(seed: int) -> None:
    graph, roots, _, derived = _random_graph(seed)
    name = derived[-1]
    graph.outputs.append(name)
    with pytest.raises(UnsupportedModelError) as e:
        check_integer_uses(graph, "m")
    assert str(e.value) == f"m: output '{name}' is the integer input '{roots[name]}' itself; nothing to convert"


@pytest.mark.parametrize("opset", [13, 17])
def test_onnx_importer_refuses_a_reshaped_integer_output(opset: int) -> None:
    """Through the ONNX importer: ids -> Reshape -> output passes the ONNX-level check (a reshape is an index
    pass) and is refused by the shared IR check."""
    from converters.importers.onnx import import_onnx

    g = helper.make_graph([helper.make_node("Reshape", ["ids", "s"], ["out"])], "reshaped",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 12])],
                          [helper.make_tensor_value_info("out", TensorProto.INT64, None)],
                          [numpy_helper.from_array(np.array([3, 4], np.int64), "s")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    with pytest.raises(UnsupportedModelError) as e:
        import_onnx(m, name="reshaped")
    assert str(e.value) == "reshaped: output 'out' is the integer input 'ids' itself; nothing to convert"

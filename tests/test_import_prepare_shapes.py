"""The ONNX prepare pass's shape table (:func:`converters.importers.prepare.static_shapes`, also read with
``unknown=-1`` by the pre-opset-7 broadcast rewrite) and that rewrite on ill-typed attributes."""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import AttributeProto, TensorProto, helper, numpy_helper  # noqa: E402

from converters.importers.prepare import prepare_onnx_model, static_shapes  # noqa: E402
from edge_runtime.errors import EdgeRuntimeError  # noqa: E402

Dims = Union[None, list[Union[int, str, None]]]


def _random_dims(rng: np.random.Generator) -> Dims:
    """None (rank unknown), or a list of sizes, symbolic names and unknown (None) sizes; rank 0 to 4."""
    if rng.random() < 0.2:
        return None
    return [rng.choice([int(rng.integers(1, 9)), "N", None]) for _ in range(int(rng.integers(0, 5)))]


@pytest.mark.parametrize("seed", range(20))
def test_static_shapes_lists_known_ranks_and_fully_known_shapes(seed: int) -> None:
    """Reference: the dims each tensor was declared with."""
    rng = np.random.default_rng(seed)
    declared: dict[str, Dims] = {}
    groups: dict[str, list[Any]] = {"in": [], "vi": [], "out": []}
    for group in groups:
        for k in range(int(rng.integers(0, 5))):
            name = f"{group}{k}"
            declared[name] = _random_dims(rng)
            groups[group].append(helper.make_tensor_value_info(name, TensorProto.FLOAT, declared[name]))
    groups["vi"].append(helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [2]))  # not a tensor
    g = helper.make_graph([], "g", groups["in"], groups["out"], value_info=groups["vi"])

    ranked = static_shapes(g, unknown=-1)
    assert "seq" not in ranked
    assert set(ranked) == {n for n, d in declared.items() if d is not None}
    for name, dims in ranked.items():
        assert dims == tuple(d if isinstance(d, int) else -1 for d in declared[name])
    full = static_shapes(g)
    known = {n for n, d in declared.items() if d is not None and all(isinstance(v, int) for v in d)}
    partial = {n for n, d in declared.items() if d is not None} - known
    assert known <= set(full) and not partial & set(full)
    for name in known:
        assert full[name] == tuple(declared[name])


def _old_add(attrs: list[Any]) -> Any:
    """An opset-6 ``Add(x [1, 3, 4, 4], b [3])`` with the given attributes."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    b = numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")
    node = helper.make_node("Add", ["x", "b"], ["y"], name="add")
    node.attribute.extend(attrs)
    g = helper.make_graph([node], "g", [x], [y], [b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 6)])


def _untyped(name: str, value: int) -> Any:
    a = AttributeProto()
    a.name, a.i = name, value
    return a


def test_old_broadcast_keeps_the_channel_axis() -> None:
    """Reference: ONNX opset-6 Add with broadcast=1, axis=1 aligns B [3] with A's axis 1 (B becomes [3, 1, 1])."""
    model = prepare_onnx_model(_old_add([helper.make_attribute("broadcast", 1), helper.make_attribute("axis", 1)]))
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert dims[add.input[1]] == (3, 1, 1)


@pytest.mark.parametrize("attrs", [
    [helper.make_attribute("broadcast", 1.0), helper.make_attribute("axis", 1)],
    [helper.make_attribute("broadcast", "x"), helper.make_attribute("axis", 1)],
    [helper.make_attribute("broadcast", 1), helper.make_attribute("axis", [1])],
    [helper.make_attribute("broadcast", 1), helper.make_attribute("axis", 1.5)],
    [_untyped("broadcast", 1), helper.make_attribute("axis", 1)],
    [helper.make_attribute("broadcast", 1), _untyped("axis", 1)],
], ids=["float-broadcast", "string-broadcast", "ints-axis", "float-axis", "untyped-broadcast", "untyped-axis"])
def test_ill_typed_broadcast_attributes_never_crash(attrs: list[Any]) -> None:
    """A wrongly typed ``broadcast``/``axis`` is prepared or refused in one line, never a traceback."""
    try:
        prepare_onnx_model(_old_add(attrs), source="m.onnx")
    except EdgeRuntimeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("m.onnx: ")

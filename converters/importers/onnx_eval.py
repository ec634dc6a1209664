"""Values of single ONNX nodes at conversion time: a Constant node's value, and one node evaluated on
constant inputs with ONNX's reference evaluator (the importer's folding and the Loop unroller share it)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


def constant_value(node: Any) -> Optional[np.ndarray]:
    """The value of a Constant node as an array (any of its dense attribute forms); None for sparse values."""
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        v = helper.get_attribute_value(attr)
        if attr.name == "value":
            return numpy_helper.to_array(v)
        if attr.name in ("value_float", "value_int"):
            return np.array(v, np.float32 if attr.name == "value_float" else np.int64)
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(v), np.float32 if attr.name == "value_floats" else np.int64)
    return None


def evaluate_node(node: Any, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """``node``'s outputs on its inputs' ``values`` (by input name), evaluated at ``opset`` (at least 13) by
    ONNX's reference evaluator; its exceptions reach the caller.

    The evaluator implements (De)QuantizeLinear from opset 19 only; their int8/uint8/int32 meaning is
    unchanged since opset 13, so those two are evaluated at 19 or later.
    """
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [i for i in node.input if i]
    feeds = {f"in{k}": np.asarray(values[i]) for k, i in enumerate(names)}
    remap = dict(zip(names, feeds))
    inner = helper.make_node(node.op_type, [remap.get(i, "") for i in node.input],
                             [f"out{k}" for k in range(len(node.output))], domain=node.domain)
    inner.attribute.extend(node.attribute)
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for k, v in feeds.items()]
    outputs = [helper.make_empty_tensor_value_info(f"out{k}") for k in range(len(node.output))]
    low = 19 if node.op_type in ("QuantizeLinear", "DequantizeLinear") else 13
    m = helper.make_model(helper.make_graph([inner], "fold", inputs, outputs),
                          opset_imports=[helper.make_opsetid("", max(opset, low))])
    return [np.asarray(v) for v in ReferenceEvaluator(m).run(None, feeds)]

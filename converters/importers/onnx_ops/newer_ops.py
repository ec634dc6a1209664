"""ONNX ops newer than the opset the converter reads models as (:data:`converters.importers.prepare.MAX_OPSET`)
that the importer still converts: :func:`converters.importers.prepare.read_as_opset` keeps their nodes when it
relabels a newer model, and :func:`infer_shapes` gives their outputs the shape ONNX's shape inference cannot
(it has no schema for them at the relabelled opset)."""
from __future__ import annotations

from typing import Any

#: op type -> opset it appeared in; every output of these ops has the type and shape of input 0
NEWER_OPS = {"CumProd": 26, "TensorScatter": 24}


def infer_shapes(model: Any) -> Any:
    """ONNX's strict shape inference (``data_prop``), where every output of a :data:`NEWER_OPS` node takes
    the type and shape of the node's input 0, and inference is repeated for the nodes after it."""
    from converters.importers.infer_payloads import infer_shapes_light

    def run(m: Any) -> Any:  # (the large weights' bytes are set aside while it runs: the same result, faster)
        return infer_shapes_light(m, check_type=True, strict_mode=True, data_prop=True)

    model = run(model)
    for _ in range(sum(n.op_type in NEWER_OPS for n in model.graph.node)):
        g = model.graph
        known = {vi.name: vi for vi in list(g.input) + list(g.value_info) + list(g.output)}
        added = False
        for node in g.node:
            src = known.get(node.input[0]) if node.op_type in NEWER_OPS and node.input else None
            if src is None or not src.type.tensor_type.HasField("shape"):
                continue
            for out in node.output:
                dst = known.get(out)
                if out and (dst is None or not dst.type.tensor_type.HasField("shape")):
                    dst = dst if dst is not None else g.value_info.add()
                    dst.name = out
                    dst.type.CopyFrom(src.type)
                    added = True
        if not added:
            break
        model = run(model)
    return model

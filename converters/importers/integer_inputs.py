"""Integer graph inputs (token ids, bytes, indices) in the IR: refuse any use other than an index lookup.

Shared by the ONNX and TFLite importers (:mod:`converters.importers.onnx`, :mod:`converters.importers.tflite`),
which call :func:`check_integer_uses` on the imported graph.
"""
from __future__ import annotations

from converters.ir import Graph, integer_input_roots
from edge_runtime.errors import UnsupportedModelError

#: IR ops that read int32 index activations: (kind, input position)
INTEGER_READERS = {("GATHER", 1), ("RESHAPE", 0)}


def check_integer_uses(graph: Graph, source: str) -> None:
    """Refuse (one line) an integer input whose values reach an op other than an index lookup.

    Integer inputs stay int32 in the converted model: they may be reshaped and used as the indices of a
    GATHER from a constant table (an embedding, or a one-hot encoding followed by MatMul/Gemm, which the
    importer rewrites into one); any other use would need arithmetic on indices, which int8 cannot hold.
    """
    roots = integer_input_roots(graph)
    for op in graph.ops:
        for k, name in enumerate(op.inputs):
            if name in roots and (op.kind, k) not in INTEGER_READERS:
                root = roots[name]
                raise UnsupportedModelError(
                    f"{source}: input '{root}' ({graph.input_dtypes[root]} token ids/indices) reaches op "
                    f"'{op.name or op.outputs[0]}' ({op.kind}); integer inputs can only index a constant table "
                    f"(Gather/embedding, or OneHot followed by MatMul/Gemm); if '{root}' is a setting, freeze it "
                    f"with --input-value {root}=VALUE")
    for name in graph.outputs:
        if name in roots:
            raise UnsupportedModelError(f"{source}: output '{name}' is the integer input '{roots[name]}' itself; "
                                        "nothing to convert")


__all__ = ["INTEGER_READERS", "check_integer_uses"]

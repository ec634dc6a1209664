"""Tensor lifetimes (edge_runtime.arena.lifetimes) on MLPerf Tiny models and on small built graphs.

References: the graphs' own structure (op inputs/outputs as read by TFLiteModel) and
the TFLM lifetime rules stated in issue 3 (inputs from op 0, outputs to the end, inclusive).
"""
from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.arena.lifetimes import tensor_lifetimes
from edge_runtime.formats.tflite import TFLiteModel

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")


def build_model(tensors: list[dict], ops: list[tuple[str, list[int], list[int]]], inputs: list[int],
                outputs: list[int], intermediates: dict[int, list[int]] | None = None) -> TFLiteModel:
    """A minimal single-subgraph .tflite: tensors given as dicts (shape, const, variable)."""
    codes = {"ADD": 0, "RESHAPE": 22, "CONV_2D": 3, "LSTM": 16}
    m = schema.ModelT()
    m.version = 3
    m.buffers = [schema.BufferT()]
    sg = schema.SubGraphT()
    sg.tensors = []
    for i, t in enumerate(tensors):
        tt = schema.TensorT()
        tt.shape = np.array(t["shape"], dtype=np.int32)
        tt.type = 9  # INT8
        tt.name = f"t{i}"
        tt.isVariable = bool(t.get("variable", False))
        tt.buffer = 0
        if t.get("const"):
            b = schema.BufferT()
            b.data = np.zeros(int(np.prod(t["shape"])), np.uint8)
            m.buffers.append(b)
            tt.buffer = len(m.buffers) - 1
        sg.tensors.append(tt)
    names = sorted({o[0] for o in ops})
    m.operatorCodes = []
    for n in names:
        oc = schema.OperatorCodeT()
        oc.builtinCode = codes[n]
        oc.deprecatedBuiltinCode = codes[n]
        oc.version = 1
        m.operatorCodes.append(oc)
    sg.operators = []
    for k, (n, ins, outs) in enumerate(ops):
        op = schema.OperatorT()
        op.opcodeIndex = names.index(n)
        op.inputs = np.array(ins, dtype=np.int32)
        op.outputs = np.array(outs, dtype=np.int32)
        if intermediates and k in intermediates:
            op.intermediates = np.array(intermediates[k], dtype=np.int32)
        sg.operators.append(op)
    sg.inputs = np.array(inputs, dtype=np.int32)
    sg.outputs = np.array(outputs, dtype=np.int32)
    m.subgraphs = [sg]
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return TFLiteModel(bytes(b.Output()))


def test_kws_chain_lifetimes(mlperf_models):
    """KWS is a chain: each activation lives from its producer to its single consumer."""
    m = TFLiteModel.open(mlperf_models / "kws_ref_model.tflite")
    lt = tensor_lifetimes(m)
    sg = m.main
    assert (lt[0].first_op, lt[0].last_op) == (0, 0)  # graph input
    assert (lt[34].first_op, lt[34].last_op) == (12, 12)  # graph output, produced by the last op
    for op in sg.operators[:-1]:
        out = op.outputs[0]
        assert lt[out].first_op == op.index
        assert lt[out].last_op == op.index + 1
    assert not any(sg.tensors[t].is_constant for t in lt)
    assert len(lt) == 14  # 13 op outputs + the input
    assert lt[22].size == 8000


def test_resnet_skip_connection_extends_lifetime(mlperf_models):
    """IC ResNet: the tensor feeding a residual ADD lives until that ADD."""
    m = TFLiteModel.open(mlperf_models / "pretrainedResnet_quant.tflite")
    lt = tensor_lifetimes(m)
    assert (lt[22].first_op, lt[22].last_op) == (0, 3)  # conv0 output, read by conv1 and ADD at op 3
    assert (lt[25].first_op, lt[25].last_op) == (3, 6)  # ADD output, read by ops 4 and 6
    assert (lt[29].first_op, lt[29].last_op) == (7, 10)


def test_graph_input_output_rules():
    """Inputs live from op 0 even when first read later; outputs live to the end; constants,
    variables and untouched tensors get no lifetime; intermediates live during their op."""
    tensors = [
        {"shape": [4]},               # 0 graph input, read only at op 2
        {"shape": [4]},               # 1 graph input, read at op 0
        {"shape": [4], "const": True},  # 2 constant
        {"shape": [4]},               # 3 op0 out, graph output (also read at op 1)
        {"shape": [4]},               # 4 op1 out
        {"shape": [4]},               # 5 op2 out, graph output
        {"shape": [4], "variable": True},  # 6 variable
        {"shape": [8]},               # 7 never used
        {"shape": [2]},               # 8 intermediate of op 1
    ]
    ops = [("ADD", [1, 2], [3]), ("ADD", [3, 6], [4]), ("ADD", [0, 4], [5])]
    m = build_model(tensors, ops, inputs=[0, 1], outputs=[3, 5], intermediates={1: [8]})
    lt = tensor_lifetimes(m)
    assert set(lt) == {0, 1, 3, 4, 5, 8}
    assert (lt[0].first_op, lt[0].last_op) == (0, 2)
    assert (lt[1].first_op, lt[1].last_op) == (0, 0)
    assert (lt[3].first_op, lt[3].last_op) == (0, 2)  # output produced at op 0 stays live to the end
    assert (lt[4].first_op, lt[4].last_op) == (1, 2)
    assert (lt[5].first_op, lt[5].last_op) == (2, 2)
    assert (lt[8].first_op, lt[8].last_op) == (1, 1)


def test_input_that_is_also_output_spans_all_ops():
    """A pass-through graph input that is also an output is live over every op."""
    tensors = [{"shape": [4]}, {"shape": [4]}, {"shape": [4]}]
    m = build_model(tensors, [("ADD", [0, 0], [1]), ("ADD", [1, 1], [2])], inputs=[0], outputs=[0, 2])
    lt = tensor_lifetimes(m)
    assert (lt[0].first_op, lt[0].last_op) == (0, 1)

"""Fold the weight-decoding ops of a .tflite model into constants: ``DENSIFY`` and float16 ``DEQUANTIZE``.

Published float models often store their weights compressed and decode them with an op in front
of every layer: float16 weights go through ``DEQUANTIZE`` (float16 -> float32), pruned weights
through ``DENSIFY`` (TFLite ``SparsityParameters`` -> dense), sometimes both (MediaPipe's pose and
face-detection models). Both ops read only a constant, so their result is a constant too: LiteRT
computes it once when the model is prepared. TFLite Micro has neither form (its DEQUANTIZE takes
int8/int16/uint8 only, and it has no DENSIFY), so models with them run nowhere on a device.

:func:`fold_weight_decoders` returns a view of the model in which each such op is gone and its
output tensor holds the decoded data (float16 -> float32 is exact). Ops are renumbered 0..N-1
(the arena planner uses op indices as time); tensors keep their indices. The original model is
not changed; the folded view is cached on it. DEQUANTIZE of int8/uint8/int16 constants is left
as it is: TFLM runs it, and the micro kernel matches TFLM's arithmetic.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.tflite import SubGraph, TensorInfo, TFLiteModel
from edge_runtime.formats.tflite_check import check_decoder_paths
from edge_runtime.formats.tflite_sparsity import SparsityError, densify, sparsity_table

#: ops this module folds when their input is a constant
FOLDABLE = ("DENSIFY", "DEQUANTIZE")
#: Largest total of dense tensors decoded from sparse ones in one model (each is at most
#: ``tflite_sparsity.MAX_DENSE_BYTES``): a small file may not expand into more than this.
MAX_DECODED_BYTES = 2 << 30


def _bytes(arr: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    data.flags.writeable = False
    return data


def _decoded(model: TFLiteModel, sg: SubGraph, op: Any, tensors: list[TensorInfo],
             budget: list[int]) -> np.ndarray | None:
    """The constant value of ``op``'s output, or None when the op is not one this module folds.

    ``budget[0]``: bytes of dense tensors decoded so far (from sparse ones), kept below :data:`MAX_DECODED_BYTES`.
    Raises :class:`ModelFormatError` for a DENSIFY that does not read a constant of its output's shape.
    """
    if op.name not in FOLDABLE or len(op.inputs) != 1 or len(op.outputs) != 1 or op.inputs[0] < 0:
        return None
    src, dst = tensors[op.inputs[0]], tensors[op.outputs[0]]
    if src.sparse and src.data is None and src.buffer > 0 and src.dtype is not None:
        src = dataclasses.replace(src, data=np.zeros(0, np.uint8))  # a sparse constant storing no value: all zero
    where = f"{model.path}: subgraph {sg.index} op {op.index} ({op.name})"
    if op.name == "DENSIFY" and src.data is None:
        raise ModelFormatError(f"{where} reads tensor {src.index} ('{src.name}'), which is not a constant: DENSIFY "
                               "decodes stored (sparse) weights only")
    if op.name == "DENSIFY" and tuple(src.shape) != tuple(dst.shape):
        raise ModelFormatError(f"{where}: input '{src.name}' has shape {src.shape} but output '{dst.name}' has "
                               f"{dst.shape}")
    if src.data is None or src.dtype is None or dst.dtype is None or tuple(src.shape) != tuple(dst.shape):
        return None
    if op.name == "DENSIFY":
        if src.type_code != dst.type_code:
            raise ModelFormatError(f"{where}: input is {src.type_name} but output is {dst.type_name}")
        if not src.sparse:
            return src.array()
        table = sparsity_table(model, sg.index, src.index)
        if src.data.size % src.dtype.itemsize:
            raise ModelFormatError(f"{where}: sparse tensor '{src.name}' holds {src.data.size} bytes, not a whole "
                                   f"number of {src.type_name} values")
        if budget[0] + dst.nbytes > MAX_DECODED_BYTES:
            raise ModelFormatError(f"{where}: decoding sparse tensor '{src.name}' {src.shape} would bring the "
                                   f"decoded weights past the {MAX_DECODED_BYTES >> 20} MiB decode limit")
        budget[0] += dst.nbytes
        try:
            return densify(table, tuple(src.shape), src.data.view(src.dtype.newbyteorder("<")))
        except SparsityError as exc:
            raise ModelFormatError(f"{where}: sparse tensor '{src.name}': {exc}") from None
    # DEQUANTIZE: fold float16 -> float32 only (TFLM has no float16 form; integer forms stay as ops)
    if src.type_name != "FLOAT16" or dst.type_name != "FLOAT32" or src.sparse:
        return None
    return src.array().astype(np.float32)


def fold_weight_decoders(model: TFLiteModel, renumber: bool = True) -> TFLiteModel:
    """``model`` with every DENSIFY of a constant and every float16 DEQUANTIZE of a constant folded away.

    ``renumber``: give the remaining ops indices 0..N-1 (what the arena planner needs); without it they
    keep their indices in the file (for messages that name ops, as the converter's importer gives).
    Returns ``model`` itself when there is nothing to fold. Raises :class:`ModelFormatError` (one line
    naming the tensor or op) when the decoding paths fail ``tflite_check.check_decoder_paths`` (sparsity
    parameters that do not describe the tensor, a DENSIFY of an activation, ...) or would decode more than
    :data:`MAX_DECODED_BYTES`.
    """
    attr = "_folded_weights" if renumber else "_folded_weights_file_indices"
    cached = getattr(model, attr, None)
    if cached is not None:
        return cached
    check_decoder_paths(model)  # sparse tensors, DENSIFY, float16 DEQUANTIZE, Convolution2DTransposeBias
    new_subgraphs = []
    file_indices: dict[int, list[int]] = {}
    changed = False
    decoded = 0
    budget = [0]
    for sg in model.subgraphs:
        tensors = list(sg.tensors)
        kept = []
        for op in sg.operators:
            value = _decoded(model, sg, op, tensors, budget)
            if value is None:
                kept.append(op)
                continue
            out = tensors[op.outputs[0]]
            tensors[out.index] = dataclasses.replace(out, data=_bytes(value.astype(out.dtype, copy=False)),
                                                    sparse=False)
            decoded += int(tensors[out.index].data.nbytes)
            changed = True
        read = {i for op in kept for i in op.inputs if i >= 0} | set(sg.outputs)
        for i, t in enumerate(tensors):  # an intermediate decode (DENSIFY before DEQUANTIZE) is not kept
            if t is not sg.tensors[i] and i not in read:
                decoded -= int(t.data.nbytes)
                tensors[i] = sg.tensors[i]
        file_indices[sg.index] = [op.index for op in kept]
        if len(kept) == len(sg.operators):
            new_subgraphs.append(sg)
            continue
        ops = [dataclasses.replace(op, index=k) for k, op in enumerate(kept)] if renumber else kept
        new_subgraphs.append(dataclasses.replace(sg, tensors=tensors, operators=ops))
    if not changed:
        folded = model
    else:
        folded = copy.copy(model)
        folded.subgraphs = new_subgraphs
        #: bytes of the decoded constants (allocated at load, next to the memory-mapped file)
        folded.decoded_bytes = decoded  # type: ignore[attr-defined]
        #: per subgraph, the index in the file of each remaining op (for messages that name an op)
        if renumber:
            folded.file_op_indices = file_indices  # type: ignore[attr-defined]
        setattr(folded, attr, folded)
    setattr(model, attr, folded)
    return folded


def file_op_index(model: TFLiteModel, subgraph: int, index: int) -> int:
    """The index in the file of op ``index`` of a (possibly folded) ``model``'s ``subgraph``."""
    table = getattr(model, "file_op_indices", None)
    return index if table is None else table[subgraph][index]


def folded_op_count(model: TFLiteModel) -> int:
    """How many ops :func:`fold_weight_decoders` removes from ``model``."""
    folded = fold_weight_decoders(model)
    return sum(len(a.operators) - len(b.operators) for a, b in zip(model.subgraphs, folded.subgraphs))

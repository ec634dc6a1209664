"""The shapes a float .tflite's tensors really have, for files exported with a dynamic batch dimension.

A model converted with ``batch = None`` (BirdNET, TensorFlow's audio classifiers) computes its framing at run
time (SHAPE -> arithmetic -> RESHAPE/SLICE/GATHER), and the file stores placeholder shapes for everything
downstream of it (``[1, 1]`` for a frame tensor that holds ``[1, 70, 2048]``). The converter works at static
shapes, so it needs the real ones: LiteRT, the converter's own float reference, runs the file once at its
stored input shapes (batch 1, zeros) and reports every tensor's shape. Only a dynamic *batch* is resolved
this way: a dynamic time or image axis has no size to run at (the stored 1 is a placeholder too), so such
files keep their stored shapes and are refused where those contradict each other.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import numpy as np

from edge_runtime.formats.tflite import SubGraph


def _dynamic(sg: SubGraph) -> bool:
    """True when some tensor of ``sg`` has a dynamic dimension and every model input's is the batch only."""
    dyn = [t for t in sg.tensors if t.shape_signature is not None and any(d < 0 for d in t.shape_signature)]
    if not dyn:
        return False
    for i in sg.inputs:
        sig = sg.tensors[i].shape_signature
        if sig is not None and any(d < 0 for d in sig[1:]):
            return False
    return True


def with_run_time_shapes(path: str, sg: SubGraph) -> SubGraph:
    """``sg`` with each non-constant tensor's stored shape replaced by the one LiteRT gives it when the file runs
    at its stored input shapes; ``sg`` itself when nothing is dynamic, LiteRT is missing or cannot run it."""
    if not _dynamic(sg):
        return sg
    shapes = _litert_shapes(path, sg)
    if shapes is None:
        return sg
    tensors = [dataclasses.replace(t, shape=shapes[t.index])
               if t.data is None and t.index in shapes and shapes[t.index] != tuple(t.shape) else t
               for t in sg.tensors]
    if all(a is b for a, b in zip(tensors, sg.tensors)):
        return sg
    return dataclasses.replace(sg, tensors=tensors)


def _litert_shapes(path: str, sg: SubGraph) -> Optional[dict[int, tuple[int, ...]]]:
    """Every main-subgraph tensor's shape after one LiteRT invoke on zeros; None when that fails."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": keeping them is the point
            warnings.simplefilter("ignore")
            it = Interpreter(model_path=path, num_threads=1, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        shapes = {int(d["index"]): tuple(int(v) for v in d["shape"]) for d in it.get_tensor_details()}
    except Exception:  # noqa: BLE001 - no LiteRT, or it cannot run the file: keep the stored shapes
        return None
    if any(shapes.get(i) != tuple(sg.tensors[i].shape) for i in sg.inputs):
        return None
    return shapes

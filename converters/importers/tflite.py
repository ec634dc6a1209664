"""Import a float or hybrid .tflite model into the IR.

Float models map one to one (TFLite is already NHWC). Hybrid models, such as
``kws_ref_model_float32.tflite`` (int8 weights, float activations), have their
quantized constants dequantized to float here; ``DEQUANTIZE`` ops on constants
(float16 or int8 weights) are folded. Fully quantized models are refused: they
are already int8.

Reads the file with :mod:`edge_runtime.formats.tflite`, the project's one parser.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from converters.ir import Graph, Op, Tensor, fuse_activations, legalize, same_pads
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.flatbuffer import Table
from edge_runtime.formats.tflite import TensorInfo, TFLiteModel

ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
             "RELU", "RELU6", "RESHAPE", "SQUEEZE", "SOFTMAX", "LOGISTIC", "TANH", "CONCATENATION", "PAD",
             "DEQUANTIZE", "TRANSPOSE", "MEAN")


def _const(t: TensorInfo) -> Optional[np.ndarray]:
    """A constant tensor's float value (dequantized when it is stored as integers)."""
    if t.data is None:
        return None
    arr = np.array(t.array())
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    q = t.quantization
    if q is None or arr.dtype not in (np.int8, np.uint8, np.int16, np.int32):
        return arr  # integer shapes/perms stay integers
    shape = [1] * arr.ndim
    if q.per_channel:
        shape[q.quantized_dimension] = -1
    scale = q.scale.reshape(shape).astype(np.float64)
    zp = q.zero_point.reshape(shape).astype(np.float64)
    return ((arr.astype(np.float64) - zp) * scale).astype(np.float32)


def _act(opts: Optional[Table], field: int) -> str:
    code = int(opts.scalar(field, "b", 0)) if opts is not None else 0
    if code not in ACT:
        raise UnsupportedModelError(f"fused activation code {code} is not supported")
    return ACT[code]


def import_tflite(path: "str | os.PathLike[str]") -> Graph:
    """Read a float/hybrid .tflite and return its :class:`Graph`; clear errors for anything unsupported."""
    p = os.fspath(path)
    model = TFLiteModel.open(p)
    if len(model.subgraphs) != 1:
        raise UnsupportedModelError(f"{p}: models with {len(model.subgraphs)} subgraphs are not supported")
    sg = model.main
    for i in sg.inputs:
        t = sg.tensors[i]
        if t.type_name != "FLOAT32":
            raise UnsupportedModelError(
                f"{p}: input '{t.name}' is {t.type_name}; this model is already quantized. "
                "Give the float (or hybrid) model to the converter")
    tensors: dict[str, Tensor] = {}
    names: dict[int, str] = {}
    used: set[str] = set()

    def name(idx: int) -> str:
        if idx not in names:
            t = sg.tensors[idx]
            n = t.name or f"tensor_{idx}"
            if n in used:
                n = f"{n}#{idx}"
            used.add(n)
            names[idx] = n
            tensors[n] = Tensor(n, tuple(t.shape), _const(t))
        return names[idx]

    ops: list[Op] = []
    for op in sg.operators:
        kind = op.name
        where = f"{p}: operator {op.index} ({kind})"
        if kind not in SUPPORTED:
            raise UnsupportedModelError(f"{where} is not supported; supported ops: {', '.join(SUPPORTED)}")
        ins = [i for i in op.inputs]
        out_idx = op.outputs[0]
        if kind == "DEQUANTIZE":
            src = sg.tensors[ins[0]]
            if src.data is None:
                raise UnsupportedModelError(f"{where}: DEQUANTIZE of an activation is not supported")
            n = name(out_idx)
            tensors[n].data = _const(src).astype(np.float32)
            continue
        if sg.tensors[out_idx].type_name != "FLOAT32":
            raise UnsupportedModelError(f"{where}: output is {sg.tensors[out_idx].type_name}; only float activations "
                                        "can be converted")
        x = sg.tensors[ins[0]]
        o = op.options
        attrs: dict = {}
        inputs = [name(ins[0])]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = tensors[name(ins[1])]
            kh, kw = w.shape[1], w.shape[2]
            if kind == "CONV_2D":
                padding, sw, sh, act, dw, dh = (int(o.scalar(0, "b", 0)), int(o.scalar(1, "i", 1)), int(o.scalar(2, "i", 1)),
                                                _act(o, 3), int(o.scalar(4, "i", 1)), int(o.scalar(5, "i", 1)))
            else:
                padding, sw, sh = int(o.scalar(0, "b", 0)), int(o.scalar(1, "i", 1)), int(o.scalar(2, "i", 1))
                attrs["multiplier"] = int(o.scalar(3, "i", 1))
                act, dw, dh = _act(o, 4), int(o.scalar(5, "i", 1)), int(o.scalar(6, "i", 1))
            pads = same_pads(x.shape[1:3], (kh, kw), (sh, sw), (dh, dw)) if padding == 0 else (0, 0, 0, 0)
            attrs.update(stride=(sh, sw), dilation=(dh, dw), pads=pads, act=act)
            bias_name = name(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if bias_name is None:
                bias_name = f"{name(out_idx)}/bias"
                tensors[bias_name] = Tensor(bias_name, (w.shape[0] if kind == "CONV_2D" else w.shape[3],),
                                            np.zeros(w.shape[0] if kind == "CONV_2D" else w.shape[3], np.float32))
            inputs += [w.name, bias_name]
        elif kind == "FULLY_CONNECTED":
            w = tensors[name(ins[1])]
            attrs["act"] = _act(o, 0)
            if len(x.shape) != 2:
                raise UnsupportedModelError(f"{where}: input of rank {len(x.shape)}; only [batch, features] is supported")
            bias_name = name(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            if bias_name is None:
                bias_name = f"{name(out_idx)}/bias"
                tensors[bias_name] = Tensor(bias_name, (w.shape[0],), np.zeros(w.shape[0], np.float32))
            inputs += [w.name, bias_name]
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            padding, sw, sh, fw, fh = (int(o.scalar(0, "b", 0)), int(o.scalar(1, "i", 1)), int(o.scalar(2, "i", 1)),
                                       int(o.scalar(3, "i", 1)), int(o.scalar(4, "i", 1)))
            pads = same_pads(x.shape[1:3], (fh, fw), (sh, sw)) if padding == 0 else (0, 0, 0, 0)
            attrs.update(kernel=(fh, fw), stride=(sh, sw), pads=pads, act=_act(o, 5), count_include_pad=False)
        elif kind in ("ADD", "MUL"):
            inputs.append(name(ins[1]))
            if any(tensors[i].is_constant for i in inputs):
                raise UnsupportedModelError(f"{where}: a constant operand is not supported")
            if tensors[inputs[0]].shape != tensors[inputs[1]].shape:
                raise UnsupportedModelError(f"{where}: broadcasting is not supported")
            attrs["act"] = _act(o, 0)
        elif kind in ("RESHAPE", "SQUEEZE"):
            kind = "RESHAPE"
        elif kind == "SOFTMAX":
            attrs["beta"] = float(o.scalar(0, "f", 1.0)) if o is not None else 1.0
        elif kind == "CONCATENATION":
            inputs = [name(i) for i in ins]
            attrs.update(axis=int(o.scalar(0, "i", 0)) % len(x.shape), act=_act(o, 1))
        elif kind == "PAD":
            pads = np.asarray(sg.tensors[ins[1]].array()).reshape(-1, 2)
            attrs["pads"] = tuple((int(a), int(b)) for a, b in pads)
        elif kind == "TRANSPOSE":
            attrs["perm"] = tuple(int(v) for v in sg.tensors[ins[1]].array())
        elif kind == "MEAN":
            axes = tuple(sorted(int(v) % 4 for v in np.atleast_1d(sg.tensors[ins[1]].array())))
            if len(x.shape) != 4 or axes != (1, 2):
                raise UnsupportedModelError(f"{where}: only MEAN over the spatial axes (1, 2) is supported")
            kind = "AVERAGE_POOL_2D"
            attrs.update(kernel=tuple(x.shape[1:3]), stride=tuple(x.shape[1:3]), pads=(0, 0, 0, 0), act="NONE")
            out_shape = sg.tensors[out_idx].shape
            if len(out_shape) != 4:  # keep_dims=False: pool to [1,1,1,C] then reshape
                mid = f"{name(out_idx)}/pooled"
                tensors[mid] = Tensor(mid, (1, 1, 1, x.shape[3]))
                ops.append(Op("AVERAGE_POOL_2D", inputs, [mid], attrs, name=f"op{op.index}"))
                ops.append(Op("RESHAPE", [mid], [name(out_idx)], {}, name=f"op{op.index}/reshape"))
                continue
        ops.append(Op(kind, inputs, [name(out_idx)], attrs, name=f"op{op.index}:{kind}"))
    graph = Graph(name=os.path.splitext(os.path.basename(p))[0], tensors=tensors, ops=ops,
                  inputs=[name(i) for i in sg.inputs], outputs=[name(i) for i in sg.outputs],
                  input_layouts={name(i): "NHWC" for i in sg.inputs}, source_format="tflite")
    return legalize(fuse_activations(graph))

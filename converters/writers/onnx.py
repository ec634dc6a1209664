"""Write the IR as ONNX: float (for calibration and reference) or QDQ int8 from a :class:`QuantPlan`.

Activations stay NHWC inside the graph, as in the IR; each Conv and pool is
wrapped in a pair of Transposes (ONNX Runtime's optimizer cancels adjacent
pairs). In QDQ form every activation passes through QuantizeLinear ->
DequantizeLinear with the plan's parameters, weights are stored as int8 with
per-channel DequantizeLinear (axis 0 of the OIHW weight), biases as int32 with
scale input_scale x weight_scale. Inputs whose source model was NCHW (ONNX
imports) are taken in NCHW, so the int8 model replaces the float one directly.

Mixed precision mirrors the TFLite writer: an int16 tensor passes through int16 QuantizeLinear ->
DequantizeLinear (the ``com.microsoft`` domain ops, which ONNX Runtime runs at opset 17; the standard
ops take int16 only from opset 21), an int16 op's bias is stored as its float value (ONNX has no
int64 DequantizeLinear), a float op's activations and weights stay float, and a consumer running in
another type than a tensor's producer reads it through one more Q/DQ pair with its own parameters.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np

from converters.ir import Graph, Op, computes_integers, float_output_tensors, integer_tensors, unquantized_tensors
from converters.quantize import QParams, QuantPlan, QuantWeight
from converters.writers.onnx_detection import detection_postprocess
from edge_runtime.errors import UnsupportedModelError

OPSET = 17
COMPARE = {"EQUAL": "Equal", "GREATER": "Greater", "GREATER_EQUAL": "GreaterOrEqual", "LESS": "Less",
           "LESS_EQUAL": "LessOrEqual", "NOT_EQUAL": "Equal"}


class _OnnxBuilder:
    def __init__(self, graph: Graph, plan: Optional[QuantPlan], source_layout: bool) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.h, self.np_h, self.TP = helper, numpy_helper, TensorProto
        self.g, self.plan, self.source_layout = graph, plan, source_layout
        self.nodes: list = []
        self.inits: list = []
        self.read: dict[str, str] = {}
        self.weights_done: dict[str, str] = {}
        self.views: dict[tuple[str, str], str] = {}
        self.ms_domain = False
        self.n = 0
        self.float_outs = float_output_tensors(graph)
        self.int32s = integer_tensors(graph)

    def uid(self, base: str) -> str:
        self.n += 1
        return f"{base}/{self.n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(self.np_h.from_array(np.asarray(arr), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs: object) -> None:
        self.nodes.append(self.h.make_node(op_type, inputs, outputs, name=self.uid(op_type), **attrs))

    # -- quantization helpers -----------------------------------------
    def q_dq(self, src: str, qp: QParams, q_out: str, dq_out: Optional[str], dtype: str = "int8") -> None:
        zp_val = qp.zero_point + (128 if dtype == "uint8" else 0)
        np_t = {"uint8": np.uint8, "int16": np.int16}.get(dtype, np.int8)
        zp = self.init(self.uid(f"{src}/zp"), np.array(zp_val, np_t))
        sc = self.init(self.uid(f"{src}/scale"), np.array(qp.scale, np.float32))
        dom = {}
        if dtype == "int16":
            dom = {"domain": "com.microsoft"}
            self.ms_domain = True
        self.node("QuantizeLinear", [src, sc, zp], [q_out], **dom)
        if dq_out:
            self.node("DequantizeLinear", [q_out, sc, zp], [dq_out], **dom)

    def op_dtype(self, op: Op) -> str:
        """The type ``op`` computes in (``int8`` without a plan: unused then)."""
        return self.plan.op_dtype(op) if self.plan is not None else "float32"

    def view(self, t: str, dtype: str) -> str:
        """Activation ``t`` as an op computing in ``dtype`` reads it: its stored (dequantized) value, or that
        value through one more Q/DQ pair in ``dtype``."""
        if (self.plan is None or dtype == "float32" or dtype == self.plan.tensor_dtype(t)
                or self.plan.tensor_dtype(t) in ("int32", "bool")):  # indices and masks are read as they are
            return self.read[t]
        if (t, dtype) not in self.views:
            out = self.uid(f"{t}/as_{dtype}")
            self.q_dq(self.read[t], self.plan.params(t, dtype), out + "_q", out, dtype)
            self.views[(t, dtype)] = out
        return self.views[(t, dtype)]

    def const_dq(self, name: str, qw: QuantWeight, values: np.ndarray, axis: int) -> str:
        per_axis = qw.scales.size > 1
        scale = qw.scales.astype(np.float32) if per_axis else np.array(qw.scales[0], np.float32)
        zp = np.zeros(scale.shape, values.dtype)
        q = self.init(f"{name}/quantized", values)
        s = self.init(f"{name}/scale", scale)
        z = self.init(f"{name}/zero_point", zp)
        out = f"{name}/dequantized"
        if per_axis:
            self.node("DequantizeLinear", [q, s, z], [out], axis=axis)
        else:
            self.node("DequantizeLinear", [q, s, z], [out])
        return out

    def weight(self, op: Op) -> tuple[str, str]:
        """(weights, bias) as the ONNX op reads them; weights shared by several ops are stored once."""
        if op.inputs[1] in self.weights_done:
            return self.weights_done[op.inputs[1]], self.bias(op)
        w = self.g.tensors[op.inputs[1]].data
        if op.kind == "CONV_2D":
            perm = (0, 3, 1, 2)
        elif op.kind == "DEPTHWISE_CONV_2D":
            perm = (3, 0, 1, 2)
        elif op.kind == "TRANSPOSE_CONV":
            perm = (3, 0, 1, 2)  # [out, kh, kw, in] -> ONNX ConvTranspose [in, out, kh, kw]
        else:
            perm = (0, 1)
        if self.plan is None or self.op_dtype(op) == "float32":
            wn = self.init(op.inputs[1] + ("/float" if self.plan is not None else ""),
                           np.ascontiguousarray(w.transpose(perm)).astype(np.float32))
        else:
            qw = self.plan.weights[op.inputs[1]]
            wn = self.const_dq(op.inputs[1], qw, np.ascontiguousarray(qw.values.transpose(perm)),
                               1 if op.kind == "TRANSPOSE_CONV" else 0)
        self.weights_done[op.inputs[1]] = wn
        return wn, self.bias(op)

    def bias(self, op: Op) -> str:
        """The bias of a weighted op: float, or int32 with DequantizeLinear."""
        if self.plan is None:
            return self.init(op.inputs[2], self.g.tensors[op.inputs[2]].data.astype(np.float32))
        if self.op_dtype(op) == "float32":
            return self.init(self.uid(op.inputs[2]), self.g.tensors[op.inputs[2]].data.astype(np.float32))
        qb = self.plan.biases[op.inputs[2]]
        if self.op_dtype(op) == "int16":  # int64 bias: its exact float value
            return self.init(self.uid(op.inputs[2]), (qb.values.astype(np.float64) * qb.scales.astype(np.float64))
                             .astype(np.float32))
        return self.const_dq(op.inputs[2], qb, qb.values, 0)

    def activation(self, src: str, act: str, dst: str) -> None:
        if act == "NONE":
            self.node("Identity", [src], [dst])
        elif act == "RELU":
            self.node("Relu", [src], [dst])
        else:
            lo, hi = (0.0, 6.0) if act == "RELU6" else (-1.0, 1.0)
            self.node("Clip", [src, self.init(self.uid("clip_min"), np.array(lo, np.float32)),
                               self.init(self.uid("clip_max"), np.array(hi, np.float32))], [dst])

    # -- graph -------------------------------------------------------------
    def produced(self, t: str) -> str:
        """Name the op writing ``t`` should use for its float result."""
        return f"{t}/float" if self.plan is not None else t

    def finish_tensor(self, t: str) -> None:
        """After an op wrote ``t``'s float value: add Q/DQ (or outputs' final Q/DQ)."""
        if self.plan is None:
            self.read[t] = t
            return
        qp = self.plan.activations[t]
        src = self.produced(t)
        stored = self.plan.tensor_dtype(t)
        if stored in ("int32", "bool") or t in self.float_outs:  # indices, masks, float-only op outputs: no Q/DQ
            if t in self.g.outputs:
                self.node("Identity", [src], [t])
                src = t
            self.read[t] = src
            return
        if stored != "int8":
            if stored == "int16":
                self.q_dq(src, self.plan.params(t, "int16"), f"{t}/q16", f"{t}/dq16", "int16")
                src = f"{t}/dq16"
            self.read[t] = src
            if t in self.g.outputs and t in self.plan.wide_outputs:  # written in its own precision, as the .tflite
                if stored == "int16":
                    self.q_dq(src, self.plan.params(t, "int16"), t, None, "int16")
                else:
                    self.node("Identity", [src], [t])
                return
            if t in self.g.outputs:  # the graph output: int8 (then the I/O type) as in the .tflite
                io = self.plan.io_dtype
                if io == "float32":
                    self.q_dq(src, qp, f"{t}/q", t)
                else:
                    self.q_dq(src, qp, t, None, io)
            return
        if t in self.g.outputs:
            io = self.plan.io_dtype
            if io == "float32":
                self.q_dq(src, qp, f"{t}/q", t)
            else:
                self.q_dq(src, qp, f"{t}", None, io)
                # consumers of an output tensor inside the graph read the float value through DQ of it
                self.q_dq(src, qp, f"{t}/q_internal", f"{t}/dq")
                self.read[t] = f"{t}/dq"
                return
            self.read[t] = t
            return
        self.q_dq(src, qp, f"{t}/q", f"{t}/dq")
        self.read[t] = f"{t}/dq"

    def inputs(self) -> list:
        h, TP = self.h, self.TP
        vis = []
        for name in self.g.inputs:
            nhwc = self.g.tensors[name].shape
            if name in self.g.input_dtypes:  # token ids, bytes, indices: the written model keeps the source type
                src_type = self.g.input_dtypes[name] if self.source_layout else "int32"
                vis.append(h.make_tensor_value_info(name, h.np_dtype_to_tensor_dtype(np.dtype(src_type)), list(nhwc)))
                self.read[name] = name
                if src_type != "int32":
                    self.node("Cast", [name], [f"{name}/int32"], to=TP.INT32)
                    self.read[name] = f"{name}/int32"
                continue
            nchw = self.source_layout and self.g.input_layouts.get(name) == "NCHW" and len(nhwc) == 4
            shape = self.g.source_shape(name) if nchw else nhwc
            io = self.plan.io_dtype if self.plan is not None else "float32"
            elem = {"int8": TP.INT8, "uint8": TP.UINT8, "float32": TP.FLOAT}[io]
            vis.append(h.make_tensor_value_info(name, elem, list(shape)))
            cur = name
            if self.plan is not None and io != "float32":
                qp = self.plan.activations[name]
                zp_val = qp.zero_point + (128 if io == "uint8" else 0)
                zp = self.init(f"{name}/in_zp", np.array(zp_val, np.uint8 if io == "uint8" else np.int8))
                sc = self.init(f"{name}/in_scale", np.array(qp.scale, np.float32))
                self.node("DequantizeLinear", [cur, sc, zp], [f"{name}/in_dq"])
                cur = f"{name}/in_dq"
            if nchw:
                self.node("Transpose", [cur], [f"{name}/nhwc"], perm=[0, 2, 3, 1])
                cur = f"{name}/nhwc"
            if self.plan is not None and io == "float32":
                self.q_dq(cur, self.plan.activations[name], f"{name}/q", f"{name}/dq")
                cur = f"{name}/dq"
            self.read[name] = cur
        return vis

    def operand(self, name: str, dtype: str = "int8") -> str:
        """A constant operand as the graph reads it: float (or DequantizeLinear of int8; the dequantized
        value of int16), int64 indices."""
        data = self.g.tensors[name].data
        if data.dtype == np.bool_:
            return self.init(self.uid(f"{name}/bool"), data)
        if data.dtype.kind != "f":
            return self.init(self.uid(f"{name}/int"), data.astype(np.int64))
        if self.plan is None or name not in self.plan.operands or dtype == "float32":
            return self.init(self.uid(name), data.astype(np.float32))
        if dtype == "int16":
            qp16 = self.plan.params(name, "int16")
            return self.init(self.uid(name), qp16.dequantize(qp16.quantize(data)))
        qp = self.plan.operands[name]
        q = self.init(self.uid(f"{name}/quantized"), qp.quantize(data))
        sc = self.init(self.uid(f"{name}/scale"), np.array(qp.scale, np.float32))
        zp = self.init(self.uid(f"{name}/zp"), np.array(qp.zero_point, np.int8))
        out = self.uid(f"{name}/dequantized")
        self.node("DequantizeLinear", [q, sc, zp], [out])
        return out

    def ints(self, base: str, values) -> str:  # type: ignore[no-untyped-def]
        return self.init(self.uid(base), np.array(values, np.int64).reshape(-1))

    def nchw(self, op: Op, src: str, build) -> None:  # type: ignore[no-untyped-def]
        """Run ``build(nchw_in) -> nchw_out`` between NHWC->NCHW and NCHW->NHWC transposes, then the activation."""
        t_in = self.uid(f"{op.outputs[0]}/nchw_in")
        self.node("Transpose", [src], [t_in], perm=[0, 3, 1, 2])
        y = build(t_in)
        ya = self.uid(f"{op.outputs[0]}/nchw_act")
        self.activation(y, op.act, ya)
        self.node("Transpose", [ya], [self.produced(op.outputs[0])], perm=[0, 2, 3, 1])

    def op(self, op: Op) -> None:
        k, a = op.kind, op.attrs
        out = self.produced(op.outputs[0])
        dt = self.op_dtype(op)
        x0 = self.view(op.inputs[0], dt) if op.inputs and op.inputs[0] in self.read else None
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            wn, bn = self.weight(op)
            w = self.g.tensors[op.inputs[1]].data
            group = self.g.tensors[op.inputs[0]].shape[3] if k == "DEPTHWISE_CONV_2D" else 1

            def conv(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                self.node("Conv", [t_in, wn, bn], [y], kernel_shape=[w.shape[1], w.shape[2]],
                          strides=list(a["stride"]), dilations=list(a["dilation"]), pads=list(a["pads"]),
                          group=int(group))
                return y
            self.nchw(op, x0, conv)
        elif k == "TRANSPOSE_CONV":
            wn, bn = self.weight(op)
            w = self.g.tensors[op.inputs[1]].data

            def deconv(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                self.node("ConvTranspose", [t_in, wn, bn], [y], kernel_shape=[w.shape[1], w.shape[2]],
                          strides=list(a["stride"]))
                return y
            self.nchw(op, x0, deconv)
        elif k == "FULLY_CONNECTED":
            wn, bn = self.weight(op)
            y = self.uid(f"{op.outputs[0]}/gemm")
            self.node("Gemm", [x0, wn, bn], [y], transB=1)
            self.activation(y, op.act, out)
        elif k in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            def pool(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["pads"]))
                if k == "AVERAGE_POOL_2D":
                    attrs["count_include_pad"] = 0
                self.node("AveragePool" if k == "AVERAGE_POOL_2D" else "MaxPool", [t_in], [y], **attrs)
                return y
            self.nchw(op, x0, pool)
        elif k in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            size = self.g.tensors[op.outputs[0]].shape
            if a.get("align_corners"):
                coord = "align_corners"
            elif a.get("half_pixel_centers"):
                coord = "half_pixel" if k == "RESIZE_BILINEAR" else "tf_half_pixel_for_nn"
            else:
                coord = "asymmetric"
            attrs = {"mode": "linear" if k == "RESIZE_BILINEAR" else "nearest",
                     "coordinate_transformation_mode": coord}
            if k == "RESIZE_NEAREST_NEIGHBOR":
                attrs["nearest_mode"] = "round_prefer_ceil" if a.get("align_corners") else "floor"

            def resize(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                self.node("Resize", [t_in, "", "", self.ints("sizes", [size[0], size[3], size[1], size[2]])], [y],
                          **attrs)
                return y
            self.nchw(op, x0, resize)
        elif k == "DETECTION_POSTPROCESS":
            ins = [self.operand(i, "float32") if self.g.tensors[i].is_constant else self.view(i, "float32")
                   for i in op.inputs]
            detection_postprocess(self, op, ins)
            for o in op.outputs[1:]:
                self.finish_tensor(o)
        elif k == "TOPK_V2":  # ONNX TopK on the last axis (ties: lower index first, as TOPK_V2); int32 indices
            idx = self.uid(f"{op.outputs[1]}/int64")
            self.node("TopK", [x0, self.ints(f"{op.outputs[0]}/k", [int(a["k"])])], [out, idx], axis=-1, largest=1,
                      sorted=1)
            self.node("Cast", [idx], [self.produced(op.outputs[1])], to=self.TP.INT32)
            self.finish_tensor(op.outputs[1])
        elif k in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
            def rearrange(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                attrs = {"blocksize": int(a["block_size"])}
                if k == "DEPTH_TO_SPACE":
                    attrs["mode"] = "DCR"
                self.node("DepthToSpace" if k == "DEPTH_TO_SPACE" else "SpaceToDepth", [t_in], [y], **attrs)
                return y
            self.nchw(op, x0, rearrange)
        else:
            ins = [self.operand(i, dt) if self.g.tensors[i].is_constant else self.view(i, dt) for i in op.inputs]
            if k == "CONCATENATION" or computes_integers(self.g, op, self.int32s):  # integer constants next to
                # int32 indices (a BOS token, an index offset) are int32 too
                ins = [self.init(self.uid(f"{i}/int32"), self.g.tensors[i].data.astype(np.int32))
                       if self.g.tensors[i].is_constant and self.g.tensors[i].data.dtype.kind in "iu" else n
                       for i, n in zip(op.inputs, ins)]
            if k == "GATHER_ND" and not self.g.tensors[op.inputs[1]].is_constant:  # run-time int32 index tuples
                wide = self.uid(f"{op.inputs[1]}/int64")
                self.node("Cast", [ins[1]], [wide], to=self.TP.INT64)  # ONNX GatherND takes int64 indices only
                ins[1] = wide
            self.simple(op, ins, out)
        self.finish_tensor(op.outputs[0])

    def simple(self, op: Op, x: list[str], out: str) -> None:
        """Ops that map to ONNX without layout changes."""
        k, a = op.kind, op.attrs
        binary = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min"}
        unary = {"LOGISTIC": "Sigmoid", "TANH": "Tanh", "EXP": "Exp", "LOG": "Log", "SQRT": "Sqrt", "ABS": "Abs",
                 "HARD_SWISH": "HardSwish", "ELU": "Elu", "FLOOR": "Floor", "CEIL": "Ceil", "ROUND": "Round",
                 "SIN": "Sin", "COS": "Cos"}
        if k in binary:
            y = self.uid(f"{op.outputs[0]}/raw")
            self.node(binary[k], x[:2], [y])
            self.activation(y, op.act, out)
        elif k in unary:
            self.node(unary[k], [x[0]], [out])
        elif k == "CAST":  # int32 indices -> float32 values
            self.node("Cast", [x[0]], [out], to=self.TP.FLOAT)
        elif k == "FLOOR_MOD":  # int32: the remainder with the divisor's sign
            self.node("Mod", x[:2], [out], fmod=0)
        elif k == "FLOOR_DIV":  # int32: (a - floor_mod(a, b)) / b, an exact division (ONNX's Div truncates)
            r, d = self.uid(f"{op.outputs[0]}/mod"), self.uid(f"{op.outputs[0]}/multiple")
            self.node("Mod", x[:2], [r], fmod=0)
            self.node("Sub", [x[0], r], [d])
            self.node("Div", [d, x[1]], [out])
        elif k == "SQUARED_DIFFERENCE":
            d = self.uid(f"{op.outputs[0]}/diff")
            self.node("Sub", x[:2], [d])
            self.node("Mul", [d, d], [out])
        elif k == "RSQRT":
            r = self.uid(f"{op.outputs[0]}/sqrt")
            self.node("Sqrt", [x[0]], [r])
            self.node("Reciprocal", [r], [out])
        elif k == "GELU":
            if a.get("approximate"):
                c = self.init(self.uid("gelu_c"), np.array(np.sqrt(2 / np.pi), np.float32))
                x3 = self.uid("gelu_x3")
                self.node("Mul", [x[0], x[0]], [x3 + "a"])
                self.node("Mul", [x3 + "a", x[0]], [x3])
                inner = self.uid("gelu_inner")
                self.node("Mul", [x3, self.init(self.uid("gelu_k"), np.array(0.044715, np.float32))], [inner + "a"])
                self.node("Add", [inner + "a", x[0]], [inner + "b"])
                self.node("Mul", [inner + "b", c], [inner])
                e = self.uid("gelu_t")
                self.node("Tanh", [inner], [e])
            else:
                e = self.uid("gelu_erf")
                self.node("Div", [x[0], self.init(self.uid("gelu_s"), np.array(np.sqrt(2.0), np.float32))], [e + "a"])
                self.node("Erf", [e + "a"], [e])
            self.node("Add", [e, self.init(self.uid("gelu_1"), np.array(1.0, np.float32))], [e + "b"])
            self.node("Mul", [e + "b", x[0]], [e + "c"])
            self.node("Mul", [e + "c", self.init(self.uid("gelu_h"), np.array(0.5, np.float32))], [out])
        elif k == "LEAKY_RELU":
            self.node("LeakyRelu", [x[0]], [out], alpha=float(a["alpha"]))
        elif k == "PRELU":
            self.node("PRelu", x[:2], [out])
        elif k in ("RELU", "RELU6", "RELU_N1_TO_1"):
            self.activation(x[0], k, out)
        elif k == "CONCATENATION":
            y = self.uid(f"{op.outputs[0]}/raw")
            self.node("Concat", x, [y], axis=int(a["axis"]))
            self.activation(y, op.act, out)
        elif k == "RESHAPE":
            self.node("Reshape", [x[0], self.ints(f"{op.outputs[0]}/shape", self.g.tensors[op.outputs[0]].shape)], [out])
        elif k == "TRANSPOSE":
            self.node("Transpose", [x[0]], [out], perm=list(a["perm"]))
        elif k in ("PAD", "PADV2", "MIRROR_PAD"):
            pads = [p[0] for p in a["pads"]] + [p[1] for p in a["pads"]]
            ins = [x[0], self.ints(f"{op.outputs[0]}/pads", pads)]
            attrs = {}
            if k == "PADV2":
                v = float(a["value"])
                ins.append(self.init(self.uid("pad_value"), np.array(-3.0e38 if v == float("-inf") else v, np.float32)))
            if k == "MIRROR_PAD":
                if a.get("mode", "REFLECT") != "REFLECT":
                    raise UnsupportedModelError(f"op '{op.name}': MIRROR_PAD SYMMETRIC is not supported by the ONNX writer")
                attrs["mode"] = "reflect"
            self.node("Pad", ins, [out], **attrs)
        elif k == "STRIDED_SLICE":
            rank = len(a["begin"])
            ends = [(-(2 ** 62) if s < 0 else 2 ** 62) if (a.get("end_mask", 0) >> i) & 1 else e
                    for i, (e, s) in enumerate(zip(a["end"], a["strides"]))]
            self.node("Slice", [x[0], self.ints("starts", a["begin"]), self.ints("ends", ends),
                                self.ints("axes", list(range(rank))), self.ints("steps", a["strides"])], [out])
        elif k == "GATHER":
            self.node("Gather", x[:2], [out], axis=int(a["axis"]))
        elif k in ("MEAN", "REDUCE_MAX"):
            self.node("ReduceMean" if k == "MEAN" else "ReduceMax", [x[0]], [out], axes=list(a["axes"]),
                      keepdims=int(bool(a["keep_dims"])))
        elif k == "SUM":
            self.node("ReduceSum", [x[0], self.ints("axes", a["axes"])], [out], keepdims=int(bool(a["keep_dims"])))
        elif k == "SOFTMAX":
            if abs(a.get("beta", 1.0) - 1.0) > 1e-6:
                raise UnsupportedModelError(f"op '{op.name}': SOFTMAX with beta != 1 is not supported by the ONNX writer")
            self.node("Softmax", [x[0]], [out], axis=-1)
        elif k == "LOG_SOFTMAX":
            self.node("LogSoftmax", [x[0]], [out], axis=-1)
        elif k == "BATCH_MATMUL":
            self.node("MatMul", x[:2], [out])
        elif k in COMPARE:
            if k == "NOT_EQUAL":
                eq = self.uid(f"{op.outputs[0]}/equal")
                self.node("Equal", x[:2], [eq])
                self.node("Not", [eq], [out])
            else:
                self.node(COMPARE[k], x[:2], [out])
        elif k in ("LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT"):
            self.node({"LOGICAL_AND": "And", "LOGICAL_OR": "Or", "LOGICAL_NOT": "Not"}[k], x, [out])
        elif k == "SELECT_V2":
            self.node("Where", x[:3], [out])
        elif k == "CUMSUM":
            self.node("CumSum", [x[0], self.init(self.uid("cumsum_axis"), np.array(int(a["axis"]), np.int64))], [out],
                      exclusive=int(bool(a.get("exclusive"))), reverse=int(bool(a.get("reverse"))))
        elif k == "GATHER_ND":
            self.node("GatherND", x[:2], [out])
        elif k in ("ARG_MAX", "ARG_MIN"):
            idx = self.uid(f"{op.outputs[0]}/int64")
            self.node("ArgMax" if k == "ARG_MAX" else "ArgMin", [x[0]], [idx], axis=int(a["axis"]), keepdims=0)
            self.node("Cast", [idx], [out], to=self.TP.INT32)
        else:
            raise UnsupportedModelError(f"op '{op.name}': {k} is not supported by the ONNX writer")


#: Model metadata key holding the int8 inputs' and outputs' {name: [scale, zero_point]} (JSON).
IO_QUANTIZATION_KEY = "edge_runtime.io_quantization"


def build_onnx(graph: Graph, plan: Optional[QuantPlan] = None, expose_all: bool = False,
               source_layout: bool = True) -> Any:
    """Build the ONNX model: float when ``plan`` is None, else QDQ int8.

    ``expose_all`` adds every IR activation (float, NHWC) as a graph output; the
    calibrator uses it. ``source_layout=False`` takes inputs in NHWC even when the
    source model was NCHW.
    """
    from onnx import TensorProto, checker, helper

    b = _OnnxBuilder(graph, plan, source_layout)
    raw = unquantized_tensors(graph)
    ints = {t for t, d in raw.items() if d == "int32"}
    in_vis = b.inputs()
    for op in graph.ops:
        b.op(op)
    outs = []
    for o in graph.outputs:
        elem = TensorProto.FLOAT
        if plan is not None and plan.io_dtype != "float32":
            elem = TensorProto.INT8 if plan.io_dtype == "int8" else TensorProto.UINT8
        if o in raw:
            elem = TensorProto.INT32 if o in ints else TensorProto.BOOL
        elif o in b.float_outs:
            elem = TensorProto.FLOAT
        elif plan is not None and o in plan.wide_outputs:
            elem = TensorProto.INT16 if plan.tensor_dtype(o) == "int16" else TensorProto.FLOAT
        outs.append(helper.make_tensor_value_info(o, elem, list(graph.tensors[o].shape)))
    if expose_all:
        for t in graph.activations():
            if t not in graph.outputs and t not in graph.inputs:
                elem = (TensorProto.INT32 if t in ints else TensorProto.BOOL) if t in raw else TensorProto.FLOAT
                outs.append(helper.make_tensor_value_info(b.read[t], elem,
                                                          list(graph.tensors[t].shape)))
    g = helper.make_graph(b.nodes, graph.name or "model", in_vis, outs, b.inits)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if b.ms_domain else [])
    model = helper.make_model(g, opset_imports=opsets, producer_name="edge-convert")
    model.ir_version = 8
    if plan is not None and plan.io_dtype != "float32":
        # integer model inputs/outputs: say their scale and zero point, as a .tflite does in its tensors,
        # so a runtime can quantize inputs and dequantize outputs (edge_runtime.backends.onnx reads this)
        wide16 = {t for t in plan.wide_outputs if plan.tensor_dtype(t) == "int16"}  # the rest of them are float
        out_q = {t: plan.params(t, "int16" if t in wide16 else "int8") for t in graph.outputs
                 if t in plan.activations and t not in raw and t not in b.float_outs
                 and (t in wide16 or t not in plan.wide_outputs)}
        io = {"inputs": {t: [float(plan.activations[t].scale), int(plan.activations[t].zero_point)]
                         for t in graph.inputs if t in plan.activations and t not in raw},
              "outputs": {t: [float(q.scale), int(q.zero_point)] for t, q in out_q.items()}}
        helper.set_model_props(model, {IO_QUANTIZATION_KEY: json.dumps(io)})
    checker.check_model(model)
    return model


def write_onnx(graph: Graph, plan: QuantPlan, path: "str | os.PathLike[str]") -> str:
    """Write the QDQ int8 model to ``path`` and return the path."""
    import onnx

    model = build_onnx(graph, plan)
    p = os.fspath(path)
    onnx.save(model, p)
    return p

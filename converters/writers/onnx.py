"""Write the IR as ONNX: float (for calibration and reference) or QDQ int8 from a :class:`QuantPlan`.

Activations stay NHWC inside the graph, as in the IR; each Conv and pool is
wrapped in a pair of Transposes (ONNX Runtime's optimizer cancels adjacent
pairs). In QDQ form every activation passes through QuantizeLinear ->
DequantizeLinear with the plan's parameters, weights are stored as int8 with
per-channel DequantizeLinear (axis 0 of the OIHW weight), biases as int32 with
scale input_scale x weight_scale. Inputs whose source model was NCHW (ONNX
imports) are taken in NCHW, so the int8 model replaces the float one directly.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np

from converters.ir import Graph, Op
from converters.quantize import QParams, QuantPlan, QuantWeight
from edge_runtime.errors import UnsupportedModelError

OPSET = 17


class _OnnxBuilder:
    def __init__(self, graph: Graph, plan: Optional[QuantPlan], source_layout: bool) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.h, self.np_h, self.TP = helper, numpy_helper, TensorProto
        self.g, self.plan, self.source_layout = graph, plan, source_layout
        self.nodes: list = []
        self.inits: list = []
        self.read: dict[str, str] = {}
        self.weights_done: dict[str, str] = {}
        self.n = 0

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
        zp = self.init(self.uid(f"{src}/zp"), np.array(zp_val, np.uint8 if dtype == "uint8" else np.int8))
        sc = self.init(self.uid(f"{src}/scale"), np.array(qp.scale, np.float32))
        self.node("QuantizeLinear", [src, sc, zp], [q_out])
        if dq_out:
            self.node("DequantizeLinear", [q_out, sc, zp], [dq_out])

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
        if self.plan is None:
            wn = self.init(op.inputs[1], np.ascontiguousarray(w.transpose(perm)).astype(np.float32))
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
        qb = self.plan.biases[op.inputs[2]]
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

    def operand(self, name: str) -> str:
        """A constant operand as the graph reads it: float (or DequantizeLinear of int8), int64 indices."""
        data = self.g.tensors[name].data
        if data.dtype.kind != "f":
            return self.init(self.uid(f"{name}/int"), data.astype(np.int64))
        if self.plan is None or name not in self.plan.operands:
            return self.init(self.uid(name), data.astype(np.float32))
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
            self.nchw(op, self.read[op.inputs[0]], conv)
        elif k == "TRANSPOSE_CONV":
            wn, bn = self.weight(op)
            w = self.g.tensors[op.inputs[1]].data

            def deconv(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                self.node("ConvTranspose", [t_in, wn, bn], [y], kernel_shape=[w.shape[1], w.shape[2]],
                          strides=list(a["stride"]))
                return y
            self.nchw(op, self.read[op.inputs[0]], deconv)
        elif k == "FULLY_CONNECTED":
            wn, bn = self.weight(op)
            y = self.uid(f"{op.outputs[0]}/gemm")
            self.node("Gemm", [self.read[op.inputs[0]], wn, bn], [y], transB=1)
            self.activation(y, op.act, out)
        elif k in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            def pool(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["pads"]))
                if k == "AVERAGE_POOL_2D":
                    attrs["count_include_pad"] = 0
                self.node("AveragePool" if k == "AVERAGE_POOL_2D" else "MaxPool", [t_in], [y], **attrs)
                return y
            self.nchw(op, self.read[op.inputs[0]], pool)
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
            self.nchw(op, self.read[op.inputs[0]], resize)
        elif k in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
            def rearrange(t_in: str) -> str:
                y = self.uid(f"{op.outputs[0]}/nchw")
                attrs = {"blocksize": int(a["block_size"])}
                if k == "DEPTH_TO_SPACE":
                    attrs["mode"] = "DCR"
                self.node("DepthToSpace" if k == "DEPTH_TO_SPACE" else "SpaceToDepth", [t_in], [y], **attrs)
                return y
            self.nchw(op, self.read[op.inputs[0]], rearrange)
        else:
            ins = [self.operand(i) if self.g.tensors[i].is_constant else self.read[i] for i in op.inputs]
            self.simple(op, ins, out)
        self.finish_tensor(op.outputs[0])

    def simple(self, op: Op, x: list[str], out: str) -> None:
        """Ops that map to ONNX without layout changes."""
        k, a = op.kind, op.attrs
        binary = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min"}
        unary = {"LOGISTIC": "Sigmoid", "TANH": "Tanh", "EXP": "Exp", "LOG": "Log", "SQRT": "Sqrt", "ABS": "Abs",
                 "HARD_SWISH": "HardSwish", "ELU": "Elu"}
        if k in binary:
            y = self.uid(f"{op.outputs[0]}/raw")
            self.node(binary[k], x[:2], [y])
            self.activation(y, op.act, out)
        elif k in unary:
            self.node(unary[k], [x[0]], [out])
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
    in_vis = b.inputs()
    for op in graph.ops:
        b.op(op)
    outs = []
    for o in graph.outputs:
        elem = TensorProto.FLOAT
        if plan is not None and plan.io_dtype != "float32":
            elem = TensorProto.INT8 if plan.io_dtype == "int8" else TensorProto.UINT8
        outs.append(helper.make_tensor_value_info(o, elem, list(graph.tensors[o].shape)))
    if expose_all:
        for t in graph.activations():
            if t not in graph.outputs and t not in graph.inputs:
                outs.append(helper.make_tensor_value_info(b.read[t], TensorProto.FLOAT, list(graph.tensors[t].shape)))
    g = helper.make_graph(b.nodes, graph.name or "model", in_vis, outs, b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-convert")
    model.ir_version = 8
    if plan is not None and plan.io_dtype != "float32":
        # integer model inputs/outputs: say their scale and zero point, as a .tflite does in its tensors,
        # so a runtime can quantize inputs and dequantize outputs (edge_runtime.backends.onnx reads this)
        io = {"inputs": {t: [float(plan.activations[t].scale), int(plan.activations[t].zero_point)]
                         for t in graph.inputs if t in plan.activations},
              "outputs": {t: [float(plan.activations[t].scale), int(plan.activations[t].zero_point)]
                          for t in graph.outputs if t in plan.activations}}
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

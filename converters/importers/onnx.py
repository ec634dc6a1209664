"""Import a float ONNX model (NCHW, opset >= 13, as ``torch.onnx.export`` writes it) into the NHWC IR.

Every 4-D tensor is converted to NHWC: convolution weights are permuted, channel
axes of Concat/Softmax move to the last axis, and flattening a 4-D tensor goes
through an NCHW ``TRANSPOSE`` so the element order matches PyTorch's. A dynamic
batch dimension is fixed to 1. BatchNormalization after a Conv is folded into it.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from converters.ir import Graph, Op, Tensor, fuse_activations, legalize
from edge_runtime.errors import ModelFormatError, UnsupportedModelError

SUPPORTED = ("Conv", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Mul", "Gemm",
             "MatMul", "Flatten", "Reshape", "Softmax", "Sigmoid", "Tanh", "Concat", "BatchNormalization",
             "Identity", "Dropout", "Constant", "Squeeze", "Unsqueeze", "Pad")


def _simplify(model):  # type: ignore[no-untyped-def]
    """Fold constant subgraphs (shape arithmetic, Cast, BatchNorm into Conv) with ONNX Runtime's basic optimizer.

    ``torch.onnx.export(..., do_constant_folding=False)`` and padding helpers leave Shape/Gather/Cast
    chains that compute constants; with static shapes they fold away. Returns the model unchanged
    when ONNX Runtime cannot load it.
    """
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "simplified.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = out
        so.log_severity_level = 3
        try:
            ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            return onnx.load(out)
        except Exception:
            return model


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        n, c, h, w = shape
        return (n, h, w, c)
    return shape


def import_onnx(path: "str | os.PathLike[str]") -> Graph:
    """Read ``path`` and return its NHWC float :class:`Graph`; clear errors for anything unsupported."""
    import onnx
    from onnx import numpy_helper, shape_inference

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ModelFormatError(f"{p}: no such file")
    try:
        model = onnx.load(p)
    except Exception as exc:  # onnx raises DecodeError and others for garbage
        raise ModelFormatError(f"{p}: not a valid ONNX model: {exc}") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise UnsupportedModelError(f"{p}: ONNX opset {opset} is too old; export with opset_version >= 13")
    g = model.graph
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    for vi in real_inputs:  # fix the batch dimension to 1, refuse other dynamic dims
        dims = vi.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                if k == 0:
                    d.ClearField("dim_param")
                    d.dim_value = 1
                else:
                    raise UnsupportedModelError(
                        f"{p}: input '{vi.name}' has a dynamic dimension {k}; only the batch may be dynamic")
            elif k == 0 and d.dim_value != 1:
                d.dim_value = 1
    if any(n.op_type not in SUPPORTED or n.domain not in ("", "ai.onnx") for n in g.node):
        model = _simplify(model)
        g = model.graph
        real_inputs = [i for i in g.input if i.name not in {x.name for x in g.initializer}]
    for node in g.node:
        if node.op_type not in SUPPORTED or node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(
                f"{p}: unsupported ONNX op '{node.op_type}' in node '{node.name or node.output[0]}'; "
                f"supported ops: {', '.join(SUPPORTED)}")
    for vi in list(g.value_info) + list(g.output):  # drop stale shapes; inference recomputes them
        vi.type.tensor_type.ClearField("shape")
    try:
        model = shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:
        raise ModelFormatError(f"{p}: ONNX shape inference failed: {exc}") from None
    g = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i).astype(np.float32)
                                     if numpy_helper.to_array(i).dtype.kind == "f" else numpy_helper.to_array(i)
                                     for i in g.initializer}
    b = _Builder(p, consts, shapes)
    for vi in real_inputs:
        b.add_act(vi.name)
    for node in g.node:
        b.node(node)
    graph = Graph(
        name=os.path.splitext(os.path.basename(p))[0], tensors=b.tensors, ops=b.ops,
        inputs=[vi.name for vi in real_inputs], outputs=[b.alias.get(o.name, o.name) for o in g.output],
        input_layouts={vi.name: "NCHW" for vi in real_inputs if len(shapes.get(vi.name, ())) == 4},
        source_format="onnx",
    )
    for o in graph.outputs:
        if o not in graph.tensors or graph.tensors[o].is_constant:
            raise UnsupportedModelError(f"{p}: output '{o}' is a constant; nothing to convert")
    return legalize(fuse_activations(graph))


class _Builder:
    """Walks ONNX nodes in order and emits IR ops."""

    def __init__(self, path: str, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
        self.path = path
        self.consts = consts
        self.shapes = shapes
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.alias: dict[str, str] = {}
        self.bn_fold: dict[str, Op] = {}

    # -- helpers -------------------------------------------------------
    def err(self, node: Any, msg: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.path}: ONNX node '{node.name or node.output[0]}' ({node.op_type}): {msg}")

    def name(self, n: str) -> str:
        return self.alias.get(n, n)

    def add_act(self, name: str) -> str:
        self.tensors[name] = Tensor(name, _nhwc(self.shapes[name]))
        return name

    def add_const(self, name: str, data: np.ndarray) -> str:
        self.tensors[name] = Tensor(name, tuple(data.shape), np.ascontiguousarray(data, dtype=np.float32))
        return name

    def const(self, node: Any, n: str) -> np.ndarray:
        if n not in self.consts:
            raise self.err(node, f"input '{n}' must be a constant (initializer)")
        return self.consts[n]

    def emit(self, kind: str, inputs: list[str], output: str, attrs: dict, node: Any) -> None:
        self.add_act(output)
        self.ops.append(Op(kind, inputs, [output], attrs, name=node.name or output))

    # -- nodes -----------------------------------------------------------
    def node(self, node: Any) -> None:  # noqa: C901 - one branch per op type, flat on purpose
        from onnx import helper, numpy_helper

        t = node.op_type
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        ins = [self.name(i) for i in node.input]
        out = node.output[0]
        if t == "Constant":
            self.consts[out] = numpy_helper.to_array(a["value"])
            return
        if t in ("Identity", "Dropout"):
            if ins[0] in self.consts:
                self.consts[out] = self.consts[ins[0]]
            else:
                self.alias[out] = ins[0]
            return
        if all(i in self.consts for i in ins if i):
            raise self.err(node, "operates on constants only; fold constants before exporting "
                                 "(torch.onnx.export does this with do_constant_folding=True)")
        x = ins[0]
        xshape = self.tensors[x].shape if x in self.tensors else ()
        if t == "Conv":
            w = self.const(node, ins[1]).astype(np.float32)  # [O, I/g, kh, kw]
            o_ch = w.shape[0]
            bias = self.const(node, ins[2]).astype(np.float32) if len(ins) > 2 and ins[2] else np.zeros(o_ch, np.float32)
            group = int(a.get("group", 1))
            if len(w.shape) != 4:
                raise self.err(node, f"only 2-D convolutions are supported (weight shape {w.shape})")
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise self.err(node, "auto_pad is not supported; export with explicit pads")
            pads = tuple(a.get("pads", [0, 0, 0, 0]))
            attrs = {"stride": tuple(a.get("strides", [1, 1])), "dilation": tuple(a.get("dilations", [1, 1])),
                     "pads": (pads[0], pads[1], pads[2], pads[3]), "act": "NONE"}
            in_ch = xshape[3]
            if group == 1:
                kind, wt = "CONV_2D", w.transpose(0, 2, 3, 1)
            elif group == in_ch and w.shape[1] == 1:
                kind, wt = "DEPTHWISE_CONV_2D", w.transpose(1, 2, 3, 0)  # [1, kh, kw, C*M]
                attrs["multiplier"] = o_ch // in_ch
            else:
                raise self.err(node, f"grouped convolution with group={group} (neither 1 nor depthwise) is not supported")
            wn, bn = self.add_const(f"{out}/weights", wt), self.add_const(f"{out}/bias", bias)
            self.emit(kind, [x, wn, bn], out, attrs, node)
        elif t == "BatchNormalization":
            prev = next((op for op in reversed(self.ops) if op.outputs == [x]), None)
            if prev is None or prev.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or prev.act != "NONE":
                raise self.err(node, "BatchNormalization is only supported directly after a Conv")
            gamma, beta, mean, var = (self.const(node, i).astype(np.float32) for i in ins[1:5])
            k = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            wt = self.tensors[prev.inputs[1]]
            wt.data = (wt.data * k.reshape((1, 1, 1, -1)) if prev.kind == "DEPTHWISE_CONV_2D"
                       else wt.data * k.reshape((-1, 1, 1, 1))).astype(np.float32)
            bt = self.tensors[prev.inputs[2]]
            bt.data = ((bt.data - mean) * k + beta).astype(np.float32)
            self.alias[out] = x
        elif t in ("Relu", "Clip"):
            kind = "RELU"
            if t == "Clip":
                lo = float(self.const(node, ins[1])) if len(ins) > 1 and ins[1] else -np.inf
                hi = float(self.const(node, ins[2])) if len(ins) > 2 and ins[2] else np.inf
                if (lo, hi) == (0.0, 6.0):
                    kind = "RELU6"
                elif (lo, hi) == (0.0, np.inf):
                    kind = "RELU"
                else:
                    raise self.err(node, f"Clip({lo}, {hi}) is not supported; only Clip(0, 6) (ReLU6) and Clip(0) (ReLU)")
            self.emit(kind, [x], out, {}, node)
        elif t in ("MaxPool", "AveragePool"):
            if a.get("ceil_mode", 0):
                raise self.err(node, "ceil_mode=1 is not supported")
            if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise self.err(node, "auto_pad is not supported; export with explicit pads")
            kernel = tuple(a["kernel_shape"])
            pads = tuple(a.get("pads", [0, 0, 0, 0]))
            attrs = {"kernel": kernel, "stride": tuple(a.get("strides", [1, 1])), "pads": pads, "act": "NONE"}
            if t == "AveragePool":
                if any(pads) and not a.get("count_include_pad", 0):
                    raise self.err(node, "padded AveragePool with count_include_pad=0 is not supported")
                attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
            self.emit("MAX_POOL_2D" if t == "MaxPool" else "AVERAGE_POOL_2D", [x], out, attrs, node)
        elif t == "GlobalAveragePool":
            _, h, w_, _ = xshape
            self.emit("AVERAGE_POOL_2D", [x], out,
                      {"kernel": (h, w_), "stride": (h, w_), "pads": (0, 0, 0, 0), "act": "NONE"}, node)
        elif t == "Add" and (ins[0] in self.consts) != (ins[1] in self.consts):
            # MatMul + Add (or Conv + Add) of a per-channel constant: fold into the bias
            act_in, c_in = (ins[1], ins[0]) if ins[0] in self.consts else (ins[0], ins[1])
            prev = next((op for op in reversed(self.ops) if op.outputs == [act_in]), None)
            c = np.asarray(self.consts[c_in], np.float32)
            if prev is None or prev.kind not in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") or prev.act != "NONE":
                raise self.err(node, "Add with a constant operand is only supported as a bias after MatMul/Gemm/Conv")
            bt = self.tensors[prev.inputs[2]]
            n_out = bt.data.shape[0]
            if c.size not in (1, n_out) or (c.ndim == 4 and c.shape[1] != n_out and c.size != 1):
                raise self.err(node, f"constant of shape {c.shape} is not a per-channel bias for {n_out} channels")
            bt.data = (bt.data + c.reshape(-1)).astype(np.float32)
            self.alias[out] = act_in
        elif t in ("Add", "Mul"):
            for i in ins[:2]:
                if i in self.consts:
                    raise self.err(node, f"{t} with a constant operand is not supported")
            sa, sb = self.tensors[ins[0]].shape, self.tensors[ins[1]].shape
            if sa != sb:
                raise self.err(node, f"broadcasting {t} ({sa} and {sb}) is not supported")
            self.emit("ADD" if t == "Add" else "MUL", ins[:2], out, {"act": "NONE"}, node)
        elif t in ("Gemm", "MatMul"):
            if len(xshape) != 2:
                raise self.err(node, f"{t} on a {len(xshape)}-D input is not supported; flatten first")
            w = self.const(node, ins[1]).astype(np.float32)
            if t == "Gemm":
                if a.get("transA", 0):
                    raise self.err(node, "transA=1 is not supported")
                w = w if a.get("transB", 0) else w.T
                w = w * float(a.get("alpha", 1.0))
                bias = (self.const(node, ins[2]).astype(np.float32) * float(a.get("beta", 1.0))
                        if len(ins) > 2 and ins[2] else np.zeros(w.shape[0], np.float32))
            else:
                w = w.T
                bias = np.zeros(w.shape[0], np.float32)
            bias = np.broadcast_to(bias, (w.shape[0],)).astype(np.float32)
            self.emit("FULLY_CONNECTED", [x, self.add_const(f"{out}/weights", w), self.add_const(f"{out}/bias", bias)],
                      out, {"act": "NONE"}, node)
        elif t in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
            src_nchw = self.shapes[node.input[0]] if node.input[0] in self.shapes else xshape
            dst = self.shapes[out]
            if len(src_nchw) == 4 and src_nchw[2] * src_nchw[3] > 1 and len(dst) != 4:
                tname = f"{out}/nchw"
                self.tensors[tname] = Tensor(tname, tuple(src_nchw))
                self.ops.append(Op("TRANSPOSE", [x], [tname], {"perm": (0, 3, 1, 2)}, name=f"{node.name}/to_nchw"))
                x = tname
            if len(dst) == 4 and len(src_nchw) != 4:
                tname = f"{out}/nchw"
                self.tensors[tname] = Tensor(tname, tuple(dst))
                self.ops.append(Op("RESHAPE", [x], [tname], {}, name=node.name or out))
                self.emit("TRANSPOSE", [tname], out, {"perm": (0, 2, 3, 1)}, node)
                return
            if len(dst) == 4 and len(src_nchw) == 4 and src_nchw != dst:
                raise self.err(node, f"reshaping a 4-D tensor {src_nchw} to 4-D {dst} is not supported")
            self.emit("RESHAPE", [x], out, {}, node)
        elif t == "Pad":
            mode = a.get("mode", b"constant")
            if mode not in (b"constant", "constant"):
                raise self.err(node, f"Pad mode {mode!r} is not supported (constant only)")
            pads = [int(v) for v in self.const(node, ins[1])]
            if len(ins) > 2 and ins[2] and float(np.asarray(self.const(node, ins[2])).reshape(-1)[0]) != 0.0:
                raise self.err(node, "Pad with a non-zero constant value is not supported")
            rank = len(pads) // 2
            pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
            if rank == 4:
                pairs = [pairs[0], pairs[2], pairs[3], pairs[1]]
            if any(p0 < 0 or p1 < 0 for p0, p1 in pairs):
                raise self.err(node, "negative padding (cropping) is not supported")
            self.emit("PAD", [x], out, {"pads": tuple(pairs)}, node)
        elif t == "Softmax":
            axis = int(a.get("axis", -1))
            rank = len(xshape)
            if rank == 4 and axis in (1, -3):
                axis = 3
            if axis not in (-1, rank - 1):
                raise self.err(node, f"Softmax over axis {a.get('axis', -1)} is not supported (last axis only)")
            self.emit("SOFTMAX", [x], out, {"beta": 1.0}, node)
        elif t == "Sigmoid":
            self.emit("LOGISTIC", [x], out, {}, node)
        elif t == "Tanh":
            self.emit("TANH", [x], out, {}, node)
        elif t == "Concat":
            for i in ins:
                if i in self.consts:
                    raise self.err(node, "Concat with a constant operand is not supported")
            axis = int(a["axis"])
            rank = len(xshape)
            axis = axis % rank
            if rank == 4:
                axis = {0: 0, 1: 3, 2: 1, 3: 2}[axis]
            self.emit("CONCATENATION", ins, out, {"axis": axis, "act": "NONE"}, node)
        else:  # pragma: no cover - SUPPORTED and this chain must agree
            raise self.err(node, "not supported")

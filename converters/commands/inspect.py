"""``edge-convert inspect MODEL``: format, ops, inputs/outputs with quantization, weights."""
from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any, Optional

import numpy as np

from edge_runtime.errors import ModelFormatError
from edge_runtime.formats.tflite import TFLITE_IDENTIFIER, TensorInfo, TFLiteModel
from edge_runtime.model_file import read_head

NAME = "inspect"
HELP = "show a .tflite or .onnx model's ops, inputs/outputs (with quantization) and weight size"
DESCRIPTION = """\
Print what a model holds, without running it:

  - the format (TFLite flatbuffer or ONNX protobuf, detected from the file's content),
  - every op with how many times it appears (custom ops such as edgetpu-custom-op by name),
  - inputs and outputs: name, shape, dtype and quantization (scale, zero point; for ONNX
    QDQ models, taken from the QuantizeLinear/DequantizeLinear that reads an input or
    writes an output),
  - the bytes of constant weights (initializers and Constant nodes) and the number of tensors.

A file whose extension does not match its content (a .tflite renamed .onnx) is an
error that says so.

examples:
  edge-convert inspect model.tflite
  edge-convert inspect model.onnx --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``inspect``."""
    parser.add_argument("model", metavar="MODEL", help="a .tflite or .onnx file")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: format, ops, inputs, outputs, weight_bytes, tensor_count, ...")


# ---------------------------------------------------------------- detection
def detect_format(path: str) -> str:
    """'tflite' or 'onnx' from the file's first bytes; raise ModelFormatError otherwise."""
    head = read_head(path, 16)
    if not head:
        raise ModelFormatError(f"{path}: the file is empty")
    ext = os.path.splitext(path)[1].lower()
    is_tflite = len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER
    if is_tflite:
        if ext == ".onnx":
            raise ModelFormatError(f"{path}: has the .onnx extension but is a TFLite flatbuffer "
                                   f"(identifier {TFLITE_IDENTIFIER.decode()}); rename it to .tflite")
        return "tflite"
    if ext == ".tflite":
        raise ModelFormatError(f"{path}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier at "
                               f"byte 4; found {head[4:8]!r}); the file is truncated, corrupt or another format")
    if ext == ".onnx" or head[:1] == b"\x08":  # ONNX ModelProto starts with field 1 (ir_version), varint
        return "onnx"
    raise ModelFormatError(f"{path}: neither a TFLite flatbuffer nor an ONNX protobuf "
                           f"(use a .tflite or .onnx file)")


# ---------------------------------------------------------------- tflite
def _tflite_tensor(t: TensorInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "dtype": t.type_name.lower()}
    q = t.quantization
    if q is not None and q.scale.size:
        if q.per_channel:
            d["quantization"] = {"per_channel": True, "channels": int(q.scale.size),
                                 "axis": q.quantized_dimension}
        else:
            d["quantization"] = {"scale": float(q.scale[0]), "zero_point": int(q.zero_point[0])}
    else:
        d["quantization"] = None
    return d


def inspect_tflite(path: str) -> dict[str, Any]:
    """Describe a .tflite file (parsed with edge_runtime's bounds-checked reader)."""
    m = TFLiteModel.open(path)
    sg = m.main
    return {
        "path": path,
        "format": "tflite",
        "file_bytes": os.path.getsize(path),
        "schema_version": m.version,
        "description": m.description,
        "subgraphs": len(m.subgraphs),
        "ops": dict(sorted(m.op_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
        "op_versions": sorted({f"{o.name}:v{o.version}" for o in m.opcodes}),
        "inputs": [_tflite_tensor(sg.tensors[i]) for i in sg.inputs],
        "outputs": [_tflite_tensor(sg.tensors[i]) for i in sg.outputs],
        "weight_bytes": m.weight_bytes(),
        "tensor_count": sum(len(s.tensors) for s in m.subgraphs),
        "metadata": sorted(m.metadata),
    }


# ---------------------------------------------------------------- onnx
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
                8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
                16: "bfloat16"}


def _onnx_graphs(graph: Any):  # type: ignore[no-untyped-def]
    """The graph and every subgraph nested in If/Loop/Scan attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _onnx_graphs(attr.g)
            for g in attr.graphs:
                yield from _onnx_graphs(g)


def _tensor_bytes(t: Any) -> int:
    """Bytes of a TensorProto's data as its dtype stores it (strings count one byte per element)."""
    import onnx

    n = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
    if t.data_type == onnx.TensorProto.STRING:
        return n
    try:
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):  # an undefined or future dtype: count it as bytes
        itemsize = 1
    return n * itemsize


def _constant_node_bytes(node: Any) -> int:
    """Bytes of the weights a Constant node holds (tensor, sparse tensor or list attribute)."""
    total = 0
    for attr in node.attribute:
        if attr.name == "value":
            total += _tensor_bytes(attr.t)
        elif attr.name == "sparse_value":
            total += _tensor_bytes(attr.sparse_tensor.values) + _tensor_bytes(attr.sparse_tensor.indices)
        elif attr.name in ("value_floats", "value_ints"):
            total += 4 * len(attr.floats) if attr.name == "value_floats" else 8 * len(attr.ints)
        elif attr.name in ("value_float", "value_int"):
            total += 4 if attr.name == "value_float" else 8
    return total


def _onnx_scalar(inits: dict[str, Any], name: str) -> Optional[np.ndarray]:
    from onnx import numpy_helper

    t = inits.get(name)
    return None if t is None else numpy_helper.to_array(t)


def inspect_onnx(path: str) -> dict[str, Any]:
    """Describe an .onnx file with the onnx package (no inference session)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not a valid ONNX model: {exc}") from None
    except Exception as exc:  # protobuf raises several undocumented types on garbage
        raise ModelFormatError(f"{path}: not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    g = model.graph
    if not g.node and not g.input and not g.output:
        raise ModelFormatError(f"{path}: not a valid ONNX model (no graph: nodes, inputs and outputs are empty)")
    ops: Counter[str] = Counter()
    weight_bytes = 0
    names: set[str] = set()
    for sub in _onnx_graphs(g):
        for node in sub.node:
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            ops[key] += 1
            names.update(o for o in node.output if o)
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                weight_bytes += _constant_node_bytes(node)
        for init in sub.initializer:
            names.add(init.name)
            weight_bytes += _tensor_bytes(init)
        names.update(v.name for v in sub.input)
        names.update(v.name for v in sub.output)
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[Any]] = {}
    producers: dict[str, Any] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
        for o in node.output:
            producers[o] = node

    def qparams(node: Any) -> Optional[dict[str, Any]]:
        if len(node.input) < 2:
            return None
        s = _onnx_scalar(inits, node.input[1])
        z = _onnx_scalar(inits, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if s is None:
            return None
        if s.size > 1:
            return {"per_channel": True, "channels": int(s.size)}
        return {"scale": float(s.reshape(-1)[0]),
                "zero_point": int(z.reshape(-1)[0]) if z is not None else 0,
                "storage_dtype": str(z.dtype) if z is not None else "uint8"}

    def describe(v: Any, quant: Optional[dict[str, Any]]) -> dict[str, Any]:
        tt = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": _ONNX_DTYPES.get(tt.elem_type, f"type{tt.elem_type}"),
                "quantization": quant}

    inputs = []
    for v in g.input:
        if v.name in inits:
            continue
        q = None
        for c in consumers.get(v.name, []):
            # a float input quantized by the graph, or an int8/uint8 input dequantized by it
            if c.op_type in ("QuantizeLinear", "DequantizeLinear") and c.input[0] == v.name:
                q = qparams(c)
        inputs.append(describe(v, q))
    outputs = []
    for v in g.output:
        p = producers.get(v.name)
        q = qparams(p) if p is not None and p.op_type in ("DequantizeLinear", "QuantizeLinear") else None
        outputs.append(describe(v, q))
    return {
        "path": path,
        "format": "onnx",
        "file_bytes": os.path.getsize(path),
        "ir_version": int(model.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "inputs": inputs,
        "outputs": outputs,
        "weight_bytes": weight_bytes,
        "tensor_count": len(names),
    }


def inspect_model(path: str) -> dict[str, Any]:
    """Describe a .tflite or .onnx model as a JSON-friendly dict."""
    fmt = detect_format(path)
    return inspect_tflite(path) if fmt == "tflite" else inspect_onnx(path)


# ---------------------------------------------------------------- text
def _q_text(q: Optional[dict[str, Any]]) -> str:
    if not q:
        return "not quantized"
    if q.get("per_channel"):
        return f"per-channel ({q['channels']} scales)"
    return f"scale {q['scale']:.6g}, zero point {q['zero_point']}"


def format_report(info: dict[str, Any]) -> str:
    """Human-readable report of :func:`inspect_model`'s result."""
    lines = [f"{info['path']}", f"  format:       {info['format']} ({info['file_bytes']:,} bytes)"]
    if info["format"] == "tflite":
        lines.append(f"  subgraphs:    {info['subgraphs']}")
    else:
        lines.append(f"  opsets:       {', '.join(f'{k} {v}' for k, v in info['opsets'].items())}")
    lines.append(f"  weight bytes: {info['weight_bytes']:,}")
    lines.append(f"  tensors:      {info['tensor_count']}")
    lines.append(f"  ops ({sum(info['ops'].values())}):")
    for name, n in info["ops"].items():
        lines.append(f"    {name:<28} x{n}")
    for kind in ("inputs", "outputs"):
        lines.append(f"  {kind}:")
        for t in info[kind]:
            shape = "x".join(str(s) for s in t["shape"]) or "scalar"
            lines.append(f"    {t['name']}: {t['dtype']}[{shape}]  {_q_text(t['quantization'])}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Inspect one model."""
    info = inspect_model(args.model)
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0

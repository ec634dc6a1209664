"""Write a generated C99 project for an int8 .tflite: model.c/.h, the kernels it uses, the board
support (linker script, startup, semihosting runner), a Makefile and manifest.json."""
from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from converters.codegen.features import feature_flags
from converters.codegen.fields import layout_fields
from converters.codegen.shared import BLOCK_ALIGN, SharedConstants
from converters.codegen.makefile import makefile
from converters.codegen.memory import plan_c_arena, ring_plan
from converters.codegen.wplace import apply_coding, plan_coding
from converters.codegen.cblob import blob_constants
from converters.codegen.cop import C_RANGES, SHAPE_INDEX
from converters.codegen.ops import (
    CONST_KINDS,
    KERNEL_FILES,
    KERNEL_HEADER,
    RING_OPS,
    build_op,
    c_array,
    check_op,
    constant_weight_bytes,
    data_inputs,
)
from edge_runtime.arena.subgraphs import call_once_options
from edge_runtime.errors import UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel

KERNEL_HEADERS = ("er_config.h", "er_kernels.h", "er_fixedpoint.h", "er_layer.h", "er_pool.h", "er_binary.h")
BOARD_FILES = ("link.ld", "startup.c", "er_io.h", "er_io_semihost.c", "er_io_host.c", "er_libc.c", "er_main.c")
def _guard(model: TFLiteModel) -> None:
    sg = model.main
    inits = {call_once_options(op) for op in sg.operators if op.name == "CALL_ONCE"}
    if set(range(1, len(model.subgraphs))) - inits:
        raise UnsupportedModelError("the C generator supports single-subgraph models only (plus the init "
                                    "subgraphs of CALL_ONCE)")
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise UnsupportedModelError(f"the C generator supports one input and one output; the model has "
                                    f"{len(sg.inputs)} and {len(sg.outputs)}")
    for op in sg.operators:
        check_op(model, op)


def generate_c(model_path: "str | os.PathLike[str]", out_dir: "str | os.PathLike[str]", *,
               planner: str = "best", compress_weights: str = "auto") -> dict[str, Any]:
    """Generate the C project for ``model_path`` into ``out_dir``; return its manifest (also written).
    ``compress_weights``: "auto" stores weights entropy-coded where that saves flash (``wplace.py``),
    "off" stores them as they are."""
    model = TFLiteModel.open(model_path)
    _guard(model)
    sg = model.main
    plan = plan_c_arena(model, planner)
    out = Path(out_dir)
    (out / "kernels").mkdir(parents=True, exist_ok=True)
    (out / "board").mkdir(parents=True, exist_ok=True)

    def where(t_index: int) -> str:
        t = sg.tensors[t_index]
        if t.data is not None:
            return f"(const int8_t*)t{t_index}"
        return f"(er_arena + {plan.tensor_offset(t_index)})"

    arrays: list[str] = []
    state: dict[str, str] = {}  # static buffers kept across invokes (resource variables)
    kinds: dict[str, str] = {}  # C name of each generated constant -> what it holds
    params: list[str] = []
    calls: list[str] = []
    kernels: set[str] = set()
    const_inputs: set[int] = set()
    cops, rings = [], []
    shapes: dict[str, int] = {}  # er_conv_shapes: initializer -> index
    for op in sg.operators:
        ring, direction = (0, 1)
        if plan.runs_in_place(op.index) and op.name in RING_OPS:
            ring, direction = ring_plan(model, op)
        cops.append(build_op(model, op, ring, direction))
        rings.append(ring)
    same_address = {op.index for op in sg.operators if plan.runs_in_place(op.index) and op.inputs and op.outputs
                    and sg.tensors[op.inputs[0]].data is None
                    and plan.tensor_offset(op.inputs[0]) == plan.tensor_offset(op.outputs[0])}
    coding = plan_coding(plan, cops, compress_weights, same_address)
    decode_before = apply_coding(coding, cops, kinds)
    fields = layout_fields(cops)
    for name, (kind, text) in blob_constants(cops).items():
        arrays.append(text)
        kinds[name] = kind
    shared = SharedConstants()
    for op, cop, ring in zip(sg.operators, cops, rings):
        if KERNEL_FILES[op.name]:
            kernels.add(KERNEL_FILES[op.name])
        for name, (kind, text) in cop.consts.items():
            text = shared.rename(text)
            if shared.add(name, text):
                arrays.append(text)
                kinds[name] = kind
            else:
                kinds.pop(name, None)
        cop.params, cop.shape = shared.rename(cop.params), shared.rename(cop.shape)
        if cop.shape:  # one geometry per distinct shape (er_conv_shapes), shared by the layers
            ix = shapes.setdefault(cop.shape, len(shapes))
            if ix > C_RANGES["uint8_t"][1]:
                raise UnsupportedModelError(f"op {op.name} (op {op.index}): more than 256 distinct convolution "
                                            "shapes; the C generator indexes them with a uint8_t")
            cop.params = cop.params.replace(f".shape = {SHAPE_INDEX}", f".shape = {ix}")
        state.update(cop.state)
        ins = []
        for i in [op.inputs[p] for p in data_inputs(op)]:
            if sg.tensors[i].data is not None:
                const_inputs.add(i)
            ins.append(where(i))
        pname = f"op{op.index}_p"
        if cop.params:
            pname = shared.block(pname, cop.struct, cop.params, params)
            kinds.setdefault(pname, CONST_KINDS["p"])
        prefix = decode_before.get(op.index, "")
        if ring:
            off, _size = plan.scratch(op.index)
            prefix += f"ring = er_arena + {off}; "
        call = (cop.call(pname, ins, where(op.outputs[0])) if cop.call_all is None
                else cop.call_all(pname, ins, [where(o) for o in op.outputs
                                               if sg.tensors[o].type_name != "RESOURCE"]))
        calls.append(f"    /* op {op.index}: {op.name}{' (in place)' if plan.runs_in_place(op.index) else ''} */\n"
                     f"    {prefix}{shared.rename(call)}")
    if shapes:
        arrays.append(f"const er_conv_shape er_conv_shapes[{len(shapes)}]{BLOCK_ALIGN} = {{\n    "
                      + ",\n    ".join(shapes) + "\n};\n")
        kinds["er_conv_shapes"] = CONST_KINDS["p"]
    if coding.parts:
        arrays.append(c_array("er_wz", "uint8_t", np.frombuffer(coding.stream, np.uint8), "the coded weights"))
        kinds["er_wz"] = CONST_KINDS["w"]
    for i in sorted(const_inputs):
        t = sg.tensors[i]
        arrays.append(c_array(f"t{i}", "int8_t", t.array(), f"tensor '{t.name}'"))
        kinds[f"t{i}"] = CONST_KINDS["w"]

    x, y = sg.tensors[sg.inputs[0]], sg.tensors[sg.outputs[0]]
    in_off, out_off = plan.tensor_offset(sg.inputs[0]), plan.tensor_offset(sg.outputs[0])
    header = _header(model, plan.arena_bytes, x, y)
    (out / "model.h").write_text(header)
    uses_ring = any("ring = " in c for c in calls)
    extra_headers = sorted({KERNEL_HEADER[k] for k in kernels if k in KERNEL_HEADER})
    if coding.parts:
        extra_headers.append("er_rc.h")  # the weights decoder (static, compiled into model.c)
    body = ["/* Generated by edge-convert export --format c: " + os.path.basename(str(model_path)) + " */",
            *(["#define ER_RC_STREAM /* er_rc_stream (er_wstream) */"] if any(p.block for p in coding.parts) else []),
            "#include <string.h>", '#include "model.h"', '#include "er_kernels.h"',
            *[f'#include "{h}"' for h in extra_headers], "",
            *(["/* the weights decode buffer (wplace.py) directly follows the arena */",
               f"static int8_t er_arena[MODEL_ARENA_BYTES + {coding.wbuf_bytes}] __attribute__((aligned(16)));",
               "#define er_wbuf (er_arena + MODEL_ARENA_BYTES)"]
              if coding.wbuf_bytes else ["static int8_t er_arena[MODEL_ARENA_BYTES] __attribute__((aligned(16)));"]),
            *[state[k] for k in sorted(state)],
            ""]
    body += arrays + [""] + params + ["",
             f"int8_t* model_input_ptr(void) {{ return er_arena + {in_off}; }}",
             f"int8_t* model_output_ptr(void) {{ return er_arena + {out_off}; }}", "",
             "void model_invoke(const int8_t* in, int8_t* out) {"]
    if uses_ring:
        body.append("    int8_t* ring;")
    body += [f"    if (in != er_arena + {in_off}) memcpy(er_arena + {in_off}, in, MODEL_INPUT_BYTES);"]
    if coding.parts:
        body.append("    er_rc_init(er_wz);")
    body += calls
    body += [f"    if (out != er_arena + {out_off}) memcpy(out, er_arena + {out_off}, MODEL_OUTPUT_BYTES);", "}", ""]
    (out / "model.c").write_text("\n".join(body))

    src = resources.files("converters.codegen") / "kernels"
    headers = KERNEL_HEADERS + tuple(extra_headers)
    for h in headers:
        (out / "kernels" / h).write_text(fields.header() if h == "er_config.h" else (src / h).read_text())
    for k in sorted(kernels):
        (out / "kernels" / f"{k}.c").write_text((src / f"{k}.c").read_text())
    board = resources.files("firmware_sim.mcu") / "board"
    for f in BOARD_FILES:
        (out / "board" / f).write_text((board / f).read_text())
    (out / "Makefile").write_text(makefile([f"kernels/{k}.c" for k in sorted(kernels)], headers,
                                           feature_flags("".join(arrays) + "".join(params))))
    for stale in out.glob("build*"):  # builds of an earlier generation (build/, build-Os/, ...)
        if stale.is_dir():
            shutil.rmtree(stale)

    weights = constant_weight_bytes(model)
    manifest = {
        "model": os.path.basename(str(model_path)),
        "format": "c",
        "arena_bytes": int(plan.arena_bytes),
        "in_place_ops": sorted(int(i) for i in plan.in_place_ops),
        "weight_bytes": weights,
        "ops": [op.name for op in sg.operators],
        "input": _tensor_json(x), "output": _tensor_json(y),
        "kernels": sorted(kernels),
        "constants": kinds,
        "shared_constants": dict(shared.aliases),
        "fields": {"er_dim_t": fields.dim_type, "er_ring_t": fields.ring_type, **fields.present},
        "coded_weights": {"ops": [p.index for p in coding.parts],
                          "bytes": sum(p.rows * p.row_len for p in coding.parts),
                          "stream_bytes": len(coding.stream), "buffer_bytes": coding.wbuf_bytes},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(_readme(manifest))
    return manifest


def _tensor_json(t: Any) -> dict[str, Any]:
    q = t.quantization
    scale = float(q.scale[0]) if q is not None and q.scale.size else 0.0
    zp = int(q.zero_point[0]) if q is not None and q.zero_point.size else 0
    return {"name": t.name, "shape": [int(d) for d in t.shape], "dtype": str(np.dtype(t.dtype)), "bytes": int(t.nbytes),
            "scale": scale, "zero_point": zp}


def _header(model: TFLiteModel, arena: int, x: Any, y: Any) -> str:
    xi, yi = _tensor_json(x), _tensor_json(y)

    def dims(t: dict[str, Any]) -> str:
        return ", ".join(str(d) for d in t["shape"])

    return f"""/* Generated by edge-convert export --format c. The model's tensors and entry points. */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>

#define MODEL_ARENA_BYTES {arena}
/* input '{xi['name']}': {xi['dtype']} [{dims(xi)}], real = {xi['scale']!r} * (q - ({xi['zero_point']})) */
#define MODEL_INPUT_BYTES {xi['bytes']}
#define MODEL_INPUT_RANK {len(xi['shape'])}
#define MODEL_INPUT_DIMS {{ {dims(xi)} }}
#define MODEL_INPUT_SCALE {xi['scale']!r}f
#define MODEL_INPUT_ZERO_POINT ({xi['zero_point']})
/* output '{yi['name']}': {yi['dtype']} [{dims(yi)}], real = {yi['scale']!r} * (q - ({yi['zero_point']})) */
#define MODEL_OUTPUT_BYTES {yi['bytes']}
#define MODEL_OUTPUT_RANK {len(yi['shape'])}
#define MODEL_OUTPUT_DIMS {{ {dims(yi)} }}
#define MODEL_OUTPUT_SCALE {yi['scale']!r}f
#define MODEL_OUTPUT_ZERO_POINT ({yi['zero_point']})

/* Run one inference. `in` and `out` may be model_input_ptr() / model_output_ptr() (no copy). */
void model_invoke(const int8_t* in, int8_t* out);
/* The input and output tensors inside the static arena (valid until the next invoke). */
int8_t* model_input_ptr(void);
int8_t* model_output_ptr(void);

#endif
"""


def _readme(m: dict[str, Any]) -> str:
    return f"""# {m['model']} as C99

Generated by `edge-convert export {m['model']} --format c`. `model_invoke(in, out)` runs one
inference of {m['input']['dtype']} `[{', '.join(map(str, m['input']['shape']))}]` -> {m['output']['dtype']}
`[{', '.join(map(str, m['output']['shape']))}]` in one static arena of {m['arena_bytes']:,} bytes
(in-place plan; weights `const`, {m['weight_bytes']:,} bytes). No heap, no libc beyond memcpy/memset.

    make host        # gcc: build/host/runner reads inputs.bin, writes outputs.bin (the outputs, then a
                     # 16-byte record: 4 x uint32 inputs, stack, ticks, calibration ticks; see board/er_main.c)
    make cortex-m4   # arm-none-eabi-gcc, for qemu-system-arm -M mps2-an386
    make cortex-m7   # for qemu-system-arm -M mps2-an500
    make cortex-m4 OPT=-Os BUILD=build-Os   # for size: MLPerf Tiny: 0.2-1.6 KB less code, 1.4-1.9x the instructions
    python -m firmware_sim.mcu run . --cpu cortex-m4 --input x.npy --output y.npy

To use it in your firmware, compile `model.c` and `kernels/*.c` and call `model_invoke`.
"""

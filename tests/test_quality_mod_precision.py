"""The default precision policy runs ONNX Mod's remainder chain in float on profiles with an OS (int8 on
microcontrollers): int8 against onnxruntime float on the values the int8 model receives (the dequantized int8
inputs: near a multiple of the divisor any input rounding moves the remainder by |y|, which no precision of the
chain can undo), fmod=1 (onnxruntime has no float fmod=0 before opset 28); micro == tflite-micro on both files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_builder import run_micro, run_tflm

from edge_runtime.formats.tflite import TFLiteModel

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum()))


@pytest.mark.parametrize("shape_y", [(1, 4, 6), (1, 1, 6), (1, 4, 1)])  # same shape, broadcast rows, broadcast columns
def test_mod_chain_float_with_an_os(tmp_path: Path, shape_y: tuple[int, ...]) -> None:
    from onnx import TensorProto, helper

    import edge_runtime
    from converters.pipeline import convert_model

    shape_x = (1, 4, 6)
    g = helper.make_graph([helper.make_node("Mod", ["x", "y"], ["r"], fmod=1)], "mod",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape_x)),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape_y))],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, list(shape_x))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(sum(shape_y))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-8, 8, (n, *shape_x)).astype(np.float32)
        y = (rng.uniform(1.5, 4, (n, *shape_y)) * rng.choice([-1, 1], (n, *shape_y))).astype(np.float32)
        return x, y

    cx, cy = sample(16)
    np.savez(tmp_path / "c.npz", x=cx, y=cy)
    hx, hy = sample(128)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    db = {}
    for prof in ("rpi4-4gb", "stm32h743"):
        convert_model(str(tmp_path / "m.onnx"), prof, str(tmp_path / "c.npz"), str(tmp_path / prof), report_samples=2)
        p = next((tmp_path / prof).glob("*.tflite"))
        sg = TFLiteModel.open(str(p)).subgraphs[0]
        floor = next(op for op in sg.operators if op.name == "FLOOR")
        sub = next(op for op in sg.operators if op.name == "SUB")
        assert sg.tensors[sub.outputs[0]].type_name == ("FLOAT32" if prof == "rpi4-4gb" else "INT8")
        assert sg.tensors[floor.outputs[0]].type_name == "FLOAT32"  # FLOOR is a float island everywhere
        mm = edge_runtime.load(str(p), backend="micro")
        specs = {s.name: s for s in mm.inputs}
        order = [s.name for s in mm.inputs]  # the written model's input order
        xs, seen = [], []
        for a, b in zip(hx, hy):
            q = {n: np.clip(np.round(v / specs[n].scale) + specs[n].zero_point, -128, 127).astype(np.int8)
                 for n, v in (("x", a), ("y", b))}
            xs.append([q[n] for n in order])
            seen.append({n: (q[n].astype(np.float32) - specs[n].zero_point) * np.float32(specs[n].scale) for n in q})
        ref = np.stack([sess.run(None, v)[0] for v in seen])
        so = mm.outputs[0]
        got = np.stack([(mm.run(q)[0].astype(np.float32) - so.zero_point) * so.scale for q in xs])
        db[prof] = _sqnr(ref, got.reshape(ref.shape))
        for u, v in zip(run_tflm(p, xs[:4]), run_micro(p, xs[:4])):
            assert np.array_equal(u[0], v[0])
    # reference: onnxruntime float
    # measured: rpi4-4gb 27.1 / 24.7 / 24.1 dB, stm32h743 14.6 / 17.1 / 21.7 dB. What the float chain still loses
    # is fmod=1's sign test: LESS stays int8 (the TFLite writer gives a float compare a float output), so a
    # quotient in (-step/2, 0) takes floor instead of ceil and the remainder is off by |y| there.
    assert db["rpi4-4gb"] > 22.0 and db["rpi4-4gb"] > db["stm32h743"] + 2.0, db

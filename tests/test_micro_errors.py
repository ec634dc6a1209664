"""Bad input to the micro backend gives one clear error (issue 3: unsupported op test; project rules).

References: the error classes of edge_runtime.errors and the op/version written into the
model bytes (patched copies of kws_ref_model.tflite).
"""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_runtime.backends.micro import open_model
from edge_runtime.errors import ConfigError, InputError, ModelFormatError, UnsupportedModelError
from edge_runtime.formats.tflite import TFLiteModel


def _patch_opcode(src, dst, op_name: str, builtin: int | None = None, version: int | None = None) -> None:
    """Copy a model, changing the builtin code and/or version of the opcode named ``op_name`` in place."""
    data = bytearray(open(src, "rb").read())
    model = TFLiteModel(bytes(data))
    root = model.buf.root()
    for t in root.tables(1, "operator_code"):
        code = max(int(t.scalar(0, "b", 0)), int(t.scalar(3, "i", 0)))
        if code == [c for c in model.opcodes if c.name == op_name][0].builtin_code:
            if builtin is not None:
                struct.pack_into("<b", data, t._field_pos(0), min(builtin, 127))
                if t.has(3):
                    struct.pack_into("<i", data, t._field_pos(3), builtin)
            if version is not None:
                assert t.has(2), "the opcode has no stored version field to patch"
                struct.pack_into("<i", data, t._field_pos(2), version)
    open(dst, "wb").write(bytes(data))


def test_unsupported_op_is_refused_at_load_naming_it(mlperf_models, tmp_path):
    dst = tmp_path / "lstm.tflite"
    _patch_opcode(mlperf_models / "kws_ref_model.tflite", dst, "SOFTMAX", builtin=16)  # LSTM
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(dst))
    msg = str(e.value)
    assert "LSTM" in msg and "micro backend" in msg and "op 12" in msg


def test_unsupported_op_version_is_refused_naming_op_and_version(mlperf_models, tmp_path):
    dst = tmp_path / "v99.tflite"
    _patch_opcode(mlperf_models / "kws_ref_model.tflite", dst, "DEPTHWISE_CONV_2D", version=99)
    with pytest.raises(UnsupportedModelError) as e:
        open_model(str(dst))
    assert "DEPTHWISE_CONV_2D version 99" in str(e.value)


def test_unsupported_op_parameters_are_refused(mlperf_models, tmp_path):
    """An int8 softmax whose output is not quantized as TFLM requires: refused, not computed wrongly."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    m = schema.ModelT.InitFromPackedBuf(bytearray((mlperf_models / "kws_ref_model.tflite").read_bytes()), 0)
    sg = m.subgraphs[0]
    out = sg.tensors[sg.outputs[0]]
    out.quantization.zeroPoint = np.array([0], np.int64)
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    dst = tmp_path / "softmax_zp.tflite"
    dst.write_bytes(bytes(b.Output()))
    with pytest.raises(UnsupportedModelError, match="SOFTMAX.*zero point -128"):
        open_model(str(dst))


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"garbage bytes, not a model" * 3, "not a valid TFLite"),
                                           (None, "truncated|not a valid")])
def test_corrupt_files_give_model_format_error(mlperf_models, tmp_path, content, match):
    p = tmp_path / "bad.tflite"
    if content is None:
        content = (mlperf_models / "kws_ref_model.tflite").read_bytes()[:3000]
    p.write_bytes(content)
    with pytest.raises(ModelFormatError, match=match):
        open_model(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(ModelFormatError, match="no such file"):
        open_model(str(tmp_path / "nope.tflite"))


def test_wrong_inputs_give_input_error(mlperf_models):
    m = open_model(str(mlperf_models / "kws_ref_model.tflite"))
    with pytest.raises(InputError, match="shape"):
        m.run(np.zeros((1, 49, 10), np.int8))
    with pytest.raises(InputError, match="dtype"):
        m.run(np.zeros((1, 49, 10, 1), np.float32))
    with pytest.raises(InputError, match="takes 1 input"):
        m.run([np.zeros((1, 49, 10, 1), np.int8)] * 2)


def test_bad_options_give_config_error(mlperf_models):
    with pytest.raises(ConfigError, match="unknown micro backend option"):
        open_model(str(mlperf_models / "kws_ref_model.tflite"), arena_size=5)
    with pytest.raises(ConfigError, match="workspace_limit"):
        open_model(str(mlperf_models / "kws_ref_model.tflite"), workspace_limit="big")


class _OverlappingPlan:
    """A deliberately bad plan (test-only): every activation at offset 0, so outputs overlap inputs."""

    in_place = False
    planner = "bad"

    def __init__(self, model: TFLiteModel) -> None:
        self.sizes = {t.index: t.nbytes for t in model.main.tensors if t.data is None}
        self.arena_bytes = max(self.sizes.values()) + 64

    def has_tensor(self, index: int) -> bool:
        return index in self.sizes

    def tensor_offset(self, index: int) -> int:
        return 16 if index % 2 else 0

    def scratch(self, op_index: int):
        return None


def test_plan_overlapping_an_op_that_cannot_run_in_place_is_refused(mlperf_models):
    """Never wrong output: a plan putting a convolution's output over its input at another offset is refused."""
    from edge_runtime.backends.micro import Interpreter

    model = TFLiteModel.open(str(mlperf_models / "kws_ref_model.tflite"))
    with pytest.raises(UnsupportedModelError, match=r"overlaps op \d+ \((DEPTHWISE_)?CONV_2D\)'s output with an input"):
        Interpreter(model, _OverlappingPlan(model))


@pytest.mark.parametrize("name", ["kws_ref_model", "str_ww_ref_model"])
def test_mutated_models_load_and_run_or_fail_cleanly(mlperf_models, tmp_path, name):
    """Random byte changes (mostly in the flatbuffer tables at the end of the file): every outcome is a
    successful run or an EdgeRuntimeError, never another exception. Reference: the error contract."""
    from edge_runtime.errors import EdgeRuntimeError

    data = (mlperf_models / f"{name}.tflite").read_bytes()
    rng = np.random.default_rng(11)
    p = tmp_path / "mutated.tflite"
    outcomes = {"ran": 0, "refused": 0}
    for _ in range(100):
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            near_end = rng.random() < 0.7
            pos = int(len(d) - 1 - rng.integers(0, min(6000, len(d)))) if near_end else int(rng.integers(0, len(d)))
            d[pos] = int(rng.integers(0, 256))
        p.write_bytes(bytes(d))
        try:
            m = open_model(str(p))
            with np.errstate(all="ignore"):
                m.run(np.zeros(m.inputs[0].shape, m.inputs[0].dtype))
            outcomes["ran"] += 1
        except EdgeRuntimeError:
            outcomes["refused"] += 1
    assert outcomes["ran"] + outcomes["refused"] == 100
    assert outcomes["refused"] > 0
